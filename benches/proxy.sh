#!/usr/bin/env bash
# Benchmark the caching proxy (`hexreg serve --upstream`) with curl, on loopback:
#
#   bash benches/proxy.sh          # 200 requests per measure
#   bash benches/proxy.sh 1000
#
# - a cached tarball through the proxy against the same file from a plain `hexreg serve`
#   (one curl process, keep-alive, sequential requests: median and p90 of `time_total`);
# - a cold fetch (the tarball not cached, its signed packages/NAME cached and fresh): the
#   proxy's answer time against the upstream's own for the same file, alternating, so the
#   difference is the proxy's overhead (one upstream GET, SHA-256, a durable write);
# - a registry file (packages/acme_erl) from a plain serve, an unfiltered proxy (the upstream's
#   cached bytes) and a filtered proxy (--only acme_erl --cooldown 1d: derived from the cached
#   upstream file at each request, re-signed only when its content changes).
# Everything listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-200}
cargo build --release -q
bin=$PWD/target/release/hexreg
tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

mkdir -p "$tmp/up/tarballs"
cp fixtures/tarballs/acme_erl-0.2.0.tar fixtures/tarballs/acme_erl_base-0.1.0.tar "$tmp/up/tarballs/"
(cd "$tmp" && "$bin" build up --name=acme --private-key="$OLDPWD/fixtures/private_key.pem" --quiet)

# Starts `hexreg serve ARGS... --bind 127.0.0.1:0`; sets `url` to its URL (no command
# substitution: a subshell would run the EXIT trap and lose the pid).
start() {
    local log=$1
    shift
    "$bin" serve "$@" --bind 127.0.0.1:0 --quiet 2>"$log" &
    pids+=($!)
    for _ in $(seq 100); do
        if url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1) && [[ -n $url ]]; then
            return
        fi
        sleep 0.05
    done
    echo "server did not start: $(cat "$log")" >&2
    exit 1
}

start "$tmp/up.log" "$tmp/up"
up=$url
start "$tmp/proxy.log" "$tmp/cache" --upstream "$up" --upstream-name acme \
    --upstream-key "$tmp/up/public_key"
proxy=$url
"$bin" keygen --out "$tmp/proxy_key.pem" >/dev/null
start "$tmp/filtered.log" "$tmp/filtered-cache" --upstream "$up" --upstream-name acme \
    --upstream-key "$tmp/up/public_key" --only acme_erl --cooldown 1d \
    --name vetted --private-key "$tmp/proxy_key.pem"
filtered=$url
file=tarballs/acme_erl-0.2.0.tar
cmp <(curl -sf "$proxy/$file") "$tmp/up/$file"

# Median and p90, in ms, of the times (seconds) on stdin.
stats() {
    sort -n | awk '{ t[NR] = $1 * 1000 } END {
        printf "%.3f ms median, %.3f ms p90 (%d requests)", t[int((NR + 1) / 2)], t[int(NR * 0.9)], NR }'
}
times() {
    local url=$1 args=()
    for _ in $(seq "$n"); do args+=(-o /dev/null -w '%{time_total}\n' "$url"); done
    curl -s "${args[@]}"
}

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
echo "cached tarball, plain serve: $(times "$up/$file" | stats)"
echo "cached tarball, proxy:       $(times "$proxy/$file" | stats)"
index=packages/acme_erl
curl -sf -o /dev/null "$proxy/$index"
curl -sf -o /dev/null "$filtered/$index"
echo "packages/NAME, plain serve:      $(times "$up/$index" | stats)"
echo "packages/NAME, proxy:            $(times "$proxy/$index" | stats)"
echo "packages/NAME, filtered proxy:   $(times "$filtered/$index" | stats)"

direct=()
cold=()
for _ in $(seq "$n"); do
    rm -f "$tmp/cache/$file"
    cold+=("$(curl -s -o /dev/null -w '%{time_total}' "$proxy/$file")")
    direct+=("$(curl -s -o /dev/null -w '%{time_total}' "$up/$file")")
done
echo "cold fetch, upstream itself: $(printf '%s\n' "${direct[@]}" | stats)"
echo "cold fetch, through proxy:   $(printf '%s\n' "${cold[@]}" | stats)"
