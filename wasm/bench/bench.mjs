// Wasm side of the benchmark (scripts/bench-wasm.sh), in node: µs per `observe` of one pair and
// per `posterior()` / `weights()` call through the JS API with N = 10 pairs, median of 21 runs,
// on the models of the native side (wasm/examples/bench_native.rs): the parity fixture's and,
// given an exported model directory, that model, with its population prior and with it off.
// Prints one JSON line per model.
//   node wasm/bench/bench.mjs TARGET/wasm-pkg-node [MODEL_DIR]
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

const pkg = resolve(process.argv[2] || "target/wasm-pkg-node");
const { VrfUser } = createRequire(import.meta.url)(join(pkg, "vrf_wasm.js"));
const RUNS = 21;
const ITERS = 2000;
const PAIRS = 10;

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

function bench(name, manifest, model, pairs) {
  const user = new VrfUser(manifest, new Uint8Array(model));
  const n = pairs.length;
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
  console.log(JSON.stringify({ model: name, observe_us: +observe.toFixed(3), posterior_us: +posterior.toFixed(3), weights_us: +weights.toFixed(3), pairs: n, d: user.d, k: user.k, prior: user.hasPrior }));
  user.free();
}

const fixtures = new URL("../tests/fixtures/random/", import.meta.url);
const manifest = readFileSync(new URL("vrf.json", fixtures), "utf8");
const parity = JSON.parse(readFileSync(new URL("parity.json", fixtures), "utf8"));
const f = JSON.parse(manifest).encoder.input_dim;
const fixturePairs = [];
for (let i = 0; i < parity.features.length; i += f) fixturePairs.push(new Float32Array(parity.features.slice(i, i + f)));
bench("fixture", manifest, readFileSync(new URL("user_model.safetensors", fixtures)), fixturePairs);

// Given an exported model directory: that model, and with its prior switched off when it has one.
if (process.argv[3]) {
  const dir = resolve(process.argv[3]);
  const exportManifest = readFileSync(join(dir, "vrf.json"), "utf8");
  const exportModel = readFileSync(join(dir, "user_model.safetensors"));
  const off = JSON.parse(exportManifest);
  // The same fixed rows as the native side: any rows time the same.
  const exportF = off.encoder.input_dim;
  const exportPairs = Array.from({ length: PAIRS }, (_, i) => Float32Array.from({ length: exportF }, (_, j) => ((i * 31 + j * 7) % 13) / 13 - 0.5));
  if (off.encoder.prior) {
    bench("export, prior", exportManifest, exportModel, exportPairs);
    off.encoder.prior = false;
    bench("export, prior off", JSON.stringify(off), exportModel, exportPairs);
  } else {
    bench("export", exportManifest, exportModel, exportPairs);
  }
}
