#!/usr/bin/env bash
# One short check on the GPU machine (one H100/H200, CUDA 13, PyTorch + Python, no Rust, no
# network), run through the device tool from the repository root with `carry: ["target/cuda-bin"]`
# after `bash scripts/build-cuda.sh` here. Most valuable first, so a cut-off run keeps it:
#   1. one Qwen3-0.6B training step (random weights made there by scripts/make-qwen3.py with the
#      carried tokenizer), 8 pairs × 256 tokens: candle on CUDA beside PyTorch on the same GPU
#      (f32, bf16 autocast, TF32), tokens/s and peak memory; the f32 run also checks the
#      trainer's CUDA forward against its CPU forward on the same weights;
#   2. the embedded benchmark fitted on CUDA and on the CPU, same seed, 2 epochs: accuracies.
# Budget: every step has a timeout; all of them together (about 9 minutes at worst, with the
# 0.6B weights' making) stay inside a 10-minute command. Results go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
CARRIED="${CARRIED:-target/cuda-bin}"
BIN="${BIN:-/tmp/cuda-bin}"
OUT="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUT" "$BIN"
log() { echo "== $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# The binaries travel xz-compressed (build-cuda.sh); Python's lzma unpacks them (no xz needed).
python3 - "$CARRIED" "$BIN" <<'PY' || { echo "gpu-check: cannot unpack $CARRIED (run scripts/build-cuda.sh here and carry target/cuda-bin)" >&2; exit 1; }
import lzma, os, shutil, sys
src, dst = sys.argv[1:]
for name in os.listdir(src):
    path = os.path.join(src, name)
    if name.endswith(".xz"):
        out = os.path.join(dst, name[:-3])
        with lzma.open(path) as f, open(out, "wb") as g:
            shutil.copyfileobj(f, g)
        os.chmod(out, 0o755)
    elif os.path.isdir(path):
        shutil.copytree(path, os.path.join(dst, name), dirs_exist_ok=True)
    else:
        shutil.copy2(path, os.path.join(dst, name))
for need in ("vrf-trainer", "train_step_bench"):
    if not os.path.isfile(os.path.join(dst, need)):
        sys.exit(f"gpu-check: {src} has no {need}(.xz)")
PY
export VRF_CACHE="$BIN/cache"
# The CUDA build links cuBLAS, cuRAND and NVRTC 13 dynamically: take them from the image's CUDA
# and from PyTorch's nvidia wheels, wherever they are.
NVLIBS="$(python3 -c 'import glob, os, site
dirs = [d for p in site.getsitepackages() for d in glob.glob(os.path.join(p, "nvidia", "*", "lib"))]
print(":".join(dirs + ["/usr/local/cuda/lib64"]))' 2>/dev/null)"
export LD_LIBRARY_PATH="${NVLIBS}:${LD_LIBRARY_PATH:-}"
ldd "$BIN/vrf-trainer" | grep -E "cuda|cublas|curand|nvrtc" || true

log "1. Qwen3-0.6B training step, 8 pairs x 256 tokens"
python3 scripts/make-qwen3.py --shape 0.6b --out /tmp/qwen3-0.6b-random
timeout 90 "$BIN/train_step_bench" --device cuda --backbone /tmp/qwen3-0.6b-random \
  --pairs 8 --len 256 --steps 3 --recompute off --check-cpu --threads 16
# bf16 products with f32 master weights (beside PyTorch's autocast below), then TF32.
for matmul in bf16 tf32; do
  timeout 50 "$BIN/train_step_bench" --device cuda --backbone /tmp/qwen3-0.6b-random \
    --pairs 8 --len 256 --steps 3 --recompute off --threads 16 --matmul "$matmul"
done
for extra in "" "--bf16" "--tf32"; do
  timeout 45 python3 scripts/bench-torch-step.py --device cuda --backbone /tmp/qwen3-0.6b-random \
    --pairs 8 --len 256 --steps 3 --threads 16 $extra
done

log "2. embedded benchmark, CUDA vs CPU (2 epochs, seed 0)"
"$BIN/vrf-trainer" synth --out "$OUT/synth.jsonl" >/dev/null
for dev in cuda cpu; do
  /usr/bin/time -f "$dev fit: %e s wall, %M KB peak RSS" \
    timeout 75 "$BIN/vrf-trainer" fit --data "$OUT/synth.jsonl" --device "$dev" --threads 16 \
      --epochs 2 --baseline none --quiet --out "$OUT/fit-$dev" 2>&1 | tail -4
done
log "done"
