#!/usr/bin/env python3
"""PyTorch eager reference for trainer/examples/train_step_bench.rs: the same training step.

Qwen3 backbone (transformers' Qwen3Model, sdpa attention, f32) + a two-layer reward head on
the last token, Bradley-Terry loss on pairs of random token ids, AdamW (lr 1e-5, weight decay
0.01, clipping at 1), the same shape, pairs, length and threads. Prints one line in the Rust
benchmark's layout: torch's own f32 GEMM rate, load time, median seconds per step, tokens/s,
model FLOP/s as % of that GEMM rate, peak RSS.

    python3 scripts/bench-torch-step.py --backbone DIR --pairs 8 --len 256 --steps 3 --threads 2
    python3 scripts/bench-torch-step.py --backbone tiny --vocab 4096 ...   # the tiny shape

Needs torch and transformers (scripts/bench-train.sh installs them into a cache venv).
`--checkpoint` turns on transformers' gradient checkpointing (per decoder layer), the
counterpart of the trainer's `--recompute on`. `--ddp` is PyTorch's counterpart of the
trainer's `--parallel batch`: `--threads` processes of one thread each, each with its share of
the pairs, gradients averaged by DistributedDataParallel (gloo) before every optimizer step.
"""

import argparse
import json
import os
import resource
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpoint", action="store_true")
    ap.add_argument("--gemm", type=int, default=2048)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--bf16", action="store_true",
                    help="CUDA: bf16 autocast matmuls, f32 master weights and AdamW state")
    ap.add_argument("--tf32", action="store_true",
                    help="CUDA: TF32 tensor-core matmuls on f32 tensors (allow_tf32)")
    ap.add_argument("--ddp", action="store_true",
                    help="CPU: --threads processes of one thread, each with its share of the pairs")
    a = ap.parse_args()
    if a.tf32 and a.device != "cuda":
        ap.error("--tf32 needs --device cuda (TF32 is a tensor-core mode)")
    if a.ddp and (a.device != "cpu" or a.pairs % a.threads != 0):
        ap.error("--ddp needs --device cpu and --pairs divisible by --threads")

    import torch

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    gflops = gemm_rate(a)
    if not a.ddp:
        run(0, a, gflops, 1)
        return
    import socket
    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    mp.spawn(run, args=(a, gflops, a.threads), nprocs=a.threads)


def gemm_rate(a):
    """torch's f32 GEMM GFLOP/s on `a.threads` threads (best of 3 after a warm-up)."""
    import torch

    dev = torch.device(a.device)
    # The GEMM limit is measured in plain f32 on both sides (train_step_bench does the same),
    # so "% of GEMM" compares across precisions; TF32 is switched on after it.
    torch.backends.cuda.matmul.allow_tf32 = False
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x = torch.randn(a.gemm, a.gemm, device=dev)
    y = torch.randn(a.gemm, a.gemm, device=dev)
    x @ y
    sync()
    best = min(timed(lambda: (x @ y, sync())) for _ in range(3))
    return 2 * a.gemm**3 / best / 1e9


def run(rank, a, gflops, world):
    """Builds the model and times the step; with `world` > 1, as rank `rank` of a DDP group."""
    import torch
    from transformers import Qwen3Config, Qwen3Model

    if world > 1:
        import torch.distributed as dist

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = a.tf32

    t0 = time.perf_counter()
    if a.backbone == "tiny":
        cfg = Qwen3Config(vocab_size=a.vocab, hidden_size=64, intermediate_size=192,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          head_dim=16, rms_norm_eps=1e-6, rope_theta=10000.0,
                          max_position_embeddings=4096, tie_word_embeddings=True)
        model = Qwen3Model(cfg)
    else:
        with open(os.path.join(a.backbone, "config.json")) as f:
            raw = json.load(f)
        cfg = Qwen3Config(**raw)
        model = Qwen3Model.from_pretrained(a.backbone, config=cfg, torch_dtype=torch.float32)
    cfg._attn_implementation = "sdpa"
    model.to(dev)
    load_s = time.perf_counter() - t0
    model.train()
    if a.checkpoint:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    h = cfg.hidden_size
    head = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.GELU(), torch.nn.Linear(h, 1)).to(dev)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.01)

    n = 2 * a.pairs
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (n, a.len), generator=g).to(dev)
    # This rank's share of the pairs (all of them without DDP).
    share = n // world
    ids = ids[rank * share:(rank + 1) * share]
    mask = torch.ones_like(ids)

    class Reward(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.head = model, head

        def forward(self, ids, mask):
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            return self.head(hidden[:, -1]).squeeze(-1).float()

    reward = Reward()
    if world > 1:
        # Averages the ranks' gradients in backward(), so each rank steps with the whole batch's.
        reward = torch.nn.parallel.DistributedDataParallel(reward)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            r = reward(ids, mask)
        loss = torch.nn.functional.softplus(-(r[0::2] - r[1::2])).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sync()
        if not torch.isfinite(loss):
            sys.exit(f"non-finite loss {loss.item()}")

    step()
    times = sorted(timed(step) for _ in range(a.steps))
    if world > 1:
        torch.distributed.destroy_process_group()
        if rank > 0:
            return
    med = times[len(times) // 2]
    tokens = n * a.len
    flops = step_flops(cfg, tokens, a.len)
    nparams = sum(p.numel() for p in params)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    gpu = ""
    if dev.type == "cuda":
        gpu = f" | peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    print(f"torch {a.device} | {a.backbone} ({nparams / 1e6:.1f} M params) | {a.pairs} pairs x {a.len} tokens"
          f" | threads {a.threads}{' (DDP: processes of 1 thread)' if world > 1 else ''} | checkpointing {'on' if a.checkpoint else 'off'}"
          f" | GEMM {gflops:.0f} GFLOP/s | load {load_s:.2f} s | step {med:.3f} s (median of"
          f" {len(times)}) | {tokens / med:.0f} tokens/s | {100 * flops / med / (gflops * 1e9):.1f}"
          f" % of GEMM | peak RSS {peak:.2f} GiB{gpu}")


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def step_flops(cfg, tokens, length):
    """The Rust benchmark's count: 6 x linear weights + attention products, per token."""
    h, i = cfg.hidden_size, cfg.intermediate_size
    q = cfg.num_attention_heads * cfg.head_dim
    kv = cfg.num_key_value_heads * cfg.head_dim
    linear = cfg.num_hidden_layers * (2 * h * q + 2 * h * kv + 3 * h * i)
    attn = cfg.num_hidden_layers * 4 * length * q
    return tokens * (6 * linear + 3 * attn)


if __name__ == "__main__":
    main()
