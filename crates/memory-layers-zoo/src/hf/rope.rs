//! The RoPE row order of `q_proj`/`k_proj` (ours interleaved, Hugging Face's `rotate_half`)
//! and the burn-store adapter that applies it and casts the dtype.

use std::rc::Rc;

use burn::tensor::{DType, TensorData};
use burn_store::{ModuleAdapter, TensorSnapshot};

/// The row of our `q_proj`/`k_proj` (in a head of `head_dim`) that Hugging Face's row `j` is.
fn rope_row(j: usize, head_dim: usize) -> usize {
    let half = head_dim / 2;
    if j < half { 2 * j } else { 2 * (j - half) + 1 }
}

/// Reorders the rows of an `[out, in]` matrix head by head: to Hugging Face's RoPE order
/// (`to_hf`) or back.
fn permute_rows(data: TensorData, head_dim: usize, to_hf: bool) -> TensorData {
    let (shape, dtype) = (data.shape.clone(), data.dtype);
    let row = shape[1] * dtype.size();
    let bytes = data.as_bytes();
    let mut out = vec![0u8; bytes.len()];
    for head in 0..shape[0] / head_dim {
        for j in 0..head_dim {
            let (hf, ours) = (head * head_dim + j, head * head_dim + rope_row(j, head_dim));
            let (to, from) = if to_hf { (hf, ours) } else { (ours, hf) };
            out[to * row..(to + 1) * row].copy_from_slice(&bytes[from * row..(from + 1) * row]);
        }
    }
    TensorData::from_bytes_vec(out, shape, dtype)
}

/// The adapter of the export module: the RoPE row order of `attention.wq` and `attention.wk`
/// (applied to the `[out, in]` layout) and a cast to `dtype`.
#[derive(Debug, Clone)]
pub(super) struct RopeRows {
    /// The head dimension of `q_proj`/`k_proj`.
    pub(super) head_dim: usize,
    /// To Hugging Face's row order (export), or back from it (import).
    pub(super) to_hf: bool,
    /// The dtype every tensor is cast to.
    pub(super) dtype: DType,
}

impl ModuleAdapter for RopeRows {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let path = snapshot.full_path();
        let rope = path.ends_with("attention.wq.weight") || path.ends_with("attention.wk.weight");
        let cast = snapshot.dtype != self.dtype;
        if !rope && !cast {
            return snapshot.clone();
        }
        let data = snapshot.clone_data_fn();
        let (head_dim, to_hf, dtype) = (self.head_dim, self.to_hf, self.dtype);
        let data = Rc::new(move || {
            let mut data = data()?;
            if rope && data.shape.len() == 2 {
                data = permute_rows(data, head_dim, to_hf);
            }
            Ok(if cast {
                data.convert_dtype(dtype)
            } else {
                data
            })
        });
        TensorSnapshot::from_closure(
            data,
            self.dtype,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use crate::RopeTables;
    use burn::backend::Flex;
    use burn::nn::RotaryEncodingConfig;
    use burn::tensor::{Distribution, Tensor};

    use super::*;

    #[test]
    fn the_row_order_makes_rotate_half_rope_equal_to_ours() {
        // q [1, t, heads·d] rotated our way, then permuted, equals q permuted, then rotated
        // with rotate_half (the frequencies θ^(-2i/d) of pair i in both).
        type B = Flex;
        let device = Default::default();
        let (t, heads, d, theta) = (5, 3, 8, 500.0f64);
        let rope = RotaryEncodingConfig::new(16, d)
            .with_theta(theta as f32)
            .init::<B>(&device);
        let q = Tensor::<B, 3>::random([1, t, heads * d], Distribution::Default, &device);
        let ours = RopeTables::new(&rope, 0, t).apply(q.clone());
        let permute = |x: Vec<f32>| -> Vec<f32> {
            let mut out = vec![0.0; x.len()];
            for (row, chunk) in x.chunks(heads * d).enumerate() {
                for h in 0..heads {
                    for j in 0..d {
                        out[row * heads * d + h * d + j] = chunk[h * d + rope_row(j, d)];
                    }
                }
            }
            out
        };
        let vec = |x: Tensor<B, 3>| x.into_data().into_vec::<f32>().unwrap();
        let expected = permute(vec(ours));
        let q = permute(vec(q));
        let mut hf = vec![0.0f32; q.len()];
        for p in 0..t {
            for h in 0..heads {
                let x = &q[(p * heads + h) * d..][..d];
                for i in 0..d / 2 {
                    let angle = p as f64 * theta.powf(-2.0 * i as f64 / d as f64);
                    let (cos, sin) = (angle.cos() as f32, angle.sin() as f32);
                    let out = &mut hf[(p * heads + h) * d..][..d];
                    out[i] = x[i] * cos - x[i + d / 2] * sin;
                    out[i + d / 2] = x[i + d / 2] * cos + x[i] * sin;
                }
            }
        }
        for (a, b) in hf.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn rows_go_to_hugging_face_order_and_back() {
        let rows: Vec<f32> = (0..16).map(|r| r as f32).collect();
        let data = TensorData::new(rows.clone(), [8, 2]);
        let hf = permute_rows(data, 4, true);
        // Head 0 (rows 0-3): HF order 0, 2, 1, 3 of ours; each row of 2 columns moves whole.
        assert_eq!(
            hf.to_vec::<f32>().unwrap(),
            vec![
                0., 1., 4., 5., 2., 3., 6., 7., 8., 9., 12., 13., 10., 11., 14., 15.
            ]
        );
        let back = permute_rows(hf, 4, false);
        assert_eq!(back.to_vec::<f32>().unwrap(), rows);
    }
}
