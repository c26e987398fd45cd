// The demo: ask which of two responses the person prefers, update their posterior in wasm, and
// show the weights over the bases, the shrinking uncertainty and the candidates ranked for them.
import init, { VrfUser } from "./pkg/vrf_wasm.js";

const $ = (id) => document.getElementById(id);

function fail(err) {
  $("error").textContent = `Error: ${err && err.message ? err.message : err}`;
}
window.addEventListener("error", (e) => fail(e.error || e.message));
window.addEventListener("unhandledrejection", (e) => fail(e.reason));

// `?data=DIR` loads another data folder (e.g. one written from a trained export); the default
// is the synthetic data scripts/build-wasm.sh writes. Only plain relative folder names.
const DATA = (() => {
  const d = new URLSearchParams(location.search).get("data") || "data";
  if (!/^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(d)) throw new Error(`?data=${d}: not a plain relative folder`);
  return d;
})();
const STORAGE_KEY = `vrf-demo-state:${DATA}`;

async function fetchOk(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} (did you run scripts/build-wasm.sh?)`);
  return r;
}

async function main() {
  await init();
  const [manifest, modelBytes, demo] = await Promise.all([
    fetchOk(`${DATA}/vrf.json`).then((r) => r.text()),
    fetchOk(`${DATA}/user_model.safetensors`).then((r) => r.arrayBuffer()),
    fetchOk(`${DATA}/demo.json`).then((r) => r.json()),
  ]);
  const user = new VrfUser(manifest, new Uint8Array(modelBytes));
  $("source").textContent = `Model: ${demo.source}; K = ${user.k}, d = ${user.d}.`;
  $("candidates-prompt").textContent = demo.candidates.prompt;
  const candidateRewards = new Float32Array(demo.candidates.responses.flatMap((r) => r.rewards));

  // The number answered and the uncertainty after each answer live next to the wasm state.
  let answered = 0;
  let history = [];
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved) {
    try {
      const s = JSON.parse(saved);
      user.loadState(s.state);
      answered = s.answered;
      history = s.history;
    } catch (e) {
      // A state from another model or version: start afresh rather than show wrong numbers.
      localStorage.removeItem(STORAGE_KEY);
      user.reset();
    }
  }

  function render() {
    const q = demo.questions[answered];
    $("progress").textContent = q
      ? `Question ${answered + 1} of ${demo.questions.length}`
      : `All ${demo.questions.length} questions answered.`;
    $("prompt").textContent = q ? q.prompt : "";
    for (const [id, r] of [["choose-a", q && q.a], ["choose-b", q && q.b]]) {
      $(id).textContent = r ? r.text : "—";
      $(id).disabled = !r;
    }
    const post = user.count > 0 ? user.posterior() : null;
    const weights = post ? post.weights : null;
    $("weights").replaceChildren(
      ...demo.basis_names.map((name, k) => {
        const row = document.createElement("div");
        row.className = "row";
        row.dataset.basis = name;
        row.dataset.weight = weights ? String(weights[k]) : "";
        const w = weights ? weights[k] : 0;
        row.innerHTML = `<span class="name"></span><div class="bar track"><div class="bar fill"></div></div><span class="value"></span>`;
        row.querySelector(".name").textContent = name;
        row.querySelector(".fill").style.width = `${(100 * w).toFixed(1)}%`;
        row.querySelector(".value").textContent = weights ? w.toFixed(3) : "—";
        return row;
      }),
    );
    $("uncertainty").textContent = post ? post.uncertainty.toFixed(4) : "— (answer a question)";
    $("uncertainty").dataset.value = post ? String(post.uncertainty) : "";
    const first = history.length ? history[0] : 1;
    $("uncertainty-bar").style.width = post ? `${Math.min(100, (100 * post.uncertainty) / first)}%` : "100%";
    $("history").replaceChildren(
      ...history.map((u, i) => {
        const li = document.createElement("li");
        li.textContent = `after ${i + 1}: ${u.toFixed(4)}`;
        return li;
      }),
    );
    const order = demo.candidates.responses.map((r, i) => i);
    let best = -1;
    let scores = null;
    if (post) {
      const s = user.score(candidateRewards);
      scores = s.scores;
      best = s.best;
      order.sort((a, b) => scores[b] - scores[a]);
    }
    $("ranking").replaceChildren(
      ...order.map((i) => {
        const li = document.createElement("li");
        li.textContent = demo.candidates.responses[i].text + (scores ? ` (${scores[i].toFixed(3)})` : "");
        if (i === best) {
          li.className = "best";
          li.id = "best";
        }
        return li;
      }),
    );
  }

  function choose(preferA) {
    const q = demo.questions[answered];
    if (!q) return;
    try {
      user.observe(new Float32Array(preferA ? q.a_over_b : q.b_over_a));
      answered += 1;
      history.push(user.uncertainty());
      localStorage.setItem(STORAGE_KEY, JSON.stringify({ state: user.saveState(), answered, history }));
      render();
    } catch (e) {
      fail(e);
    }
  }

  $("choose-a").addEventListener("click", () => choose(true));
  $("choose-b").addEventListener("click", () => choose(false));
  $("reset").addEventListener("click", () => {
    user.reset();
    answered = 0;
    history = [];
    localStorage.removeItem(STORAGE_KEY);
    render();
  });
  render();
  document.body.dataset.ready = "1";
}

main().catch(fail);
