//! Layers from safetensors files that use the reference implementation's state-dict names
//! (design.md, "Parity fixtures"), so weights trained with the reference code can be used here.
//!
//! The file's `__metadata__` holds `"config"`: JSON with `dim, heads, knn, n_keys, k_dim,
//! v_dim, swilu, gated, peer`. Parameters: `keys`, `values.weight` (PEER: `values_u.weight`,
//! `values_v.weight`), `query_proj.query_mlps.0.{weight,bias}`, `value_proj.{weight,bias}`,
//! `swilu_projection.{weight,bias}`, `gating.{weight,bias}`. Linear weights are stored
//! PyTorch-style `[out, in]`. Any other tensor than these and the fixture tensors (`input`,
//! `grad_output`, `output`, `indices`, `scores`, `grad.*`) is an error, so nothing is dropped.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    Memory, MemoryBackend, MemoryError, MemoryLayerConfig, MemoryOutput, Peer, PeerConfig,
};
use memory_values::ValueTable;

/// The layer configuration stored in a reference file's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferenceConfig {
    /// Model dimension.
    pub dim: usize,
    /// Memory heads.
    pub heads: usize,
    /// Values selected per head.
    pub knn: usize,
    /// Sub-keys per half.
    pub n_keys: usize,
    /// Key dimension per head.
    pub k_dim: usize,
    /// Value dimension.
    pub v_dim: usize,
    /// Memory+ (swilu) output.
    pub swilu: bool,
    /// Sigmoid-gated output.
    pub gated: bool,
    /// PEER layer.
    pub peer: bool,
}

/// Why a reference file could not be imported.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid safetensors, or its metadata is unusable.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor the layer needs is absent.
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// A tensor has the wrong shape or dtype.
    #[error("{path}: tensor `{name}` is {actual}, expected {expected}")]
    TensorType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What the layer needs, e.g. `F32 [16, 8]`.
        expected: String,
        /// What the file holds.
        actual: String,
    },
    /// A tensor is not used by the configured layer.
    #[error("{path}: tensor `{name}` is not used by this layer configuration")]
    UnexpectedTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// The configuration is invalid for a layer.
    #[error("{path}: {source}")]
    Layer {
        /// The file.
        path: PathBuf,
        /// The layer's error.
        source: MemoryError,
    },
}

/// A layer imported from a reference file.
#[derive(Debug)]
pub enum ReferenceLayer<B: Backend> {
    /// Memory or Memory+, with its own value table.
    Memory(Box<Memory<B>>),
    /// PEER.
    Peer(Box<Peer<B>>),
}

/// A parameter in the reference layout, for comparing or exporting gradients.
#[derive(Debug, Clone)]
pub enum ReferenceParam<B: Backend> {
    /// Stored as in the reference (keys, value tables).
    Matrix(Tensor<B, 2>),
    /// A Linear weight: `[in, out]` here, `[out, in]` in the reference.
    LinearWeight(Tensor<B, 2>),
    /// A bias vector.
    Vector(Tensor<B, 1>),
}

impl<B: MemoryBackend> ReferenceLayer<B> {
    /// Applies the layer to `x [T, dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Result<MemoryOutput<B, 2>, MemoryError> {
        match self {
            Self::Memory(memory) => memory.forward(x),
            Self::Peer(peer) => peer.forward(x),
        }
    }
}

impl<B: Backend> ReferenceLayer<B> {
    /// Every parameter under its reference name.
    pub fn reference_params(&self) -> Vec<(String, ReferenceParam<B>)> {
        let mut params = Vec::new();
        let keys = match self {
            Self::Memory(memory) => &memory.layer.keys,
            Self::Peer(peer) => &peer.keys,
        };
        params.push(("keys".into(), ReferenceParam::Matrix(keys.keys.val())));
        push_linear(
            &mut params,
            "query_proj.query_mlps.0",
            Some(&keys.query_proj),
        );
        match self {
            Self::Memory(memory) => {
                let values = memory.values.weight.val();
                params.push(("values.weight".into(), ReferenceParam::Matrix(values)));
                let layer = &memory.layer;
                push_linear(&mut params, "value_proj", layer.value_proj.as_ref());
                push_linear(
                    &mut params,
                    "swilu_projection",
                    layer.swilu_projection.as_ref(),
                );
                push_linear(&mut params, "gating", layer.gating.as_ref());
            }
            Self::Peer(peer) => {
                let (u, v) = (peer.values_u.weight.val(), peer.values_v.weight.val());
                params.push(("values_u.weight".into(), ReferenceParam::Matrix(u)));
                params.push(("values_v.weight".into(), ReferenceParam::Matrix(v)));
            }
        }
        params
    }
}

fn push_linear<B: Backend>(
    params: &mut Vec<(String, ReferenceParam<B>)>,
    prefix: &str,
    linear: Option<&Linear<B>>,
) {
    let Some(linear) = linear else { return };
    let weight = ReferenceParam::LinearWeight(linear.weight.val());
    params.push((format!("{prefix}.weight"), weight));
    if let Some(bias) = &linear.bias {
        params.push((format!("{prefix}.bias"), ReferenceParam::Vector(bias.val())));
    }
}

/// Names a fixture may hold besides parameters.
const FIXTURE_TENSORS: [&str; 5] = ["input", "grad_output", "output", "indices", "scores"];

/// An open reference file: its bytes and parsed configuration.
#[derive(Debug)]
pub struct ReferenceFile {
    path: PathBuf,
    bytes: Vec<u8>,
    config: ReferenceConfig,
}

impl ReferenceFile {
    /// Reads the file and its `"config"` metadata.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ImportError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| ImportError::Io {
            path: path.clone(),
            source,
        })?;
        let format = |message: String| ImportError::Format {
            path: path.clone(),
            message,
        };
        let (_, metadata) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| format(format!("not a safetensors file: {e}")))?;
        let json = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("config"))
            .ok_or_else(|| format("metadata has no \"config\" entry".into()))?;
        let config = serde_json::from_str(json)
            .map_err(|e| format(format!("metadata \"config\" is invalid: {e}")))?;
        Ok(Self {
            path,
            bytes,
            config,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layer configuration.
    pub fn config(&self) -> &ReferenceConfig {
        &self.config
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated when opened")
    }

    /// Whether the file holds tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors().tensor(name).is_ok()
    }

    /// Tensor `name` as f32 values on the host, with its shape; checks the dtype.
    pub fn f32_data(&self, name: &str) -> Result<TensorData, ImportError> {
        self.data(name, Dtype::F32)
    }

    /// Tensor `name` as i64 values on the host, with its shape; checks the dtype.
    pub fn i64_data(&self, name: &str) -> Result<TensorData, ImportError> {
        self.data(name, Dtype::I64)
    }

    fn data(&self, name: &str, dtype: Dtype) -> Result<TensorData, ImportError> {
        let tensors = self.tensors();
        let view = tensors
            .tensor(name)
            .map_err(|_| ImportError::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
            })?;
        if view.dtype() != dtype {
            let actual = format!("{:?} {:?}", view.dtype(), view.shape());
            return Err(self.type_error(name, format!("{dtype:?}"), actual));
        }
        let shape = view.shape().to_vec();
        let data = match dtype {
            Dtype::I64 => TensorData::new(le_values(view.data(), i64::from_le_bytes), shape),
            _ => TensorData::new(le_values(view.data(), f32::from_le_bytes), shape),
        };
        Ok(data)
    }

    /// Tensor `name` of shape `shape` (f32), on `device`.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ImportError> {
        let data = self.f32_data(name)?;
        if data.shape.as_slice() != shape.as_slice() {
            return Err(self.type_error(
                name,
                format!("F32 {shape:?}"),
                format!("F32 {:?}", data.shape.as_slice()),
            ));
        }
        Ok(Tensor::from_data(data, device))
    }

    fn type_error(&self, name: &str, expected: String, actual: String) -> ImportError {
        ImportError::TensorType {
            path: self.path.clone(),
            name: name.into(),
            expected,
            actual,
        }
    }

    fn linear<B: Backend>(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Result<Linear<B>, ImportError> {
        let weight = self.tensor::<B, 2>(&format!("{prefix}.weight"), [d_out, d_in], device)?;
        let bias = self.tensor::<B, 1>(&format!("{prefix}.bias"), [d_out], device)?;
        Ok(Linear {
            weight: Param::from_tensor(weight.transpose()),
            bias: Some(Param::from_tensor(bias)),
        })
    }

    fn table<B: Backend>(
        &self,
        name: &str,
        rows: usize,
        width: usize,
        device: &B::Device,
    ) -> Result<ValueTable<B>, ImportError> {
        let values = self.tensor::<B, 2>(name, [rows, width], device)?;
        ValueTable::from_tensor(values, 0, width).map_err(|e| self.layer_error(e.into()))
    }

    fn layer_error(&self, source: MemoryError) -> ImportError {
        ImportError::Layer {
            path: self.path.clone(),
            source,
        }
    }

    /// Builds the layer the file describes, with the file's parameters.
    pub fn layer<B: Backend>(&self, device: &B::Device) -> Result<ReferenceLayer<B>, ImportError> {
        let c = &self.config;
        let size = c.n_keys * c.n_keys;
        let layer = if c.peer {
            if c.swilu || c.gated || c.v_dim != c.dim {
                return Err(self.layer_error(MemoryError::invalid(
                    "peer",
                    true,
                    "PEER takes no swilu, no gate and v_dim = dim",
                )));
            }
            let config = PeerConfig::new(c.dim, c.heads, c.k_dim, c.knn, c.n_keys);
            let mut peer = config.init::<B>(device).map_err(|e| self.layer_error(e))?;
            peer.values_u = self.table("values_u.weight", size, c.dim, device)?;
            peer.values_v = self.table("values_v.weight", size, c.dim, device)?;
            self.load_keys(&mut peer.keys, device)?;
            ReferenceLayer::Peer(Box::new(peer))
        } else {
            let config = MemoryLayerConfig::new(c.dim, c.heads, c.k_dim, c.knn, c.n_keys)
                .with_v_dim(Some(c.v_dim))
                .with_swilu(c.swilu)
                .with_gated(c.gated)
                .with_value_proj(self.contains("value_proj.weight"));
            let mut layer = config.init::<B>(device).map_err(|e| self.layer_error(e))?;
            self.load_keys(&mut layer.keys, device)?;
            if layer.swilu_projection.is_some() {
                let w1 = self.linear("swilu_projection", c.dim, c.v_dim, device)?;
                layer.swilu_projection = Some(w1);
            }
            if layer.value_proj.is_some() {
                layer.value_proj = Some(self.linear("value_proj", c.v_dim, c.dim, device)?);
            }
            if layer.gating.is_some() {
                layer.gating = Some(self.linear("gating", c.dim, 1, device)?);
            }
            let values = self.table("values.weight", size, c.v_dim, device)?;
            ReferenceLayer::Memory(Box::new(Memory { layer, values }))
        };
        self.check_no_extra_tensors(&layer)?;
        Ok(layer)
    }

    fn load_keys<B: Backend>(
        &self,
        keys: &mut memory_keys::ProductKeys<B>,
        device: &B::Device,
    ) -> Result<(), ImportError> {
        let c = &self.config;
        let shape = [2 * c.heads * c.n_keys, c.k_dim / 2];
        keys.keys = Param::from_tensor(self.tensor("keys", shape, device)?);
        keys.query_proj =
            self.linear("query_proj.query_mlps.0", c.dim, c.heads * c.k_dim, device)?;
        Ok(())
    }

    fn check_no_extra_tensors<B: Backend>(
        &self,
        layer: &ReferenceLayer<B>,
    ) -> Result<(), ImportError> {
        let params: Vec<String> = layer
            .reference_params()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let known = |name: &str| {
            let name = name.strip_prefix("grad.").unwrap_or(name);
            FIXTURE_TENSORS.contains(&name) || params.iter().any(|p| p == name)
        };
        match self.tensors().names().into_iter().find(|name| !known(name)) {
            Some(name) => Err(ImportError::UnexpectedTensor {
                path: self.path.clone(),
                name: name.to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// Decodes little-endian values of `N` bytes each.
fn le_values<T, const N: usize>(bytes: &[u8], decode: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|chunk| decode(chunk.try_into().expect("chunks of N bytes")))
        .collect()
}

/// Loads the layer stored in a reference file.
pub fn load_reference<B: Backend>(
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<(ReferenceLayer<B>, ReferenceConfig), ImportError> {
    let file = ReferenceFile::open(path)?;
    let layer = file.layer(device)?;
    Ok((layer, file.config.clone()))
}
