use burn::config::Config;
use burn::module::{Initializer, Module};
use burn::nn::Linear;
use burn::tensor::activation::{sigmoid, silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use memory_layers_keys::init::linear;
use memory_layers_keys::{ProductKeys, ProductKeysConfig, Retrieval};
use memory_layers_values::{ValueStore, ValueTable, ValueTableConfig};

use crate::{MemoryBackend, MemoryError};

/// Configuration of a Memory or Memory+ layer: product-key retrieval, then a softmax-weighted
/// sum of the selected rows of a value table, optionally gated (Memory+ adds the swilu
/// projections).
#[derive(Config, Debug)]
pub struct MemoryLayerConfig {
    /// Retrieval: model dimension, heads, key dimension, values selected, sub-keys, qk-norm.
    pub keys: ProductKeysConfig,
    /// Value dimension; `None` means the model dimension.
    #[config(default = "None")]
    pub v_dim: Option<usize>,
    /// Memory+: `value_proj(lookup ⊙ silu(swilu_projection(x)))`.
    #[config(default = false)]
    pub swilu: bool,
    /// Multiply the output by `sigmoid(gating(x))`.
    #[config(default = false)]
    pub gated: bool,
    /// Keep an output projection even when neither swilu nor `v_dim ≠ dim` needs one
    /// (weights trained that way by the reference code).
    #[config(default = false)]
    pub value_proj: bool,
}

impl MemoryLayerConfig {
    /// The paper's plain memory layer at model dim `dim`: [`ProductKeysConfig::paper`] keys.
    pub fn memory(dim: usize, n_keys: usize) -> Self {
        Self::new(ProductKeysConfig::paper(dim, n_keys))
    }

    /// The paper's Memory+ layer: [`Self::memory`] with swilu.
    pub fn memory_plus(dim: usize, n_keys: usize) -> Self {
        Self::memory(dim, n_keys).with_swilu(true)
    }

    /// Sets the number of heads.
    pub fn with_heads(mut self, heads: usize) -> Self {
        self.keys = self.keys.with_heads(heads);
        self
    }

    /// Sets the key dimension per head.
    pub fn with_k_dim(mut self, k_dim: usize) -> Self {
        self.keys = self.keys.with_k_dim(k_dim);
        self
    }

    /// Sets the values selected per head.
    pub fn with_knn(mut self, knn: usize) -> Self {
        self.keys = self.keys.with_knn(knn);
        self
    }

    /// Sets RMS normalisation of query halves and sub-keys (see [`ProductKeysConfig::qk_norm`]).
    pub fn with_qk_norm(mut self, qk_norm: bool) -> Self {
        self.keys = self.keys.with_qk_norm(qk_norm);
        self
    }

    /// The model dimension (input and output).
    pub fn dim(&self) -> usize {
        self.keys.dim
    }

    /// The value dimension.
    pub fn v_dim(&self) -> usize {
        self.v_dim.unwrap_or(self.dim())
    }

    /// Whether the layer has the output projection `value_proj`.
    pub fn has_value_proj(&self) -> bool {
        self.swilu || self.value_proj || self.v_dim() != self.dim()
    }

    /// The value table (or pool) this layer reads: `n_keys² × v_dim`.
    pub fn values(&self) -> ValueTableConfig {
        ValueTableConfig::new(self.keys.size(), self.v_dim())
    }

    /// Checks every rule; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), MemoryError> {
        self.keys.validate()?;
        if self.v_dim == Some(0) {
            return Err(MemoryError::invalid("v_dim", 0, "must be at least 1"));
        }
        Ok(())
    }

    /// Initialises the layer (keys, query network, projections), without values.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<MemoryLayer<B>, MemoryError> {
        self.validate()?;
        let (dim, v_dim) = (self.dim(), self.v_dim());
        let std = (dim as f64).powf(-0.5);
        // Weights `Normal(0, dim^-½)`, biases zero.
        let normal = |d_in: usize, d_out: usize| {
            linear(
                Initializer::Normal { mean: 0.0, std }.init([d_in, d_out], device),
                true,
            )
        };
        Ok(MemoryLayer {
            keys: self.keys.init(device)?,
            swilu_projection: self.swilu.then(|| normal(dim, v_dim)),
            value_proj: self.has_value_proj().then(|| normal(v_dim, dim)),
            gating: self.gated.then(|| normal(dim, 1)),
            dim,
            v_dim,
        })
    }

    /// Initialises a value table (or shared pool) for layers of this configuration.
    pub fn init_values<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<ValueTable<B>, MemoryError> {
        self.validate()?;
        Ok(self.values().init(device)?)
    }

    /// Initialises a layer together with its own value table.
    pub fn init_with_values<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<Memory<B>, MemoryError> {
        Ok(Memory {
            layer: self.init(device)?,
            values: self.init_values(device)?,
        })
    }
}

/// A Memory or Memory+ layer: retrieval, lookup in a value store, optional projections.
///
/// The values live outside the layer (a [`ValueStore`] passed to [`MemoryLayer::forward`]) so
/// that several layers can share one pool.
#[derive(Module, Debug)]
pub struct MemoryLayer<B: Backend> {
    /// Query network and sub-keys.
    pub keys: ProductKeys<B>,
    /// W1 of Memory+: `dim → v_dim`.
    pub swilu_projection: Option<Linear<B>>,
    /// Output projection `v_dim → dim` (W2 of Memory+).
    pub value_proj: Option<Linear<B>>,
    /// Optional gate `dim → 1`.
    pub gating: Option<Linear<B>>,
    dim: usize,
    v_dim: usize,
}

/// A layer's output and the retrieval that produced it (for statistics and checks).
#[derive(Debug, Clone)]
pub struct MemoryOutput<B: Backend, const D: usize> {
    /// Output, the input's shape.
    pub output: Tensor<B, D>,
    /// Scores and indices, `[T·heads, knn]` with `T` the number of input rows.
    pub retrieval: Retrieval<B>,
}

impl<B: MemoryBackend> MemoryLayer<B> {
    /// Applies the layer to `x [..., dim]`, reading values from `values`.
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<B, D>,
        values: &(impl ValueStore<B> + ?Sized),
    ) -> Result<MemoryOutput<B, D>, MemoryError> {
        let n_keys = self.keys.n_keys();
        check_store(values, n_keys * n_keys, self.v_dim)?;
        let (x2, shape) = flatten_input(x, self.dim)?;
        let retrieval = self.keys.forward(x2.clone());
        let (indices, weights) = bag(&retrieval, self.keys.heads());
        let mut out = values.lookup(indices, weights)?;
        if let Some(w1) = &self.swilu_projection {
            out = out * silu(w1.forward(x2.clone()));
        }
        if let Some(w2) = &self.value_proj {
            out = w2.forward(out);
        }
        if let Some(gate) = &self.gating {
            out = out * sigmoid(gate.forward(x2));
        }
        Ok(MemoryOutput {
            output: out.reshape(shape),
            retrieval,
        })
    }
}

/// A memory layer with its own value table (no sharing).
#[derive(Module, Debug)]
pub struct Memory<B: Backend> {
    /// The layer.
    pub layer: MemoryLayer<B>,
    /// Its values, `n_keys² × v_dim`.
    pub values: ValueTable<B>,
}

impl<B: MemoryBackend> Memory<B> {
    /// Applies the layer to `x [..., dim]`.
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<B, D>,
    ) -> Result<MemoryOutput<B, D>, MemoryError> {
        self.layer.forward(x, &self.values)
    }
}

/// Checks that a store has the rows and width a layer reads.
pub(crate) fn check_store<B: Backend>(
    values: &(impl ValueStore<B> + ?Sized),
    rows: usize,
    width: usize,
) -> Result<(), MemoryError> {
    if values.rows() == rows && values.width() == width {
        Ok(())
    } else {
        Err(MemoryError::StoreShape {
            rows: values.rows(),
            width: values.width(),
            expected_rows: rows,
            expected_width: width,
        })
    }
}

/// Views `x [..., dim]` as `[T, dim]`; also returns the original shape.
pub(crate) fn flatten_input<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    dim: usize,
) -> Result<(Tensor<B, 2>, [usize; D]), MemoryError> {
    let shape = x.dims();
    let actual = shape[D - 1];
    if actual != dim {
        return Err(MemoryError::InputDim {
            expected: dim,
            actual,
        });
    }
    let t = shape[..D - 1].iter().product();
    Ok((x.reshape([t, dim]), shape))
}

/// All heads' (index, weight) pairs of each token, `[T, heads·knn]`: the softmax runs per
/// head over its `knn` scores, so each token's weights add up to `heads` (the heads' reads
/// are summed, not averaged).
pub(crate) fn bag<B: Backend>(
    retrieval: &Retrieval<B>,
    heads: usize,
) -> (Tensor<B, 2, Int>, Tensor<B, 2>) {
    let [rows, knn] = retrieval.indices.dims();
    let t = rows / heads;
    let weights = softmax(retrieval.scores.clone(), 1).reshape([t, heads * knn]);
    let indices = retrieval.indices.clone().reshape([t, heads * knn]);
    (indices, weights)
}
