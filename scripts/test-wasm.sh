#!/usr/bin/env bash
# The wasm tests (scripts/test.sh runs this after the cargo tests): installs the toolchain when
# missing, builds the module and the demo page, then runs the wasm-bindgen-test suite in node and
# in headless Chromium (each must run at least one test), the demo page's end-to-end test
# (screenshot: TARGET/wasm-page/demo.png), the size check (in scripts/build-wasm.sh), and, given an
# exported model, the CLI-vs-wasm parity check and the page on the CLI's demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

bash scripts/setup-wasm.sh
bash scripts/build-wasm.sh
target="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# $1 = suite name; the rest = the command. Fails on a failed test or when no test ran.
suite() {
  local name="$1"; shift
  set +e
  "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  set -e
  local passed
  passed="$(awk '/^test result:/ {p += $4} END {print p + 0}' "$log")"
  echo "wasm $name: $passed passed"
  if [ "$status" -ne 0 ]; then echo "wasm $name: FAILED" >&2; return "$status"; fi
  if [ "$passed" -eq 0 ]; then echo "wasm $name: no test ran" >&2; return 1; fi
}

suite node cargo test -p vrf-wasm --target wasm32-unknown-unknown
WASM_BINDGEN_USE_BROWSER=1 CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}" \
  suite chromium cargo test -p vrf-wasm --target wasm32-unknown-unknown
node wasm/www/test/page-test.mjs --screenshot "$target/wasm-page/demo.png"

# With the export parity test's model (scripts/test.sh sets VRF_PARITY_MODEL_OUT): the `vrf` CLI
# (native runtime, ONNX backbone) and the wasm module agree on a trainer-exported model from the
# same references' pair features; its demo data, written by the CLI, works in the page.
model="${VRF_PARITY_MODEL_OUT:-}"
if [ -n "$model" ] && [ -f "$model/vrf.json" ]; then
  cargo build -q -p vrf-runtime --bin vrf
  node wasm/www/test/cli-data.mjs --model "$model" --data "$model/data.jsonl" --vrf "$target/debug/vrf" \
    --pkg "$target/wasm-pkg-node" --demo-out wasm/www/data-export
  node wasm/www/test/page-test.mjs --data data-export --screenshot "$target/wasm-page/demo-export.png"
else
  echo "wasm cli parity: skipped (no exported model; scripts/test.sh's export parity test provides one)"
fi
