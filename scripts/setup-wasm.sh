#!/usr/bin/env bash
# Installs what the wasm build and tests need, skipping what is present (idempotent; CI runs it
# as root on Debian): the wasm32 target, wasm-bindgen-cli at the version Cargo.toml pins,
# wasm-opt from npm binaryen@132 (Debian's binaryen 108 produces a broken module), node,
# chromium and chromium-driver.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' Cargo.toml)"
source scripts/versions.sh
# wasm-opt lives in a tools folder outside the repository; scripts/build-wasm.sh looks there.
TOOLS="${VRF_WASM_TOOLS:-$HOME/.cache/vrf-wasm-tools}"

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup-wasm: apt-get install ${missing[*]}"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  rustup target add wasm32-unknown-unknown
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
if ! command -v chromium >/dev/null 2>&1 || [ ! -x /usr/bin/chromedriver ]; then
  apt_install chromium chromium-driver
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  # No --locked: a lock-pinned dependency of the CLI is missing from the registry mirror.
  cargo install -j "${CARGO_BUILD_JOBS:-2}" wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

if [ "$("$TOOLS/node_modules/.bin/wasm-opt" --version 2>/dev/null | awk '{print $3}')" != "$BINARYEN_VERSION" ]; then
  mkdir -p "$TOOLS"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" "binaryen@$BINARYEN_VERSION"
fi
echo "setup-wasm: wasm-bindgen $(wasm-bindgen --version | awk '{print $2}'), $("$TOOLS/node_modules/.bin/wasm-opt" --version), node $(node --version), $(chromium --version 2>/dev/null | head -1)"
