//! CPU kernels of the lookup primitives for the Flex backend: one pass over the selected rows,
//! no `[T, K, d]` intermediate, multi-threaded over tokens (rayon). Inputs in other dtypes
//! than f32 (bf16, f64) fall back to the reference.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, TensorData, TensorMetadata};
use rayon::prelude::*;

use crate::{ValueBackend, reference};

/// Value indices of an int tensor as `usize` (i32 and i64 storage).
fn indices(tensor: &FlexTensor) -> Vec<usize> {
    let tensor = tensor.to_contiguous();
    if let Some(ids) = tensor.as_slice::<i32>() {
        ids.iter().map(|&i| i as usize).collect()
    } else if let Some(ids) = tensor.as_slice::<i64>() {
        ids.iter().map(|&i| i as usize).collect()
    } else {
        tensor
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("int tensor")
            .into_iter()
            .map(|i| i as usize)
            .collect()
    }
}

/// Contiguous f32 values of a tensor, or `None` for other dtypes.
fn f32s(tensor: &FlexTensor) -> Option<FlexTensor> {
    (tensor.dtype() == DType::F32).then(|| tensor.to_contiguous())
}

fn output(values: Vec<f32>, shape: [usize; 2]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Rows per rayon task: enough work to amortise scheduling.
const ROWS_PER_TASK: usize = 16;

/// How many (token, slot) pairs ahead the lookup prefetches value rows.
const PREFETCH_DISTANCE: usize = 8;

impl ValueBackend for Flex {
    fn bag_sum(
        values: FloatTensor<Self>,
        indices_t: IntTensor<Self>,
        weights: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (Some(v), Some(w)) = (f32s(&values), f32s(&weights)) else {
            return reference_sum(values, indices_t, weights);
        };
        let [_, d] = values.shape().dims::<2>();
        let [t, k] = indices_t.shape().dims::<2>();
        let (v, w, idx) = (
            v.as_slice::<f32>().expect("f32"),
            w.as_slice::<f32>().expect("f32"),
            indices(&indices_t),
        );
        let mut out = vec![0f32; t * d];
        out.par_chunks_mut(d * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (r, row) in rows.chunks_mut(d).enumerate() {
                    let token = chunk * ROWS_PER_TASK + r;
                    for j in 0..k {
                        let p = token * k + j;
                        // Rows are random: ask for the row PREFETCH_DISTANCE pairs ahead.
                        if let Some(&ahead) = idx.get(p + PREFETCH_DISTANCE) {
                            prefetch_row(&v[ahead * d..(ahead + 1) * d]);
                        }
                        let (i, weight) = (idx[p], w[p]);
                        axpy(row, weight, &v[i * d..(i + 1) * d]);
                    }
                }
            });
        output(out, [t, d])
    }

    fn bag_dot(
        values: FloatTensor<Self>,
        indices_t: IntTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (Some(v), Some(xs)) = (f32s(&values), f32s(&x)) else {
            return reference::bag_dot::<Flex>(float(values), int(indices_t), float(x))
                .into_primitive()
                .tensor();
        };
        let [_, d] = values.shape().dims::<2>();
        let [t, k] = indices_t.shape().dims::<2>();
        let (v, xs, idx) = (
            v.as_slice::<f32>().expect("f32"),
            xs.as_slice::<f32>().expect("f32"),
            indices(&indices_t),
        );
        let mut out = vec![0f32; t * k];
        out.par_chunks_mut(k.max(1) * ROWS_PER_TASK)
            .enumerate()
            .for_each(|(chunk, rows)| {
                for (r, row) in rows.chunks_mut(k.max(1)).enumerate() {
                    let token = chunk * ROWS_PER_TASK + r;
                    let xt = &xs[token * d..(token + 1) * d];
                    for (j, slot) in row.iter_mut().enumerate() {
                        let i = idx[token * k + j];
                        *slot = dot(&v[i * d..(i + 1) * d], xt);
                    }
                }
            });
        output(out, [t, k])
    }

    fn bag_scatter(
        rows: usize,
        indices_t: IntTensor<Self>,
        weights: FloatTensor<Self>,
        x: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (Some(w), Some(xs)) = (f32s(&weights), f32s(&x)) else {
            return reference::bag_scatter::<Flex>(rows, int(indices_t), float(weights), float(x))
                .into_primitive()
                .tensor();
        };
        let [_, d] = x.shape().dims::<2>();
        let [_, k] = indices_t.shape().dims::<2>();
        let (w, xs, idx) = (
            w.as_slice::<f32>().expect("f32"),
            xs.as_slice::<f32>().expect("f32"),
            indices(&indices_t),
        );
        // Each task owns a band of rows and adds every contribution that lands in it, in token
        // order: deterministic, no atomics.
        let mut out = vec![0f32; rows * d];
        let band = rows
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1);
        out.par_chunks_mut(band * d)
            .enumerate()
            .for_each(|(b, rows_out)| {
                let (lo, hi) = (b * band, b * band + rows_out.len() / d.max(1));
                for (p, &i) in idx.iter().enumerate() {
                    if (lo..hi).contains(&i) {
                        let token = p / k;
                        let r = i - lo;
                        axpy(
                            &mut rows_out[r * d..(r + 1) * d],
                            w[p],
                            &xs[token * d..(token + 1) * d],
                        );
                    }
                }
            });
        output(out, [rows, d])
    }
}

/// Hints the CPU to load a row into cache (every 64-byte line of it).
#[inline]
fn prefetch_row(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        // SAFETY: a prefetch is a hint that never faults or changes memory; the address
        // comes from a live slice.
        #[allow(unsafe_code)]
        unsafe {
            use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// `y += a·x`.
#[inline]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `⟨a, b⟩` with 8 independent accumulators (vectorises).
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn float(t: FlexTensor) -> burn::tensor::Tensor<Flex, 2> {
    burn::tensor::Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(t))
}

fn int(t: FlexTensor) -> burn::tensor::Tensor<Flex, 2, burn::tensor::Int> {
    burn::tensor::Tensor::from_primitive(t)
}

fn reference_sum(values: FlexTensor, indices: FlexTensor, weights: FlexTensor) -> FlexTensor {
    reference::bag_sum::<Flex>(float(values), int(indices), float(weights))
        .into_primitive()
        .tensor()
}
