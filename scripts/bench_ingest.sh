#!/usr/bin/env bash
# Ingest of NFCorpus (3,633 documents) by Quarry, with the f32 model and the int8 one, and by the
# Python peer (LlamaIndex SentenceSplitter 256/32 + sentence-transformers on torch, 2 threads), one
# after the other in one run, so that the ratios mean something on a shared, noisy machine.
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
for p in f32 int8; do
  echo "== Quarry, $p"
  QUARRY_BENCH_PRECISION=$p QUARRY_BENCH_CORPUS=$data/corpus.jsonl cargo bench -q -p quarry-cli --bench ingest \
    | tee "target/bench-ingest-quarry-$p.txt"
done
peer_json=${PEERS_WORK:-$HOME/.cache/quarry-peer}/$(basename "$data").json
python3 - "$peer_json" target/bench-ingest-quarry-f32.txt target/bench-ingest-quarry-int8.txt <<'PY'
import json, sys
peer = json.load(open(sys.argv[1]))["ingest"]
f, i = (json.loads([l for l in open(p) if l.startswith("{")][-1]) for p in sys.argv[2:4])
r = lambda a, b: f"{a / b:.2f}x"
print()
print("| same run | peer | Quarry f32 | Quarry int8 | peer / f32 | peer / int8 |")
print("| --- | --- | --- | --- | --- | --- |")
print(f"| chunks | {peer['chunks']} | {f['chunks']} | {i['chunks']} | | |")
print(f"| model tokens | {peer['model_tokens']} | {f['model_tokens']} | {i['model_tokens']} | | |")
print(f"| embedding only | {peer['embed_s']:.1f} s | {f['embed_s']:.1f} s | {i['embed_s']:.1f} s | {r(peer['embed_s'], f['embed_s'])} | {r(peer['embed_s'], i['embed_s'])} |")
print(f"| ingest wall | {peer['wall_s']:.1f} s | {f['ingest_s']:.1f} s | {i['ingest_s']:.1f} s | **{r(peer['wall_s'], f['ingest_s'])}** | **{r(peer['wall_s'], i['ingest_s'])}** |")
print(f"| overhead over embedding | {100 * peer['overhead_over_embed']:+.1f} % | {100 * (f['ingest_s'] / f['embed_s'] - 1):+.1f} % | {100 * (i['ingest_s'] / i['embed_s'] - 1):+.1f} % | | |")
print(f"| re-run, unchanged corpus | | {f['rerun_s']:.2f} s | {i['rerun_s']:.2f} s | | |")
PY
