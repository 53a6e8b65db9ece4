#!/usr/bin/env bash
# Builds target/static/hexreg: one statically linked, stripped x86_64 Linux executable
# (not position-independent: no program interpreter, no shared library, no dynamic section;
# `ldd` says "not a dynamic executable"), for
# an empty chroot or a FROM scratch image. glibc linked statically (`-C target-feature=+crt-static`): this machine's
# toolchain has the x86_64-unknown-linux-gnu target only, and glibc's libc.a (libc6-dev) and
# zlib's libz.a (zlib1g-dev) are what the static link needs. The binary resolves names with
# getaddrinfo; without /etc/nsswitch.conf (an empty chroot, a scratch image) it reads
# /etc/hosts and /etc/resolv.conf itself if present, and numeric addresses always work.
#
# Usage: scripts/static.sh    (from anywhere; prints the file and its size)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=x86_64-unknown-linux-gnu
# A target directory of its own: RUSTFLAGS differ from the normal build's, and sharing
# target/release would rebuild everything each time one or the other runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_STATIC:-target/static-build}"
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --release --locked --bin hexreg --target "$target"

mkdir -p target/static
cp "$CARGO_TARGET_DIR/$target/release/hexreg" target/static/hexreg.tmp
strip target/static/hexreg.tmp
mv target/static/hexreg.tmp target/static/hexreg

# A static executable: no program interpreter, no dynamic section at all (glibc's default
# with crt-static is static-pie, which keeps one; relocation-model=static leaves it out);
# `ldd` says "not a dynamic executable".
if readelf -l target/static/hexreg | grep -q -e INTERP -e DYNAMIC; then
    echo "error: target/static/hexreg needs a dynamic loader or shared libraries:" >&2
    readelf -d target/static/hexreg >&2
    exit 1
fi
echo "target/static/hexreg: $(stat -c %s target/static/hexreg) bytes, $(ldd target/static/hexreg 2>&1 | tr -d '\t')"
