#!/usr/bin/env bash
# Benchmark `hexreg serve` against nginx serving the same registry on loopback, with wrk.
#
#   bash benches/serve.sh            # 10 s per run
#   bash benches/serve.sh 30         # 30 s per run
#
# Builds a registry from fixtures/tarballs (plus a 1 MiB file in tarballs/), starts
# `hexreg serve --quiet`, `hexreg serve` logging every request to a file, and nginx (sendfile,
# access_log off, worker_processes auto), checks that all three send the same bytes, then runs
# `wrk --latency` against each for a small registry file (names), a fixture tarball and the
# 1 MiB file, and prints requests per second and latency percentiles as a Markdown table.
# Everything listens on 127.0.0.1 only and is stopped on exit. wrk and the server share the
# machine's cores, as they would on a single host.
#
# Needs wrk and nginx (Debian: apt-get install -y wrk nginx); installs them when run as root.
# Environment: BENCH_CONNECTIONS (default 64), BENCH_THREADS (wrk threads, default 2).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=${1:-10}
connections=${BENCH_CONNECTIONS:-64}
threads=${BENCH_THREADS:-2}
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 1)); then
    echo "usage: bash benches/serve.sh [SECONDS_PER_RUN]" >&2
    exit 2
fi

nginx_bin=$(command -v nginx || true)
[[ -z $nginx_bin && -x /usr/sbin/nginx ]] && nginx_bin=/usr/sbin/nginx
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
[[ -n $nginx_bin ]] || missing+=(nginx)
if ((${#missing[@]} > 0)); then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing: ${missing[*]}" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    else
        echo "error: missing ${missing[*]}: install with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

cargo build --release --quiet --bin hexreg
hexreg=$PWD/target/release/hexreg

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# The registry: fixture tarballs, built by hexreg; then a 1 MiB file beside them (added after
# the build, which would refuse it as a tarball).
public=$work/public
mkdir -p "$public/tarballs"
cp fixtures/tarballs/*.tar "$public/tarballs/"
"$hexreg" build "$public" --name=acme --private-key=fixtures/private_key.pem >/dev/null
head -c 1048576 /dev/urandom >"$public/tarballs/big-1.0.0.tar"
# nginx workers run as nobody: let them read the files.
chmod 755 "$work"
chmod -R a+rX "$public"

targets=(names tarballs/acme_a-1.0.0.tar tarballs/big-1.0.0.tar)

port_in_use() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local port=$1
    while port_in_use "$port"; do
        port=$((port + 1))
    done
    echo "$port"
}

# Starts `hexreg serve` with extra arguments, stderr to $1 (stdout is not kept: a server
# holding the pipe of a $(...) would block it).
start_hexreg() {
    local log=$1
    shift
    "$hexreg" serve "$public" --bind 127.0.0.1:0 "$@" >/dev/null 2>"$log" &
    pids+=($!)
}

# The port hexreg printed on the first line of log $1.
hexreg_port() {
    local i line
    for ((i = 0; i < 200; i++)); do
        line=$(head -n 1 "$1" 2>/dev/null || true)
        if [[ $line == serving* ]]; then
            echo "${line##*:}"
            return
        fi
        sleep 0.05
    done
    echo "error: hexreg serve did not start: $(cat "$1")" >&2
    return 1
}

start_hexreg "$work/hexreg-quiet.log" --quiet
quiet_pid=$!
start_hexreg "$work/hexreg-requests.log"
logged_pid=$!
quiet_port=$(hexreg_port "$work/hexreg-quiet.log")
logged_port=$(hexreg_port "$work/hexreg-requests.log")

nginx_port=$(free_port 18080)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    log_not_found off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    types { }
    default_type application/octet-stream;
    client_body_temp_path $work/nginx/body;
    server {
        listen 127.0.0.1:$nginx_port;
        root $public;
        location / { }
    }
}
EOF
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log" \
    >/dev/null 2>&1 &
nginx_pid=$!
pids+=($!)
for ((i = 0; i < 200; i++)); do
    port_in_use "$nginx_port" && break
    sleep 0.05
done
port_in_use "$nginx_port" || {
    echo "error: nginx did not start: $(cat "$work/nginx/error.log" 2>/dev/null)" >&2
    exit 1
}

# Same bytes from every server (when curl is there to fetch them).
if command -v curl >/dev/null 2>&1; then
    for target in "${targets[@]}"; do
        for port in "$quiet_port" "$logged_port" "$nginx_port"; do
            curl -sf "http://127.0.0.1:$port/$target" | cmp -s - "$public/$target" || {
                echo "error: 127.0.0.1:$port/$target differs from the file" >&2
                exit 1
            }
        done
    done
fi

# CPU time (user + system, in clock ticks) used so far by process $1 and its children
# threads/processes (nginx workers).
cpu_ticks() {
    local total=0 pid
    for pid in "$1" $(pgrep -P "$1" || true); do
        if [[ -r /proc/$pid/stat ]]; then
            # Fields 14 and 15 after the ")" that ends the command name.
            total=$((total + $(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
        fi
    done
    echo "$total"
}
clock_ticks=$(getconf CLK_TCK)

# wrk OUTPUT -> "requests req/s p50 p99 errors"
parse_wrk() {
    awk '
        /requests in/ { requests = $1 }
        /^Requests\/sec:/ { rps = $2 }
        $1 == "50%" { p50 = $2 }
        $1 == "99%" { p99 = $2 }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ {
            for (i = 3; i <= NF; i++) { gsub(",", "", $i); if ($i ~ /^[0-9]+$/) errors += $i }
        }
        END { printf "%d %d %s %s %d\n", requests, rps, p50, p99, errors }
    ' "$1"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr)"
echo "hexreg:  $("$hexreg" --version)   nginx: $("$nginx_bin" -v 2>&1 | cut -d/ -f2)   wrk: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f2)"
echo "load:    wrk -t$threads -c$connections -d${duration}s --latency (keep-alive), after a 2 s warm-up"
echo
echo "| file | bytes | server | req/s | p50 | p99 | server CPU µs/req | errors |"
echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
for target in "${targets[@]}"; do
    size=$(stat -c %s "$public/$target")
    for server in "hexreg serve --quiet:$quiet_port:$quiet_pid" \
        "hexreg serve (log to file):$logged_port:$logged_pid" "nginx:$nginx_port:$nginx_pid"; do
        IFS=: read -r name port pid <<<"$server"
        url="http://127.0.0.1:$port/$target"
        wrk -t"$threads" -c"$connections" -d2s "$url" >/dev/null
        before=$(cpu_ticks "$pid")
        wrk -t"$threads" -c"$connections" -d"${duration}s" --latency "$url" >"$work/wrk.txt"
        after=$(cpu_ticks "$pid")
        read -r requests rps p50 p99 errors < <(parse_wrk "$work/wrk.txt")
        cpu_us=$(awk -v t=$((after - before)) -v hz="$clock_ticks" -v n="$requests" \
            'BEGIN { if (n > 0) printf "%.1f", t * 1000000 / hz / n; else print "-" }')
        echo "| $target | $size | $name | $rps | $p50 | $p99 | $cpu_us | $errors |"
    done
done
