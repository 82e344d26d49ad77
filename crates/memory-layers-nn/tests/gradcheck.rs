//! Finite-difference gradient checks of whole layers, every variant, in f64.
//!
//! Every parameter tensor and the input are checked at the coordinates with the largest
//! analytic gradients plus a strided sample. A coordinate whose perturbation changes the
//! selected keys (a top-k boundary) is skipped; the test requires that almost none are.

use std::sync::Once;

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::backend::set_default_float_dtype;
use burn::tensor::ops::Device;
use burn::tensor::{Distribution, FloatDType, Tensor, TensorData};
use memory_layers_nn::{MemoryLayerConfig, MemoryOutput, PeerConfig, ProductKeysConfig};
use memory_layers_test_support::host_f64 as host;

type A = Autodiff<Flex>;
type Grads = <A as AutodiffBackend>::Gradients;

const STEP: f64 = 1e-6;
const TOKENS: usize = 6;

fn device() -> Device<A> {
    static F64: Once = Once::new();
    let device = Default::default();
    F64.call_once(|| set_default_float_dtype::<Flex>(&device, FloatDType::F64).unwrap());
    device
}

/// Collects every float parameter's id, values and analytic gradient.
struct Collect<'a> {
    grads: &'a Grads,
    params: Vec<(ParamId, Vec<usize>, Vec<f64>)>,
}

impl ModuleVisitor<A> for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
        let value = param.val();
        let shape = value.dims().to_vec();
        let grad = value
            .grad(self.grads)
            .map(|g| g.into_data().convert::<f64>().into_vec().unwrap())
            .unwrap_or_else(|| vec![0.0; shape.iter().product()]);
        self.params.push((param.id, shape, grad));
    }
}

/// Adds `delta` to one coordinate of one parameter.
struct Perturb {
    id: ParamId,
    index: usize,
    delta: f64,
}

impl ModuleMapper<A> for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<A, D>>) -> Param<Tensor<A, D>> {
        if param.id != self.id {
            return param;
        }
        let id = param.id;
        let value = param.val();
        let (shape, device) = (value.dims(), value.device());
        let mut data: Vec<f64> = value.into_data().convert::<f64>().into_vec().unwrap();
        data[self.index] += self.delta;
        Param::initialized(id, Tensor::from_data(TensorData::new(data, shape), &device))
    }
}

/// Coordinates to check: the largest analytic gradients and a strided sample.
fn coordinates(grad: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..grad.len()).collect();
    order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
    let mut picked: Vec<usize> = order.into_iter().take(24).collect();
    picked.extend((0..grad.len()).step_by(grad.len().div_ceil(12)));
    picked.sort_unstable();
    picked.dedup();
    picked
}

struct Subject<M> {
    module: M,
    dim: usize,
}

fn check<M: Module<A> + Clone>(
    name: &str,
    subject: Subject<M>,
    forward: impl Fn(&M, Tensor<A, 2>) -> MemoryOutput<A, 2>,
) {
    let device = device();
    let Subject { module, dim } = subject;
    let x = Tensor::<A, 2>::random([TOKENS, dim], Distribution::Normal(0.0, 1.0), &device);
    let g = Tensor::<A, 2>::random([TOKENS, dim], Distribution::Normal(0.0, 1.0), &device);
    let evaluate = |m: &M, x: Tensor<A, 2>| {
        let out = forward(m, x);
        let loss = (out.output * g.clone())
            .sum()
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap()[0];
        (loss, host(out.retrieval.indices.float()))
    };

    let x_tracked = x.clone().require_grad();
    let out = forward(&module, x_tracked.clone());
    let base_indices = host(out.retrieval.indices.clone().float());
    let grads = (out.output * g.clone()).sum().backward();
    let mut collect = Collect {
        grads: &grads,
        params: Vec::new(),
    };
    module.visit(&mut collect);
    let x_grad = host(x_tracked.grad(&grads).unwrap());

    let (mut checked, mut skipped) = (0, 0);
    let mut compare =
        |what: String, analytic: f64, plus: (f64, Vec<f64>), minus: (f64, Vec<f64>)| {
            if plus.1 != base_indices || minus.1 != base_indices {
                skipped += 1;
                return;
            }
            let numeric = (plus.0 - minus.0) / (2.0 * STEP);
            let tol = 1e-7 + 1e-5 * numeric.abs().max(analytic.abs());
            assert!(
                (numeric - analytic).abs() <= tol,
                "{name}: {what}: finite difference {numeric:.10e}, autodiff {analytic:.10e}"
            );
            checked += 1;
        };

    for (p, (id, shape, grad)) in collect.params.iter().enumerate() {
        for index in coordinates(grad) {
            let shifted = |delta| {
                let m = module.clone().map(&mut Perturb {
                    id: *id,
                    index,
                    delta,
                });
                evaluate(&m, x.clone())
            };
            compare(
                format!("param #{p} {shape:?} [{index}]"),
                grad[index],
                shifted(STEP),
                shifted(-STEP),
            );
        }
    }
    let x_data = host(x.clone());
    for index in coordinates(&x_grad) {
        let shifted = |delta| {
            let mut data = x_data.clone();
            data[index] += delta;
            evaluate(
                &module,
                Tensor::from_data(TensorData::new(data, [TOKENS, dim]), &device),
            )
        };
        compare(
            format!("input [{index}]"),
            x_grad[index],
            shifted(STEP),
            shifted(-STEP),
        );
    }
    assert!(checked >= 40, "{name}: only {checked} coordinates checked");
    assert!(
        skipped * 20 <= checked,
        "{name}: {skipped} of {} coordinates hit a top-k boundary",
        checked + skipped
    );
}

fn memory(config: MemoryLayerConfig) {
    let device = device();
    let name = format!("{config:?}");
    let dim = config.dim();
    let memory = config.init_with_values::<A>(&device).unwrap();
    check(
        &name,
        Subject {
            module: memory,
            dim,
        },
        |m, x| m.forward(x).unwrap(),
    );
}

#[test]
fn memory_plain() {
    memory(MemoryLayerConfig::new(ProductKeysConfig::new(
        8, 2, 4, 3, 5,
    )));
}

#[test]
fn memory_plus() {
    memory(MemoryLayerConfig::new(ProductKeysConfig::new(8, 2, 6, 4, 5)).with_swilu(true));
}

#[test]
fn memory_gated_with_value_dim() {
    memory(
        MemoryLayerConfig::new(ProductKeysConfig::new(8, 3, 4, 2, 4))
            .with_gated(true)
            .with_v_dim(Some(12)),
    );
}

#[test]
fn memory_plus_gated_qk_norm() {
    memory(
        MemoryLayerConfig::new(ProductKeysConfig::new(10, 2, 4, 3, 6))
            .with_swilu(true)
            .with_gated(true)
            .with_qk_norm(true)
            .with_v_dim(Some(6)),
    );
}

#[test]
fn peer() {
    let device = device();
    let config = PeerConfig::new(ProductKeysConfig::new(8, 2, 4, 3, 5));
    let peer = config.init::<A>(&device).unwrap();
    check(
        "peer",
        Subject {
            module: peer,
            dim: 8,
        },
        |m, x| m.forward(x).unwrap(),
    );
}
