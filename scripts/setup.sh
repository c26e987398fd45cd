#!/usr/bin/env bash
# Installs what building and testing vrf needs on a fresh Debian/Ubuntu machine, skipping what
# is present: protoc (candle-onnx's build), the ONNX Runtime library (from PyPI, into
# .onnxruntime/), and a Python venv with the reference ONNX checker used by the test script.
#   VRF_SETUP_PYTHON=0  skip the Python venv (only the test script needs it)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/versions.sh

apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if [ -z "${VRF_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq >&2
    export VRF_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >&2
}

if ! command -v protoc >/dev/null 2>&1 && [ -z "${PROTOC:-}" ]; then
  echo "setup: installing protobuf-compiler (protoc, needed to build candle-onnx)" >&2
  apt_install protobuf-compiler
fi

ORT_LIB="$(bash scripts/fetch-ort.sh)"
echo "setup: ONNX Runtime library: ${ORT_LIB}" >&2

if [ "${VRF_SETUP_PYTHON:-1}" = "1" ]; then
  py=.onnxruntime/pyenv/bin/python
  pins=("onnx==${ONNX_PY_VERSION}" "onnxruntime==${ORT_VERSION}" "numpy==${NUMPY_VERSION}"
    "protobuf==${PROTOBUF_PY_VERSION}" "ml_dtypes==${ML_DTYPES_VERSION}")
  want="$(printf '%s\n' "${pins[@]}")"
  if ! { [ -x "$py" ] && [ "$(cat .onnxruntime/pyenv/pins.txt 2>/dev/null)" = "$want" ] &&
    "$py" -c "import onnx, onnxruntime, numpy" 2>/dev/null; }; then
    echo "setup: creating .onnxruntime/pyenv with onnx + onnxruntime (reference checker)" >&2
    if ! python3 -m venv --help >/dev/null 2>&1; then apt_install python3-venv; fi
    rm -rf .onnxruntime/pyenv
    python3 -m venv .onnxruntime/pyenv
    "$py" -m pip install --quiet "${pins[@]}" >&2
    echo "$want" > .onnxruntime/pyenv/pins.txt
  fi
fi
