#!/usr/bin/env bash
# Runtime scoring beside raw onnxruntime (Python, the PyPI wheel of the same ONNX Runtime
# version) on the same exported graph and the same token ids, same machine, same run: load time
# (the runtime verifies every file's SHA-256 while ONNX Runtime creates its session) against
# onnxruntime's own session creation, tokens/s at batch 1 and 16, peak RSS, and the ratios.
#
#   bash scripts/bench-runtime.sh MODEL_DIR...        # directories written by vrf-trainer export
#   THREADS=2 LEN=128 ROUNDS=3 bash scripts/bench-runtime.sh runs/model
#
# Timings on a small shared machine drift by 10-30 % between runs, more than the gaps measured,
# so both sides run ROUNDS times, interleaved (the order alternates), and the ratios are taken
# within each round; the last lines give their medians.
#
# Not a test: it prints figures. A Qwen3-0.6B-shape directory (random weights) is made by
# scripts/make-qwen3.py, `vrf-bench fit --backbone DIR --epochs 0 ...` and `vrf-trainer export`
# (README, "Paper scale").
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
LEN="${LEN:-128}"
ROUNDS="${ROUNDS:-3}"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer, not '$ROUNDS'" >&2; exit 2; }
[ $# -ge 1 ] || { echo "usage: bash scripts/bench-runtime.sh MODEL_DIR..." >&2; exit 2; }
bash scripts/fetch-ort.sh >/dev/null
cargo build --release -q -p vrf-runtime --example score_bench
PY=.onnxruntime/pyenv/bin/python
grep -m1 "model name" /proc/cpuinfo || true
echo "$(nproc) logical CPUs; $THREADS intra-op threads; $LEN tokens per row"
# The first number in the line of $1 matching $2, within the part matching $3.
num() { echo "$1" | grep "$2" | grep -oE "$3" | head -1 | grep -oE "[0-9.]+" ; }
# The median of the whitespace-separated numbers on stdin.
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
run_rt() { rt=$(target/release/examples/score_bench --model "$dir" --threads "$THREADS" --len "$LEN"); }
run_ort() { ort=$("$PY" scripts/bench-ort.py --model "$dir/backbone.onnx" --threads "$THREADS" --len "$LEN"); }
for dir in "$@"; do
  [ -f "$dir/vrf.json" ] || { echo "$dir: no vrf.json (not an exported model directory)" >&2; exit 2; }
  echo "== $dir ($(du -sh "$dir" | cut -f1))"
  r1="" r16="" dl=""
  for round in $(seq "$ROUNDS"); do
    echo "-- round $round of $ROUNDS"
    # Alternate which side goes first, so neither always meets the colder page cache.
    if [ $((round % 2)) = 1 ]; then run_rt; run_ort; else run_ort; run_rt; fi
    echo "$rt"; echo "$ort"
    for b in 1 16; do
      r=$(num "$rt" "batch *$b x" "[0-9]+ tokens/s"); o=$(num "$ort" "batch *$b x" "[0-9]+ tokens/s")
      ratio=$(echo "scale=3; $r / $o" | bc)
      echo "runtime / onnxruntime, batch $b: ${ratio}x"
      if [ "$b" = 1 ]; then r1="$r1 $ratio"; else r16="$r16 $ratio"; fi
    done
    rl=$(num "$rt" "load" "load [0-9.]+ s"); ol=$(num "$ort" "session creation" "creation [0-9.]+ s")
    d=$(echo "$rl - $ol" | bc)
    dl="$dl $d"
    echo "load: runtime $rl s, onnxruntime session $ol s, difference $d s"
  done
  echo "== $dir, medians over $ROUNDS rounds: runtime / onnxruntime batch 1 $(echo "$r1" | median)x" \
    "(rounds:$r1), batch 16 $(echo "$r16" | median)x (rounds:$r16); load difference" \
    "$(echo "$dl" | median) s (rounds:$dl)"
done
