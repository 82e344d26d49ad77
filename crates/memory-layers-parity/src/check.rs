use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use memory_layers_keys::reference::{TopK, TopKMismatch, compare_topk};
use memory_layers_nn::MemoryBackend;
use memory_layers_nn::import::{ImportError, ReferenceConfig, ReferenceFile, ReferenceParam};

use crate::ParityError;
use crate::fixture::{FIXTURE_TENSORS, Fixture, is_fixture_tensor};

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
) -> Result<ParityReport, ParityError>
where
    B: AutodiffBackend + MemoryBackend,
{
    let path = path.as_ref();
    let file = ReferenceFile::open(path)?.with_extra(is_fixture_tensor);
    let config = file.config().clone();
    let layer = file.into_layer::<B>(device)?;
    let mut fixture = Fixture::open(path);
    let params = layer.reference_params();
    check_gradient_names(&mut fixture, &params)?;

    let input = fixture.f32_data("input")?;
    let [t, dim] = match input.shape.as_slice() {
        &[t, dim] => [t, dim],
        shape => {
            return Err(ImportError::TensorType {
                path: path.to_path_buf(),
                name: "input".into(),
                expected: "F32 [T, dim]".into(),
                actual: format!("F32 {shape:?}"),
            }
            .into());
        }
    };
    let input = Tensor::<B, 2>::from_data(input, device).require_grad();
    let grad_output = fixture.tensor::<B, 2>("grad_output", [t, dim], device)?;
    let result = layer
        .forward(input.clone())
        .map_err(|source| ImportError::Layer {
            path: path.to_path_buf(),
            source,
        })?;
    let grads = (result.output.clone() * grad_output).sum().backward();

    let mut checks = Vec::new();
    let mut check = |name: &str, actual: TensorData| -> Result<(), ParityError> {
        let expected = fixture.f32_data(name)?;
        checks.push(compare(name, &actual, &expected, tolerance));
        Ok(())
    };
    check("output", result.output.to_data())?;
    check("scores", result.retrieval.scores.to_data())?;
    let missing_grad = |name: &str| ParityError::MissingGradient {
        path: path.to_path_buf(),
        name: name.into(),
    };
    let input_grad = input.grad(&grads).ok_or_else(|| missing_grad("input"))?;
    check("grad.input", input_grad.into_data())?;
    for (name, param) in params {
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
        scores: f64s(&fixture.f32_data("scores")?),
        indices: fixture
            .i64_data("indices")?
            .into_vec::<i64>()
            .expect("checked to be i64"),
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
        path: path.to_path_buf(),
        config,
        checks,
        retrieval,
    })
}

/// Every `grad.X` in the fixture names the input, a fixture tensor or a parameter of the layer.
fn check_gradient_names<B: burn::tensor::backend::Backend>(
    fixture: &mut Fixture,
    params: &[(String, ReferenceParam<B>)],
) -> Result<(), ParityError> {
    let mut names = fixture.names()?;
    names.sort();
    let known = |name: &str| FIXTURE_TENSORS.contains(&name) || params.iter().any(|p| p.0 == name);
    let stray = names
        .into_iter()
        .find(|name| name.strip_prefix("grad.").is_some_and(|of| !known(of)));
    match stray {
        Some(name) => Err(ImportError::UnexpectedTensor {
            path: fixture.path().to_path_buf(),
            name,
        }
        .into()),
        None => Ok(()),
    }
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
