// Wasm side of the benchmark (scripts/bench-wasm.sh), in node: µs per `observe` of one pair and
// per `posterior()` / `weights()` call through the JS API, on the parity fixture's model with
// N = 10 pairs; median of 21 runs. Prints one JSON line.
//   node wasm/bench/bench.mjs TARGET/wasm-pkg-node
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const pkg = resolve(process.argv[2] || "target/wasm-pkg-node");
const { VrfUser } = createRequire(import.meta.url)(join(pkg, "vrf_wasm.js"));
const fixtures = new URL("../tests/fixtures/random/", import.meta.url);
const manifest = readFileSync(new URL("vrf.json", fixtures), "utf8");
const model = readFileSync(new URL("user_model.safetensors", fixtures));
const parity = JSON.parse(readFileSync(new URL("parity.json", fixtures), "utf8"));
const RUNS = 21;
const ITERS = 2000;

const user = new VrfUser(manifest, new Uint8Array(model));
const f = user.featureDim;
const pairs = [];
for (let i = 0; i < parity.features.length; i += f) pairs.push(new Float32Array(parity.features.slice(i, i + f)));
const n = pairs.length;

function medianUs(fn) {
  const perCall = [];
  for (let r = 0; r < RUNS; r++) {
    const t = process.hrtime.bigint();
    const calls = fn();
    perCall.push(Number(process.hrtime.bigint() - t) / 1e3 / calls);
  }
  perCall.sort((a, b) => a - b);
  return perCall[RUNS >> 1];
}

const observe = medianUs(() => {
  const rounds = Math.floor(ITERS / n);
  for (let i = 0; i < rounds; i++) {
    user.reset();
    for (const p of pairs) user.observe(p);
  }
  return rounds * n;
});
user.reset();
for (const p of pairs) user.observe(p);
let sink = 0;
const posterior = medianUs(() => {
  for (let i = 0; i < ITERS; i++) {
    const post = user.posterior();
    sink += post.uncertainty;
    post.free();
  }
  return ITERS;
});
const weights = medianUs(() => {
  for (let i = 0; i < ITERS; i++) sink += user.weights()[0];
  return ITERS;
});
if (!Number.isFinite(sink)) throw new Error("non-finite benchmark output");
console.log(JSON.stringify({ observe_us: +observe.toFixed(3), posterior_us: +posterior.toFixed(3), weights_us: +weights.toFixed(3), pairs: n, d: user.d, k: user.k }));
