#!/usr/bin/env bash
# The wasm tests (scripts/test.sh runs this after the cargo tests): installs the toolchain when
# missing, builds the module and the demo page, then runs the wasm-bindgen-test suite in node and
# in headless Chromium (each must run at least one test), the demo page's end-to-end test
# (screenshot: TARGET/wasm-page/demo.png), and the size check (in scripts/build-wasm.sh).
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
