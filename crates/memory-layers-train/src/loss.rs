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

/// Next-token NLL `[batch, seq_len]` of `batch` sequences of `seq_len + 1` tokens (inputs,
/// then targets shifted by one), and the model's output.
/// With `values`, the memory layers read it instead of the model's pool.
fn token_nlls<B: ZooBackend>(
    model: &Transformer<B>,
    tokens: &[u32],
    batch: usize,
    device: &B::Device,
    values: Option<&dyn ValueStore<B>>,
) -> Result<(Tensor<B, 2>, ModelOutput<B>), TrainError> {
    let all = token_tensor::<B>(tokens, batch, device);
    let [_, window] = all.dims();
    let inputs = all.clone().slice_dim(1, 0..window - 1);
    let targets = all.slice_dim(1, 1..window);
    let out = match values {
        Some(values) => model.forward_with_values(inputs, values)?,
        None => model.forward(inputs)?,
    };
    Ok((token_nll(out.logits.clone(), targets), out))
}

/// Mean next-token NLL of `batch` sequences (the training loss), and the model's output.
pub(crate) fn lm_loss<B: ZooBackend>(
    model: &Transformer<B>,
    tokens: &[u32],
    batch: usize,
    device: &B::Device,
    values: Option<&dyn ValueStore<B>>,
) -> Result<(Tensor<B, 1>, ModelOutput<B>), TrainError> {
    let (nll, out) = token_nlls(model, tokens, batch, device, values)?;
    Ok((nll.mean(), out))
}

/// Each sequence's mean next-token NLL, and the model's output.
pub(crate) fn sequence_losses<B: ZooBackend>(
    model: &Transformer<B>,
    tokens: &[u32],
    batch: usize,
    device: &B::Device,
) -> Result<(Vec<f64>, ModelOutput<B>), TrainError> {
    let (nll, out) = token_nlls(model, tokens, batch, device, None)?;
    let means = nll
        .mean_dim(1)
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .expect("f64 after conversion");
    Ok((means, out))
}
