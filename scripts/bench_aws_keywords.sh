#!/usr/bin/env bash
# The published keyword index (the AWS deployment's keyword and hybrid search, issue 16), in one run:
# NFCorpus ranked through the AWS path on moto against the embedded default on the same stored chunks
# (nDCG@10 per mode), and the keyword side at 100,000 chunks apart from moto's speed (publish time,
# segments, size, a cold searcher's load, warm p50/p95, S3 requests per search).
#
#     bash scripts/bench_aws_keywords.sh [DATASET_DIR] [STATE_DIR]
#
# DATASET_DIR defaults to NFCorpus beside the checkout; STATE_DIR (kept between runs: the second run
# embeds nothing) to a folder under the system's temporary directory. QUARRY_BENCH_CHUNKS sets the scale.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(cd "${1:-../shared/eval/nfcorpus}" && pwd)  # absolute: the benchmark runs in its crate's folder
state=${2:-${TMPDIR:-/tmp}/quarry-bench-$(basename "$data")}
bash scripts/setup.sh --test-tools >/dev/null
cargo build --release --locked -p quarry-cli
# Indexes the dataset into STATE_DIR (once) and prints the embedded default's own figures.
target/release/quarry eval "$data" --state "$state" --depth 100
QUARRY_BENCH_DATA=$data QUARRY_BENCH_STATE=$state cargo bench --locked -p quarry-e2e --bench keywords
