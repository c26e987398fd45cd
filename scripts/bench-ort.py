"""Raw onnxruntime on an exported graph: the reference side of scripts/bench-runtime.sh.

Session creation time (same options as the runtime: all graph optimisations, N intra-op
threads, 1 inter-op thread), then tokens/s at batch 1 and 16 on the same ids as
runtime/examples/score_bench.rs, and peak RSS. Prints figures; not a test.

    python scripts/bench-ort.py --model DIR/backbone.onnx [--threads 2] [--len 128]
"""
import argparse
import resource
import time

import numpy as np
import onnxruntime as ort


def ids(batch, length, vocab):
    return np.array(
        [[((b * 7919 + t * 104729) % (vocab - 1)) + 1 for t in range(length)] for b in range(batch)],
        dtype=np.int64,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--len", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=1000, help="ids are drawn below this (as score_bench does)")
    ap.add_argument("--budget-s", type=float, default=20.0)
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    t = time.perf_counter()
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    print(f"onnxruntime {ort.__version__} session creation {time.perf_counter() - t:.2f} s")
    for batch in (1, 16):
        x = ids(batch, a.len, a.vocab)
        feed = {"input_ids": x, "attention_mask": np.ones_like(x)}
        sess.run(None, feed)  # warm-up
        times = []
        start = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < a.budget_s and len(times) < 100):
            t = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t)
        times.sort()
        med = times[len(times) // 2]
        print(
            f"onnxruntime batch {batch:>2} x {a.len}: {med * 1e3:.1f} ms/call, "
            f"{batch * a.len / med:.0f} tokens/s ({len(times)} calls)"
        )
    print(f"onnxruntime peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
