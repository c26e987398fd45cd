#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library (CPU) from PyPI into .onnxruntime/ (git-ignored).
# Idempotent: does nothing when the library is already there. Prints the library path.
# The library lands in .onnxruntime/<version>/ and .onnxruntime/libonnxruntime.so links to it (the
# path .cargo/config.toml names, so the version is written only in scripts/versions.sh).
#   ORT_VERSION   wheel version (default: scripts/versions.sh; the runtime needs >= 1.31)
#   ORT_DYLIB_PATH  if set to an existing file, that library is used and nothing is fetched
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/versions.sh
version="${ORT_VERSION}"
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
# Point the version-free path at this version (atomically: a new link, then a rename).
link=".onnxruntime/libonnxruntime.so"
if [[ "$(readlink "${link}" 2>/dev/null)" != "${version}/libonnxruntime.so.${version}" ]]; then
  ln -sfn "${version}/libonnxruntime.so.${version}" "${link}.tmp"
  mv -Tf "${link}.tmp" "${link}"
fi
echo "$(pwd)/${lib}"
