#!/usr/bin/env bash
# Quarry's local embedder and sentence-transformers on the same passages, one after the other in one
# run, so that the ratio means something on a shared, noisy machine.
#   bash scripts/bench_embed.sh            # 2,000 passages, threads 1 and 2, batches 16/32/64
# Needs the Python peer's environment for sentence-transformers (bash ../shared/peers/run.sh creates it),
# or PEER_PYTHON pointing at any Python with sentence-transformers installed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
model_dir=${QUARRY_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/quarry/models/all-MiniLM-L6-v2-0.1.0}
out=${QUARRY_BENCH_OUT:-$(pwd)/target/embed-bench-passages.jsonl}
peer=${PEER_PYTHON:-${PEERS_WORK:-$HOME/.cache/quarry-peer}/venv/bin/python}
QUARRY_BENCH_OUT=$out cargo bench -q -p quarry-embed --bench throughput
echo
if [ -x "$peer" ]; then
  "$peer" scripts/bench_embed_peer.py "$out" "$model_dir"
else
  echo "sentence-transformers: no peer environment at $peer (bash ../shared/peers/run.sh creates it)" >&2
  exit 1
fi
