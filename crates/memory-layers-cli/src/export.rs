//! `export`: writes a trained run's weights under Hugging Face Llama names (the work is
//! `memory_layers_train::export_run`).

use std::path::PathBuf;

use burn::backend::Flex;
use memory_layers_data::TOKENIZER_FILE;
use memory_layers_train::export_run;
use memory_layers_zoo::hf::{CHECK_FILE, CONFIG_FILE, MODEL_FILE};

/// Arguments of `memory-layers export` (and `cargo xtask export`).
#[derive(clap::Args)]
pub struct ExportArgs {
    /// Run directory (or its checkpoint folder).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Folder to write model.safetensors, config.json, check.safetensors and the run's
    /// tokenizer.json into (created if needed; those files are replaced).
    #[arg(long)]
    out: PathBuf,
}

/// Exports on the CPU and prints what was written.
pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let summary = export_run::<Flex>(&args.checkpoint, &args.out, &Default::default())?;
    let params: usize = summary
        .model
        .tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>())
        .sum();
    println!(
        "wrote {} ({} tensors, {params} parameters), {CONFIG_FILE}, {CHECK_FILE} ({} tokens){} \
         into {}",
        MODEL_FILE,
        summary.model.tensors.len(),
        summary.check_tokens.len(),
        if summary.tokenizer {
            format!(", {TOKENIZER_FILE}")
        } else {
            String::new()
        },
        args.out.display()
    );
    println!(
        "check: python tools/export/check_logits.py {}",
        args.out.display()
    );
    Ok(())
}
