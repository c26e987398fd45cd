#!/usr/bin/env bash
# Runtime scoring beside raw onnxruntime (Python, the PyPI wheel of the same ONNX Runtime
# version) on the same exported graph and the same token ids, same machine, same run: load time
# (the runtime verifies every file's SHA-256 while ONNX Runtime creates its session) against
# onnxruntime's own session creation, tokens/s at batch 1 and 16, peak RSS, and the ratios.
#
#   bash scripts/bench-runtime.sh MODEL_DIR...        # directories written by vrf-trainer export
#   THREADS=2 LEN=128 bash scripts/bench-runtime.sh runs/model
#
# Not a test: it prints figures. A Qwen3-0.6B-shape directory (random weights) is made by
# scripts/make-qwen3.py, `vrf-trainer fit --backbone DIR --epochs 0 ...` and `vrf-trainer export`
# (README, "Paper scale").
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
LEN="${LEN:-128}"
[ $# -ge 1 ] || { echo "usage: bash scripts/bench-runtime.sh MODEL_DIR..." >&2; exit 2; }
bash scripts/fetch-ort.sh >/dev/null
cargo build --release -q -p vrf-runtime --example score_bench
PY=.onnxruntime/pyenv/bin/python
grep -m1 "model name" /proc/cpuinfo || true
echo "$(nproc) logical CPUs; $THREADS intra-op threads; $LEN tokens per row"
for dir in "$@"; do
  [ -f "$dir/vrf.json" ] || { echo "$dir: no vrf.json (not an exported model directory)" >&2; exit 2; }
  echo "== $dir ($(du -sh "$dir" | cut -f1))"
  # Each side once with a cold-ish start (the other side's run warmed the page cache for both).
  rt=$(target/release/examples/score_bench --model "$dir" --threads "$THREADS" --len "$LEN")
  ort=$("$PY" scripts/bench-ort.py --model "$dir/backbone.onnx" --threads "$THREADS" --len "$LEN")
  echo "$rt"; echo "$ort"
  num() { echo "$1" | grep "$2" | grep -oE "$3" | head -1 | grep -oE "[0-9.]+" ; }
  for b in 1 16; do
    r=$(num "$rt" "batch *$b x" "[0-9]+ tokens/s"); o=$(num "$ort" "batch *$b x" "[0-9]+ tokens/s")
    echo "runtime / onnxruntime, batch $b: $(echo "scale=3; $r / $o" | bc)x"
  done
  rl=$(num "$rt" "load" "load [0-9.]+ s"); ol=$(num "$ort" "session creation" "creation [0-9.]+ s")
  echo "load: runtime $rl s, onnxruntime session $ol s, difference $(echo "$rl - $ol" | bc) s"
done
