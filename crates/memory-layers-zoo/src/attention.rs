use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Int, Tensor};

use crate::causal::{CausalBackend, Heads, causal_attention};
use crate::init::linear;
use crate::rope::{RopeBackend, RopeTables};
use crate::rows::on_rows;

/// Keys and values of the positions seen so far, for generation.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    k: Option<Tensor<B, 4>>,
    v: Option<Tensor<B, 4>>,
}

impl<B: Backend> Default for KvCache<B> {
    fn default() -> Self {
        Self { k: None, v: None }
    }
}

impl<B: Backend> KvCache<B> {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Configuration of [`Attention`]; `heads` divides `dim` into an even head dimension and
/// `kv_heads` divides `heads` (checked by [`TransformerConfig::validate`](crate::TransformerConfig::validate)).
#[derive(Config, Debug)]
pub struct AttentionConfig {
    /// Model dimension.
    pub dim: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
}

impl AttentionConfig {
    /// Truncated-normal projections (`std = dim^-½`), no biases.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Attention<B> {
        let dim = self.dim;
        let std = (dim as f64).powf(-0.5);
        let kv = self.kv_heads * dim / self.heads;
        Attention {
            wq: linear(dim, dim, std, device),
            wk: linear(dim, kv, std, device),
            wv: linear(dim, kv, std, device),
            wo: linear(dim, dim, std, device),
            heads: self.heads,
            kv_heads: self.kv_heads,
        }
    }
}

/// Causal multi-head self-attention with RoPE and optional grouped key/value heads.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Queries `dim → dim`.
    pub wq: Linear<B>,
    /// Keys `dim → kv_heads·head_dim`.
    pub wk: Linear<B>,
    /// Values `dim → kv_heads·head_dim`.
    pub wv: Linear<B>,
    /// Output `dim → dim`.
    pub wo: Linear<B>,
    heads: usize,
    kv_heads: usize,
}

impl<B: RopeBackend + CausalBackend> Attention<B> {
    /// `x [B, T, dim]` → `[B, T, dim]`; with a cache, `x` continues the cached positions.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let project = |linear: &Linear<B>| on_rows(x.clone(), |x| linear.forward(x));
        let q = rope.apply(project(&self.wq));
        let k = rope.apply(project(&self.wk));
        let v = project(&self.wv);
        let heads = Heads {
            heads: self.heads,
            kv_heads: self.kv_heads,
        };
        // Whole sequences take the backend's kernel where it has one.
        let fused = match cache {
            None => causal_attention(q.clone(), k.clone(), v.clone(), heads),
            Some(_) => None,
        };
        let out = match fused {
            Some(out) => out,
            None => self.burn_attention(q, k, v, cache),
        };
        on_rows(out, |y| self.wo.forward(y))
    }

    /// Burn's attention over heads split out of `q`, `k`, `v` (`[B, T, heads·head_dim]`),
    /// after the cached positions; the heads merged back.
    fn burn_attention(
        &self,
        q: Tensor<B, 3>,
        k: Tensor<B, 3>,
        v: Tensor<B, 3>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [b, t, dim] = q.dims();
        let head_dim = dim / self.heads;
        let split =
            |y: Tensor<B, 3>, heads: usize| y.reshape([b, t, heads, head_dim]).swap_dims(1, 2);
        let start = cache.as_ref().map_or(0, |c| c.len());
        let q = split(q, self.heads);
        let mut k = split(k, self.kv_heads);
        let mut v = split(v, self.kv_heads);
        if let Some(cache) = cache {
            if let (Some(pk), Some(pv)) = (cache.k.take(), cache.v.take()) {
                k = Tensor::cat(vec![pk, k], 2);
                v = Tensor::cat(vec![pv, v], 2);
            }
            cache.k = Some(k.clone());
            cache.v = Some(v.clone());
        }
        let (k, v) = (self.repeat_kv(k), self.repeat_kv(v));
        let (mask, is_causal) = match (t, start) {
            (1, _) => (None, false),
            (_, 0) => (None, true),
            _ => (
                Some(offset_causal_mask(b, self.heads, t, start, &q.device())),
                false,
            ),
        };
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal,
        };
        attention(q, k, v, mask, None, options)
            .swap_dims(1, 2)
            .reshape([b, t, dim])
    }

    /// `[B, kv_heads, T, d]` → `[B, heads, T, d]`, each key/value head serving `heads/kv_heads`.
    fn repeat_kv(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let group = self.heads / self.kv_heads;
        if group == 1 {
            return x;
        }
        let [b, kv, t, d] = x.dims();
        x.unsqueeze_dim::<5>(2)
            .expand([b, kv, group, t, d])
            .reshape([b, kv * group, t, d])
    }
}

/// Mask (true = hidden) for `t` queries at positions `start..start+t` over `start + t` keys.
fn offset_causal_mask<B: Backend>(
    b: usize,
    heads: usize,
    t: usize,
    start: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let total = start + t;
    let query = Tensor::<B, 1, Int>::arange(start as i64..total as i64, device).reshape([t, 1]);
    let key = Tensor::<B, 1, Int>::arange(0..total as i64, device).reshape([1, total]);
    key.greater(query)
        .unsqueeze::<4>()
        .expand([b, heads, t, total])
}
