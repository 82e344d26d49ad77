//! Seeded initialisation and forward passes are reproducible. Alone in its binary: the seed is
//! global to the device.

use burn::backend::Flex;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use memory_layers_nn::MemoryLayerConfig;
use memory_layers_test_support::host;

fn run(seed: u64) -> Vec<f32> {
    let device = Default::default();
    Flex::seed(&device, seed);
    let memory = MemoryLayerConfig::memory_plus(16, 6)
        .with_knn(3)
        .init_with_values::<Flex>(&device)
        .unwrap();
    let x = Tensor::<Flex, 2>::random([4, 16], burn::tensor::Distribution::Default, &device);
    let mut out = host(memory.forward(x).unwrap().output);
    out.extend(host(memory.values.weight.val()));
    out
}

#[test]
fn same_seed_same_layer_and_output() {
    let first = run(7);
    assert_eq!(first, run(7));
    assert_ne!(first, run(8));
}
