#!/usr/bin/env bash
# Every check and every test: the README's test command, and exactly what .ci/run calls.
# Installs what the tests need first (the model, the AWS tools; cargo-deny if absent). A missing
# tool is a failure here, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --test-tools
# CI builds once from a clean clone: incremental caches would only take disk (gigabytes of it).
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=0
fi
if ! cargo deny --version >/dev/null 2>&1; then
  echo "test: installing cargo-deny (one time, a few minutes)"
  cargo install --locked cargo-deny@0.20.2
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo deny check licenses bans sources"
cargo deny check licenses bans sources
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# cargo ends on the last crate's doc-test block (often "0 passed"); the total says what ran.
summary=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f; exit (p == 0 || f > 0) }' "$log") || { echo "$summary"; exit 1; }
echo "$summary"

AWS_TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/quarry/aws-tools
echo "== cfn-lint template.yaml"
"$AWS_TOOLS/bin/cfn-lint" template.yaml
echo "== sam validate --lint"
SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1} "$AWS_TOOLS/bin/sam" validate --lint
echo "== cargo lambda build --release (ingest, embed-worker, keyword-indexer, search, alert-router)"
# CI checks that every bootstrap compiles and links for Lambda; it ships none. With the release
# profile's fat LTO and one codegen unit this step alone took 18 min of a 49-min cold run on 2
# cores; thin LTO with 16 units checks the same code and link. `sam build` for a deploy keeps the
# release profile unchanged.
if [ "${CI:-}" = "true" ]; then
  export CARGO_PROFILE_RELEASE_LTO=thin CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
fi
PATH="$AWS_TOOLS/bin:$PATH" cargo lambda build --release --locked -p quarry-ingest -p quarry-embed-worker -p quarry-keyword-indexer -p quarry-search -p quarry-alert-router
echo "$summary"
