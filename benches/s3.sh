#!/usr/bin/env bash
# Benchmark `hexreg build s3://BUCKET/PREFIX` against the flow it replaces (a local
# `hexreg build` followed by `aws s3 sync`), on moto's S3 server on loopback.
#
#   bash benches/s3.sh               # 2,000 packages (about 11,000 tarballs, 130 MB)
#   bash benches/s3.sh 500           # another corpus size
#
# Starts `moto_server -H 127.0.0.1 -p PORT` on a free port, creates a bucket, makes the synthetic
# corpus of examples/bench.rs (`bench --packages N --runs 0 --dir DIR`, which keeps DIR/corpus),
# then times three cases for each flow:
#
#   hexreg alone   the corpus is uploaded to s3://BUCKET/hexreg/tarballs/ first (`aws s3 cp
#                  --recursive`, not timed), then `hexreg build s3://BUCKET/hexreg` is timed:
#                  full build, no-op rebuild, and add-one (one new tarball uploaded, not timed,
#                  then a rebuild, timed);
#   build + sync   `hexreg build public` then `aws s3 sync public/ s3://BUCKET/synced/
#                  --exclude ".*" --exclude "*/.*"`, timed together: full, no-op, and add-one
#                  (the tarball copied into public/tarballs/, then build and sync).
#
# The new tarball is fixtures/tarballs/acme_a-1.0.0.tar (a package the corpus does not have).
# Requests are counted from moto's request log (one line per request on its stderr), by method.
# Prints a Markdown table. moto keeps everything in memory and runs on the same cores as hexreg
# and the aws CLI, so times are those of a loopback server, not of AWS (where each request costs
# a network round trip: request counts say more than seconds there).
#
# Needs moto_server and aws (pip install 'moto[server]' awscli); installs them with pip when
# missing. Credentials are the dummy `test`/`test`, the endpoint is 127.0.0.1 only, and the AWS
# config files are ignored. moto and the temporary directory are removed on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=${1:-2000}
if ! [[ $packages =~ ^[0-9]+$ ]] || ((packages < 1)); then
    echo "usage: bash benches/s3.sh [PACKAGES]" >&2
    exit 2
fi

command -v aws >/dev/null 2>&1 || pip install --quiet awscli
command -v moto_server >/dev/null 2>&1 || pip install --quiet 'moto[server]'

cargo build --release --quiet --bin hexreg --example bench
repo=$PWD
hexreg=$repo/target/release/hexreg
bench=$repo/target/release/examples/bench
key=$repo/fixtures/private_key.pem
new_tarball=$repo/fixtures/tarballs/acme_a-1.0.0.tar

work=$(mktemp -d)
moto_pid=
cleanup() {
    if [[ -n $moto_pid ]]; then
        kill "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port_in_use() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=15000
while port_in_use "$port"; do
    port=$((port + 1))
done

moto_log=$work/moto.log
moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>"$moto_log" &
moto_pid=$!
for ((i = 0; i < 300; i++)); do
    port_in_use "$port" && break
    sleep 0.1
done
port_in_use "$port" || {
    echo "error: moto_server did not start: $(cat "$moto_log")" >&2
    exit 1
}

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ALLOW_HTTP=true
export AWS_CONFIG_FILE=$work/no-aws-config AWS_SHARED_CREDENTIALS_FILE=$work/no-aws-credentials
export XDG_CACHE_HOME=$work/cache
unset AWS_PROFILE AWS_SESSION_TOKEN
bucket=hexreg-bench
s3() { aws --endpoint-url "$AWS_ENDPOINT_URL" s3 "$@" --only-show-errors; }
aws --endpoint-url "$AWS_ENDPOINT_URL" s3 mb "s3://$bucket" >/dev/null

# The corpus. `--runs 0` makes it and then fails on the empty median; a complete corpus is all
# that is needed (its "corpus:" line is printed once it is written). Else `--runs 1`.
if ! "$bench" --packages "$packages" --runs 0 --dir "$work/bench" >"$work/bench.out" 2>&1 &&
    ! grep -q '^corpus:' "$work/bench.out"; then
    "$bench" --packages "$packages" --runs 1 --dir "$work/bench" >"$work/bench.out"
fi
corpus=$work/bench/corpus
grep '^corpus:' "$work/bench.out"

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }

# Requests in moto's log since line $1: "total GET HEAD PUT POST DELETE" (POST: object_store
# deletes with multi-object delete requests).
requests_since() {
    tail -n +"$(($1 + 1))" "$moto_log" | awk '
        match($0, /"[A-Z]+ \//) {
            m = substr($0, RSTART + 1, RLENGTH - 3); n[m]++; total++
        }
        END {
            printf "%d %d %d %d %d %d\n", total, n["GET"], n["HEAD"], n["PUT"], n["POST"],
                n["DELETE"]
        }'
}
log_lines() { wc -l <"$moto_log"; }

rows=()
# row FLOW CASE START_MS BUILD_MS LOG_LINE
row() {
    local end total get head put post delete
    end=$(now_ms)
    read -r total get head put post delete < <(requests_since "$5")
    rows+=("| $1 | $2 | $(awk -v ms=$((end - $3)) 'BEGIN { printf "%.2f", ms / 1000 }') | $(
        awk -v ms="$4" 'BEGIN { printf "%.2f", ms / 1000 }'
    ) | $total | $get | $head | $put | $post | $delete |")
}

s3_build() {
    "$hexreg" build "s3://$bucket/hexreg" --name=acme --private-key="$key" --quiet
}
local_build_sync() {
    local start
    start=$(now_ms)
    (cd "$work/local" && "$hexreg" build public --name=acme --private-key="$key" --quiet)
    build_ms=$(($(now_ms) - start))
    s3 sync "$work/local/public/" "s3://$bucket/synced/" --exclude ".*" --exclude "*/.*"
}

# hexreg alone.
start=$(now_ms)
s3 cp --recursive "$corpus/" "s3://$bucket/hexreg/tarballs/"
upload_all_ms=$(($(now_ms) - start))
for case in "full build" "no-op rebuild" "add one tarball"; do
    if [[ $case == "add one tarball" ]]; then
        start=$(now_ms)
        s3 cp "$new_tarball" "s3://$bucket/hexreg/tarballs/"
        upload_one_ms=$(($(now_ms) - start))
    fi
    line=$(log_lines)
    start=$(now_ms)
    s3_build
    row "hexreg build s3://" "$case" "$start" $(($(now_ms) - start)) "$line"
done

# The flow it replaces.
mkdir -p "$work/local/public"
cp -al "$corpus" "$work/local/public/tarballs"
for case in "full build" "no-op rebuild" "add one tarball"; do
    [[ $case == "add one tarball" ]] && cp "$new_tarball" "$work/local/public/tarballs/"
    line=$(log_lines)
    start=$(now_ms)
    local_build_sync
    row "build + aws s3 sync" "$case" "$start" "$build_ms" "$line"
done

# The bucket registry verifies (signatures, checksums against the tarballs).
"$hexreg" verify "s3://$bucket/hexreg" --name=acme >/dev/null

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "hexreg:  $("$hexreg" --version)   $(aws --version 2>&1 | cut -d' ' -f1)   moto $(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null || echo '?')"
echo "setup (not timed): aws s3 cp --recursive of the corpus $(awk -v ms="$upload_all_ms" 'BEGIN { printf "%.1f", ms / 1000 }') s, of the new tarball $(awk -v ms="$upload_one_ms" 'BEGIN { printf "%.2f", ms / 1000 }') s"
echo
echo "| flow | case | wall s | of which hexreg build s | requests | GET | HEAD | PUT | POST | DELETE |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
