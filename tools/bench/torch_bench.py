"""The `cargo xtask bench` cases timed with PyTorch on the CPU, for side-by-side ratios.

    python tools/bench/torch_bench.py target/bench/torch.json

Writes the same JSON as `cargo xtask bench --json` ({host, results: [{name, config, median_s, throughput,
unit}]}). Product-key retrieval and the Memory+ layer come from the independent implementation
in tools/parity/make_fixtures.py; the lookup is F.embedding_bag (sum mode, per-sample weights),
its backward timed with the dense and the `sparse=True` value gradient, keeping the faster.
Train steps are in torch_train.py.
"""

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
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parity"))
from make_fixtures import forward, product_key_topk  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)
torch.manual_seed(0)


def median_seconds(fn):
    fn()
    samples, start = [], time.perf_counter()
    while len(samples) < 3 or (time.perf_counter() - start < 2.0 and len(samples) < 20):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def row(name, config, seconds, work, unit):
    print(f"{name:<40} {seconds:>10.4f} s  {work / seconds:>12.2f} {unit}", file=sys.stderr)
    return dict(name=name, config=config, median_s=seconds, throughput=work / seconds, unit=unit)


def main(out):
    rows = []
    n = 64 << 20
    b, c, a = torch.ones(n), torch.full((n,), 2.0), torch.empty(n)
    s = median_seconds(lambda: torch.add(b, c, alpha=3.0, out=a))
    rows.append(row("stream_triad", {"elements": n}, s, 12 * n / 1e9, "GB/s"))

    tokens, heads, k_dim, n_keys, knn = 2048, 4, 256, 512, 32
    q = torch.randn(tokens, heads * k_dim)
    keys = torch.randn(2 * heads * n_keys, k_dim // 2)
    with torch.no_grad():
        s = median_seconds(lambda: product_key_topk(q, keys, heads, n_keys, k_dim, knn))
    rows.append(row("pk_retrieval_fwd", {"queries": [tokens * heads, k_dim], "n_keys": n_keys, "knn": knn},
                    s, tokens * heads, "queries/s"))

    rows_n, dim, bags, per_bag = 1 << 20, 256, 16384, 32
    values = torch.randn(rows_n, dim) * dim**-0.5
    idx = torch.randint(0, rows_n, (bags, per_bag))
    w = torch.softmax(torch.randn(bags, per_bag), -1)
    gb = bags * per_bag * dim * 4 / 1e9
    config = {"values": [rows_n, dim], "bags": bags, "per_bag": per_bag}
    with torch.no_grad():
        s = median_seconds(lambda: F.embedding_bag(idx, values, per_sample_weights=w, mode="sum"))
    rows.append(row("lookup_fwd", config, s, gb, "GB/s"))
    vp = values.clone().requires_grad_(True)
    wp = w.clone().requires_grad_(True)

    def fwd_bwd(sparse):
        def step():
            vp.grad = None
            wp.grad = None
            F.embedding_bag(idx, vp, per_sample_weights=wp, mode="sum", sparse=sparse).sum().backward()

        return step

    # The value gradient both ways (dense table-sized, or sparse=True rows); the row keeps the faster.
    timed = {grad: median_seconds(fwd_bwd(grad == "sparse")) for grad in ("dense", "sparse")}
    print(f"lookup_fwd_bwd: dense gradient {timed['dense']:.4f} s, sparse {timed['sparse']:.4f} s", file=sys.stderr)
    grad = min(timed, key=timed.get)
    rows.append(row("lookup_fwd_bwd", {**config, "grad": grad, "seconds": timed}, timed[grad], gb, "GB/s"))

    batch, seq, d = 8, 256, 512
    c = dict(dim=d, heads=4, knn=32, n_keys=512, k_dim=256, v_dim=d, swilu=True, gated=False, peer=False)
    std = d**-0.5
    p = {
        "keys": (torch.rand(2 * 4 * 512, 128) * 2 - 1) / math.sqrt(256),
        "query_proj.query_mlps.0.weight": torch.randn(4 * 256, d) * std,
        "query_proj.query_mlps.0.bias": torch.zeros(4 * 256),
        "values.weight": torch.randn(512 * 512, d) * std,
        "swilu_projection.weight": torch.randn(d, d) * std,
        "swilu_projection.bias": torch.zeros(d),
        "value_proj.weight": torch.randn(d, d) * std,
        "value_proj.bias": torch.zeros(d),
    }
    p = {k: v.requires_grad_(True) for k, v in p.items()}
    x = torch.randn(batch * seq, d, requires_grad=True)

    def memory_step():
        for v in p.values():
            v.grad = None
        forward(p, x, c)[0].sum().backward()

    config = {"dim": d, "heads": 4, "knn": 32, "k_dim": 256, "n_keys": 512, "input": [batch, seq, d]}
    rows.append(row("memory_plus_fwd_bwd", config, median_seconds(memory_step), batch * seq, "tokens/s"))

    w1, w3 = torch.randn(2048, d, requires_grad=True), torch.randn(2048, d, requires_grad=True)
    w2 = torch.randn(d, 2048, requires_grad=True)

    def swiglu_step():
        F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2).sum().backward()

    rows.append(row("swiglu_fwd_bwd", {"dim": d, "hidden": 2048, "input": [batch, seq, d]},
                    median_seconds(swiglu_step), batch * seq, "tokens/s"))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    result = {"host": host.detect(torch.backends.cpu.get_cpu_capability()), "results": rows}
    Path(out).write_text(json.dumps(result, indent=2))
    print(f"wrote {out} (torch {torch.__version__}, {torch.get_num_threads()} threads)", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/torch.json")
