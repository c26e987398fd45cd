#!/usr/bin/env bash
# Training-step benchmark, candle (the trainer's backbone) beside PyTorch eager, same machine,
# same run: forward + backward + AdamW on Bradley–Terry pairs of random tokens, the tiny shape
# and the Qwen3-0.6B shape (random weights, scripts/make-qwen3.py). Prints one line per
# configuration: GEMM limit, load time, s/step, tokens/s, % of the GEMM rate, peak RSS.
#
#   bash scripts/bench-train.sh                 # both sizes, 2 threads
#   SIZES=tiny THREADS=1 bash scripts/bench-train.sh
#   GEMM=gemm bash scripts/bench-train.sh       # candle's default products only, without MKL
#
# candle runs twice: with its default products (the gemm crate) and built with the trainer's
# `mkl` feature (Intel MKL from PyPI, scripts/setup-mkl.sh), the library PyTorch's CPU wheel uses.
# On more than one thread it runs both ways of using them: each operation split, and the step's
# texts split (`--parallel batch`, what the trainer does); PyTorch runs intra-op, and at the tiny
# shape also with the texts split over DistributedDataParallel processes (`--ddp`).
# MODES_OVERRIDE=batch runs candle's default way only.
# Not a test: it prints figures. Installs torch + transformers from PyPI into
# $VRF_CACHE/torch-venv once (~3 GB with the CUDA wheels that `import torch` needs) and writes
# the 0.6B directory into $VRF_CACHE/qwen3-0.6b-random once (1.1 GB). A 0.6B step takes
# minutes on 2 cores; the whole run about 20–30 min.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${VRF_CACHE:-$HOME/.cache/vrf}"
THREADS="${THREADS:-2}"
SIZES="${SIZES:-tiny 0.6b}"
GEMM="${GEMM:-gemm mkl}"
# Both ways of using the threads: each operation split (PyTorch's intra-op way), and the step's
# texts split (`--parallel batch`, the trainer's default).
MODES=ops
[ "$THREADS" -gt 1 ] && MODES="${MODES_OVERRIDE:-ops batch}"
STEPS="${STEPS:-2}"
VENV="$CACHE/torch-venv"
for lib in $GEMM; do
  case "$lib" in gemm | mkl) ;; *) echo "unknown GEMM library $lib (gemm, mkl)" >&2; exit 2 ;; esac
done

if ! "$VENV/bin/python" -c "import torch, transformers" 2>/dev/null; then
  echo "== installing torch + transformers into $VENV (once)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch transformers safetensors
fi
BIN=target/release/examples/train_step_bench
if [[ " $GEMM " == *" mkl "* ]]; then
  MKLROOT="$(bash scripts/setup-mkl.sh)"
  MKLROOT="$MKLROOT" cargo build --release -q -p vrf-trainer --features mkl --example train_step_bench
  cp "$BIN" "$BIN-mkl"
fi
cargo build --release -q -p vrf-trainer --example train_step_bench
cp "$BIN" "$BIN-gemm"
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, '| candle:', ' '.join('$BIN-' + l for l in '$GEMM'.split()))"
uname -m; nproc; grep -m1 "model name" /proc/cpuinfo || true

for size in $SIZES; do
  case "$size" in
    tiny)
      for lib in $GEMM; do
        for mode in $MODES; do
          "$BIN-$lib" --backbone tiny --pairs 8 --len 128 --steps 10 --threads "$THREADS" \
            --recompute off --parallel "$mode"
        done
      done
      "$VENV/bin/python" scripts/bench-torch-step.py --backbone tiny --pairs 8 --len 128 \
        --steps 10 --threads "$THREADS"
      # PyTorch's own way of splitting the texts: DistributedDataParallel over processes.
      if [ "$THREADS" -gt 1 ]; then
        "$VENV/bin/python" scripts/bench-torch-step.py --backbone tiny --pairs 8 --len 128 \
          --steps 10 --threads "$THREADS" --ddp
      fi ;;
    0.6b)
      DIR="$CACHE/qwen3-0.6b-random"
      python3 scripts/make-qwen3.py --shape 0.6b --out "$DIR"
      # Recomputation on both sides (the trainer's default for a directory backbone); without
      # it neither fits 8 × 256 in well under 24 GB.
      for lib in $GEMM; do
        for mode in $MODES; do
          "$BIN-$lib" --backbone "$DIR" --pairs 8 --len 256 --steps "$STEPS" --threads "$THREADS" \
            --recompute on --parallel "$mode"
        done
      done
      "$VENV/bin/python" scripts/bench-torch-step.py --backbone "$DIR" --pairs 8 --len 256 \
        --steps "$STEPS" --threads "$THREADS" --checkpoint ;;
    *) echo "unknown size $size (tiny, 0.6b)" >&2; exit 2 ;;
  esac
done
