#!/usr/bin/env bash
# make fuzz: coverage-guided fuzzing of the envelope parser (core/fuzz) with
# cargo-fuzz and libFuzzer, for FUZZ_SECONDS (default 60). cargo-fuzz needs
# nightly compiler flags; on the stable toolchain RUSTC_BOOTSTRAP=1 enables
# them for this build only. Not part of make test (it is open-ended by nature).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SECONDS_TO_RUN="${FUZZ_SECONDS:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    log "installing cargo-fuzz (a few minutes)"
    cargo install cargo-fuzz --locked
fi
cd "$REPO_ROOT/core"
for target in envelope pii; do
    log "fuzzing $target for ${SECONDS_TO_RUN}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" --sanitizer none -- \
        -max_total_time="$SECONDS_TO_RUN" -max_len=4096
done
