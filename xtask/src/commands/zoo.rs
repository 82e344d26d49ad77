//! `cargo xtask zoo`: total and active parameters and FLOPs per token of every preset × model.

use std::path::PathBuf;

use anyhow::Context;
use memory_layers_zoo::{ModelKind, Size, account, preset};
use serde::Serialize;

/// Arguments of `cargo xtask zoo`.
#[derive(clap::Args)]
pub struct ZooArgs {
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One model of the table.
#[derive(Serialize)]
struct Row {
    model: ModelKind,
    size: Size,
    n_keys: Option<usize>,
    total_params: u64,
    active_params: u64,
    flops_per_token: u64,
}

/// Every preset × model, plus the paper's memory-size sweep at 1.3b.
fn rows() -> Vec<Row> {
    let mut configs = Vec::new();
    for size in Size::ALL {
        for kind in ModelKind::ALL {
            configs.push((kind, size, None));
        }
    }
    for n_keys in [2048, 4096, 8192] {
        configs.push((ModelKind::MemoryPlus, Size::B1_3, Some(n_keys)));
    }
    configs
        .into_iter()
        .map(|(kind, size, n_keys)| {
            let config = preset(kind, size, n_keys);
            let counts = account(&config);
            Row {
                model: kind,
                size,
                n_keys: kind
                    .has_product_keys()
                    .then_some(config.product_keys.n_keys),
                total_params: counts.total_params,
                active_params: counts.active_params,
                flops_per_token: counts.flops_per_token,
            }
        })
        .collect()
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.3}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// Prints the table (and writes JSON when asked).
pub fn run(args: ZooArgs) -> anyhow::Result<()> {
    let rows = rows();
    println!(
        "{:<12} {:<6} {:>7} {:>12} {:>12} {:>14}",
        "model", "size", "n_keys", "total", "active", "GFLOPs/token"
    );
    for r in &rows {
        let inferred = r.size.inferred();
        println!(
            "{:<12} {:<6} {:>7} {:>12} {:>12} {:>14.3}{}",
            r.model,
            r.size,
            r.n_keys.map_or("-".into(), |n| n.to_string()),
            human(r.total_params),
            human(r.active_params),
            r.flops_per_token as f64 / 1e9,
            if inferred { "  (inferred dims)" } else { "" },
        );
    }
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&rows)?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
