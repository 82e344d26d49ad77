//! Checks a layer against a reference fixture (design.md, "Parity fixtures"): the file's
//! parameters are imported with [`crate::import`], the forward and backward passes run here,
//! and every result is compared with the file's expected tensors.
//!
//! Tensors are compared by their normwise relative error `max|ours − ref| / max|ref|`
//! (denominator at least 1e-6). Indices are compared up to ties (see
//! [`memory_keys::reference::compare_topk`]).

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use memory_keys::reference::{TopK, TopKMismatch, compare_topk};

use crate::MemoryBackend;
use crate::import::{ImportError, ReferenceConfig, ReferenceFile, ReferenceParam};

/// Default tolerance on f32 results: 1e-4 relative.
pub const F32_TOLERANCE: f64 = 1e-4;

/// The comparison of one tensor.
#[derive(Debug, Clone)]
pub struct TensorCheck {
    /// Tensor name in the fixture.
    pub name: String,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// `max_abs / max|expected|`.
    pub relative: f64,
    /// Whether `relative` is within the tolerance.
    pub passed: bool,
}

/// The outcome of checking one fixture.
#[derive(Debug, Clone)]
pub struct ParityReport {
    /// The fixture.
    pub path: PathBuf,
    /// Its layer configuration.
    pub config: ReferenceConfig,
    /// Every tensor compared, outputs then gradients.
    pub checks: Vec<TensorCheck>,
    /// The comparison of indices and scores up to ties.
    pub retrieval: Result<(), TopKMismatch>,
}

impl ParityReport {
    /// Whether every comparison passed.
    pub fn passed(&self) -> bool {
        self.retrieval.is_ok() && self.checks.iter().all(|c| c.passed)
    }
}

/// Runs the fixture at `path` on backend `B` and compares with its expected tensors.
pub fn check_fixture<B>(
    path: impl AsRef<Path>,
    device: &B::Device,
    tolerance: f64,
) -> Result<ParityReport, ImportError>
where
    B: AutodiffBackend + MemoryBackend,
{
    let file = ReferenceFile::open(path)?;
    let layer = file.layer::<B>(device)?;
    let input = file.f32_data("input")?;
    let [t, dim] = input.shape.dims::<2>();
    let input = Tensor::<B, 2>::from_data(input, device).require_grad();
    let grad_output = file.tensor::<B, 2>("grad_output", [t, dim], device)?;
    let result = layer
        .forward(input.clone())
        .map_err(|source| ImportError::Layer {
            path: file.path().to_path_buf(),
            source,
        })?;
    let grads = (result.output.clone() * grad_output).sum().backward();

    let mut checks = Vec::new();
    let mut check = |name: &str, actual: TensorData| -> Result<(), ImportError> {
        let expected = file.f32_data(name)?;
        checks.push(compare(name, &actual, &expected, tolerance));
        Ok(())
    };
    check("output", result.output.to_data())?;
    check("scores", result.retrieval.scores.to_data())?;
    let missing_grad = |name: &str| ImportError::MissingTensor {
        path: file.path().to_path_buf(),
        name: format!("gradient of {name} (not computed)"),
    };
    let input_grad = input.grad(&grads).ok_or_else(|| missing_grad("input"))?;
    check("grad.input", input_grad.into_data())?;
    for (name, param) in layer.reference_params() {
        let grad = match param {
            ReferenceParam::Matrix(p) => p.grad(&grads).map(|g| g.into_data()),
            ReferenceParam::LinearWeight(p) => p.grad(&grads).map(|g| g.transpose().into_data()),
            ReferenceParam::Vector(p) => p.grad(&grads).map(|g| g.into_data()),
        };
        check(
            &format!("grad.{name}"),
            grad.ok_or_else(|| missing_grad(&name))?,
        )?;
    }

    let actual = TopK::from_retrieval(&result.retrieval);
    let expected = TopK {
        k: actual.k,
        scores: f64s(&file.f32_data("scores")?),
        indices: file
            .i64_data("indices")?
            .into_vec::<i64>()
            .expect("decoded as i64"),
    };
    // The true score of an index is known when the reference selected it too.
    let score_of = |row: usize, index: i64| {
        let range = row * expected.k..(row + 1) * expected.k;
        let position = expected.indices[range.clone()]
            .iter()
            .position(|&i| i == index)?;
        Some(expected.scores[range.start + position])
    };
    let retrieval = compare_topk(&actual, &expected, score_of, tolerance);

    Ok(ParityReport {
        path: file.path().to_path_buf(),
        config: file.config().clone(),
        checks,
        retrieval,
    })
}

fn compare(name: &str, actual: &TensorData, expected: &TensorData, tolerance: f64) -> TensorCheck {
    if actual.shape != expected.shape {
        return TensorCheck {
            name: format!("{name} (shape {:?} vs {:?})", actual.shape, expected.shape),
            max_abs: f64::INFINITY,
            relative: f64::INFINITY,
            passed: false,
        };
    }
    let (actual, expected) = (f64s(actual), f64s(expected));
    let max_abs = actual
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f64::max);
    let scale = expected.iter().map(|e| e.abs()).fold(1e-6, f64::max);
    let relative = max_abs / scale;
    TensorCheck {
        name: name.into(),
        max_abs,
        relative,
        passed: relative <= tolerance,
    }
}

fn f64s(data: &TensorData) -> Vec<f64> {
    data.clone()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("converted to f64")
}
