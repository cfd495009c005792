#!/usr/bin/env bash
# The HTTP API fuzzed from its own /openapi.json by schemathesis, long form (CI runs a reduced one,
# cli/tests/it/api_fuzz.rs): every phase, many examples, both positive and negative requests.
#   bash scripts/api_fuzz.sh [EXAMPLES]        # default 500 per operation
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-500}
bash scripts/setup.sh --test-tools >/dev/null
cargo build -q -p quarry-cli
st=${XDG_CACHE_HOME:-$HOME/.cache}/quarry/api-tools/bin/st
work=$(mktemp -d)
printf '# Pumps\n\nThe pump station restarts at dawn.\n' >"$work/pumps.md"
printf 'The budget for the pump was approved in March.\n' >"$work/budget.txt"
mkdir "$work/docs" && mv "$work"/*.md "$work"/*.txt "$work/docs/"
target/debug/quarry ingest "$work/docs" --quiet
target/debug/quarry serve --dir "$work/docs" --bind 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q listening "$work/serve.out" && break; sleep 0.2; done
url=$(sed -n 's/^listening on //p' "$work/serve.out")
export SCHEMATHESIS_HOOKS=quarry_hooks PYTHONPATH=$PWD/tests/api-fuzz SCHEMATHESIS_TELEMETRY=false
cd "$work"
"$st" run "$url/openapi.json" --mode positive --phases coverage --exclude-checks positive_data_acceptance
"$st" run "$url/openapi.json" --mode positive --phases fuzzing,stateful --max-examples "$examples" \
  --exclude-checks use_after_free,ensure_resource_availability
"$st" run "$url/openapi.json" --mode negative --checks not_a_server_error,response_schema_conformance --max-examples "$examples"
