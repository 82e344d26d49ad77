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

/// The tensors' values on the host, one after another (the blocks a collective returns).
pub fn host_all<B: Backend, const D: usize>(tensors: Vec<Tensor<B, D>>) -> Vec<f32> {
    tensors.into_iter().flat_map(host).collect()
}

/// Sparse rows as the dense `[n_rows, width]` table they stand for, zeros elsewhere: row
/// `ids[u]` is `rows[u·width..(u + 1)·width]`. Sparse gradients are checked against dense ones.
pub fn densify(ids: &[i64], rows: &[f32], n_rows: usize, width: usize) -> Vec<f32> {
    let mut dense = vec![0.0; n_rows * width];
    for (u, &id) in ids.iter().enumerate() {
        let id = id as usize;
        dense[id * width..(id + 1) * width].copy_from_slice(&rows[u * width..(u + 1) * width]);
    }
    dense
}

/// Checks `|actual - expected| ≤ tolerance · (1 + |expected|)` element-wise (a NaN is never
/// close); the error names `what` and the first element off.
pub fn check_close(
    actual: &[f32],
    expected: &[f32],
    tolerance: f32,
    what: &str,
) -> Result<(), String> {
    if actual.len() != expected.len() {
        return Err(format!(
            "{what}: {} vs {} elements",
            actual.len(),
            expected.len()
        ));
    }
    match actual
        .iter()
        .zip(expected)
        .position(|(&a, &e)| !within(a, e, tolerance))
    {
        Some(i) => Err(format!(
            "{what}, element {i}: {} vs {}",
            actual[i], expected[i]
        )),
        None => Ok(()),
    }
}

/// Asserts [`check_close`]: panics with its message.
pub fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32, what: &str) {
    if let Err(message) = check_close(actual, expected, tolerance, what) {
        panic!("{message}");
    }
}

/// `|actual - expected| ≤ tolerance · (1 + |expected|)`: false when either is NaN.
fn within(actual: f32, expected: f32, tolerance: f32) -> bool {
    (actual - expected).abs() <= tolerance * (1.0 + expected.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_close_is_relative_to_one_plus_the_expected_value() {
        assert_eq!(check_close(&[1.0, 102.0], &[1.0, 100.0], 0.02, "x"), Ok(()));
        assert_eq!(
            check_close(&[1.0, 103.0], &[1.0, 100.0], 0.02, "x"),
            Err("x, element 1: 103 vs 100".into())
        );
        assert_eq!(
            check_close(&[f32::NAN], &[f32::NAN], 1.0, "nan"),
            Err("nan, element 0: NaN vs NaN".into())
        );
        assert_eq!(
            check_close(&[1.0], &[1.0, 2.0], 0.0, "len"),
            Err("len: 1 vs 2 elements".into())
        );
    }

    #[test]
    fn densify_places_each_row_at_its_id() {
        assert_eq!(
            densify(&[2, 0], &[1.0, 2.0, 3.0, 4.0], 3, 2),
            [3.0, 4.0, 0.0, 0.0, 1.0, 2.0]
        );
    }

    #[test]
    #[should_panic(expected = "y, element 0: 2 vs 1")]
    fn assert_close_panics_with_the_message() {
        assert_close(&[2.0], &[1.0], 0.1, "y");
    }
}
