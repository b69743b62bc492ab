#!/usr/bin/env bash
# Writes the seed corpora of every fuzz target into fuzz/corpus/<target>/ (ignored by
# git), from the traffic generator's scenarios and payload builders: see the ignored
# test `fuzz_api::tests::write_seeds`. Existing corpus files are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
# Without RUSTC_BOOTSTRAP, so the release build of `cargo test --release` is reused.
env -u RUSTC_BOOTSTRAP DPAUDIT_FUZZ_SEEDS="$PWD/fuzz/corpus" \
    cargo test --release --lib fuzz_api::tests::write_seeds -- --ignored --exact --quiet
