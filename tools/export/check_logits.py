"""Checks an exported model (`memory-layers export --checkpoint RUN --out DIR`) with a forward
pass of its own: numpy and safetensors only, written from the exported names and config.json,
sharing no code with the Rust crates.

It reads DIR/config.json and DIR/model.safetensors, runs the model on the tokens of
DIR/check.safetensors and compares its logits with the ones the Rust model computed there.

    python tools/export/check_logits.py DIR [--tol 1e-4]

The forward pass is Hugging Face's Llama (RMSNorm, attention with rotate_half RoPE and a causal
mask, grouped key/value heads, SwiGLU), where `config.json`'s `memory_layers.layers` replace a
block's MLP by its product-key layer, computed as the Rust crates compute it:

- queries `x @ query_proj.T + b`, viewed [T, heads, 2, k_dim/2]; with qk_norm each half and each
  sub-key divided by sqrt(mean(square) + 1e-6);
- sub-keys `keys` viewed [heads, 2, n_keys, k_dim/2]; per head, the best knn scores of each half,
  then the best knn of their knn^2 sums; index i1 * n_keys + i2;
- weights: softmax over each head's knn scores; the heads' reads are summed;
- Memory: `sum_j w_j * values[idx_j]`, then `* silu(swilu_projection(x))` (Memory+), then
  `value_proj`, then `* sigmoid(gating(x))` (gated); values are the shared pool
  `model.memory_values.weight`;
- PEER: `sum_j w_j * gelu(<x, values_u[idx_j]>) * values_v[idx_j]` (exact gelu).

Everything runs in float64. Exits 1 when the largest absolute difference of the logits is above
--tol (default 1e-4), or when a tensor of the file is not used.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

QK_NORM_EPS = 1e-6


class Weights:
    """The file's tensors as float64, remembering which were read."""

    def __init__(self, path):
        self.tensors = {k: v.astype(np.float64) for k, v in load_file(str(path)).items()}
        self.used = set()

    def __getitem__(self, name):
        if name not in self.tensors:
            raise KeyError(f"{name} is not in the file")
        self.used.add(name)
        return self.tensors[name]

    def get(self, name):
        return self[name] if name in self.tensors else None

    def unused(self):
        return sorted(set(self.tensors) - self.used)


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def silu(x):
    return x / (1.0 + np.exp(-x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def rotate_half(x):
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def rope(x, theta):
    """x [heads, T, head_dim]: Hugging Face's rotary embedding (rotate_half)."""
    _, t, d = x.shape
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    angles = np.arange(t, dtype=np.float64)[:, None] * inv_freq[None, :]
    emb = np.concatenate([angles, angles], axis=-1)
    return x * np.cos(emb) + rotate_half(x) * np.sin(emb)


def attention(x, w, prefix, c):
    t, dim = x.shape
    heads, kv_heads = c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or dim // heads
    q = (x @ w[f"{prefix}.q_proj.weight"].T).reshape(t, heads, hd).transpose(1, 0, 2)
    k = (x @ w[f"{prefix}.k_proj.weight"].T).reshape(t, kv_heads, hd).transpose(1, 0, 2)
    v = (x @ w[f"{prefix}.v_proj.weight"].T).reshape(t, kv_heads, hd).transpose(1, 0, 2)
    q, k = rope(q, c["rope_theta"]), rope(k, c["rope_theta"])
    group = heads // kv_heads
    k, v = np.repeat(k, group, axis=0), np.repeat(v, group, axis=0)
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
    scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, -np.inf)
    out = softmax(scores) @ v  # [heads, T, hd]
    return out.transpose(1, 0, 2).reshape(t, heads * hd) @ w[f"{prefix}.o_proj.weight"].T


def mlp(x, w, prefix):
    gate = x @ w[f"{prefix}.gate_proj.weight"].T
    up = x @ w[f"{prefix}.up_proj.weight"].T
    return (silu(gate) * up) @ w[f"{prefix}.down_proj.weight"].T


def linear(x, w, prefix):
    out = x @ w[f"{prefix}.weight"].T
    bias = w.get(f"{prefix}.bias")
    return out if bias is None else out + bias


def qk_normalize(x):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + QK_NORM_EPS)


def retrieve(x, w, prefix, m):
    """Scores, indices [T, heads, knn] of the product-key retrieval, best first."""
    t = x.shape[0]
    heads, knn, n_keys, k_dim = m["heads"], m["knn"], m["n_keys"], m["k_dim"]
    half = k_dim // 2
    q = linear(x, w, f"{prefix}.query_proj.query_mlps.0").reshape(t, heads, 2, half)
    keys = w[f"{prefix}.keys"].reshape(heads, 2, n_keys, half)
    if m.get("qk_norm"):
        q, keys = qk_normalize(q), qk_normalize(keys)
    s1 = np.einsum("thd,hnd->thn", q[:, :, 0], keys[:, 0])
    s2 = np.einsum("thd,hnd->thn", q[:, :, 1], keys[:, 1])
    i1 = np.argsort(-s1, axis=-1, kind="stable")[..., :knn]
    i2 = np.argsort(-s2, axis=-1, kind="stable")[..., :knn]
    v1 = np.take_along_axis(s1, i1, -1)
    v2 = np.take_along_axis(s2, i2, -1)
    pairs = (v1[..., :, None] + v2[..., None, :]).reshape(t, heads, knn * knn)
    best = np.argsort(-pairs, axis=-1, kind="stable")[..., :knn]
    scores = np.take_along_axis(pairs, best, -1)
    a, b = best // knn, best % knn
    idx = np.take_along_axis(i1, a, -1) * n_keys + np.take_along_axis(i2, b, -1)
    # The gap between the last selected pair and the first left out: a flip there is the
    # one way two correct implementations can disagree by more than rounding.
    ordered = np.sort(pairs, axis=-1)[..., ::-1]
    gap = (ordered[..., knn - 1] - ordered[..., knn]).min() if knn < knn * knn else np.inf
    return scores, idx, gap


def memory_layer(x, w, prefix, m):
    t = x.shape[0]
    scores, idx, gap = retrieve(x, w, prefix, m)
    weights = softmax(scores)  # per head over knn
    if m["kind"] == "peer":
        u = w[f"{prefix}.values_u.weight"][idx]  # [T, heads, knn, dim]
        act = gelu(np.einsum("td,thkd->thk", x, u))
        v = w[f"{prefix}.values_v.weight"][idx]
        return np.einsum("thk,thkd->td", weights * act, v), gap
    values = w[m["shared_values"]]
    out = np.einsum("thk,thkd->td", weights, values[idx])
    if m.get("swilu"):
        out = out * silu(linear(x, w, f"{prefix}.swilu_projection"))
    if m.get("value_proj"):
        out = linear(out, w, f"{prefix}.value_proj")
    if m.get("gated"):
        out = out * sigmoid(linear(x, w, f"{prefix}.gating"))
    assert out.shape[0] == t
    return out, gap


def forward(tokens, w, c):
    """Logits [T, vocab] of one sequence."""
    eps = c["rms_norm_eps"]
    memory = c.get("memory_layers") or {}
    memory_blocks = set(memory.get("layers", []))
    h = w["model.embed_tokens.weight"][tokens]
    gaps = []
    for n in range(c["num_hidden_layers"]):
        p = f"model.layers.{n}"
        x = rms_norm(h, w[f"{p}.input_layernorm.weight"], eps)
        h = h + attention(x, w, f"{p}.self_attn", c)
        x = rms_norm(h, w[f"{p}.post_attention_layernorm.weight"], eps)
        if n in memory_blocks:
            out, gap = memory_layer(x, w, f"{p}.memory", memory)
            gaps.append(gap)
            h = h + out
        else:
            h = h + mlp(x, w, f"{p}.mlp")
    h = rms_norm(h, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight")
    if head is None or c.get("tie_word_embeddings"):
        head = w["model.embed_tokens.weight"]
    return h @ head.T, min(gaps) if gaps else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", type=Path, help="the folder `memory-layers export` wrote")
    parser.add_argument("--tol", type=float, default=1e-4, help="largest absolute difference")
    args = parser.parse_args()
    config = json.loads((args.dir / "config.json").read_text())
    weights = Weights(args.dir / "model.safetensors")
    check = load_file(str(args.dir / "check.safetensors"))
    tokens = check["tokens"].astype(np.int64)
    expected = check["logits"].astype(np.float64)
    ours = []
    gaps = []
    for row in tokens:
        logits, gap = forward(row, weights, config)
        ours.append(logits)
        if gap is not None:
            gaps.append(gap)
    ours = np.stack(ours)
    unused = weights.unused()
    diff = np.abs(ours - expected)
    worst = float(diff.max())
    scale = float(np.abs(expected).max())
    same_argmax = float((ours.argmax(-1) == expected.argmax(-1)).mean()) * 100
    kind = (config.get("memory_layers") or {}).get("kind", "dense")
    print(
        f"{args.dir}: {kind}, {tokens.shape[1]} tokens: max |logits - rust| = {worst:.3e} "
        f"(largest logit {scale:.3f}, mean diff {float(diff.mean()):.3e}, "
        f"same argmax {same_argmax:.1f}%)"
    )
    if gaps:
        print(f"smallest score gap at a top-k boundary: {min(gaps):.3e}")
    failed = False
    if unused:
        print(f"FAIL: tensors of the file not used: {', '.join(unused)}")
        failed = True
    if not worst <= args.tol:
        print(f"FAIL: {worst:.3e} > tolerance {args.tol:.0e}")
        failed = True
    if failed:
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
