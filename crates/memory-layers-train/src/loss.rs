use burn::tensor::{Int, Tensor, TensorData};
use memory_layers_nn::ValueStore;
use memory_layers_zoo::ZooBackend;
use memory_layers_zoo::{ModelOutput, Transformer, token_nll};

use crate::TrainError;

/// Token ids `[batch, len]` on the device.
pub(crate) fn token_tensor<B: ZooBackend>(
    tokens: &[u32],
    batch: usize,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let len = tokens.len() / batch;
    let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(ids, [batch, len]), device)
}

/// Mean next-token NLL of `batch` sequences of `seq_len + 1` tokens (inputs, then targets
/// shifted by one), and the model's output.
/// With `values`, the memory layers read it instead of the model's pool.
pub(crate) fn lm_loss<B: ZooBackend>(
    model: &Transformer<B>,
    tokens: &[u32],
    batch: usize,
    device: &B::Device,
    values: Option<&dyn ValueStore<B>>,
) -> Result<(Tensor<B, 1>, ModelOutput<B>), TrainError> {
    let all = token_tensor::<B>(tokens, batch, device);
    let [_, window] = all.dims();
    let inputs = all.clone().slice_dim(1, 0..window - 1);
    let targets = all.slice_dim(1, 1..window);
    let out = match values {
        Some(values) => model.forward_with_values(inputs, values)?,
        None => model.forward(inputs)?,
    };
    let loss = token_nll(out.logits.clone(), targets).mean();
    Ok((loss, out))
}
