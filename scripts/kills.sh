#!/usr/bin/env bash
# The full SIGKILL run of issue 15 (CI runs a reduced form: cli/tests/it/kills.rs, 60 documents and
# 8 kills): one local batch of 1,000 documents of mixed formats killed at 20 random moments, each
# run resumed by the next, then compared with the same batch run uninterrupted. Prints the report.
#   bash scripts/kills.sh [DOCUMENTS] [KILLS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export QUARRY_KILLS_DOCS=${1:-1000} QUARRY_KILLS=${2:-20} QUARRY_KILLS_SEED=${3:-20261206}
cargo test -p quarry-cli --test it kills -- --nocapture 2>&1 | grep -E '^kills:|^test |panicked|assert'
