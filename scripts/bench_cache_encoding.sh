#!/usr/bin/env bash
# What storing the embedding cache compactly does to retrieval, measured on a BEIR dataset in one
# run (docs/COSTS.md). For each encoding (f32, f16, int8): index the corpus (the cache fills in that
# encoding), empty the index while keeping the cache (a sync against a one-record file), then let
# `quarry eval` index the corpus again, so that every vector in the index is one read back from the
# cache: the worst case, where no chunk was embedded afresh. f32 reads back exactly, so its row is
# the reference; the others' nDCG@10 differences are what the encoding costs.
#   bash scripts/bench_cache_encoding.sh [DATASET_DIR]   # default: ../shared/eval/nfcorpus
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(cd "${1:-../shared/eval/nfcorpus}" && pwd)
cargo build -q --release -p quarry-cli
quarry=$PWD/target/release/quarry
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '{"_id":"placeholder","text":"A placeholder record."}\n' >"$work/one.jsonl"
for encoding in f32 f16 int8; do
  state=$work/$encoding
  export QUARRY_CACHE_ENCODING=$encoding
  "$quarry" ingest "$data/corpus.jsonl" --state "$state" --quiet >/dev/null
  "$quarry" ingest "$work/one.jsonl" --state "$state" --quiet >/dev/null
  "$quarry" cache stats --dir "$data/corpus.jsonl" --state "$state" | sed "s/^/$encoding cache: /"
  "$quarry" eval "$data" --state "$state" | tee "$work/$encoding.txt" | sed "s/^/$encoding eval: /"
done
