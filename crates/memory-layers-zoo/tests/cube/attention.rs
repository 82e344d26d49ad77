// Causal attention on one CubeCL backend, included by cube.rs (wgpu) and cube_cuda.rs (CUDA)
// with the backend as `B`. Those backends take the chunked path (Burn's tensor operations, a
// chunk of query rows at a time, each row's log-sum-exp kept and the probabilities recomputed in
// the backward pass); its output and gradients must equal Flex's kernel on the same inputs.
// Flex's kernel is checked against Burn's attention in the crate's unit tests.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData, Tolerance};
use memory_layers_test_support::random_data;
use memory_layers_zoo::{ATTENTION_CHUNK, CausalBackend, Heads, causal_attention};

/// Query heads, key/value heads, head dimension, tokens a sequence: full and grouped key/value
/// heads; a sequence shorter than a chunk, one past a chunk (its last chunk ragged) and one row.
fn cases() -> [(Heads, usize, usize); 4] {
    let heads = |heads, kv_heads| Heads { heads, kv_heads };
    [
        (heads(4, 4), 32, 37),
        (heads(6, 2), 20, ATTENTION_CHUNK + 44),
        (heads(3, 1), 8, 129),
        (heads(2, 2), 4, 1),
    ]
}

/// `q`, `k`, `v` and an output weighting `w`, for 2 sequences of `len` tokens: four different
/// streams (with equal ones, a `k` read for `v` would pass).
fn inputs(heads: Heads, d: usize, len: usize, seed: u64) -> [TensorData; 4] {
    let (q, kv) = (heads.heads * d, heads.kv_heads * d);
    let widths = [q, kv, kv, q];
    std::array::from_fn(|j| {
        let data = random_data(vec![2, len, widths[j]], 4 * seed + j as u64, false);
        // Scores of a few units: the softmax is neither uniform nor one-hot.
        let scaled: Vec<f32> = data.iter::<f32>().map(|x| 1.5 * x).collect();
        TensorData::new(scaled, [2, len, widths[j]])
    })
}

/// The output of `causal_attention(q, k, v)` and the gradients of `Σ output ⊙ w` with
/// respect to `q`, `k` and `v`, on the autodiff backend `A`.
fn attend<A: AutodiffBackend + CausalBackend>(
    inputs: &[TensorData; 4],
    heads: Heads,
) -> [TensorData; 4] {
    let device = Default::default();
    let [q, k, v, w] = inputs
        .clone()
        .map(|data| Tensor::<A, 3>::from_data(data, &device));
    let [q, k, v] = [q, k, v].map(Tensor::require_grad);
    let out = causal_attention(q.clone(), k.clone(), v.clone(), heads).expect("an attention");
    let grads = (out.clone() * w).sum().backward();
    let grad = |x: &Tensor<A, 3>| x.grad(&grads).expect("a gradient").into_data();
    [out.into_data(), grad(&q), grad(&k), grad(&v)]
}

#[test]
fn the_chunked_attention_and_its_gradients_equal_flex() {
    for (i, (heads, d, len)) in cases().into_iter().enumerate() {
        let inputs = inputs(heads, d, len, i as u64);
        let ours = attend::<Autodiff<B>>(&inputs, heads);
        let flex = attend::<Autodiff<Flex>>(&inputs, heads);
        let names = ["output", "∂q", "∂k", "∂v"];
        for (name, (ours, flex)) in names.iter().zip(ours.iter().zip(&flex)) {
            println!("{heads:?}, head dim {d}, {len} tokens: {name}");
            ours.assert_approx_eq::<f32>(flex, Tolerance::rel_abs(1e-4, 1e-5));
        }
    }
}
