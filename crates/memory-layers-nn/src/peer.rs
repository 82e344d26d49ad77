use burn::config::Config;
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use memory_layers_keys::{ProductKeys, ProductKeysConfig};
use memory_layers_values::{ValueTable, ValueTableConfig};

use crate::memory::{bag, flatten_input};
use crate::{MemoryBackend, MemoryError, MemoryOutput};

/// Configuration of a PEER layer (parameter-efficient expert retrieval): product-key retrieval
/// over `n_keys²` experts, each a pair of vectors `u_i, v_i ∈ R^dim`.
#[derive(Config, Debug)]
pub struct PeerConfig {
    /// Retrieval over the experts; its `dim` is also the width of both tables.
    pub keys: ProductKeysConfig,
}

impl PeerConfig {
    /// Checks every rule; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), MemoryError> {
        Ok(self.keys.validate()?)
    }

    /// Initialises keys and both expert tables (`Normal(0, dim^-½)`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Peer<B>, MemoryError> {
        self.validate()?;
        let dim = self.keys.dim;
        let table = ValueTableConfig::new(self.keys.size(), dim);
        Ok(Peer {
            keys: self.keys.init(device)?,
            values_u: table.init(device)?,
            values_v: table.init(device)?,
            dim,
        })
    }
}

/// PEER: `out[t] = Σ_i softmax(s)_i · gelu(⟨x_t, u_i⟩) · v_i` over the retrieved experts.
#[derive(Module, Debug)]
pub struct Peer<B: Backend> {
    /// Query network and sub-keys.
    pub keys: ProductKeys<B>,
    /// Down vectors `u`, `[n_keys², dim]`.
    pub values_u: ValueTable<B>,
    /// Up vectors `v`, `[n_keys², dim]`.
    pub values_v: ValueTable<B>,
    dim: usize,
}

impl<B: MemoryBackend> Peer<B> {
    /// Applies the layer to `x [..., dim]`.
    pub fn forward<const D: usize>(
        &self,
        x: Tensor<B, D>,
    ) -> Result<MemoryOutput<B, D>, MemoryError> {
        let (x2, shape) = flatten_input(x, self.dim)?;
        let retrieval = self.keys.forward(x2.clone());
        let (indices, weights) = bag(&retrieval, self.keys.heads());
        let activations = exact_gelu(self.values_u.dot(indices.clone(), x2)?);
        let output = self.values_v.lookup(indices, weights * activations)?;
        Ok(MemoryOutput {
            output: output.reshape(shape),
            retrieval,
        })
    }
}

/// `gelu(x) = x · Φ(x)` with the exact normal CDF, written out so that its gradient is exact
/// on every backend: Burn 0.21's default `gelu_backward` (used by wgpu and CUDA) differentiates
/// the tanh approximation instead, which is off by up to ~1e-3 relative.
fn exact_gelu<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let cdf = x
        .clone()
        .div_scalar(std::f64::consts::SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    x * cdf
}
