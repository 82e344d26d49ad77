use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// `Normal(0, std)` truncated at ±3σ, for the transformer's weights (`std = dim^-½`).
/// Out-of-range draws are redrawn; after a few rounds the rare survivors are clamped. Drawn at
/// once (not lazily), so the order of initialisation fixes the draws.
pub(crate) fn trunc_normal<B: Backend, const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &B::Device,
) -> Tensor<B, D> {
    let normal = Distribution::Normal(0.0, std);
    let mut x = Tensor::<B, D>::random(shape, normal, device);
    for _ in 0..4 {
        let outside = x.clone().abs().greater_elem(3.0 * std);
        x = x.mask_where(outside, Tensor::random(shape, normal, device));
    }
    x.clamp(-3.0 * std, 3.0 * std)
}

/// A bias-free `Linear(d_in → d_out)` with truncated-normal weights.
pub(crate) fn linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    std: f64,
    device: &B::Device,
) -> Linear<B> {
    let weight = Param::from_tensor(trunc_normal([d_in, d_out], std, device));
    memory_layers_keys::init::linear(weight, false)
}
