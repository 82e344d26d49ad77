//! What `train` prints when a run ends: its summary table, and beside the default run, the
//! committed result of the `models` suite at the same budget.

use memory_layers_experiments::{Spread, SummaryRow, default_run, groups, si};
use memory_layers_train::{TrainConfig, TrainSummary};

/// The committed result of `experiment models` (docs/results/models/summary.json), built
/// into the binary so that it travels with it.
const REFERENCE: &str = include_str!("../../../docs/results/models/summary.json");

/// After a run of the `models` suite's base (the default `train`), the suite's committed
/// results at the same budget: dense at the same FLOPs per token, and at about 2× and 4×.
pub(crate) fn print_reference(config: &TrainConfig) {
    let mut base = default_run(config.model.kind);
    (base.run.out, base.run.seed) = (config.run.out.clone(), config.run.seed);
    if base != *config {
        return;
    }
    let rows: Vec<SummaryRow> = match serde_json::from_str(REFERENCE) {
        Ok(rows) => rows,
        Err(err) => {
            println!("(the committed `experiment models` result does not parse: {err})");
            return;
        }
    };
    println!(
        "\nthe committed `experiment models` result at the same {} tokens (docs/results.md):",
        si(config.optim.steps as f64 * (config.optim.batch_size * config.optim.seq_len) as f64)
    );
    println!(
        "{:<14} {:>12} {:>12} {:>14} {:>10}",
        "run", "FLOPs/token", "val loss", "fact recall %", "QA EM %"
    );
    for group in groups(&rows) {
        let mean = |f: &dyn Fn(&SummaryRow) -> Option<f64>| {
            Spread::of(group.rows.iter().filter_map(|r| f(r))).map_or(f64::NAN, |s| s.mean)
        };
        println!(
            "{:<14} {:>12} {:>12.3} {:>14.1} {:>10.1}",
            group.label,
            si(group.rows[0].flops_per_token as f64),
            mean(&|r| Some(r.val_loss)),
            mean(&|r| r.fact_recall),
            mean(&|r| Some(r.qa_exact_match)),
        );
    }
}

/// The end-of-run table.
pub(crate) fn print_summary(s: &TrainSummary) {
    let e = &s.eval;
    let c = &s.config;
    let rows = [
        (
            "model",
            format!(
                "{} (dim {}, {} blocks)",
                c.model.kind, c.model.dim, c.model.layers
            ),
        ),
        ("steps", s.steps.to_string()),
        ("tokens", s.tokens.to_string()),
        (
            "train time",
            format!(
                "{:.0} s ({:.0} tokens/s)",
                s.train_seconds,
                s.tokens as f64 / s.train_seconds.max(1e-9)
            ),
        ),
        ("final train loss", format!("{:.4}", s.final_loss)),
        (
            "val loss / ppl",
            format!("{:.4} / {:.2}", e.val_loss, e.val_ppl),
        ),
    ];
    let probes = if e.qa_total == 0 {
        vec![("QA", "no QA set".to_string())]
    } else {
        vec![
            (
                "QA exact match",
                format!(
                    "{:.2}% ({} of {} questions asked)",
                    e.qa_exact_match, e.qa_count, e.qa_total
                ),
            ),
            ("QA F1", format!("{:.2}%", e.qa_f1)),
            ("QA answer NLL", format!("{:.4}", e.qa_answer_nll)),
        ]
    };
    let recall = match e.fact_recall {
        Some(recall) => format!(
            "{recall:.2}% ({} of {} probes asked)",
            e.recall_count, e.recall_total
        ),
        None => "no recall probes".to_string(),
    };
    println!("\n{:-<60}", "");
    for (name, value) in rows.into_iter().chain(probes) {
        println!("{name:<20} {value}");
    }
    println!("{:<20} {recall}", "fact recall");
    for layer in &e.memory_layers {
        println!(
            "{:<20} used {:.1}%  KL(uniform) {:.3}  top-1 score {:.3}",
            format!("memory @ block {}", layer.layer),
            layer.usage.used_pct,
            layer.usage.kl_uniform,
            layer.usage.top1_score
        );
    }
    println!("{:-<60}", "");
    println!(
        "wrote {}/{{config.toml, metrics.jsonl, eval.json, loss.svg, checkpoint/}}",
        c.run.out.display()
    );
}
