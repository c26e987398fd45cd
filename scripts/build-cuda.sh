#!/usr/bin/env bash
# Builds the trainer and the runtime with `--features cuda` on a machine without a GPU: nvcc, the
# CUDA headers and libraries come from PyPI wheels (CUDA 13, the GPU machine's version) in a
# cache venv (13.0, what the GPU machine's driver accepts); candle's kernels are compiled for
# compute capability 9.0 (H100 / H200). Writes what the GPU machine runs to target/cuda-bin/ for
# scripts/gpu-check.sh to carry: vrf-trainer and train_step_bench, stripped and xz-compressed,
# and the Qwen3 tokenizer in cache/. The runtime's `vrf` (CUDA execution provider) is built as a
# check and stays in target/cuda/release/.
#
#   bash scripts/build-cuda.sh            # CUDA_COMPUTE_CAP=90 by default
#
# The CUDA build uses its own target directory (target/cuda) so that it never invalidates the
# CPU build's artefacts.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${VRF_CACHE:-$HOME/.cache/vrf}"
VENV="$CACHE/cuda-venv"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV"; fi
# pip is quick when the pinned versions are already there, and fixes a venv that has others.
# 13.0 throughout: the GPU machine's driver (580) runs PTX up to CUDA 13.0, and nvcc 13.0 with a
# newer crt (host_runtime.h, pulled in by default) breaks its host stubs. candle links cudarc
# dynamically: cuBLAS(Lt), cuRAND and NVRTC are needed to link here; at run time the GPU
# machine's own CUDA 13 provides them.
echo "build-cuda: nvcc and the CUDA 13.0 headers/libraries from PyPI in $VENV"
"$VENV/bin/pip" install -q "nvidia-cuda-nvcc==13.0.*" "nvidia-cuda-runtime==13.0.*" \
  "nvidia-cuda-cccl==13.0.*" "nvidia-cuda-crt==13.0.*" "nvidia-nvvm==13.0.*" \
  "nvidia-cuda-nvrtc==13.0.*" "nvidia-cublas==13.0.*" "nvidia-curand==10.4.0.*"
NVCC="$(find "$VENV" -path '*/bin/nvcc' -type f | head -1)"
CU="$(dirname "$(dirname "$NVCC")")"   # the wheels' CUDA tree: nvidia/cu13/{bin,include,lib,nvvm}
# A CUDA-like tree for candle-kernels (nvcc, headers) and cudarc (libraries to link against):
# lib64/ holds the wheels' libraries under their unversioned names too, and a stub libcuda.so.1
# (the driver library comes with a GPU's driver, not with the toolkit wheels) that defines every
# cu* entry point cudarc declares; at run time the GPU machine's real driver is loaded instead.
TREE="$CACHE/cuda-tree"
rm -rf "$TREE"; mkdir -p "$TREE/lib64"
for d in bin include nvvm; do ln -s "$CU/$d" "$TREE/$d"; done
for f in "$CU"/lib/*.so.*; do
  ln -sf "$f" "$TREE/lib64/$(basename "$f")"
  ln -sf "$f" "$TREE/lib64/$(basename "$f" | sed 's/\.so\..*/.so/')"
done
cargo fetch --locked >/dev/null
CUDARC="$(find "$HOME/.cargo/registry/src" -maxdepth 2 -type d -name 'cudarc-0.19*' | sort | tail -1)"
grep -rhoE 'pub (unsafe )?fn cu[A-Za-z0-9_]+' "$CUDARC/src/driver/sys" | sed -E 's/.*fn //' | sort -u \
  | sed 's/.*/int &(void) { return 999; }/' > "$TREE/cuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$TREE/lib64/libcuda.so" "$TREE/cuda_stub.c"
echo "build-cuda: stub libcuda.so with $(wc -l < "$TREE/cuda_stub.c") driver entry points"
export CUDA_ROOT="$TREE" CUDA_PATH="$TREE" CUDA_HOME="$TREE" CUDA_TOOLKIT_ROOT_DIR="$TREE"
export PATH="$TREE/bin:$PATH"
export LIBRARY_PATH="$TREE/lib64:${LIBRARY_PATH:-}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$TREE/lib64"
nvcc --version | tail -2

bash scripts/setup.sh >/dev/null   # protoc and the ONNX Runtime library, as for the CPU build
time cargo build --release --locked --target-dir target/cuda -p vrf-trainer --features cuda \
  --bin vrf-trainer --example train_step_bench
time cargo build --release --locked --target-dir target/cuda -p vrf-runtime --features cuda,cli --bin vrf
# What the GPU machine runs, stripped and xz-compressed: a call carries at most 64 MiB and the
# two binaries are about 120 MB stripped (candle's kernels are embedded PTX text, which compresses
# well); gpu-check.sh unpacks them there. The runtime's `vrf` is built above as a build check
# only (the GPU machine has no onnxruntime-gpu for its CUDA execution provider).
rm -rf target/cuda-bin; mkdir -p target/cuda-bin
for b in vrf-trainer examples/train_step_bench; do
  name="$(basename "$b")"
  strip -o "target/cuda-bin/$name" "target/cuda/release/$b"
  xz -T2 -6 -f "target/cuda-bin/$name"
done
# The embedded benchmark the GPU check fits (the harness's CPU build writes it; its meta file
# stays here, the engine's fit needs only the JSONL).
cargo run --release -q --locked -p vrf-bench -- synth --out target/cuda-bin/synth.jsonl
rm -f target/cuda-bin/synth.synth_meta.json
xz -T2 -6 -f target/cuda-bin/synth.jsonl
# The GPU machine has no network: the Qwen3 tokenizer travels with the binaries.
python3 - <<'PY'
import importlib.util, os, shutil
spec = importlib.util.spec_from_file_location("mq", "scripts/make-qwen3.py")
mq = importlib.util.module_from_spec(spec); spec.loader.exec_module(mq)
src = mq.fetch_tokenizer()
dst = os.path.join("target/cuda-bin/cache", os.path.basename(src))
shutil.rmtree(dst, ignore_errors=True); shutil.copytree(src, dst)
PY
ls -la target/cuda-bin target/cuda/release/vrf
du -sh target/cuda-bin
echo "build-cuda: ok (sm_${CUDA_COMPUTE_CAP}); binaries in target/cuda-bin/"
