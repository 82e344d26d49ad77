//! Optimizer groups: AdamW for everything but the value tables, and for the value tables their
//! own learning rate and gradient clipping (each row is updated by few tokens, so the tables are
//! tuned apart from the dense parameters) with either a second dense AdamW or a row-wise
//! optimizer on sparse gradients.

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};
use memory_layers_values::{RowGrads, RowRule, ValueBackend};
use memory_layers_zoo::Transformer;

use crate::config::{OptimConfig, ValueOptimizer};

/// The AdamW of the paper's recipe: β (0.9, 0.95), ε 1e-8, weight decay 0.1 by default.
pub(crate) fn adamw(config: &OptimConfig) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(config.beta1 as f32)
        .with_beta_2(config.beta2 as f32)
        .with_epsilon(config.eps as f32)
        .with_weight_decay(config.weight_decay as f32)
}

/// The row-wise rule of `config.value_optimizer`, or `None` for dense AdamW.
pub(crate) fn row_rule(config: &OptimConfig) -> Option<RowRule> {
    match config.value_optimizer {
        ValueOptimizer::DenseAdamW => None,
        ValueOptimizer::SparseAdamW => Some(RowRule::AdamW {
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.eps,
            weight_decay: config.weight_decay,
        }),
        ValueOptimizer::RowwiseAdagrad => Some(RowRule::Adagrad { eps: config.eps }),
        ValueOptimizer::Sgd => Some(RowRule::Sgd),
    }
}

/// The factor that brings a gradient of L2 norm `norm` down to `max_norm` (0: no clipping),
/// or `None` when it is within bounds.
pub(crate) fn clip_factor(norm: f64, max_norm: f64) -> Option<f64> {
    (max_norm > 0.0 && norm > max_norm).then(|| max_norm / (norm + 1e-6))
}

/// Sum of the squared entries of each table's sparse row gradients (0 for `None`).
pub(crate) fn row_squared_norms<B: ValueBackend>(grads: &[Option<RowGrads<B>>]) -> Vec<f64> {
    grads
        .iter()
        .map(|g| {
            g.as_ref()
                .map_or(0.0, |g| g.squared_norm().into_scalar().elem::<f64>())
        })
        .collect()
}

/// Sum of the squared entries of each value table's dense gradient in `grads`, in
/// [`value_tables`] order (0 for a table without one).
pub(crate) fn value_squared_norms<B: AutodiffBackend>(
    model: &Transformer<B>,
    grads: &GradientsParams,
) -> Vec<f64> {
    model
        .value_tables()
        .iter()
        .map(|t| {
            grads
                .get::<B::InnerBackend, 2>(t.weight.id)
                .map_or(0.0, |g| g.square().sum().into_scalar().elem::<f64>())
        })
        .collect()
}

/// Multiplies sparse row gradients by `factor`.
pub(crate) fn scale_rows<B: ValueBackend>(grads: &mut [Option<RowGrads<B>>], factor: f64) {
    for g in grads.iter_mut().flatten() {
        g.rows = g.rows.clone().mul_scalar(factor);
    }
}

/// Ids of every parameter in `module`.
fn param_ids<B: AutodiffBackend, M: Module<B>>(module: &M) -> Vec<ParamId> {
    struct Ids(Vec<ParamId>);
    impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    module.visit(&mut ids);
    ids.0
}

/// The value-table group: the shared pool and PEER's expert tables.
pub fn value_param_ids<B: AutodiffBackend>(model: &Transformer<B>) -> Vec<ParamId> {
    model
        .value_tables()
        .into_iter()
        .flat_map(param_ids::<B, _>)
        .collect()
}

/// Sum of the squared entries of `grads` (those of `module`'s parameters).
fn squared_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &GradientsParams,
) -> f64 {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                self.sum += g.square().sum().into_scalar().elem::<f64>();
            }
        }
    }
    let mut norm = Norm { grads, sum: 0.0 };
    module.visit(&mut norm);
    norm.sum
}

/// Multiplies `grads` (those of `module`'s parameters) by `factor`.
pub(crate) fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    factor: f64,
) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    module.visit(&mut Scale { grads, factor });
}

/// Scales `grads` (those of `module`'s parameters) so that their global L2 norm is at most
/// `max_norm` (0: no clipping); returns the norm before clipping.
pub(crate) fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: f64,
) -> f64 {
    let norm = squared_norm(module, grads).sqrt();
    if let Some(factor) = clip_factor(norm, max_norm) {
        scale_grads(module, grads, factor);
    }
    norm
}
