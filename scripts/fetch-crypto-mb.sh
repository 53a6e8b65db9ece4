#!/usr/bin/env bash
# Fetches Intel's crypto_mb static library (libcrypto_mb.a, from the Intel Cryptography
# Primitives Library, Apache-2.0) into vendor/crypto_mb/, where build.rs finds it: hexreg then
# signs eight packages at once on CPUs with AVX-512 IFMA (about 2.4 times aws-lc's rate).
# Without it hexreg builds and works the same, signing with aws-lc alone.
#
# The library comes from Intel's `ipp-crypto-static` wheel on PyPI, pinned by version and
# SHA-256. Needs python3 with pip. x86-64 Linux only.
#
#   scripts/fetch-crypto-mb.sh        # then: cargo build --release
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
dest=vendor/crypto_mb
version=2026.2.0
wheel="ipp_crypto_static-${version}-py2.py3-none-manylinux_2_28_x86_64.whl"
sha256=b4b952a9435f7aab3d1684822f644d586ce5f6bda874e4bfb8c008ee674ca5c5

if [[ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]]; then
    echo "crypto_mb is for x86-64 Linux; hexreg signs with aws-lc here" >&2
    exit 0
fi
if [[ -f "$dest/libcrypto_mb.a" ]]; then
    echo "$dest/libcrypto_mb.a is already there"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --dest "$tmp" "ipp-crypto-static==${version}" || {
    echo "error: could not download ipp-crypto-static ${version} from PyPI (see pip's message" \
        "above); hexreg still builds without it, signing with aws-lc" >&2
    exit 1
}
if ! echo "${sha256}  $tmp/$wheel" | sha256sum --check --quiet - >/dev/null 2>&1; then
    echo "error: the downloaded $wheel does not have the pinned SHA-256 ${sha256};" \
        "nothing was installed. Check your PyPI mirror (PIP_INDEX_URL)" >&2
    exit 1
fi
python3 - "$tmp/$wheel" "$dest" "$version" <<'PY'
import pathlib, sys, zipfile
wheel, dest, version = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3]
dest.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for member, name in [
        (f"ipp_crypto_static-{version}.data/data/lib/libcrypto_mb.a", "libcrypto_mb.a"),
        (f"ipp_crypto_static-{version}.dist-info/LICENSE.txt", "LICENSE.txt"),
    ]:
        (dest / name).write_bytes(z.read(member))
PY
echo "fetched $dest/libcrypto_mb.a (ipp-crypto-static ${version}); build with cargo to use it"
