//! Memory-efficient causal attention from Burn's tensor operations, for backends without a
//! kernel of their own (the CubeCL backends): chunks of query rows against the keys they see,
//! each row's log-sum-exp kept, the probabilities recomputed chunk by chunk in the backward
//! pass. Burn's own attention, differentiated by its autodiff, keeps `[batch, heads, len, len]`
//! exponentials, probabilities and mask (14 bytes a score measured on wgpu); this keeps
//! `O(len)` a head and `[batch, heads, CHUNK, len]` scores while a chunk runs.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Int, Tensor, TensorMetadata, TensorPrimitive};

use super::Heads;

/// Query rows per chunk.
pub const CHUNK: usize = 256;

/// Whether `q [batch, len, heads·d]`, `k` and `v` `[batch, len, kv_heads·d]` make a call: not
/// empty, whole heads, key/value heads dividing the query heads.
pub(super) fn fits<B: Backend>(
    q: &FloatTensor<B>,
    k: &FloatTensor<B>,
    v: &FloatTensor<B>,
    heads: Heads,
) -> bool {
    let (h, kv) = (heads.heads, heads.kv_heads);
    let [batch, len, width] = q.shape().dims::<3>();
    let heads_fit = h > 0 && kv > 0 && h % kv == 0 && width % h == 0;
    let kv_shape = [batch, len, width / h.max(1) * kv];
    let shapes = k.shape().dims::<3>() == kv_shape && v.shape().dims::<3>() == kv_shape;
    heads_fit && shapes && batch * len * width > 0
}

fn tensor<B: Backend, const D: usize>(primitive: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

fn primitive<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> FloatTensor<B> {
    tensor.into_primitive().tensor()
}

/// `x [b, t, n·d]` as `[b, heads, t, d]`, each of the `n` heads repeated `heads / n` times.
fn split<B: Backend>(x: FloatTensor<B>, n: usize, heads: usize) -> Tensor<B, 4> {
    let x = tensor::<B, 3>(x);
    let [b, t, width] = x.dims();
    let d = width / n;
    let x = x.reshape([b, t, n, d]).swap_dims(1, 2);
    if n == heads {
        return x;
    }
    x.unsqueeze_dim::<5>(2)
        .expand([b, n, heads / n, t, d])
        .reshape([b, heads, t, d])
}

/// `q`, `k`, `v` as `[b, heads, t, d]`, the key/value heads repeated for the query heads they
/// serve.
fn split_heads<B: Backend>([q, k, v]: [FloatTensor<B>; 3], heads: Heads) -> [Tensor<B, 4>; 3] {
    let (h, kv) = (heads.heads, heads.kv_heads);
    [
        split::<B>(q, h, h),
        split::<B>(k, kv, h),
        split::<B>(v, kv, h),
    ]
}

/// `x [b, heads, t, d]` as `[b, t, n·d]`, the repeats of each of the `n` heads summed.
fn merge<B: Backend>(x: Tensor<B, 4>, n: usize) -> FloatTensor<B> {
    let [b, heads, t, d] = x.dims();
    let x = match n == heads {
        true => x,
        false => x
            .reshape([b, n, heads / n, t, d])
            .sum_dim(2)
            .reshape([b, n, t, d]),
    };
    primitive(x.swap_dims(1, 2).reshape([b, t, n * d]))
}

/// The chunks of query rows: `(first row, one past the last)`; a chunk sees keys `..end`.
fn chunks(len: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len)
        .step_by(CHUNK)
        .map(move |i0| (i0, (i0 + CHUNK).min(len)))
}

/// `scale · q·kᵀ` of the chunk `i0..end` against keys `..end`, the keys after each row's own
/// position at −∞: `[b, h, end − i0, end]`.
fn scores<B: Backend>(
    q: &Tensor<B, 4>,
    k: &Tensor<B, 4>,
    (i0, end): (usize, usize),
    scale: f64,
) -> Tensor<B, 4> {
    let [b, h, _, d] = q.dims();
    let rows = end - i0;
    let q = q.clone().slice([0..b, 0..h, i0..end, 0..d]);
    let k = k.clone().slice([0..b, 0..h, 0..end, 0..d]);
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    let device = scores.device();
    let row = Tensor::<B, 1, Int>::arange(i0 as i64..end as i64, &device).reshape([rows, 1]);
    let col = Tensor::<B, 1, Int>::arange(0..end as i64, &device).reshape([1, end]);
    let future = col.expand([rows, end]).greater(row.expand([rows, end]));
    let future = future.unsqueeze::<4>().expand([b, h, rows, end]);
    scores.mask_fill(future, f32::NEG_INFINITY)
}

/// The forward pass: `[out, lse]` as [`super::CausalBackend::causal_attention`] gives them.
pub(super) fn forward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    heads: Heads,
) -> [FloatTensor<B>; 2] {
    let h = heads.heads;
    let [q, k, v] = split_heads::<B>([q, k, v], heads);
    let [b, _, t, d] = q.dims();
    let scale = (d as f64).powf(-0.5);
    let (mut outs, mut lses) = (Vec::new(), Vec::new());
    for (i0, end) in chunks(t) {
        let scores = scores(&q, &k, (i0, end), scale);
        let max = scores.clone().max_dim(3);
        let exp = (scores - max.clone()).exp();
        let sum = exp.clone().sum_dim(3);
        let v = v.clone().slice([0..b, 0..h, 0..end, 0..d]);
        outs.push((exp / sum.clone()).matmul(v));
        lses.push(max + sum.log());
    }
    let lse = Tensor::cat(lses, 2).reshape([b, h, t]);
    [merge(Tensor::cat(outs, 2), h), primitive(lse)]
}

/// The backward pass: `[∂q, ∂k, ∂v]` as
/// [`super::CausalBackend::causal_attention_backward`] gives them.
pub(super) fn backward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    lse: FloatTensor<B>,
    grad: FloatTensor<B>,
    heads: Heads,
) -> [FloatTensor<B>; 3] {
    let (h, kv) = (heads.heads, heads.kv_heads);
    let [q, k, v] = split_heads::<B>([q, k, v], heads);
    let grad = split::<B>(grad, h, h);
    let [b, _, t, d] = q.dims();
    let lse = tensor::<B, 3>(lse).reshape([b, h, t, 1]);
    let scale = (d as f64).powf(-0.5);
    let (mut dk, mut dv) = (q.zeros_like(), q.zeros_like());
    let mut dqs = Vec::new();
    for (i0, end) in chunks(t) {
        let (rows, keys) = ([0..b, 0..h, i0..end, 0..d], [0..b, 0..h, 0..end, 0..d]);
        let lse = lse.clone().slice([0..b, 0..h, i0..end, 0..1]);
        let p = (scores(&q, &k, (i0, end), scale) - lse).exp();
        let (g, qc) = (grad.clone().slice(rows.clone()), q.clone().slice(rows));
        let (kc, vc) = (k.clone().slice(keys.clone()), v.clone().slice(keys.clone()));
        let dp = g.clone().matmul(vc.swap_dims(2, 3));
        let mean = (p.clone() * dp.clone()).sum_dim(3);
        let ds = p.clone() * (dp - mean);
        dv = dv.clone().slice_assign(
            keys.clone(),
            dv.slice(keys.clone()) + p.swap_dims(2, 3).matmul(g),
        );
        let dk_chunk = ds.clone().swap_dims(2, 3).matmul(qc).mul_scalar(scale);
        dk = dk
            .clone()
            .slice_assign(keys.clone(), dk.slice(keys) + dk_chunk);
        dqs.push(ds.matmul(kc).mul_scalar(scale));
    }
    [merge(Tensor::cat(dqs, 2), h), merge(dk, kv), merge(dv, kv)]
}
