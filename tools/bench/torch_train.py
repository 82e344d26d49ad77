"""Whole train steps of `cargo xtask bench --suite train`, timed with PyTorch on the CPU.

    python tools/bench/torch_train.py target/bench/torch-train.json [--only dense] \
        [--shapes target/bench/ours.json]

The same models as the Rust cases, read from the configs of our results (`--shapes`, written by
`cargo xtask bench --suite train --json FILE`): dim, blocks, heads and grouped KV heads, vocab,
SwiGLU hidden size, RoPE, RMSNorm, untied embeddings, batch × sequence; AdamW β 0.9/0.95, ε 1e-8,
weight decay 0.1, gradient clipping 1.0; for Memory+, the swilu memory layers in the same
blocks sharing one value pool, with the same heads, k_dim, knn, sub-keys and qk-norm, values at
their own learning rate. The pool is timed two ways, and the row keeps the faster:
  - `nn.EmbeddingBag` with a dense gradient on AdamW (the paper's recipe);
  - `nn.EmbeddingBag(sparse=True)` on `torch.optim.SparseAdam` (rows a step touched only).
The file is the JSON of `cargo xtask bench --json` ({host, results: [{name, config, median_s,
throughput, unit}]}), so `cargo xtask bench --report` puts the rows beside ours when the hosts
are the same.
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
import host  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)
torch.manual_seed(0)

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
    def __init__(self, c):
        super().__init__()
        dim, self.heads, self.kv_heads = c["dim"], c["heads"], c["kv_heads"]
        self.head_dim = dim // self.heads
        kv = self.kv_heads * self.head_dim
        self.q, self.o = nn.Linear(dim, dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.k, self.v = nn.Linear(dim, kv, bias=False), nn.Linear(dim, kv, bias=False)

    def forward(self, x, cos, sin):
        b, t, dim = x.shape
        split = lambda y, h: y.view(b, t, h, self.head_dim).transpose(1, 2)
        q = split(self.q(x), self.heads)
        k, v = split(self.k(x), self.kv_heads), split(self.v(x), self.kv_heads)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if self.kv_heads != self.heads:
            repeat = self.heads // self.kv_heads
            k, v = k.repeat_interleave(repeat, 1), v.repeat_interleave(repeat, 1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(y.transpose(1, 2).reshape(b, t, dim))


class SwiGLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        dim, hidden = c["dim"], c["ffn_hidden"]
        self.w1, self.w3 = nn.Linear(dim, hidden, bias=False), nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Memory(nn.Module):
    """Product-key retrieval (per-head top-k of each half, then of the knn² sums), softmax,
    one weighted bag over the shared pool, swilu."""

    def __init__(self, c):
        super().__init__()
        m = c["memory"]
        self.dim, self.heads, self.k_dim, self.knn = c["dim"], m["heads"], m["k_dim"], m["knn"]
        self.n_keys, self.qk_norm = m["n_keys"], m["qk_norm"]
        self.query = nn.Linear(self.dim, self.heads * self.k_dim)
        bound = 1 / math.sqrt(self.k_dim)
        keys = torch.empty(2 * self.heads * self.n_keys, self.k_dim // 2).uniform_(-bound, bound)
        self.keys = nn.Parameter(keys)
        self.w1, self.w2 = nn.Linear(self.dim, self.dim), nn.Linear(self.dim, self.dim)

    def forward(self, x, pool):
        t = x.shape[0] * x.shape[1]
        heads, knn, half = self.heads, self.knn, self.k_dim // 2
        flat = x.reshape(t, self.dim)
        q = self.query(flat).view(t, heads, 2, half)
        k = self.keys.view(heads, 2, self.n_keys, half)
        if self.qk_norm:
            q, k = rms(q), rms(k)
        s1 = torch.einsum("thd,hnd->thn", q[:, :, 0], k[:, 0])
        s2 = torch.einsum("thd,hnd->thn", q[:, :, 1], k[:, 1])
        v1, i1 = s1.topk(knn, dim=-1)
        v2, i2 = s2.topk(knn, dim=-1)
        pairs = (v1.unsqueeze(-1) + v2.unsqueeze(-2)).reshape(t, heads, knn * knn)
        scores, best = pairs.topk(knn, dim=-1)
        idx = i1.gather(-1, best // knn) * self.n_keys + i2.gather(-1, best % knn)
        weights = F.softmax(scores, dim=-1).reshape(t, heads * knn)
        out = pool(idx.reshape(t, heads * knn), per_sample_weights=weights)
        out = self.w2(out * F.silu(self.w1(flat)))
        return out.view_as(x)


class Block(nn.Module):
    def __init__(self, c, memory):
        super().__init__()
        self.n1, self.n2, self.attn = RMSNorm(c["dim"]), RMSNorm(c["dim"]), Attention(c)
        self.ffn = Memory(c) if memory else SwiGLU(c)

    def forward(self, x, cos, sin, pool):
        x = x + self.attn(self.n1(x), cos, sin)
        h = self.n2(x)
        return x + (self.ffn(h, pool) if isinstance(self.ffn, Memory) else self.ffn(h))


class Model(nn.Module):
    def __init__(self, c, sparse):
        super().__init__()
        dim, vocab, values = c["dim"], c["vocab"], c["values"]
        self.embed = nn.Embedding(vocab, dim)
        memory = set(c["memory_layers"]) if values else set()
        self.blocks = nn.ModuleList(Block(c, i in memory) for i in range(c["layers"]))
        self.norm, self.head = RMSNorm(dim), nn.Linear(dim, vocab, bias=False)
        self.pool = nn.EmbeddingBag(values, dim, mode="sum", sparse=sparse) if values else None
        if self.pool is not None:
            nn.init.normal_(self.pool.weight, std=dim**-0.5)
        head_dim = dim // c["heads"]
        freqs = 1.0 / c["rope_theta"] ** (torch.arange(0, head_dim, 2) / head_dim)
        angles = torch.outer(torch.arange(c["seq_len"]), freqs)
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


def train_step_seconds(c, sparse):
    model = Model(c, sparse)
    vocab, batch, seq, lr, value_lr = c["vocab"], c["batch"], c["seq_len"], c["lr"], c["value_lr"]
    pool = [model.pool.weight] if model.pool is not None else []
    rest = [p for p in model.parameters() if all(p is not q for q in pool)]
    adamw = dict(betas=(0.9, 0.95), eps=1e-8)
    optims = [torch.optim.AdamW(rest, lr=lr, weight_decay=0.1, **adamw)]
    if pool and sparse:
        optims.append(torch.optim.SparseAdam(pool, lr=value_lr, **adamw))
    elif pool:
        optims.append(torch.optim.AdamW(pool, lr=value_lr, weight_decay=0.1, **adamw))
    tokens = (torch.arange(batch * (seq + 1)) * 2654435761 % vocab).view(batch, seq + 1)

    def step():
        for o in optims:
            o.zero_grad(set_to_none=True)
        logits = model(tokens[:, :-1])
        F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1)).backward()
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


def fits(c, sparse):
    """Whether the pool, its two moments, a temporary and (dense AdamW) a gradient fit in 80% of
    the memory available: at 2^22 values dense AdamW was killed by the kernel at 24 GiB."""
    copies = 4 if sparse else 5
    needed = copies * 4 * c["values"] * c["dim"]
    available = available_bytes()
    return available is None or needed <= available * 0.8


def main(out, only, shapes):
    try:
        ours = json.loads(Path(shapes).read_text())
    except OSError:
        sys.exit(f"{shapes}: run `cargo xtask bench --suite train --json {shapes}` first: its "
                 "train-step cases are the shapes timed here")
    cases = [r for r in (ours["results"] if isinstance(ours, dict) else ours)
             if r["name"].startswith("train_step_") and "memory_layers" in r["config"]]
    rows = []
    result = {"host": host.detect(torch.backends.cpu.get_cpu_capability()), "results": rows}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    for case in cases:
        name, c = case["name"], dict(case["config"])
        patterns = [o for o in only.split(",") if o]
        if (patterns and not any(o in name for o in patterns)) or c.get("layers", 0) * c.get("dim", 0) == 0:
            continue
        config = {k: c[k] for k in ("model", "dim", "layers", "batch", "seq_len", "values")}
        if c["values"]:
            timed = {key: train_step_seconds(c, sparse)
                     for key, sparse in (("adamw", False), ("sparse_adam", True)) if fits(c, sparse)}
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
            seconds = train_step_seconds(c, False)
        gc.collect()
        tokens = c["batch"] * c["seq_len"]
        print(f"{name:<40} {seconds:>8.3f} s  {tokens / seconds:>8.0f} tokens/s  {config.get('pool_optimizer_seconds', '')}",
              file=sys.stderr)
        rows.append(dict(name=name, config=config, median_s=seconds, throughput=tokens / seconds, unit="tokens/s"))
        # Written after every case, so that a case killed for memory keeps the ones before it.
        Path(out).write_text(json.dumps(result, indent=2))
    print(f"wrote {out} (torch {torch.__version__}, {torch.get_num_threads()} threads)", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Whole PyTorch train steps, as xtask bench --suite train.")
    parser.add_argument("out", nargs="?", default="target/bench/torch-train.json")
    parser.add_argument("--only", default="",
                        help="only the cases whose name contains one of these (comma-separated)")
    parser.add_argument("--shapes", default="target/bench/ours.json",
                        help="our results, whose train-step cases give the shapes timed")
    arguments = parser.parse_args()
    main(arguments.out, arguments.only, arguments.shapes)
