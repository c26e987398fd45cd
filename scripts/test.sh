#!/usr/bin/env bash
# The project's test command (README, CI): installs what the tests need on a fresh machine,
# skipping what is present, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# Two cores: one job per core for the build, tests one at a time (candle sets its own threads).
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

cargo test --workspace --no-fail-fast -- --test-threads=1
