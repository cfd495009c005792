#!/usr/bin/env bash
# Ingest of NFCorpus (3,633 documents) by Quarry and by the Python peer (LlamaIndex SentenceSplitter
# 256/32 + sentence-transformers on torch, 2 threads), one after the other in one run, so that the
# ratio means something on a shared, noisy machine.
#   bash scripts/bench_ingest.sh [DATASET_DIR]     # default: ../shared/eval/nfcorpus beside the checkout
# The peer's environment is created by ../shared/peers/run.sh on first use (a large install).
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(cd "${1:-../shared/eval/nfcorpus}" && pwd)
bash scripts/setup.sh >/dev/null
# Build first, so that compiling does not overlap either measurement.
cargo bench -q -p quarry-cli --bench ingest --no-run 2>/dev/null
echo "== Python peer"
bash ../shared/peers/run.sh "$data" | tee target/bench-ingest-peer.txt
echo
echo "== Quarry"
QUARRY_BENCH_CORPUS=$data/corpus.jsonl cargo bench -q -p quarry-cli --bench ingest | tee target/bench-ingest-quarry.txt
peer_json=${PEERS_WORK:-$HOME/.cache/quarry-peer}/$(basename "$data").json
python3 - "$peer_json" target/bench-ingest-quarry.txt <<'PY'
import json, sys
peer = json.load(open(sys.argv[1]))["ingest"]
q = json.loads([l for l in open(sys.argv[2]) if l.startswith("{")][-1])
print()
print("| same run | peer | Quarry | ratio |")
print("| --- | --- | --- | --- |")
print(f"| chunks | {peer['chunks']} | {q['chunks']} | |")
print(f"| model tokens | {peer['model_tokens']} | {q['model_tokens']} | |")
print(f"| embedding only | {peer['embed_s']:.1f} s | {q['embed_s']:.1f} s | {peer['embed_s'] / q['embed_s']:.2f}x |")
print(f"| ingest wall | {peer['wall_s']:.1f} s | {q['ingest_s']:.1f} s | **{peer['wall_s'] / q['ingest_s']:.2f}x** |")
print(f"| overhead over embedding | {100 * peer['overhead_over_embed']:+.1f} % | {100 * (q['ingest_s'] / q['embed_s'] - 1):+.1f} % | |")
print(f"| re-run, unchanged corpus | | {q['rerun_s']:.2f} s ({100 * q['rerun_s'] / q['ingest_s']:.1f} %) | |")
PY
