//! The kernels, in CubeCL's dialect of Rust.

use cubecl::CubeElement;
use cubecl::prelude::*;

/// `out[t, c] = Σ_j w[t, j] · values[idx[t, j], c]`.
#[cube(launch)]
pub(super) fn bag_sum_kernel<F: Float, I: Int>(
    values: &Tensor<F>,
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    out: &mut Tensor<F>,
) {
    let (t_count, d, k) = (out.shape(0), out.shape(1), indices.shape(1));
    let pos = ABSOLUTE_POS;
    if pos >= t_count * d {
        terminate!();
    }
    let (t, c) = (pos / d, pos % d);
    let mut acc = F::new(0.0);
    for j in 0..k {
        let p = t * k + j;
        acc += weights[p] * values[usize::cast_from(indices[p]) * d + c];
    }
    out[pos] = acc;
}

/// `out[t, j] = ⟨values[idx[t, j]], x[t]⟩`.
#[cube(launch)]
pub(super) fn bag_dot_kernel<F: Float, I: Int>(
    values: &Tensor<F>,
    indices: &Tensor<I>,
    x: &Tensor<F>,
    out: &mut Tensor<F>,
) {
    let (t_count, k, d) = (out.shape(0), out.shape(1), x.shape(1));
    let pos = ABSOLUTE_POS;
    if pos >= t_count * k {
        terminate!();
    }
    let t = pos / k;
    let row = usize::cast_from(indices[pos]) * d;
    let mut acc = F::new(0.0);
    for c in 0..d {
        acc += values[row + c] * x[t * d + c];
    }
    out[pos] = acc;
}

/// `out[u, c] = Σ_{s in starts[u]..starts[u+1]} w[order[s]] · x[order[s] / k, c]`.
#[cube(launch)]
pub(super) fn segment_sum_kernel<F: Float, I: Int>(
    order: &Tensor<I>,
    starts: &Tensor<I>,
    weights: &Tensor<F>,
    x: &Tensor<F>,
    out: &mut Tensor<F>,
    k: u32,
) {
    let (u_count, d) = (out.shape(0), out.shape(1));
    let pos = ABSOLUTE_POS;
    if pos >= u_count * d {
        terminate!();
    }
    let (u, c) = (pos / d, pos % d);
    let k = k as usize;
    let mut acc = F::new(0.0);
    for s in usize::cast_from(starts[u])..usize::cast_from(starts[u + 1]) {
        let p = usize::cast_from(order[s]);
        acc += weights[p] * x[(p / k) * d + c];
    }
    out[pos] = acc;
}

/// `out[idx[t, j], c] += w[t, j] · x[t, c]` with float atomics: one thread per (pair,
/// column), additions in no fixed order.
#[cube(launch)]
pub(super) fn scatter_add_kernel<F: Float, I: Int>(
    indices: &Tensor<I>,
    weights: &Tensor<F>,
    x: &Tensor<F>,
    out: &mut Tensor<Atomic<f32>>,
) {
    let (k, d) = (indices.shape(1), x.shape(1));
    let pos = ABSOLUTE_POS;
    if pos >= indices.shape(0) * k * d {
        terminate!();
    }
    let (p, c) = (pos / d, pos % d);
    let row = usize::cast_from(indices[p]);
    out[row * d + c].fetch_add(f32::cast_from(weights[p] * x[(p / k) * d + c]));
}

/// Lazy AdamW on rows `ids` of `w`, `m`, `v`, in place (Burn's AdamW formula).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub(super) fn rows_adamw_kernel<F: Float + CubeElement, I: Int>(
    w: &mut Tensor<F>,
    m: &mut Tensor<F>,
    v: &mut Tensor<F>,
    ids: &Tensor<I>,
    grads: &Tensor<F>,
    beta1: F,
    beta2: F,
    eps: F,
    lr: F,
    decay: F,
    correction1: F,
    correction2: F,
) {
    let (u_count, d) = (grads.shape(0), grads.shape(1));
    let pos = ABSOLUTE_POS;
    if pos >= u_count * d {
        terminate!();
    }
    let (u, c) = (pos / d, pos % d);
    let at = usize::cast_from(ids[u]) * d + c;
    let g = grads[pos];
    let m1 = beta1 * m[at] + (F::new(1.0) - beta1) * g;
    let v1 = beta2 * v[at] + (F::new(1.0) - beta2) * g * g;
    m[at] = m1;
    v[at] = v1;
    w[at] = w[at] * decay - lr * (m1 / correction1) / (F::sqrt(v1 / correction2) + eps);
}

/// SGD on rows `ids` of `w`, in place: one thread per element of `grads`.
#[cube(launch)]
pub(super) fn rows_sgd_kernel<F: Float + CubeElement, I: Int>(
    w: &mut Tensor<F>,
    ids: &Tensor<I>,
    grads: &Tensor<F>,
    lr: F,
) {
    let d = grads.shape(1);
    let at = ABSOLUTE_POS;
    if at >= grads.len() {
        terminate!();
    }
    let (u, c) = (at / d, at % d);
    let row = usize::cast_from(ids[u]);
    w[row * d + c] -= lr * grads[at];
}

/// Row-wise Adagrad on rows `ids` of `w` and `acc`, in place: one thread per row.
#[cube(launch)]
pub(super) fn rows_adagrad_kernel<F: Float + CubeElement, I: Int>(
    w: &mut Tensor<F>,
    acc: &mut Tensor<F>,
    ids: &Tensor<I>,
    grads: &Tensor<F>,
    lr: F,
    eps: F,
) {
    let (u_count, d) = (grads.shape(0), grads.shape(1));
    let u = ABSOLUTE_POS;
    if u >= u_count {
        terminate!();
    }
    let row = usize::cast_from(ids[u]);
    let mut sum = F::new(0.0);
    for c in 0..d {
        let g = grads[u * d + c];
        sum += g * g;
    }
    let a = acc[row] + sum / F::cast_from(d);
    acc[row] = a;
    let scale = lr / (F::sqrt(a) + eps);
    for c in 0..d {
        w[row * d + c] -= scale * grads[u * d + c];
    }
}
