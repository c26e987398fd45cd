// End-to-end test of the demo page in headless Chromium, driven through chromedriver's WebDriver
// HTTP API: serves wasm/www from localhost, answers questions as a person who always prefers the
// concise response, checks what the page shows, reloads (state restored from local storage),
// saves a screenshot, and checks "Start over".
//
//   node wasm/www/test/page-test.mjs --screenshot OUT.png [--chromedriver /usr/bin/chromedriver]
//
// With --data FOLDER (e.g. one cli-data.mjs wrote from a trained export) it opens
// index.html?data=FOLDER and checks only what holds for any model: three answers (always the
// left response), weights summing to 1 with bars as wide as the weights, the uncertainty
// shrinking, the best candidate listed first.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const WWW = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const SCREENSHOT = resolve(args.screenshot || "target/wasm-page/demo.png");
const CHROMEDRIVER = args.chromedriver || process.env.CHROMEDRIVER || "/usr/bin/chromedriver";
const CHROMIUM = args.chromium || process.env.CHROMIUM || "/usr/bin/chromium";
const DATA = args.data || "data";
const GENERIC = DATA !== "data";
const ANSWERS = GENERIC ? 3 : 6;

let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error(`page test: ${what}`);
  checks += 1;
}

const MIME = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".json": "application/json", ".wasm": "application/wasm" };

function serve() {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
    const file = join(WWW, path.endsWith("/") ? `${path}index.html` : path);
    try {
      const body = readFileSync(file);
      res.writeHead(200, { "content-type": MIME[extname(file)] || "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

async function startDriver() {
  const port = 9515 + Math.floor(Math.random() * 2000);
  const proc = spawn(CHROMEDRIVER, [`--port=${port}`], { stdio: ["ignore", "ignore", "inherit"] });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(`${base}/status`);
      if ((await r.json()).value.ready) return { proc, base };
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  proc.kill();
  throw new Error(`chromedriver (${CHROMEDRIVER}) did not start`);
}

async function main() {
  const demo = JSON.parse(readFileSync(join(WWW, DATA, "demo.json"), "utf8"));
  const server = await serve();
  const url = `http://127.0.0.1:${server.address().port}/${GENERIC ? `?data=${DATA}` : ""}`;
  const { proc, base } = await startDriver();
  let session = null;
  const wd = async (method, path, body) => {
    const r = await fetch(`${base}${session ? `/session/${session}` : ""}${path}`, {
      method,
      headers: { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const j = await r.json();
    if (!r.ok) throw new Error(`WebDriver ${method} ${path}: ${JSON.stringify(j.value).slice(0, 500)}`);
    return j.value;
  };
  const js = (script, ...a) => wd("POST", "/execute/sync", { script, args: a });
  const text = (id) => js("return document.getElementById(arguments[0]).textContent", id);
  const click = async (id) => {
    const el = await wd("POST", "/element", { using: "css selector", value: `#${id}` });
    await wd("POST", `/element/${Object.values(el)[0]}/click`, {});
  };
  const waitReady = async () => {
    for (let i = 0; i < 200; i++) {
      const [ready, err] = await js("return [document.body.dataset.ready, document.getElementById('error').textContent]");
      if (err) throw new Error(`page shows an error: ${err}`);
      if (ready === "1") return;
      await sleep(50);
    }
    throw new Error("page did not become ready");
  };
  try {
    // Chromium occasionally exits during start-up on a loaded machine ("session not created");
    // a fresh profile and another try is what a person would do.
    for (let attempt = 1; ; attempt++) {
      try {
        const caps = await wd("POST", "/session", {
          capabilities: {
            alwaysMatch: {
              "goog:chromeOptions": {
                binary: CHROMIUM,
                // Root in CI needs --no-sandbox; the rest keeps a headless run quiet and offline.
                args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,1000",
                  `--user-data-dir=${mkdtempSync(join(tmpdir(), "vrf-page-test-"))}`],
              },
            },
          },
        });
        session = caps.sessionId;
        break;
      } catch (e) {
        if (attempt >= 3) throw e;
        console.error(`page test: starting Chromium failed (attempt ${attempt}): ${String(e.message).slice(0, 200)}; retrying`);
        await sleep(1000 * attempt);
      }
    }
    await wd("POST", "/url", { url });
    await waitReady();

    const n = demo.questions.length;
    check((await text("progress")) === `Question 1 of ${n}`, "starts at question 1");
    check((await text("prompt")) === demo.questions[0].prompt, "shows the first prompt");
    check((await text("choose-a")) === demo.questions[0].a.text, "shows response A");
    const rows = await js("return [...document.querySelectorAll('#weights .row')].map(r => [r.dataset.basis, r.dataset.weight])");
    check(rows.length === demo.basis_names.length && rows.every(([, w]) => w === ""), "one empty bar per basis before any answer");
    check((await js("return document.getElementById('uncertainty').dataset.value")) === "", "no uncertainty before any answer");

    // A person who ranks the styles in the order of basis_names (concise first): they pick the
    // response whose dominant basis comes earlier.
    const style = (r) => r.rewards.indexOf(Math.max(...r.rewards));
    const uncertainties = [];
    for (let i = 0; i < ANSWERS; i++) {
      const q = demo.questions[i];
      await click(GENERIC || style(q.a) < style(q.b) ? "choose-a" : "choose-b");
      const u = Number(await js("return document.getElementById('uncertainty').dataset.value"));
      check(Number.isFinite(u) && u > 0, `uncertainty shown after answer ${i + 1}`);
      if (i > 0) check(u < uncertainties[i - 1], `uncertainty shrinks at answer ${i + 1} (${uncertainties[i - 1]} → ${u})`);
      uncertainties.push(u);
      check((await text("progress")) === `Question ${i + 2} of ${n}`, `moves on after answer ${i + 1}`);
    }
    const weights = await js("return [...document.querySelectorAll('#weights .row')].map(r => [r.dataset.basis, Number(r.dataset.weight), r.querySelector('.fill').style.width])");
    const sum = weights.reduce((s, [, w]) => s + w, 0);
    check(Math.abs(sum - 1) < 1e-4, `weights sum to 1 (${sum})`);
    const top = weights.reduce((b, r) => (r[1] > b[1] ? r : b));
    // Compared as numbers: the browser normalises a set width of "0.0%" to "0%".
    check(weights.every(([, w, width]) => width.endsWith("%") && parseFloat(width) === Number((100 * w).toFixed(1))),
      `each bar is as wide as its weight (${JSON.stringify(weights)})`);
    const best = await text("best");
    if (!GENERIC) {
      check(top[0] === demo.basis_names[0], `the preferred style has the largest weight (${JSON.stringify(weights)})`);
      check(best.startsWith(demo.candidates.responses[0].text), `the concise candidate ranks first (${best})`);
    }
    const rankingFirst = await js("return document.querySelector('#ranking li').id");
    check(rankingFirst === "best", "the best candidate is listed first");
    check((await js("return document.querySelectorAll('#history li').length")) === ANSWERS, "one history entry per answer");

    // Reload: the state comes back from local storage.
    await wd("POST", "/refresh", {});
    await waitReady();
    check((await text("progress")) === `Question ${ANSWERS + 1} of ${n}`, "progress restored after reload");
    const restored = Number(await js("return document.getElementById('uncertainty').dataset.value"));
    check(restored === uncertainties[ANSWERS - 1], `uncertainty restored after reload (${restored})`);

    const png = Buffer.from(await wd("GET", "/screenshot"), "base64");
    check(png.subarray(1, 4).toString() === "PNG" && png.length > 10000, "screenshot is a PNG");
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    writeFileSync(`${SCREENSHOT}.tmp`, png);
    renameSync(`${SCREENSHOT}.tmp`, SCREENSHOT);

    await click("reset");
    check((await text("progress")) === `Question 1 of ${n}`, "start over goes back to question 1");
    check((await js("return document.getElementById('uncertainty').dataset.value")) === "", "start over clears the posterior");
    check((await text("error")) === "", "no error shown");
    console.log(`page test: ${checks} checks passed; screenshot ${SCREENSHOT}`);
  } finally {
    if (session) await wd("DELETE", "", undefined).catch(() => {});
    proc.kill();
    server.close();
  }
}

main().catch((e) => {
  console.error(e.message || e);
  console.log(`page test: FAILED after ${checks} checks`);
  process.exit(1);
});
