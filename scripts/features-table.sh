#!/usr/bin/env bash
# The frozen-features table of docs/results.md: every method (VRF, BT, LoRe, PReF, PAL-B, VPL)
# fitted on each feature set of the embedded benchmark (α = 0.1), for best-vs-worst and random
# pairs, with the per-k ceiling. The true features get 3 seeds, the others one.
#
#   bash scripts/features-table.sh [OUT]      # default OUT: runs/features; resumable
#
# The learned feature sets are the pooled states of backbones fitted by the main job
# (`vrf-bench fit --seeds 0` into OUT/backbones and OUT/backbones/random-pairs, made here if
# missing): BT's ("the tiny backbone's learned features") and VRF's. One process per variant,
# one candle thread each. Prints the markdown table at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/features}
mkdir -p "$out/tables"
cargo build --release --locked -p vrf-bench -p vrf-trainer
B=target/release/vrf-bench
T=target/release/vrf-trainer
M=vrf,bt,lore,pref,pal,vpl
export RAYON_NUM_THREADS=1

variant() {
  local v=$1 bdir=$2
  [ -f "$bdir/vrf-seed0/eval.json" ] && [ -f "$bdir/bt-seed0/eval.json" ] || \
    $B fit --out "$out/backbones" --pairs "$v" --seeds 0 --quiet --resume >/dev/null
  for src in bt vrf; do
    [ -f "$out/tables/$src-$v.npy" ] || \
      $T features --run "$bdir/$src-seed0" --data "$bdir/data.jsonl" --out "$out/tables/$src-$v.npy" --prompts --quiet
  done
  $B compare --out "$out/true-$v" --pairs "$v" --feature-source true --alphas 0.1 --seeds 0,1,2 --methods $M --quiet --resume >/dev/null
  for fs in noisy:1 noisy:0.25 bow; do
    $B compare --out "$out/${fs/:/-}-$v" --pairs "$v" --feature-source "$fs" --alphas 0.1 --seeds 0 --methods $M --quiet --resume >/dev/null
  done
  for src in bt vrf; do
    $B compare --out "$out/$src-learned-$v" --pairs "$v" --features "$out/tables/$src-$v.npy" --alphas 0.1 --seeds 0 --methods $M --quiet --resume >/dev/null
  done
}
variant best-worst "$out/backbones" &
variant random "$out/backbones/random-pairs" &
wait

python3 - "$out" <<'PY'
import json, sys, os
out = sys.argv[1]
sets = [("true", "true scorers (10)"), ("noisy-1", "true + noise, SNR 1"),
        ("noisy-0.25", "true + noise, SNR 0.25"), ("bow", "bag of words (512)"),
        ("bt-learned", "tiny backbone, fitted by BT (64)"), ("vrf-learned", "tiny backbone, fitted by VRF (64)")]
names = {"vrf": "VRF", "bt": "BT", "lore": "LoRe", "pref": "PReF", "pal": "PAL-B", "vpl": "VPL"}
def pm(x, scale=100.0, nd=1):
    m, s = x
    if m is None: return "–"
    return f"{scale*m:.{nd}f}" if not s else f"{scale*m:.{nd}f} ± {scale*s:.{nd}f}"
for v in ["best-worst", "random"]:
    print(f"\n### {'best-vs-worst' if v == 'best-worst' else 'random pairs'} (α = 0.1)\n")
    print("| features | method | seeds | unseen | k = 0 / 1 / 3 / 5 / 9 | headroom k = 1 / 3 / 9 |")
    print("|---|---|---|---|---|---|")
    for key, label in sets:
        path = os.path.join(out, f"{key}-{v}", "compare.json")
        if not os.path.exists(path):
            print(f"| {label} | (not run) | | | | |"); continue
        r = json.load(open(path))
        fs = {f["method"]: dict((k, p) for k, p in f["points"]) for f in r["few_shot"]}
        hr = {h["method"]: dict((k, p) for k, p in h["points"]) for h in r["headroom_per_k"]}
        for a in r["accuracy"]:
            m = a["method"]
            curve = " / ".join(pm(fs[m][k]) if k in fs.get(m, {}) else "–" for k in [0, 1, 3, 5, 9])
            head = " / ".join(pm(hr[m][k], 1.0, 2) if k in hr.get(m, {}) else "–" for k in [1, 3, 9])
            print(f"| {label} | {names.get(m, m)} | {a['seeds']} | {pm(a['unseen'])} | {curve} | {head} |")
        ref = dict(r["reference"][0][1].items())
        rk = {x["id"]: x for x in ref["rankers"]}
        ceil = " / ".join(f"{100*c['unseen']:.1f}" for c in ref.get("ceiling", []))
        print(f"| {label} | *ref: true global / ceiling k = 0…9* | | {100*rk['true-global']['unseen']:.1f} | {ceil} | |")
PY
