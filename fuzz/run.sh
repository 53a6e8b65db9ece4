#!/usr/bin/env bash
# Seeds the corpus from fixtures/, then runs each fuzz target (all of them by default) for
# SECONDS seconds (60 by default), one after the other; exits non-zero if any found something
# (saved under fuzz/artifacts/<target>/).
#
#   fuzz/run.sh                  # every target, a minute each
#   fuzz/run.sh 600 tarball      # one target, ten minutes
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain, cargo-fuzz's nightly
# flags (-Zsanitizer=address and others) are allowed by RUSTC_BOOTSTRAP=1, set here.
# Extra libFuzzer options can be given in FUZZ_ARGS, e.g. FUZZ_ARGS=-jobs=2.
set -euo pipefail

fuzz="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds="${1:-60}"
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(metadata metadata_display tarball tarball_parts registry)
fi

export RUSTC_BOOTSTRAP=1
failed=()
cd "$fuzz/.."
"$fuzz/seed.sh"
for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s"
    dict=()
    case "$target" in
        metadata*) dict=(-dict="$fuzz/metadata.dict") ;;
    esac
    # shellcheck disable=SC2086
    if ! cargo fuzz run "$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=1048576 \
        -print_final_stats=1 "${dict[@]}" ${FUZZ_ARGS:-}; then
        failed+=("$target")
    fi
done
if ((${#failed[@]} > 0)); then
    echo "found something: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "nothing found by: ${targets[*]}"
