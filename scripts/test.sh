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

cargo test --workspace --no-fail-fast -- --test-threads=1
