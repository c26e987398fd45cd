#!/usr/bin/env bash
# Builds the vrf-wasm module (release), generates its JS bindings for browsers (wasm/www/pkg)
# and for node (TARGET/wasm-pkg-node, used by the benchmark), shrinks both with wasm-opt
# (-Oz --converge --strip-producers), checks the size budget, and writes the demo page's
# synthetic data (wasm/www/data).
# Run scripts/setup-wasm.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
TOOLS="${VRF_WASM_TOOLS:-$HOME/.cache/vrf-wasm-tools}"
WASM_OPT="$TOOLS/node_modules/.bin/wasm-opt"
# The size budget: 150 KB (153600 bytes) after wasm-opt, enforced (README, "Tests and numbers").
MAX_WASM_BYTES="${MAX_WASM_BYTES:-153600}"

target="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
cargo build --profile wasm-release --target wasm32-unknown-unknown -p vrf-wasm
raw="$target/wasm32-unknown-unknown/wasm-release/vrf_wasm.wasm"

bindgen() { # $1 = wasm-bindgen target, $2 = output folder
  local tmp; tmp="$(mktemp -d "$2.tmp.XXXX")"
  trap 'rm -rf "$tmp"' RETURN
  wasm-bindgen --target "$1" --out-dir "$tmp" "$raw"
  "$WASM_OPT" -Oz --converge --strip-producers "$tmp/vrf_wasm_bg.wasm" -o "$tmp/vrf_wasm_bg.wasm"
  # Replace the folder only once it is complete, so a served page never sees half a build.
  rm -rf "$2" && mv "$tmp" "$2"
}
mkdir -p wasm/www "$target"
bindgen web wasm/www/pkg
bindgen nodejs "$target/wasm-pkg-node"

size="$(stat -c %s wasm/www/pkg/vrf_wasm_bg.wasm)"
echo "build-wasm: vrf_wasm_bg.wasm after wasm-opt: $size bytes ($((size / 1024)) KiB; budget $MAX_WASM_BYTES)"
if [ "$size" -gt "$MAX_WASM_BYTES" ]; then
  echo "build-wasm: the module exceeds the size budget ($size > $MAX_WASM_BYTES bytes)" >&2
  exit 1
fi

# The synthetic demo data (the page test's answers are written for it); rewritten every build so
# it always matches the generator.
cargo run --release -q -p vrf-wasm --example demo_data -- --out wasm/www/data
