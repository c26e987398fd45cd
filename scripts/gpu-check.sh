#!/usr/bin/env bash
# One short check on the GPU machine (one H100/H200, CUDA 13, PyTorch + Python, no Rust, no
# network), run through the device tool from the repository root with `carry: ["target/cuda-bin"]`
# after `bash scripts/build-cuda.sh` here:
#   1. the embedded benchmark fitted on CUDA and on the CPU, same seed, 2 epochs: accuracies;
#   2. one Qwen3-0.6B training step (random weights made there by scripts/make-qwen3.py with the
#      carried tokenizer), 8 pairs × 256 tokens: candle on CUDA beside PyTorch on the same GPU
#      (f32, bf16 autocast, TF32), tokens/s and peak memory;
#   3. the trainer's CUDA forward against its CPU forward on the same weights.
# Budget: about 8 minutes of a 10-minute command. Results go to $OUT (the device tool's folder).
set -uo pipefail
cd "$(dirname "$0")/.."
CARRIED="${CARRIED:-target/cuda-bin}"
BIN="${BIN:-/tmp/cuda-bin}"
OUT="${OUT:-/tmp/gpu-check}"
mkdir -p "$OUT" "$BIN"
log() { echo "== $*"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# The binaries travel xz-compressed (build-cuda.sh); Python's lzma unpacks them (no xz needed).
python3 - "$CARRIED" "$BIN" <<'PY'
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
PY
export VRF_CACHE="$BIN/cache"
# The CUDA build links cuBLAS, cuRAND and NVRTC 13 dynamically: take them from the image's CUDA
# and from PyTorch's nvidia wheels, wherever they are.
NVLIBS="$(python3 -c 'import glob, os, site
dirs = [d for p in site.getsitepackages() for d in glob.glob(os.path.join(p, "nvidia", "*", "lib"))]
print(":".join(dirs + ["/usr/local/cuda/lib64"]))' 2>/dev/null)"
export LD_LIBRARY_PATH="${NVLIBS}:${LD_LIBRARY_PATH:-}"
ldd "$BIN/vrf-trainer" | grep -E "cuda|cublas|curand|nvrtc" || true

log "1. embedded benchmark, CUDA vs CPU (2 epochs, seed 0)"
"$BIN/vrf-trainer" synth --out "$OUT/synth.jsonl" >/dev/null
for dev in cuda cpu; do
  /usr/bin/time -f "$dev fit: %e s wall, %M KB peak RSS" \
    timeout 200 "$BIN/vrf-trainer" fit --data "$OUT/synth.jsonl" --device "$dev" --threads 16 \
      --epochs 2 --baseline none --quiet --out "$OUT/fit-$dev" 2>&1 | tail -4
done

log "2. Qwen3-0.6B training step, 8 pairs x 256 tokens"
python3 scripts/make-qwen3.py --shape 0.6b --out /tmp/qwen3-0.6b-random
timeout 150 "$BIN/train_step_bench" --device cuda --backbone /tmp/qwen3-0.6b-random \
  --pairs 8 --len 256 --steps 3 --recompute off --check-cpu --threads 16
# bf16 products with f32 master weights (beside PyTorch's autocast below), then TF32.
for matmul in bf16 tf32; do
  timeout 90 "$BIN/train_step_bench" --device cuda --backbone /tmp/qwen3-0.6b-random \
    --pairs 8 --len 256 --steps 3 --recompute off --threads 16 --matmul "$matmul"
done
for extra in "" "--bf16" "--tf32"; do
  timeout 90 python3 scripts/bench-torch-step.py --device cuda --backbone /tmp/qwen3-0.6b-random \
    --pairs 8 --len 256 --steps 3 --threads 16 $extra
done
log "done"
