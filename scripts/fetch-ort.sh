#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library (CPU) from PyPI into .onnxruntime/ (git-ignored).
# Idempotent: does nothing when the library is already there. Prints the library path.
#   ORT_VERSION   wheel version (default 1.31.1; the runtime needs >= 1.31)
#   ORT_DYLIB_PATH  if set to an existing file, that library is used and nothing is fetched
set -euo pipefail
cd "$(dirname "$0")/.."
version="${ORT_VERSION:-1.31.1}"
if [[ -n "${ORT_DYLIB_PATH:-}" && -f "${ORT_DYLIB_PATH}" ]]; then
  echo "${ORT_DYLIB_PATH}"
  exit 0
fi
dir=".onnxruntime/${version}"
lib="${dir}/libonnxruntime.so.${version}"
if [[ ! -f "${lib}" ]]; then
  mkdir -p "${dir}/wheel"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 311 --platform manylinux_2_28_x86_64 \
    "onnxruntime==${version}" -d "${dir}/wheel" >&2
  whl=$(ls "${dir}"/wheel/onnxruntime-"${version}"-*.whl | head -n1)
  python3 - "$whl" "$lib" <<'PY'
import sys, zipfile, os
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so."))
    tmp = out + ".tmp"
    with z.open(name) as src, open(tmp, "wb") as dst:
        dst.write(src.read())
    os.replace(tmp, out)
PY
  rm -rf "${dir}/wheel"
fi
echo "$(pwd)/${lib}"
