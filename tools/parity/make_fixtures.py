"""Parity fixtures for the memory layers: an independent PyTorch implementation of
the memory layer, Memory+ and PEER as the paper describes them (product-key retrieval,
multi-head softmax, weighted lookup, swilu, gate), written from that description only and
sharing no code with the Rust crates.

Each case becomes one safetensors file in the format of docs/parity-fixtures.md: the layer's
parameters under the reference state-dict names, an input, an output gradient, and the
expected output, indices, scores and gradients of sum(output * grad_output).

    python tools/parity/make_fixtures.py fixtures/parity

Needs torch and safetensors (pip install torch safetensors).
"""

import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

# name: (dim, heads, knn, n_keys, k_dim, v_dim, swilu, gated, peer, value_proj)
CASES = {
    "memory_h1": (16, 1, 4, 8, 8, 16, False, False, False, False),
    "memory_plus_h2": (24, 2, 5, 7, 12, 24, True, False, False, False),
    "memory_gated_h3": (16, 3, 3, 9, 6, 16, False, True, False, False),
    "memory_vdim_h2": (16, 2, 4, 6, 8, 24, False, False, False, True),
    "memory_plus_vdim_gated_h2": (20, 2, 6, 7, 10, 12, True, True, False, True),
    "memory_proj_same_dim_h1": (12, 1, 3, 4, 4, 12, False, False, False, True),
    "peer_h2": (16, 2, 4, 5, 8, 16, False, False, True, False),
    "peer_h1_odd": (12, 1, 7, 11, 6, 12, False, False, True, False),
}
TOKENS = 10


def linear(gen, d_in, d_out, std):
    """Weight [out, in] ~ N(0, std); a small random bias so that bias loading is exercised."""
    weight = torch.randn(d_out, d_in, generator=gen) * std
    bias = torch.randn(d_out, generator=gen) * 0.1
    return weight, bias


def product_key_topk(q, keys, heads, n_keys, k_dim, knn):
    """q [T, heads*k_dim], keys [2*heads*n_keys, k_dim/2] -> scores, indices [T*heads, knn]."""
    t = q.shape[0]
    half = k_dim // 2
    q = q.view(t, heads, 2, half)
    k = keys.view(heads, 2, n_keys, half)
    s1 = torch.einsum("thd,hnd->thn", q[:, :, 0], k[:, 0])
    s2 = torch.einsum("thd,hnd->thn", q[:, :, 1], k[:, 1])
    v1, i1 = s1.topk(knn, dim=-1)
    v2, i2 = s2.topk(knn, dim=-1)
    pairs = (v1.unsqueeze(-1) + v2.unsqueeze(-2)).reshape(t, heads, knn * knn)
    scores, best = pairs.topk(knn, dim=-1)
    idx = i1.gather(-1, best // knn) * n_keys + i2.gather(-1, best % knn)
    return scores.reshape(t * heads, knn), idx.reshape(t * heads, knn)


def forward(p, x, c):
    q = F.linear(x, p["query_proj.query_mlps.0.weight"], p["query_proj.query_mlps.0.bias"])
    scores, idx = product_key_topk(q, p["keys"], c["heads"], c["n_keys"], c["k_dim"], c["knn"])
    t = x.shape[0]
    weights = F.softmax(scores.float(), dim=-1).view(t, -1)
    bag = idx.view(t, -1)
    if c["peer"]:
        u = p["values_u.weight"][bag]  # [T, heads*knn, dim]
        act = F.gelu(torch.einsum("td,tkd->tk", x, u))
        out = torch.einsum("tk,tkd->td", weights * act, p["values_v.weight"][bag])
    else:
        out = F.embedding_bag(bag, p["values.weight"], per_sample_weights=weights, mode="sum")
        if c["swilu"]:
            w1 = F.linear(x, p["swilu_projection.weight"], p["swilu_projection.bias"])
            out = out * F.silu(w1)
        if "value_proj.weight" in p:
            out = F.linear(out, p["value_proj.weight"], p["value_proj.bias"])
        if c["gated"]:
            out = torch.sigmoid(F.linear(x, p["gating.weight"], p["gating.bias"])) * out
    return out, scores, idx


def make_case(seed, dim, heads, knn, n_keys, k_dim, v_dim, swilu, gated, peer, value_proj):
    gen = torch.Generator().manual_seed(seed)
    std = dim**-0.5
    bound = 1 / math.sqrt(k_dim)
    p = {"keys": (torch.rand(2 * heads * n_keys, k_dim // 2, generator=gen) * 2 - 1) * bound}
    a = math.sqrt(6 / (dim + heads * k_dim))  # Xavier-uniform
    p["query_proj.query_mlps.0.weight"] = (torch.rand(heads * k_dim, dim, generator=gen) * 2 - 1) * a
    p["query_proj.query_mlps.0.bias"] = torch.randn(heads * k_dim, generator=gen) * 0.1
    if peer:
        p["values_u.weight"] = torch.randn(n_keys**2, dim, generator=gen) * std
        p["values_v.weight"] = torch.randn(n_keys**2, dim, generator=gen) * std
    else:
        p["values.weight"] = torch.randn(n_keys**2, v_dim, generator=gen) * v_dim**-0.5
        if swilu:
            p["swilu_projection.weight"], p["swilu_projection.bias"] = linear(gen, dim, v_dim, std)
        if swilu or value_proj or v_dim != dim:
            p["value_proj.weight"], p["value_proj.bias"] = linear(gen, v_dim, dim, std)
        if gated:
            p["gating.weight"], p["gating.bias"] = linear(gen, dim, 1, std)
    config = dict(dim=dim, heads=heads, knn=knn, n_keys=n_keys, k_dim=k_dim, v_dim=v_dim,
                  swilu=swilu, gated=gated, peer=peer)
    x = torch.randn(TOKENS, dim, generator=gen)
    grad_output = torch.randn(TOKENS, dim, generator=gen)

    params = {name: t.clone().requires_grad_(True) for name, t in p.items()}
    x_var = x.clone().requires_grad_(True)
    out, scores, idx = forward(params, x_var, config)
    (out * grad_output).sum().backward()

    tensors = dict(p)
    tensors.update(input=x, grad_output=grad_output, output=out.detach(),
                   indices=idx.to(torch.int64), scores=scores.detach())
    tensors["grad.input"] = x_var.grad
    for name, t in params.items():
        tensors[f"grad.{name}"] = t.grad
    return {k: v.contiguous() for k, v in tensors.items()}, config


def main(out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for seed, (name, case) in enumerate(sorted(CASES.items())):
        tensors, config = make_case(seed, *case)
        path = out_dir / f"{name}.safetensors"
        save_file(tensors, str(path), metadata={"config": json.dumps(config)})
        print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "fixtures/parity")
