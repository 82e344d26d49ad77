//! Low-rank adapters (LoRA, Hu et al. 2021) on the attention and dense feed-forward
//! projections: each adapted weight `W [in, out]` reads as `W + (α/r)·A·B`, `A [in, r]`,
//! `B [r, out]`, with `W` frozen. `B` starts at zero, so an adapted model starts as its base.
//!
//! The adapters live beside the model, not in it: [`Lora::apply`] returns the model with each
//! adapted weight replaced by `W + (α/r)·A·B` (a tensor of the autodiff graph, through which
//! gradients reach `A` and `B` and not `W`). So the model's modules and records stay as they
//! are, a checkpoint of the base loads unchanged, and [`Lora::merge`] is the same sum without
//! a graph, for export.

use burn::config::Config;
use burn::module::Initializer;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::{Ffn, Transformer, ZooError};

/// LoRA's settings.
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` of each adapter.
    pub rank: usize,
    /// Scale numerator `α`: the adapter adds `(α/r)·A·B`.
    pub alpha: f64,
}

/// One adapter: `A [in, r]`, `B [r, out]`.
#[derive(Module, Debug)]
pub struct LoraPair<B: Backend> {
    /// Down projection, Kaiming-uniform.
    pub a: Param<Tensor<B, 2>>,
    /// Up projection, zero at the start.
    pub b: Param<Tensor<B, 2>>,
}

/// The adapters of a model, one per adapted weight in the order of [`adapted`].
#[derive(Module, Debug)]
pub struct Lora<B: Backend> {
    /// The adapters.
    pub pairs: Vec<LoraPair<B>>,
    /// `α/r`.
    scale: f64,
}

impl LoraConfig {
    /// Checks the rank; the error names the rule.
    pub fn validate(&self) -> Result<(), ZooError> {
        if self.rank == 0 {
            return Err(ZooError::invalid("lora.rank", 0, "must be at least 1"));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(ZooError::invalid(
                "lora.alpha",
                self.alpha,
                "must be positive",
            ));
        }
        Ok(())
    }

    /// Adapters for every attention projection and every dense SwiGLU projection of `model`.
    pub fn init<B: Backend>(
        &self,
        model: &Transformer<B>,
        device: &B::Device,
    ) -> Result<Lora<B>, ZooError> {
        self.validate()?;
        let pairs = adapted(model)
            .into_iter()
            .map(|linear| {
                let [d_in, d_out] = linear.weight.dims();
                let a = Initializer::KaimingUniform {
                    gain: 1.0 / 3f64.sqrt(),
                    fan_out_only: false,
                }
                .init_with([d_in, self.rank], Some(d_in), Some(self.rank), device);
                let b = Param::from_tensor(Tensor::zeros([self.rank, d_out], device));
                LoraPair { a, b }
            })
            .collect();
        Ok(Lora {
            pairs,
            scale: self.alpha / self.rank as f64,
        })
    }
}

/// The weights LoRA adapts, in a fixed order: per block, `wq, wk, wv, wo`, then the dense
/// FFN's `w1, w2, w3` where the block's FFN is dense SwiGLU.
fn adapted<B: Backend>(model: &Transformer<B>) -> Vec<&Linear<B>> {
    let mut out = Vec::new();
    for block in &model.blocks {
        let a = &block.attention;
        out.extend([&a.wq, &a.wk, &a.wv, &a.wo]);
        if let Ffn::Dense(ffn) = &block.ffn {
            out.extend([&ffn.w1, &ffn.w2, &ffn.w3]);
        }
    }
    out
}

/// [`adapted`], mutably.
fn adapted_mut<B: Backend>(model: &mut Transformer<B>) -> Vec<&mut Linear<B>> {
    let mut out = Vec::new();
    for block in &mut model.blocks {
        let a = &mut block.attention;
        out.extend([&mut a.wq, &mut a.wk, &mut a.wv, &mut a.wo]);
        if let Ffn::Dense(ffn) = &mut block.ffn {
            out.extend([&mut ffn.w1, &mut ffn.w2, &mut ffn.w3]);
        }
    }
    out
}

impl<B: Backend> Lora<B> {
    /// `model` with each adapted weight read as `W + (α/r)·A·B`, `W` detached: the model a
    /// finetuning step runs (gradients reach the adapters only).
    pub fn apply(&self, model: &Transformer<B>) -> Transformer<B> {
        self.with_deltas(model, |w, delta| w.detach() + delta)
    }

    /// `model` with the adapters added into its weights, outside any graph: the finetuned
    /// model, for evaluation and export.
    pub fn merge(&self, model: &Transformer<B>) -> Transformer<B> {
        self.with_deltas(model, |w, delta| (w + delta).detach())
    }

    fn with_deltas(
        &self,
        model: &Transformer<B>,
        combine: impl Fn(Tensor<B, 2>, Tensor<B, 2>) -> Tensor<B, 2>,
    ) -> Transformer<B> {
        let mut out = model.clone();
        for (linear, pair) in adapted_mut(&mut out).into_iter().zip(&self.pairs) {
            let delta = pair.a.val().matmul(pair.b.val()).mul_scalar(self.scale);
            let weight = combine(linear.weight.val(), delta);
            linear.weight = Param::initialized(linear.weight.id, weight);
        }
        out
    }

    /// How many weights carry an adapter.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether no weight carries one (a model without attention, which does not exist).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}
