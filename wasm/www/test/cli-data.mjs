// Runs the `vrf` CLI on an exported model directory and its benchmark data (data.jsonl):
//
//   parity: an unseen user's posterior from `vrf user --refs` (native runtime, ONNX backbone)
//           must equal the wasm module's posterior from the same references' `vrf pair-features`
//           within 1e-6 (node, TARGET/wasm-pkg-node);
//   demo:   writes a demo-page data folder (vrf.json, user_model.safetensors, demo.json) whose
//           pair features and candidate basis rewards come from `vrf pair-features` and
//           `vrf features`; serve it with index.html?data=FOLDER.
//
//   node wasm/www/test/cli-data.mjs --model DIR --data DIR/data.jsonl --vrf target/debug/vrf \
//        --pkg TARGET/wasm-pkg-node [--demo-out wasm/www/data-export]
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
for (const need of ["model", "data", "vrf", "pkg"]) if (!args[need]) throw new Error(`--${need} is required`);
const MODEL = resolve(args.model);
const TOL = 1e-6;

const rows = readFileSync(args.data, "utf8").trim().split("\n").map((l) => JSON.parse(l));
// `vrf` reads JSONL on stdin with --refs - / --input -, and writes JSONL or JSON on stdout.
const vrf = (cmd, flag, lines) =>
  execFileSync(args.vrf, [cmd, "--model", MODEL, flag, "-"], { input: lines.map((l) => JSON.stringify(l)).join("\n") + "\n", maxBuffer: 1 << 28 })
    .toString()
    .trim();
const jsonl = (s) => s.split("\n").map((l) => JSON.parse(l));

// An unseen user: one whose pairs are not in the training split.
const seen = new Set(rows.filter((r) => r.split === "target").map((r) => r.user));
const unseen = rows.find((r) => !seen.has(r.user)).user;
const refs = rows.filter((r) => r.user === unseen && r.split === "ref").map(({ prompt, chosen, rejected }) => ({ prompt, chosen, rejected }));
if (refs.length === 0) throw new Error(`user ${unseen} has no reference pairs`);

const { VrfUser } = createRequire(import.meta.url)(join(resolve(args.pkg), "vrf_wasm.js"));
const manifest = readFileSync(join(MODEL, "vrf.json"), "utf8");
const user = new VrfUser(manifest, readFileSync(join(MODEL, "user_model.safetensors")));
const features = jsonl(vrf("pair-features", "--refs", refs)).map((r) => r.feature);
for (const f of features) user.observe(new Float32Array(f));
const native = JSON.parse(vrf("user", "--refs", refs));
const post = user.posterior();
let worst = 0;
for (const key of ["mean", "var", "weights"]) {
  const got = post[key];
  if (got.length !== native[key].length) throw new Error(`${key}: wasm has ${got.length} values, native ${native[key].length}`);
  native[key].forEach((w, i) => {
    const err = Math.abs(got[i] - w) / Math.max(1, Math.abs(w));
    worst = Math.max(worst, err);
    if (!(err <= TOL)) throw new Error(`${key}[${i}]: wasm ${got[i]}, native ${w}`);
  });
}
const ue = Math.abs(post.uncertainty - native.uncertainty) / Math.max(1, native.uncertainty);
if (!(ue <= TOL)) throw new Error(`uncertainty: wasm ${post.uncertainty}, native ${native.uncertainty}`);
console.log(`cli parity: user ${unseen}, ${refs.length} pairs from \`vrf pair-features\`: wasm posterior = \`vrf user\` (max rel. error ${Math.max(worst, ue).toExponential(1)} ≤ ${TOL})`);

if (args["demo-out"]) {
  const out = resolve(args["demo-out"]);
  // Ten questions on distinct prompts from the reference split, sides alternating so the
  // preferred answer of the benchmark user is not always on the left.
  const byPrompt = new Map();
  for (const r of rows.filter((r) => r.split === "ref")) if (!byPrompt.has(r.prompt)) byPrompt.set(r.prompt, r);
  const qs = [...byPrompt.values()].slice(0, 10).map((r, i) => (i % 2 ? { prompt: r.prompt, a: r.rejected, b: r.chosen } : { prompt: r.prompt, a: r.chosen, b: r.rejected }));
  const pair = (q, first, second) => ({ prompt: q.prompt, chosen: first, rejected: second });
  const pf = jsonl(vrf("pair-features", "--refs", qs.flatMap((q) => [pair(q, q.a, q.b), pair(q, q.b, q.a)]))).map((r) => r.feature);
  const feats = (prompt, responses) => jsonl(vrf("features", "--input", responses.map((response) => ({ prompt, response })))).map((r) => r.rewards);
  const questions = qs.map((q, i) => {
    const [ra, rb] = feats(q.prompt, [q.a, q.b]);
    return { prompt: q.prompt, a: { text: q.a, rewards: ra }, b: { text: q.b, rewards: rb }, a_over_b: pf[2 * i], b_over_a: pf[2 * i + 1] };
  });
  // Candidates: every distinct response to one evaluation prompt.
  const evalPrompt = rows.find((r) => r.split === "eval").prompt;
  const responses = [...new Set(rows.filter((r) => r.prompt === evalPrompt).flatMap((r) => [r.chosen, r.rejected]))].slice(0, 8);
  const k = JSON.parse(manifest).k;
  const demo = {
    source: `trained export ${MODEL.split("/").pop()} (vrf CLI)`,
    basis_names: Array.from({ length: k }, (_, i) => `basis ${i + 1}`),
    questions,
    candidates: { prompt: evalPrompt, responses: feats(evalPrompt, responses).map((rewards, i) => ({ text: responses[i], rewards })) },
  };
  const tmp = `${out}.tmp`;
  mkdirSync(tmp, { recursive: true });
  copyFileSync(join(MODEL, "vrf.json"), join(tmp, "vrf.json"));
  copyFileSync(join(MODEL, "user_model.safetensors"), join(tmp, "user_model.safetensors"));
  writeFileSync(join(tmp, "demo.json"), JSON.stringify(demo));
  execFileSync("rm", ["-rf", out]);
  renameSync(tmp, out);
  console.log(`cli demo data: ${questions.length} questions, ${responses.length} candidates → ${out}`);
}
