#!/usr/bin/env bash
# Benchmark: µs per observe (one pair) and per posterior/weights call, wasm in node next to
# native (N = 10 pairs; medians of 21 runs) on the parity fixture's model (d = 32, K = 8) and an
# exported model (the argument; by default the demo page's wasm/www/data-export), as exported
# and, when it has a population prior, with the prior off.
#   bash scripts/bench-wasm.sh [MODEL_DIR]
# Needs scripts/build-wasm.sh to have run (it writes TARGET/wasm-pkg-node).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
target="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
# An exported model: the argument, else the demo page's (scripts/test-wasm.sh writes it).
model="${1:-wasm/www/data-export}"
if [ ! -f "$model/vrf.json" ]; then
  echo "bench-wasm: no exported model at $model (pass a directory from vrf-trainer export); the fixture only" >&2
  model=""
fi
native="$(cargo run --release -q -p vrf-wasm --example bench_native -- ${model:+"$model"})"
wasm="$(node wasm/bench/bench.mjs "$target/wasm-pkg-node" ${model:+"$model"})"
node -e '
const parse = (s) => s.trim().split("\n").map(JSON.parse);
const [native, wasm] = process.argv.slice(1).map(parse);
console.log("N pairs per user; median µs per call");
console.log("model               d   K  prior  call        native    wasm (node)");
for (const n of native) {
  const w = wasm.find((x) => x.model === n.model);
  for (const [name, key] of [["observe", "observe_us"], ["posterior", "posterior_us"], ["weights", "weights_us"]])
    console.log(`${n.model.padEnd(18)} ${String(n.d).padStart(3)} ${String(n.k).padStart(3)}  ${String(n.prior).padEnd(5)}  ${name.padEnd(10)} ${n[key].toFixed(2).padStart(7)} ${w[key].toFixed(2).padStart(12)}`);
}
' "$native" "$wasm"
