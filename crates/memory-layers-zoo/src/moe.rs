use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{IndexingUpdateOp, Int, Tensor, TensorData};
use memory_layers_nn::MemoryBackend;
use serde::{Deserialize, Serialize};

use crate::GateBackend;
use crate::init::linear;
use crate::{SwiGluFfn, SwiGluFfnConfig};

/// How MoE tokens reach experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Training: each expert picks its top tokens (capacity factor); evaluation: top-1 per
    /// token (the paper's MoE baseline).
    ExpertChoice,
    /// Each token picks its top-k experts, with a load-balancing loss.
    TokenChoice,
}

crate::serde_names!(Routing);

/// Mixture-of-experts settings; the experts' shape comes from the model
/// ([`MoeConfig::init`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoeConfig {
    /// Full-size SwiGLU experts per layer.
    pub experts: usize,
    /// Routing scheme.
    pub routing: Routing,
    /// Expert-choice capacity: each expert takes `capacity_factor · tokens / experts` tokens.
    pub capacity_factor: f64,
    /// Token-choice: experts per token.
    pub top_k: usize,
    /// Token-choice: weight of the load-balancing loss.
    pub balance_coef: f64,
}

impl MoeConfig {
    /// Expert-choice routing with capacity factor 1.
    pub fn expert_choice(experts: usize) -> Self {
        Self {
            experts,
            routing: Routing::ExpertChoice,
            capacity_factor: 1.0,
            top_k: 1,
            balance_coef: 0.01,
        }
    }

    /// A mixture of `experts` SwiGLU FFNs of shape `expert`, and a truncated-normal router.
    pub fn init<B: Backend>(&self, expert: &SwiGluFfnConfig, device: &B::Device) -> Moe<B> {
        let dim = expert.dim;
        Moe {
            router: linear(dim, self.experts, (dim as f64).powf(-0.5), device),
            experts: (0..self.experts).map(|_| expert.init(device)).collect(),
            config: self.clone(),
        }
    }
}

/// A mixture of full-size SwiGLU experts (the paper's MoE baseline).
///
/// Expert-choice routing trains with each expert taking its `capacity_factor · N / E` best
/// tokens and evaluates with top-1 routing; token-choice routing sends each token to its
/// top-k experts and adds a load-balancing loss. "Training" means autodiff is on
/// (`B::ad_enabled()`), as for Burn's dropout.
#[derive(Module, Debug)]
pub struct Moe<B: Backend> {
    /// Router `dim → experts`.
    pub router: Linear<B>,
    /// The experts.
    pub experts: Vec<SwiGluFfn<B>>,
    #[module(skip)]
    config: MoeConfig,
}

/// The tokens (rows of the flattened input) one expert processes, with their gate values.
#[derive(Debug, Clone)]
pub struct Assignment<B: Backend> {
    /// Token rows.
    pub tokens: Tensor<B, 1, Int>,
    /// Gate per token.
    pub gates: Tensor<B, 1>,
}

impl<B: MemoryBackend + GateBackend> Moe<B> {
    /// `x [B, T, dim]` → output and, for token choice in training, the load-balancing loss.
    pub fn forward(&self, x: Tensor<B, 3>) -> (Tensor<B, 3>, Option<Tensor<B, 1>>) {
        let [b, t, dim] = x.dims();
        let x = x.reshape([b * t, dim]);
        let (assignments, aux_loss) = self.assign(x.clone(), B::ad_enabled(&x.device()));
        let mut out = Tensor::zeros([b * t, dim], &x.device());
        for (expert, assignment) in self.experts.iter().zip(assignments) {
            let Some(Assignment { tokens, gates }) = assignment else {
                continue;
            };
            let y = expert.forward(x.clone().select(0, tokens.clone())) * gates.unsqueeze_dim(1);
            out = out.select_assign(0, tokens, y, IndexingUpdateOp::Add);
        }
        (out.reshape([b, t, dim]), aux_loss)
    }

    /// Routes the rows of `x [N, dim]`: per expert, its tokens (`None` if it has none).
    pub fn assign(
        &self,
        x: Tensor<B, 2>,
        training: bool,
    ) -> (Vec<Option<Assignment<B>>>, Option<Tensor<B, 1>>) {
        let [n, _] = x.dims();
        let experts = self.experts.len();
        let probs = softmax(self.router.forward(x), 1);
        match (self.config.routing, training) {
            (Routing::ExpertChoice, true) => {
                let capacity = ((n as f64 * self.config.capacity_factor / experts as f64).ceil()
                    as usize)
                    .clamp(1, n);
                let (gates, tokens) = probs.swap_dims(0, 1).topk_with_indices(capacity, 1);
                let assignments = (0..experts)
                    .map(|e| {
                        Some(Assignment {
                            tokens: tokens.clone().slice_dim(0, e..e + 1).reshape([capacity]),
                            gates: gates.clone().slice_dim(0, e..e + 1).reshape([capacity]),
                        })
                    })
                    .collect();
                (assignments, None)
            }
            (Routing::ExpertChoice, false) => {
                let (gates, choice) = probs.max_dim_with_indices(1);
                (group(&choice, gates, 1, experts), None)
            }
            (Routing::TokenChoice, _) => {
                let k = self.config.top_k;
                let (top, choice) = probs.clone().topk_with_indices(k, 1);
                let gates = top.clone() / top.sum_dim(1);
                let assignments = group(&choice, gates, k, experts);
                let aux = training.then(|| {
                    let counts = assignments
                        .iter()
                        .map(|a| a.as_ref().map_or(0, |a| a.tokens.dims()[0]));
                    let fraction: Vec<f32> = counts.map(|c| c as f32 / (n * k) as f32).collect();
                    let fraction = Tensor::<B, 1>::from_data(
                        TensorData::new(fraction, [experts]),
                        &probs.device(),
                    );
                    (probs.mean_dim(0).reshape([experts]) * fraction)
                        .sum()
                        .mul_scalar(self.config.balance_coef * experts as f64)
                });
                (assignments, aux)
            }
        }
    }
}

/// Groups the `k` choices of every token by expert, in token order, on the backend
/// (the value backend's `group_by_key`: on a device only the experts and where each one's tokens
/// start are read back, `2U + 1` ints for `U` experts chosen, to shape their batches).
fn group<B: MemoryBackend>(
    choice: &Tensor<B, 2, Int>,
    gates: Tensor<B, 2>,
    k: usize,
    experts: usize,
) -> Vec<Option<Assignment<B>>> {
    let [n, _] = choice.dims();
    let [ids, order, starts] = B::group_by_key(choice.clone().reshape([n * k]).into_primitive());
    let (ids, order, starts) = (
        Tensor::<B, 1, Int>::from_primitive(ids),
        Tensor::<B, 1, Int>::from_primitive(order),
        Tensor::<B, 1, Int>::from_primitive(starts),
    );
    let u = ids.dims()[0];
    let bounds = Tensor::cat(vec![ids, starts], 0)
        .into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .expect("i64");
    let (ids, starts) = bounds.split_at(u);
    let gates = gates.reshape([n * k]);
    let mut assignments: Vec<Option<Assignment<B>>> = (0..experts).map(|_| None).collect();
    for (u, &expert) in ids.iter().enumerate() {
        let slots = order
            .clone()
            .slice(starts[u] as usize..starts[u + 1] as usize);
        assignments[expert as usize] = Some(Assignment {
            tokens: slots.clone().div_scalar(k as i64),
            gates: gates.clone().select(0, slots),
        });
    }
    assignments
}
