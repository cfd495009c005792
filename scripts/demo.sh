#!/usr/bin/env bash
# The main job on the embedded default, as far as Quarry goes today: install the model, build quarry,
# and show how every sample file is indexed (type, pages, redactions, chunks with spans).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p quarry-cli
for f in samples/*; do
  echo "=================== $f"
  "${CARGO_TARGET_DIR:-target}/release/quarry" inspect "$f"
done
