#!/usr/bin/env bash
# The main job on the embedded default: install the model, build quarry, index the sample folder
# (mixed formats, one PII-bearing file) and search it. Re-running embeds nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p quarry-cli
quarry="${CARGO_TARGET_DIR:-target}/release/quarry"
echo "== quarry ingest samples"
"$quarry" ingest samples
for q in "does salt raise blood pressure" "which foods are high in fiber" "who is at risk of vitamin D deficiency"; do
  echo
  echo "== quarry search \"$q\""
  "$quarry" search --dir samples -k 3 "$q"
done
echo
echo "== quarry inspect samples/vitamin-d.md (how one file is indexed)"
"$quarry" inspect samples/vitamin-d.md
