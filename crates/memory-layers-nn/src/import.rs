//! Layers from safetensors files that use the reference implementation's state-dict names, so
//! weights trained with the reference code can be used here.
//!
//! The file's `__metadata__` holds `"config"`: JSON with `dim, heads, knn, n_keys, k_dim,
//! v_dim, swilu, gated, peer`. Parameters, all f32: `keys`, `values.weight` (PEER:
//! `values_u.weight`, `values_v.weight`), `query_proj.query_mlps.0.{weight,bias}`,
//! `value_proj.{weight,bias}`, `swilu_projection.{weight,bias}`, `gating.{weight,bias}`.
//! Linear weights are stored PyTorch-style `[out, in]`.
//!
//! The header is checked first (every parameter present, f32, of the configured shape), then
//! burn-store loads the tensors, each reference name remapped to the parameter's path in the
//! layer. The Linear weights load into Burn's column-major layout, which keeps the file's
//! `[out, in]` order in memory: the matrix products then add in the order the parity fixtures
//! were checked with (a transposed copy changes the last bits). Any other tensor is an error, so
//! nothing is dropped, unless the caller names it as extra ([`ReferenceFile::with_extra`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Linear, LinearConfig, LinearLayout};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn_store::{KeyRemapper, ModuleSnapshot, SafetensorsStore};
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

pub use crate::error::ImportError;
use crate::{
    FileError, Memory, MemoryBackend, MemoryError, MemoryLayerConfig, MemoryOutput, Peer,
    PeerConfig, ProductKeysConfig,
};

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

impl ReferenceConfig {
    /// The product-key part.
    pub fn keys(&self) -> ProductKeysConfig {
        ProductKeysConfig::new(self.dim, self.heads, self.k_dim, self.knn, self.n_keys)
    }
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
        self.slots()
            .into_iter()
            .map(|slot| {
                let param = match slot.param {
                    SlotParam::Matrix(p) => ReferenceParam::Matrix(p.val()),
                    SlotParam::LinearWeight(p) => ReferenceParam::LinearWeight(p.val()),
                    SlotParam::Vector(p) => ReferenceParam::Vector(p.val()),
                };
                (slot.name, param)
            })
            .collect()
    }

    /// Every parameter with its reference name and its path in the module, without
    /// materialising it.
    fn slots(&self) -> Vec<Slot<'_, B>> {
        let mut slots = Vec::new();
        let (keys, prefix) = match self {
            Self::Memory(memory) => (&memory.layer.keys, "layer."),
            Self::Peer(peer) => (&peer.keys, ""),
        };
        slots.push(Slot::matrix(
            "keys",
            format!("{prefix}keys.keys"),
            &keys.keys,
        ));
        push_linear(
            &mut slots,
            "query_proj.query_mlps.0",
            format!("{prefix}keys.query_proj"),
            Some(&keys.query_proj),
        );
        match self {
            Self::Memory(memory) => {
                let values = &memory.values.weight;
                slots.push(Slot::matrix(
                    "values.weight",
                    "values.weight".into(),
                    values,
                ));
                let layer = &memory.layer;
                for (name, linear) in [
                    ("value_proj", &layer.value_proj),
                    ("swilu_projection", &layer.swilu_projection),
                    ("gating", &layer.gating),
                ] {
                    push_linear(&mut slots, name, format!("layer.{name}"), linear.as_ref());
                }
            }
            Self::Peer(peer) => {
                for (name, table) in [("values_u", &peer.values_u), ("values_v", &peer.values_v)] {
                    let name = format!("{name}.weight");
                    slots.push(Slot::matrix(&name, name.clone(), &table.weight));
                }
            }
        }
        slots
    }
}

impl<B: Backend> ReferenceLayer<B> {
    fn linears_mut(&mut self) -> Vec<&mut Linear<B>> {
        match self {
            Self::Memory(memory) => {
                let layer = &mut memory.layer;
                let optional = [
                    &mut layer.swilu_projection,
                    &mut layer.value_proj,
                    &mut layer.gating,
                ];
                let mut linears: Vec<_> = optional.into_iter().flatten().collect();
                linears.push(&mut layer.keys.query_proj);
                linears
            }
            Self::Peer(peer) => vec![&mut peer.keys.query_proj],
        }
    }
}

/// Gives `linear` a fresh (not yet drawn) weight in Burn's column-major layout: `[out, in]` in
/// memory, as the reference stores it, `[in, out]` to the layer.
fn column_major<B: Backend>(linear: &mut Linear<B>) {
    let [d_in, d_out] = linear.weight.lazy_shape().dims();
    linear.weight = LinearConfig::new(d_in, d_out)
        .with_bias(false)
        .with_layout(LinearLayout::Col)
        .init(&linear.weight.lazy_device())
        .weight;
}

/// One parameter of a layer: its reference name, its path in the module, the parameter.
struct Slot<'a, B: Backend> {
    name: String,
    path: String,
    param: SlotParam<'a, B>,
}

enum SlotParam<'a, B: Backend> {
    Matrix(&'a Param<Tensor<B, 2>>),
    LinearWeight(&'a Param<Tensor<B, 2>>),
    Vector(&'a Param<Tensor<B, 1>>),
}

impl<'a, B: Backend> Slot<'a, B> {
    fn matrix(name: &str, path: String, param: &'a Param<Tensor<B, 2>>) -> Self {
        Self {
            name: name.into(),
            path,
            param: SlotParam::Matrix(param),
        }
    }

    /// The shape the reference file stores (Linear weights transposed).
    fn file_shape(&self) -> Vec<usize> {
        match self.param {
            SlotParam::Matrix(p) => p.lazy_shape().to_vec(),
            SlotParam::LinearWeight(p) => p.lazy_shape().to_vec().into_iter().rev().collect(),
            SlotParam::Vector(p) => p.lazy_shape().to_vec(),
        }
    }
}

fn push_linear<'a, B: Backend>(
    slots: &mut Vec<Slot<'a, B>>,
    name: &str,
    path: String,
    linear: Option<&'a Linear<B>>,
) {
    let Some(linear) = linear else { return };
    slots.push(Slot {
        name: format!("{name}.weight"),
        path: format!("{path}.weight"),
        param: SlotParam::LinearWeight(&linear.weight),
    });
    if let Some(bias) = &linear.bias {
        slots.push(Slot {
            name: format!("{name}.bias"),
            path: format!("{path}.bias"),
            param: SlotParam::Vector(bias),
        });
    }
}

/// An open reference file: its bytes, header and parsed configuration.
#[derive(Debug)]
pub struct ReferenceFile {
    path: PathBuf,
    bytes: Vec<u8>,
    tensors: HashMap<String, TensorInfo>,
    config: ReferenceConfig,
    extra: fn(&str) -> bool,
}

impl ReferenceFile {
    /// Reads the file, its header and its `"config"` metadata.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ImportError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(FileError::at(&path))?;
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
        let tensors = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| (name, info.clone()))
            .collect();
        Ok(Self {
            path,
            bytes,
            tensors,
            config,
            extra: |_| false,
        })
    }

    /// Lets tensors for which `extra` holds through, unread: a file may carry more than the
    /// layer (a parity fixture holds inputs and expected results too).
    pub fn with_extra(mut self, extra: fn(&str) -> bool) -> Self {
        self.extra = extra;
        self
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layer configuration.
    pub fn config(&self) -> &ReferenceConfig {
        &self.config
    }

    /// Whether the file holds tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn layer_error(&self, source: MemoryError) -> ImportError {
        ImportError::Layer {
            path: self.path.clone(),
            source,
        }
    }

    /// The layer the file describes, freshly initialised.
    fn init_layer<B: Backend>(&self, device: &B::Device) -> Result<ReferenceLayer<B>, ImportError> {
        let c = &self.config;
        if c.peer {
            if c.swilu || c.gated || c.v_dim != c.dim {
                return Err(self.layer_error(MemoryError::invalid(
                    "peer",
                    true,
                    "PEER takes no swilu, no gate and v_dim = dim",
                )));
            }
            let peer = PeerConfig::new(c.keys()).init::<B>(device);
            let peer = peer.map_err(|e| self.layer_error(e))?;
            Ok(ReferenceLayer::Peer(Box::new(peer)))
        } else {
            let memory = MemoryLayerConfig::new(c.keys())
                .with_v_dim(Some(c.v_dim))
                .with_swilu(c.swilu)
                .with_gated(c.gated)
                .with_value_proj(self.contains("value_proj.weight"))
                .init_with_values::<B>(device);
            let memory = memory.map_err(|e| self.layer_error(e))?;
            Ok(ReferenceLayer::Memory(Box::new(memory)))
        }
    }

    /// Checks the header against the layer: every parameter present, f32 and of its shape, and
    /// no tensor that is neither a parameter nor extra.
    fn check_tensors<B: Backend>(&self, slots: &[Slot<'_, B>]) -> Result<(), ImportError> {
        for slot in slots {
            let info = self
                .tensors
                .get(&slot.name)
                .ok_or_else(|| ImportError::MissingTensor {
                    path: self.path.clone(),
                    name: slot.name.clone(),
                })?;
            let shape = slot.file_shape();
            if info.dtype != Dtype::F32 || info.shape != shape {
                return Err(ImportError::TensorType {
                    path: self.path.clone(),
                    name: slot.name.clone(),
                    expected: format!("F32 {shape:?}"),
                    actual: format!("{:?} {:?}", info.dtype, info.shape),
                });
            }
        }
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let known = |name: &str| (self.extra)(name) || slots.iter().any(|s| s.name == name);
        match names.into_iter().find(|name| !known(name)) {
            Some(name) => Err(ImportError::UnexpectedTensor {
                path: self.path.clone(),
                name: name.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Builds the layer the file describes, with the file's parameters.
    pub fn into_layer<B: Backend>(
        self,
        device: &B::Device,
    ) -> Result<ReferenceLayer<B>, ImportError> {
        let mut layer = self.init_layer::<B>(device)?;
        let slots = layer.slots();
        self.check_tensors(&slots)?;
        // Each reference name, exactly, to the parameter's path in the layer.
        let remapper = KeyRemapper::from_pattern_iter(slots.iter().map(|slot| {
            let name = slot.name.replace('.', r"\.");
            (format!("^{name}$"), slot.path.clone())
        }))
        .expect("escaped tensor names are valid patterns");
        layer.linears_mut().into_iter().for_each(column_major);
        let Self { path, bytes, .. } = self;
        let mut store = SafetensorsStore::from_bytes(Some(bytes)).remap(remapper);
        let loaded = match &mut layer {
            ReferenceLayer::Memory(memory) => memory.load_from(&mut store),
            ReferenceLayer::Peer(peer) => peer.load_from(&mut store),
        };
        loaded.map_err(|e| ImportError::Format {
            path,
            message: format!("cannot load the tensors: {e}"),
        })?;
        Ok(layer)
    }
}

/// Loads the layer stored in a reference file.
pub fn load_reference<B: Backend>(
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<(ReferenceLayer<B>, ReferenceConfig), ImportError> {
    let file = ReferenceFile::open(path)?;
    let config = file.config.clone();
    Ok((file.into_layer(device)?, config))
}
