#!/usr/bin/env bash
# Builds the fuzz targets once, then runs them one after another, each for SECONDS
# (default 120), on its corpus in fuzz/corpus/<target>/ (fuzz/seed.sh writes the seeds).
# Crashes and timeouts land in fuzz/artifacts/<target>/; a crashing target does not stop
# the others; the exit status is 1 when any target failed.
# Usage: fuzz/run.sh [SECONDS] [TARGET...]   (no target: every target but pipeline)
set -uo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
secs=${1:-120}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list | grep -v '^pipeline$')
fi
cargo fuzz build -s none || exit 1
bin=target/x86_64-unknown-linux-gnu/release
status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "== $t (${secs}s)"
    "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "corpus/$t" || status=1
done
exit $status
