use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorPrimitive};

use crate::init::linear;
use crate::{KeysError, RetrievalBackend};

/// Largest `n_keys` whose `n_keys²` value indices fit a 32-bit signed integer.
pub(crate) const MAX_N_KEYS: usize = 46_340;

/// Epsilon of the optional qk-norm (parameter-free RMS normalisation): a half-query or
/// sub-key `v` becomes `v / sqrt(mean(v²) + QK_NORM_EPS)`.
pub const QK_NORM_EPS: f64 = 1e-6;

/// Configuration of [`ProductKeys`]: a query network and, per head, two tables of sub-keys whose
/// pairs address `n_keys²` product keys. Memory, Memory+ and PEER layers all retrieve through it.
#[derive(Config, Debug, PartialEq, Eq)]
pub struct ProductKeysConfig {
    /// Input (model) dimension.
    pub dim: usize,
    /// Number of heads; each has its own sub-keys, top-k and softmax.
    pub heads: usize,
    /// Query/key dimension of one head, the sum of its two halves; even.
    pub k_dim: usize,
    /// Pairs selected per head and token.
    pub knn: usize,
    /// Sub-keys per half; the memory holds `n_keys²` values.
    pub n_keys: usize,
    /// RMS-normalise each head's query halves and sub-keys before the dot products
    /// (the paper's "qk-norm when needed"; its exact form is not published).
    #[config(default = false)]
    pub qk_norm: bool,
}

impl ProductKeysConfig {
    /// The paper's defaults at model dim `dim`: 4 heads, `knn = min(32, n_keys)`,
    /// `k_dim = dim / 2` (even, at least 2), no qk-norm.
    pub fn paper(dim: usize, n_keys: usize) -> Self {
        Self::new(dim, 4, (dim / 2).max(2) & !1, 32, n_keys).with_n_keys(n_keys)
    }

    /// Sets the sub-keys per half; `knn` follows them down (a memory of `n_keys²` values
    /// selects at most `n_keys` pairs per head). The one place that rule is applied.
    pub fn with_n_keys(mut self, n_keys: usize) -> Self {
        self.n_keys = n_keys;
        self.knn = self.knn.min(n_keys);
        self
    }

    /// Sets the number of heads.
    pub fn with_heads(mut self, heads: usize) -> Self {
        self.heads = heads;
        self
    }

    /// Sets the query/key dimension of one head.
    pub fn with_k_dim(mut self, k_dim: usize) -> Self {
        self.k_dim = k_dim;
        self
    }

    /// Sets the pairs selected per head and token.
    pub fn with_knn(mut self, knn: usize) -> Self {
        self.knn = knn;
        self
    }

    /// Checks every rule; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), KeysError> {
        if self.dim == 0 {
            return Err(KeysError::invalid("dim", self.dim, "must be at least 1"));
        }
        if self.heads == 0 {
            return Err(KeysError::invalid(
                "heads",
                self.heads,
                "must be at least 1",
            ));
        }
        if self.k_dim < 2 || !self.k_dim.is_multiple_of(2) {
            return Err(KeysError::invalid(
                "k_dim",
                self.k_dim,
                "must be even and at least 2 (it is split into two halves)",
            ));
        }
        if self.n_keys == 0 || self.n_keys > MAX_N_KEYS {
            return Err(KeysError::invalid(
                "n_keys",
                self.n_keys,
                "must be in 1..=46340 (n_keys² indices must fit 32 bits)",
            ));
        }
        if self.knn == 0 || self.knn > self.n_keys {
            return Err(KeysError::invalid("knn", self.knn, "must be in 1..=n_keys"));
        }
        Ok(())
    }

    /// Number of values addressed, `n_keys²`.
    pub fn size(&self) -> usize {
        self.n_keys * self.n_keys
    }

    /// Initialises the module: sub-keys `Uniform(±1/√k_dim)`, query weights Xavier-uniform,
    /// query bias zero.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<ProductKeys<B>, KeysError> {
        self.validate()?;
        let out = self.heads * self.k_dim;
        let weight = Initializer::XavierUniform { gain: 1.0 }.init_with(
            [self.dim, out],
            Some(self.dim),
            Some(out),
            device,
        );
        let query_proj = linear(weight, true);
        let bound = 1.0 / (self.k_dim as f64).sqrt();
        let keys = Initializer::Uniform {
            min: -bound,
            max: bound,
        }
        .init([2 * self.heads * self.n_keys, self.k_dim / 2], device);
        Ok(ProductKeys {
            query_proj,
            keys,
            heads: self.heads,
            k_dim: self.k_dim,
            knn: self.knn,
            n_keys: self.n_keys,
            qk_norm: self.qk_norm,
        })
    }
}

/// Query network and per-head sub-key tables; retrieves the best `knn` of `n_keys²` keys.
#[derive(Module, Debug)]
pub struct ProductKeys<B: Backend> {
    /// Query network `dim → heads·k_dim` (reference name `query_proj.query_mlps.0`).
    pub query_proj: Linear<B>,
    /// Sub-keys `[2·heads·n_keys, k_dim/2]`, viewed `(heads, 2, n_keys, k_dim/2)`.
    pub keys: Param<Tensor<B, 2>>,
    heads: usize,
    k_dim: usize,
    knn: usize,
    n_keys: usize,
    qk_norm: bool,
}

/// Result of a retrieval, one row per token and head (row `t·heads + h`).
#[derive(Debug, Clone)]
pub struct Retrieval<B: Backend> {
    /// Selected scores `[T·heads, knn]`, descending, differentiable (pre-softmax).
    pub scores: Tensor<B, 2>,
    /// Value indices `[T·heads, knn]`: `i1·n_keys + i2` for sub-key pair `(i1, i2)`.
    pub indices: Tensor<B, 2, Int>,
}

impl<B: Backend> ProductKeys<B> {
    /// Number of heads.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Pairs selected per head and token.
    pub fn knn(&self) -> usize {
        self.knn
    }

    /// Sub-keys per half.
    pub fn n_keys(&self) -> usize {
        self.n_keys
    }

    /// Queries `[T, heads, k_dim]` of inputs `[T, dim]`, normalised when qk-norm is on.
    pub fn queries(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        let [t, _] = x.dims();
        let half = self.k_dim / 2;
        let q = self.query_proj.forward(x).reshape([t, self.heads, 2, half]);
        let q = if self.qk_norm { rms_normalize(q) } else { q };
        q.reshape([t, self.heads, self.k_dim])
    }

    /// Sub-keys `[heads, 2, n_keys, k_dim/2]`, normalised when qk-norm is on.
    pub fn sub_keys(&self) -> Tensor<B, 4> {
        let keys = self
            .keys
            .val()
            .reshape([self.heads, 2, self.n_keys, self.k_dim / 2]);
        if self.qk_norm {
            rms_normalize(keys)
        } else {
            keys
        }
    }
}

impl<B: RetrievalBackend> ProductKeys<B> {
    /// Retrieves the best `knn` keys per head for inputs `[T, dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Retrieval<B> {
        retrieve(self.queries(x), self.sub_keys(), self.knn)
    }
}

/// Exact product-key top-k of queries `[T, heads, k_dim]` against sub-keys
/// `[heads, 2, n_keys, k_dim/2]`: scores and indices `[T·heads, knn]`, best first.
pub fn retrieve<B: RetrievalBackend>(
    queries: Tensor<B, 3>,
    sub_keys: Tensor<B, 4>,
    knn: usize,
) -> Retrieval<B> {
    let [t, heads, k_dim] = queries.dims();
    let [_, _, n_keys, half] = sub_keys.dims();
    let device = queries.device();
    if t == 0 {
        return Retrieval {
            scores: Tensor::zeros([0, knn], &device),
            indices: Tensor::zeros([0, knn], &device),
        };
    }
    debug_assert_eq!(k_dim, 2 * half);
    // [heads, 2, T, half] × [heads, 2, half, n_keys] → [heads, 2, T, n_keys]
    let q = queries.reshape([t, heads, 2, half]).permute([1, 2, 0, 3]);
    let scores = q.matmul(sub_keys.swap_dims(2, 3));
    let (i1, i2) = B::product_topk(scores.clone().into_primitive().tensor(), knn);
    let scores = B::pair_scores(scores.into_primitive().tensor(), i1.clone(), i2.clone());
    let scores = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(scores));
    let [i1, i2] = [i1, i2].map(Tensor::<B, 3, Int>::from_primitive);
    // [heads, T, knn] → rows t·heads + h.
    let indices = (i1.mul_scalar(n_keys as i64) + i2)
        .swap_dims(0, 1)
        .reshape([t * heads, knn]);
    Retrieval { scores, indices }
}

/// Parameter-free RMS normalisation over the last dimension.
fn rms_normalize<const D: usize, B: Backend>(x: Tensor<B, D>) -> Tensor<B, D> {
    let rms = x
        .clone()
        .square()
        .mean_dim(D - 1)
        .add_scalar(QK_NORM_EPS)
        .sqrt();
    x / rms
}
