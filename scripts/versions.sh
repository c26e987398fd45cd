# The one place where the versions of external tools and libraries the scripts install live;
# sourced by fetch-ort.sh, setup.sh and setup-wasm.sh. An environment variable of the same name
# wins (e.g. ORT_VERSION=1.32.0 bash scripts/setup.sh).
# ONNX Runtime from PyPI: the runtime's shared library and the reference checker's Python
# package (ort 2.0.0-rc.15 with api-31 needs >= 1.31).
ORT_VERSION="${ORT_VERSION:-1.31.1}"
# The Python packages of the reference ONNX checker (scripts/check_onnx.py), pinned so a new
# release cannot change what the tests check.
ONNX_PY_VERSION="${ONNX_PY_VERSION:-1.23.2}"
NUMPY_VERSION="${NUMPY_VERSION:-2.4.6}"
PROTOBUF_PY_VERSION="${PROTOBUF_PY_VERSION:-7.36.2}"
ML_DTYPES_VERSION="${ML_DTYPES_VERSION:-0.7.0}"
# wasm-opt from npm (Debian's binaryen 108 produces a broken module).
BINARYEN_VERSION="${BINARYEN_VERSION:-132}"
# Intel MKL (static LP64 libraries, Intel OpenMP) from PyPI for the trainer's optional
# `mkl` feature (scripts/setup-mkl.sh).
MKL_VERSION="${MKL_VERSION:-2026.2.0}"
# Schemathesis from PyPI for the API contract fuzzer (scripts/fuzz-api.sh), pinned so a new
# release cannot change what it checks.
SCHEMATHESIS_VERSION="${SCHEMATHESIS_VERSION:-4.32.5}"
