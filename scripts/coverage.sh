#!/usr/bin/env bash
# Line coverage per crate (issue 15, Deliver 7) on the stable toolchain: cargo-tarpaulin with its
# LLVM engine (rustc's own `-C instrument-coverage`; no llvm-tools component needed, which this
# toolchain may lack). Each crate is measured by its own tests, unit and integration, and only the
# lines of its own `src/` count. Reports: target/coverage/CRATE/tarpaulin-report.json, and a table
# on stdout (tests/coverage/summarise.py) with each crate's least covered files.
#   bash scripts/coverage.sh [CRATE...]        # default: every crate but the fuzz harness
#   bash scripts/coverage.sh --workspace       # one run of every test; each crate credited with
#                                              # every test that runs its code (contract suites,
#                                              # the CLI's end-to-end tests, spawned binaries)
# Slow: a build of its own with instrumentation (target/coverage/build), then every test once.
set -euo pipefail
cd "$(dirname "$0")/.."
TARPAULIN=0.37.5
bash scripts/setup.sh --test-tools >/dev/null
if [ "$(cargo tarpaulin --version 2>/dev/null | awk '{print $NF}')" != "$TARPAULIN" ]; then
  echo "coverage: installing cargo-tarpaulin $TARPAULIN (one time, a few minutes)"
  cargo install --locked "cargo-tarpaulin@$TARPAULIN"
fi
workspace=false
if [ "${1:-}" = "--workspace" ]; then workspace=true; shift; fi
crates=("$@")
if [ ${#crates[@]} -eq 0 ]; then
  mapfile -t crates < <(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json,sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"] if p["name"] != "quarry-fuzz"))')
fi
mkdir -p target/coverage
if $workspace; then
  echo "coverage: the workspace, every test once"
  # --no-fail-fast: a test that fails under instrumentation costs its own lines, not the report.
  cargo tarpaulin --workspace --exclude quarry-fuzz --engine llvm --skip-clean --no-fail-fast \
    --target-dir target/coverage/build --out Json --output-dir target/coverage/workspace \
    --timeout 900 >target/coverage/workspace.log 2>&1 \
    || echo "coverage: some tests failed under instrumentation (target/coverage/workspace.log)"
  python3 tests/coverage/summarise.py --one target/coverage/workspace "${crates[@]}"
  exit 0
fi
for crate in "${crates[@]}"; do
  echo "coverage: $crate"
  cargo tarpaulin -p "$crate" --engine llvm --skip-clean --target-dir target/coverage/build \
    --out Json --output-dir "target/coverage/$crate" --timeout 900 >"target/coverage/$crate.log" 2>&1 \
    || echo "coverage: $crate: tests failed under instrumentation (target/coverage/$crate.log)"
done
python3 tests/coverage/summarise.py target/coverage "${crates[@]}"
