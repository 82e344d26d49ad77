//! The Flex pair-score kernels against the tensor-op reference, forward and backward, and the
//! gradient through `Autodiff<Flex>` against the reference backward.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Int, Tensor, TensorData, TensorPrimitive};
use memory_layers_keys::{RetrievalBackend, reference};
use memory_layers_test_support::{Lcg, assert_close, host, random_data};

type B = Flex;

/// Sub-key scores `[heads, 2, T, n]` and positions `[heads, T, knn]` drawn with repeats (a
/// sub-key is shared by several of a row's pairs). Positions come from the generator's high
/// bits: its low bits cycle through every residue of a power of two without repeating.
fn inputs(
    heads: usize,
    t: usize,
    n: usize,
    knn: usize,
    seed: u64,
) -> (Tensor<B, 4>, Tensor<B, 3, Int>, Tensor<B, 3, Int>) {
    let device = Default::default();
    let scores = Tensor::from_data(random_data(vec![heads, 2, t, n], seed, false), &device);
    let mut rng = Lcg::new(seed);
    let mut ids = || {
        let ids: Vec<i64> = (0..heads * t * knn)
            .map(|_| ((rng.next_u64() >> 33) % n as u64) as i64)
            .collect();
        Tensor::from_data(TensorData::new(ids, [heads, t, knn]), &device)
    };
    (scores, ids(), ids())
}

#[test]
fn kernels_equal_the_reference() {
    for (heads, t, n, knn, seed) in [
        (1, 1, 1, 1, 1),
        (2, 3, 5, 4, 2),
        (4, 17, 64, 16, 3),
        (3, 40, 8, 8, 4),
    ] {
        let (scores, i1, i2) = inputs(heads, t, n, knn, seed);
        let expected = reference::pair_scores(scores.clone(), i1.clone(), i2.clone());
        let actual = B::pair_scores(
            scores.into_primitive().tensor(),
            i1.clone().into_primitive(),
            i2.clone().into_primitive(),
        );
        let actual = Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(actual));
        assert_eq!(actual.dims(), [t * heads, knn]);
        assert_close(&host(actual), &host(expected), 1e-6, "pair scores");

        let device = Default::default();
        let grad =
            Tensor::<B, 2>::from_data(random_data(vec![t * heads, knn], seed + 9, false), &device);
        let expected = reference::pair_scores_backward(grad.clone(), i1.clone(), i2.clone(), n);
        let actual = B::pair_scores_backward(
            grad.into_primitive().tensor(),
            i1.into_primitive(),
            i2.into_primitive(),
            n,
        );
        let actual = Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(actual));
        assert_eq!(actual.dims(), [heads, 2, t, n]);
        assert_close(&host(actual), &host(expected), 1e-5, "pair score gradient");
    }
}

#[test]
fn autodiff_gradient_equals_the_reference_backward() {
    type A = Autodiff<Flex>;
    let (heads, t, n, knn) = (2, 6, 16, 5);
    let (scores, i1, i2) = inputs(heads, t, n, knn, 7);
    let device = Default::default();
    let weights = Tensor::<B, 2>::from_data(random_data(vec![t * heads, knn], 8, false), &device);

    let tracked = Tensor::<A, 4>::from_inner(scores.clone()).require_grad();
    let picked = A::pair_scores(
        tracked.clone().into_primitive().tensor(),
        i1.clone().into_primitive(),
        i2.clone().into_primitive(),
    );
    let picked = Tensor::<A, 2>::from_primitive(TensorPrimitive::Float(picked));
    let grads = (picked * Tensor::from_inner(weights.clone()))
        .sum()
        .backward();
    let actual = tracked.grad(&grads).expect("scores take part in the loss");

    let expected = reference::pair_scores_backward(weights, i1, i2, n);
    assert_close(&host(actual), &host(expected), 1e-5, "scores' gradient");
}

#[test]
#[should_panic(expected = "pair position 9 outside 0..8 sub-keys")]
fn a_position_past_the_sub_keys_is_named() {
    let (scores, i1, _) = inputs(1, 2, 8, 3, 5);
    let device = Default::default();
    let bad = Tensor::<B, 3, Int>::from_data(
        TensorData::new(vec![0i64, 1, 9, 2, 3, 4], [1, 2, 3]),
        &device,
    );
    B::pair_scores(
        scores.into_primitive().tensor(),
        i1.into_primitive(),
        bad.into_primitive(),
    );
}
