#!/usr/bin/env bash
# Builds the Lambda bootstraps as CI does (cargo lambda build --release) and prints, per function,
# the bootstrap's size raw and zipped and its init time from process start to the first Runtime
# API poll (tests/e2e/benches/lambda_init.rs). Targets: zipped <= 10 MB without the local model;
# init <= 50 ms for search and ingest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test-tools >/dev/null
AWS_TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/quarry/aws-tools
PATH="$AWS_TOOLS/bin:$PATH" cargo lambda build --release --locked -p quarry-ingest -p quarry-embed-worker -p quarry-search
cargo bench --locked -p quarry-e2e --bench lambda_init
