use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// The tensor's values on the host, as `f32`.
pub fn host<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().to_vec().unwrap()
}

/// The tensor's values on the host, as `f64` (gradient checks in double precision).
pub fn host_f64<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f64> {
    tensor.into_data().convert::<f64>().to_vec().unwrap()
}

/// The integer tensor's values on the host, as `i64`.
pub fn host_ints<B: Backend, const D: usize>(tensor: Tensor<B, D, Int>) -> Vec<i64> {
    tensor.into_data().convert::<i64>().to_vec().unwrap()
}

/// Asserts `|actual - expected| ≤ tolerance · (1 + |expected|)` element-wise; the message
/// names `what` and the first element off.
pub fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tolerance * (1.0 + e.abs()),
            "{what}, element {i}: {a} vs {e}"
        );
    }
}
