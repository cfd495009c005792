#!/usr/bin/env bash
# The stable fuzz harness's long run (CI runs a reduced form: tests/fuzz/tests/reduced.rs): every
# target (the seven extractors, the filter parser, the cursor decoder, the S3 event decoder, the
# JSONL reader) fed RUNS mutated and arbitrary-built inputs. Prints a table with each target's
# slowest input (target: under 1 s) and the peak memory; a crash's input is kept under
# target/fuzz-crashes/ and makes the exit code 1 (turn it into a unit test beside the code it hit).
#
#     bash scripts/fuzz.sh [RUNS] [SEED]        # RUNS defaults to 1,000,000 per target
#
# Where a nightly toolchain and cargo-fuzz are installed, coverage-guided fuzzing of the same
# entry points (Harness::exec) finds deeper paths; this script needs neither.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
cargo build --release --locked -p quarry-fuzz
target/release/quarry-fuzz all --runs "${1:-1000000}" --seed "${2:-1}"
