#!/usr/bin/env bash
# Benchmark: µs per observe (one pair) and per posterior/weights call, wasm in node next to
# native, on the parity fixture's model (N = 10 pairs, d = 32, K = 8); medians of 21 runs.
# Needs scripts/build-wasm.sh to have run (it writes TARGET/wasm-pkg-node).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
target="$(cargo metadata --format-version 1 --no-deps | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
native="$(cargo run --release -q -p vrf-wasm --example bench_native)"
wasm="$(node wasm/bench/bench.mjs "$target/wasm-pkg-node")"
node -e '
const [n, w] = process.argv.slice(1).map(JSON.parse);
console.log(`N = ${n.pairs} pairs, d = ${n.d}, K = ${n.k}; median µs per call`);
console.log("call        native    wasm (node)");
for (const [name, key] of [["observe", "observe_us"], ["posterior", "posterior_us"], ["weights", "weights_us"]])
  console.log(`${name.padEnd(10)} ${n[key].toFixed(2).padStart(7)} ${w[key].toFixed(2).padStart(12)}`);
' "$native" "$wasm"
