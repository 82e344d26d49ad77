use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use burn_store::{ModuleStore, SafetensorsStore};

use memory_layers_nn::import::ImportError;

use crate::ParityError;

/// The tensors a fixture holds besides the layer's parameters and the expected gradients
/// (`grad.input`, `grad.<parameter>`): the input, the upstream gradient, and the expected
/// output, indices and scores.
pub(crate) const FIXTURE_TENSORS: [&str; 5] =
    ["input", "grad_output", "output", "indices", "scores"];

/// Whether `name` is one of a fixture's own tensors rather than a parameter of its layer.
pub(crate) fn is_fixture_tensor(name: &str) -> bool {
    FIXTURE_TENSORS.contains(&name) || name.starts_with("grad.")
}

/// A fixture's own tensors, read on demand.
pub(crate) struct Fixture {
    path: PathBuf,
    store: SafetensorsStore,
}

impl Fixture {
    /// The fixture at `path` (read when a tensor is first asked for).
    pub(crate) fn open(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref().to_path_buf();
        let store = SafetensorsStore::from_file(&path);
        Self { path, store }
    }

    /// The fixture's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor name in the file.
    pub(crate) fn names(&mut self) -> Result<Vec<String>, ParityError> {
        self.store.keys().map_err(|e| read_error(&self.path, e))
    }

    /// Tensor `name` as f32 values on the host, with its shape; checks the dtype.
    pub(crate) fn f32_data(&mut self, name: &str) -> Result<TensorData, ParityError> {
        self.data(name, DType::F32)
    }

    /// Tensor `name` as i64 values on the host, with its shape; checks the dtype.
    pub(crate) fn i64_data(&mut self, name: &str) -> Result<TensorData, ParityError> {
        self.data(name, DType::I64)
    }

    /// Tensor `name` of shape `shape` (f32), on `device`.
    pub(crate) fn tensor<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ParityError> {
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

    fn data(&mut self, name: &str, dtype: DType) -> Result<TensorData, ParityError> {
        let snapshot = self
            .store
            .get_snapshot(name)
            .map_err(|e| read_error(&self.path, e))?
            .cloned()
            .ok_or_else(|| ImportError::MissingTensor {
                path: self.path.clone(),
                name: name.into(),
            })?;
        if snapshot.dtype != dtype {
            let actual = format!("{:?} {:?}", snapshot.dtype, snapshot.shape.as_slice());
            return Err(self.type_error(name, format!("{dtype:?}"), actual));
        }
        let data = snapshot.to_data();
        data.map_err(|e| read_error(&self.path, format!("tensor `{name}`: {e:?}")))
    }

    fn type_error(&self, name: &str, expected: String, actual: String) -> ParityError {
        ImportError::TensorType {
            path: self.path.clone(),
            name: name.into(),
            expected,
            actual,
        }
        .into()
    }
}

fn read_error(path: &Path, error: impl std::fmt::Display) -> ParityError {
    ImportError::Format {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
    .into()
}
