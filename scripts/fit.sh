#!/usr/bin/env bash
# The README's main job: installs the build prerequisites (idempotent), then fits VRF and the
# BT baseline on the embedded synthetic benchmark. Extra arguments go to `vrf-bench fit`
# (the experiment harness; the engine alone is `vrf-trainer`).
set -euo pipefail
cd "$(dirname "$0")/.."
VRF_SETUP_PYTHON=0 bash scripts/setup.sh
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
exec cargo run --release -p vrf-bench -- fit "$@"
