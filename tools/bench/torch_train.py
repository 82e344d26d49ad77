"""Whole train steps of `cargo xtask bench --suite train`, timed with PyTorch on the CPU.

    python tools/bench/torch_train.py target/bench/torch-train.json [--only dense]

The same models as the Rust cases (the `small` preset: dim 256, 6 blocks, 4 heads, vocab 4096,
SwiGLU hidden 768, RoPE, RMSNorm, untied embeddings; 8 × 128 tokens per step; AdamW β 0.9/0.95,
ε 1e-8, weight decay 0.1, gradient clipping 1.0) and, for Memory+, three swilu memory layers
(blocks 1, 3, 5) sharing one value pool: 4 heads, k_dim 128, knn 16, qk-norm, values at 10×
the learning rate. The pool is timed two ways, and the row keeps the faster:
  - `nn.EmbeddingBag` with a dense gradient on AdamW (the paper's recipe);
  - `nn.EmbeddingBag(sparse=True)` on `torch.optim.SparseAdam` (rows a step touched only).
Rows are the JSON of `cargo xtask bench --json` ({name, config, median_s, throughput, unit}), so
`cargo xtask bench --report` puts them beside ours.
"""

import argparse
import gc
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

# PyTorch's own switch for huge pages on blocks of 2 MiB or more, read at its first allocation:
# our binaries get them from crates/memory-layers-huge-pages, so both sides of a ratio run on huge pages.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)
torch.manual_seed(0)

DIM, LAYERS, HEADS, VOCAB, HIDDEN = 256, 6, 4, 4096, 768
BATCH, SEQ, LR = 8, 128, 2e-3
MEM_HEADS, K_DIM, KNN = 4, 128, 16
MEMORY_BLOCKS = (1, 3, 5)


def rms(x, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return rms(x, 1e-5) * self.weight


def rope(x, cos, sin):
    a, b = x[..., ::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(DIM, DIM, bias=False) for _ in range(4))

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        split = lambda y: y.view(b, t, HEADS, DIM // HEADS).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, DIM))


class SwiGLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.w1, self.w3 = nn.Linear(DIM, HIDDEN, bias=False), nn.Linear(DIM, HIDDEN, bias=False)
        self.w2 = nn.Linear(HIDDEN, DIM, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Memory(nn.Module):
    """Product-key retrieval (per-head top-k of each half, then of the knn² sums), softmax,
    one weighted bag over the shared pool, swilu."""

    def __init__(self, n_keys):
        super().__init__()
        self.n_keys = n_keys
        self.query = nn.Linear(DIM, MEM_HEADS * K_DIM)
        bound = 1 / math.sqrt(K_DIM)
        self.keys = nn.Parameter(torch.empty(2 * MEM_HEADS * n_keys, K_DIM // 2).uniform_(-bound, bound))
        self.w1, self.w2 = nn.Linear(DIM, DIM), nn.Linear(DIM, DIM)

    def forward(self, x, pool):
        t = x.shape[0] * x.shape[1]
        flat = x.reshape(t, DIM)
        half = K_DIM // 2
        q = rms(self.query(flat).view(t, MEM_HEADS, 2, half))
        k = rms(self.keys.view(MEM_HEADS, 2, self.n_keys, half))
        s1 = torch.einsum("thd,hnd->thn", q[:, :, 0], k[:, 0])
        s2 = torch.einsum("thd,hnd->thn", q[:, :, 1], k[:, 1])
        v1, i1 = s1.topk(KNN, dim=-1)
        v2, i2 = s2.topk(KNN, dim=-1)
        pairs = (v1.unsqueeze(-1) + v2.unsqueeze(-2)).reshape(t, MEM_HEADS, KNN * KNN)
        scores, best = pairs.topk(KNN, dim=-1)
        idx = i1.gather(-1, best // KNN) * self.n_keys + i2.gather(-1, best % KNN)
        weights = F.softmax(scores, dim=-1).reshape(t, MEM_HEADS * KNN)
        out = pool(idx.reshape(t, MEM_HEADS * KNN), per_sample_weights=weights)
        out = self.w2(out * F.silu(self.w1(flat)))
        return out.view_as(x)


class Block(nn.Module):
    def __init__(self, n_keys):
        super().__init__()
        self.n1, self.n2, self.attn = RMSNorm(DIM), RMSNorm(DIM), Attention()
        self.ffn = Memory(n_keys) if n_keys else SwiGLU()

    def forward(self, x, cos, sin, pool):
        x = x + self.attn(self.n1(x), cos, sin)
        h = self.n2(x)
        return x + (self.ffn(h, pool) if isinstance(self.ffn, Memory) else self.ffn(h))


class Model(nn.Module):
    def __init__(self, n_keys, sparse):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, DIM)
        self.blocks = nn.ModuleList(Block(n_keys if n_keys and i in MEMORY_BLOCKS else 0) for i in range(LAYERS))
        self.norm, self.head = RMSNorm(DIM), nn.Linear(DIM, VOCAB, bias=False)
        self.pool = nn.EmbeddingBag(n_keys * n_keys, DIM, mode="sum", sparse=sparse) if n_keys else None
        if self.pool is not None:
            nn.init.normal_(self.pool.weight, std=DIM**-0.5)
        freqs = 1.0 / 10000 ** (torch.arange(0, DIM // HEADS, 2) / (DIM // HEADS))
        angles = torch.outer(torch.arange(SEQ), freqs)
        self.cos, self.sin = angles.cos(), angles.sin()

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x, self.cos, self.sin, self.pool)
        return self.head(self.norm(x))


def median_seconds(step):
    step()
    samples, start = [], time.perf_counter()
    while len(samples) < 3 or (time.perf_counter() - start < 10.0 and len(samples) < 10):
        t = time.perf_counter()
        step()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def train_step_seconds(n_keys, sparse):
    model = Model(n_keys, sparse)
    pool = [model.pool.weight] if model.pool is not None else []
    rest = [p for p in model.parameters() if all(p is not q for q in pool)]
    adamw = dict(betas=(0.9, 0.95), eps=1e-8)
    optims = [torch.optim.AdamW(rest, lr=LR, weight_decay=0.1, **adamw)]
    if pool and sparse:
        optims.append(torch.optim.SparseAdam(pool, lr=10 * LR, **adamw))
    elif pool:
        optims.append(torch.optim.AdamW(pool, lr=10 * LR, weight_decay=0.1, **adamw))
    tokens = (torch.arange(BATCH * (SEQ + 1)) * 2654435761 % VOCAB).view(BATCH, SEQ + 1)

    def step():
        for o in optims:
            o.zero_grad(set_to_none=True)
        logits = model(tokens[:, :-1])
        F.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(rest, 1.0)
        if pool and not sparse:
            torch.nn.utils.clip_grad_norm_(pool, 1.0)
        for o in optims:
            o.step()

    return median_seconds(step)


def available_bytes():
    """MemAvailable from /proc/meminfo (Linux), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def fits(n_keys, sparse):
    """Whether the pool, its two moments, a temporary and (dense AdamW) a gradient fit in 80% of
    the memory available: at 2^22 values dense AdamW was killed by the kernel at 24 GiB."""
    copies = 4 if sparse else 5
    needed = copies * 4 * n_keys * n_keys * DIM
    available = available_bytes()
    return available is None or needed <= available * 0.8


def main(out, only):
    cases = [
        ("train_step_dense_small", 0),
        ("train_step_memory_plus_small", 128),
        ("train_step_memory_plus_small_values_16", 256),
        ("train_step_memory_plus_small_values_20", 1024),
        ("train_step_memory_plus_small_values_22", 2048),
    ]
    rows = []
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("[]")
    for name, n_keys in cases:
        if only not in name:
            continue
        config = {"model": "memory-plus" if n_keys else "dense", "size": "small", "batch": BATCH,
                  "seq_len": SEQ, "values": n_keys * n_keys}
        if n_keys:
            timed = {key: train_step_seconds(n_keys, sparse)
                     for key, sparse in (("adamw", False), ("sparse_adam", True)) if fits(n_keys, sparse)}
            skipped = [key for key in ("adamw", "sparse_adam") if key not in timed]
            if skipped:
                config["skipped_for_memory"] = skipped
            if not timed:
                print(f"{name:<40} skipped: does not fit in memory", file=sys.stderr)
                continue
            config["pool_optimizer_seconds"] = timed
            config["pool_optimizer"] = min(timed, key=timed.get)
            seconds = min(timed.values())
        else:
            seconds = train_step_seconds(0, False)
        gc.collect()
        tokens = BATCH * SEQ
        print(f"{name:<40} {seconds:>8.3f} s  {tokens / seconds:>8.0f} tokens/s  {config.get('pool_optimizer_seconds', '')}",
              file=sys.stderr)
        rows.append(dict(name=name, config=config, median_s=seconds, throughput=tokens / seconds, unit="tokens/s"))
        # Written after every case, so that a case killed for memory keeps the ones before it.
        Path(out).write_text(json.dumps(rows, indent=2))
    print(f"wrote {out} (torch {torch.__version__}, {torch.get_num_threads()} threads)", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Whole PyTorch train steps, as xtask bench --suite train.")
    parser.add_argument("out", nargs="?", default="target/bench/torch-train.json")
    parser.add_argument("--only", default="", help="only the cases whose name contains this")
    arguments = parser.parse_args()
    main(arguments.out, arguments.only)
