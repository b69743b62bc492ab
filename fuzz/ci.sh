#!/usr/bin/env bash
# CI's fuzz step: install cargo-fuzz when missing, build every fuzz target, write the
# seed corpora, and fuzz the whole pipeline for 60 seconds. A crash fails the step and
# leaves the input in fuzz/artifacts/pipeline/ (make it a file under tests/data/fuzz/).
set -euo pipefail
cd "$(dirname "$0")"
# RUSTC_BOOTSTRAP only for cargo fuzz: set for the root crate too, it would invalidate
# the release build `cargo test --release` just made.
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# The crate forbids unsafe code: no sanitizer, so more executions per second.
RUSTC_BOOTSTRAP=1 cargo fuzz build -s none
bash seed.sh
RUSTC_BOOTSTRAP=1 cargo fuzz run -s none pipeline -- \
    -max_total_time=60 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
