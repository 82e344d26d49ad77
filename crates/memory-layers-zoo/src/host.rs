//! Host views of Flex tensors for the model's Flex kernels (gate, token NLL, attention).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::ops::IntTensor;

/// The f32 values of a contiguous f32 tensor.
pub(crate) fn f32s(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().expect("a contiguous f32 tensor")
}

/// The values of an int tensor of any int type, as `i64`.
pub(crate) fn ints(tensor: IntTensor<Flex>) -> Vec<i64> {
    let tensor = tensor.to_contiguous();
    match (tensor.as_slice::<i64>(), tensor.as_slice::<i32>()) {
        (Some(ids), _) => ids.to_vec(),
        (_, Some(ids)) => ids.iter().map(|&id| i64::from(id)).collect(),
        _ => tensor
            .into_data()
            .convert::<i64>()
            .into_vec()
            .expect("converted to i64"),
    }
}
