#!/usr/bin/env bash
# The main job on the embedded default: install the model, build quarry, index the sample folder
# (mixed formats: md, txt, html, csv, json, pdf, docx; one file carries PII that is redacted),
# search it from the terminal, then serve the HTTP API on localhost while keeping the folder
# indexed (drop a file into samples/ and search for it). Ctrl-C stops the server.
# Re-running embeds nothing new. QUARRY_BIND=127.0.0.1:PORT picks another port.
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
bind=${QUARRY_BIND:-127.0.0.1:8080}
echo
echo "== quarry serve --watch samples on http://$bind (Ctrl-C to stop). Try:"
echo "   curl -s http://$bind/v1/search -H 'content-type: application/json' -d '{\"query\": \"omega-3 and the heart\", \"top_k\": 3}'"
exec "$quarry" serve --watch samples --bind "$bind"
