"""Checks an exported model directory with the reference ONNX tooling (not our runtime):
the ONNX checker (full check, with shape inference) and the Python onnxruntime package
evaluating the graph on the runtime's own token ids; prints what it verified.

usage: python scripts/check_onnx.py MODEL_DIR
"""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

model_dir = sys.argv[1]
manifest = json.load(open(f"{model_dir}/vrf.json"))
path = f"{model_dir}/{manifest['onnx']['file']}"
onnx.checker.check_model(path, full_check=True)
m = onnx.load(path)
opsets = {o.domain or "ai.onnx": o.version for o in m.opset_import}
assert opsets == {"ai.onnx": 17}, opsets

sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
names = manifest["onnx"]
rng = np.random.default_rng(0)
vocab = m.graph.initializer[[i.name for i in m.graph.initializer].index("model.embed_tokens.weight")].dims[0]
lengths = [9, 3, 6]
ids = np.full((3, 9), manifest["text"]["pad_id"], dtype=np.int64)
mask = np.zeros((3, 9), dtype=np.int64)
for b, n in enumerate(lengths):
    ids[b, :n] = rng.integers(0, vocab, n)
    mask[b, :n] = 1
hidden, rewards = sess.run([names["hidden"], names["rewards"]], {names["input_ids"]: ids, names["attention_mask"]: mask})
assert hidden.shape == (3, manifest["hidden"]) and rewards.shape == (3, manifest["k"])
# Each row alone (no padding) must give the same result as inside the padded batch.
worst = 0.0
for b, n in enumerate(lengths):
    h1, r1 = sess.run(None, {names["input_ids"]: ids[b : b + 1, :n], names["attention_mask"]: mask[b : b + 1, :n]})
    worst = max(worst, float(np.abs(h1 - hidden[b]).max()), float(np.abs(r1 - rewards[b]).max()))
assert worst < 1e-4, worst
print(f"onnx checker: ok (opset 17, ir {m.ir_version}); python onnxruntime {ort.__version__}: "
      f"runs, batch vs single max abs diff {worst:.2e}")
