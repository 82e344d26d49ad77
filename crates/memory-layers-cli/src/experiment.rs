//! `experiment SUITE`: trains a suite of runs that reproduce one of the paper's comparisons in
//! shape, and writes its summary, table and figures (docs/results.md).

use std::path::PathBuf;
use std::time::Duration;

use memory_layers_experiments::{
    Base, Budget, ContinualRow, Event, Suite, SuiteDir, SuitePlan, SummaryRow, continual_markdown,
    run_continual, run_suite,
};
use memory_layers_train::TrainBackend;

use crate::backend::{BackendKind, Job, dispatch};

/// Arguments of `memory-layers experiment` (and `cargo xtask experiment`).
#[derive(clap::Args)]
pub struct ExperimentArgs {
    /// The suite: models, memory-size, ablations, capacity or continual.
    suite: Suite,
    /// Training text instead of the embedded plays and the generated facts (repeatable):
    /// a corpus with facts of your own, probed with --qa and --recall.
    #[arg(long = "data")]
    data: Vec<PathBuf>,
    /// Held-out QA set (.jsonl with "question" and "answer").
    #[arg(long)]
    qa: Option<PathBuf>,
    /// Fact-recall probes (.jsonl with "prompt" and "answer").
    #[arg(long)]
    recall: Option<PathBuf>,
    /// People in the generated knowledge corpus (default 40, for `capacity` 8000; ignored
    /// with --data).
    #[arg(long)]
    people: Option<usize>,
    /// Biographies per person in the generated corpus (default 10).
    #[arg(long)]
    bios_per_person: Option<usize>,
    /// Steps of each finetuning run of `continual` (checkpoints at a third, two thirds and
    /// the end are scored).
    #[arg(long, default_value_t = memory_layers_experiments::CONTINUAL_STEPS)]
    finetune_steps: usize,
    /// Seeds per configuration.
    #[arg(long, default_value_t = 2)]
    seeds: usize,
    /// Training tokens per run (2M, 500k) or minutes for the whole suite (45min). Default:
    /// the suite's, sized for about an hour on two CPU cores.
    #[arg(long)]
    budget: Option<Budget>,
    /// The suite's directory. Default: runs/experiments/SUITE.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Runs trained at the same time, each on a thread of its own. Default: one per CPU
    /// core on flex (a small run keeps about one core busy), one on a GPU.
    #[arg(long)]
    jobs: Option<usize>,
    /// Backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
}

impl Job for &SuitePlan {
    type Output = Vec<SummaryRow>;

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<Vec<SummaryRow>> {
        Ok(run_suite::<B>(self, &devices[0], &print_event)?)
    }
}

/// The continual suite: its bases, then its finetuning sweep.
struct Continual<'a>(&'a SuitePlan);

impl Job for Continual<'_> {
    type Output = Vec<ContinualRow>;

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<Vec<ContinualRow>> {
        Ok(run_continual::<B>(self.0, &devices[0], &print_event)?)
    }
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

fn print_event(event: Event<'_>) {
    match event {
        Event::Calibrated {
            tokens_per_run,
            seconds_per_token,
        } => {
            let speeds: Vec<String> = seconds_per_token
                .iter()
                .map(|(label, s)| format!("{label} {:.0}", 1.0 / s.max(1e-12)))
                .collect();
            if !speeds.is_empty() {
                println!("measured tokens/s: {}", speeds.join(", "));
            }
            println!("{tokens_per_run} training tokens per run");
        }
        Event::Skipped { index, total, spec } => {
            println!(
                "[run {index} of {total}] {}: finished earlier, skipped",
                spec.id
            )
        }
        Event::Start {
            index,
            total,
            spec,
            resumed,
            run_eta,
            suite_eta,
        } => println!(
            "[run {index} of {total}] {}{}: ETA {} for this run, {} for the suite",
            spec.id,
            if resumed { " (resumed)" } else { "" },
            minutes(run_eta),
            minutes(suite_eta)
        ),
        Event::FinetuneSkipped { index, total, id } => {
            println!("[finetune {index} of {total}] {id}: finished earlier, skipped")
        }
        Event::Finetuning { index, total, id } => {
            println!("[finetune {index} of {total}] {id}")
        }
        Event::Finetuned { index, total, row } => println!(
            "[finetune {index} of {total}] {} at step {}: recall of B {:.1}%, of A {:.1}% \
             (base {:.1}%)",
            row.setting, row.steps, row.learned, row.kept, row.base_kept
        ),
        Event::Finished { index, total, row } => println!(
            "[run {index} of {total}] {} done in {:.0} s: val loss {:.3}, fact recall {}, QA exact match {:.1}%",
            row.run,
            row.wall_s,
            row.val_loss,
            row.fact_recall
                .map_or_else(|| "—".to_string(), |r| format!("{r:.1}%")),
            row.qa_exact_match
        ),
    }
}

/// Runs the suite and prints its table.
pub fn run(args: ExperimentArgs) -> anyhow::Result<()> {
    let mut base = Base::new(1, args.seeds);
    base.finetune_steps = args.finetune_steps;
    base.data = args.data;
    base.qa = args.qa;
    base.recall = args.recall;
    if let Some(people) = args.people {
        base.facts.people = people;
        base.compact.people = people;
    }
    if let Some(bios) = args.bios_per_person {
        base.facts.bios_per_person = bios;
    }
    let budget = args.budget.unwrap_or(args.suite.default_budget(&base));
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from("runs")
            .join("experiments")
            .join(args.suite.to_string())
    });
    let jobs = args.jobs.unwrap_or(match args.backend {
        BackendKind::Flex => std::thread::available_parallelism().map_or(1, |n| n.get()),
        _ => 1,
    });
    anyhow::ensure!(jobs >= 1, "--jobs must be at least 1");
    println!(
        "experiment {}: {} seeds, budget {budget}, on {:?} with {jobs} runs at a time; suite directory {}",
        args.suite,
        args.seeds,
        args.backend,
        out.display()
    );
    let plan = SuitePlan {
        suite: args.suite,
        base,
        budget,
        out: SuiteDir::new(&out),
        jobs,
        interrupt: crate::signals::interrupt_on_signals()?,
    };
    if args.suite == Suite::Continual {
        let rows = dispatch(args.backend, Continual(&plan))?;
        println!("\n{}", continual_markdown(&rows));
        println!(
            "wrote {}/{{continual.md, continual.json, forgetting_vs_learning.svg, runs/}}",
            out.display()
        );
        return Ok(());
    }
    let rows = dispatch(args.backend, &plan)?;
    println!("\n{}", args.suite.table(&rows));
    println!(
        "wrote {}/{{summary.json, summary.md, *.svg, runs/}}",
        out.display()
    );
    Ok(())
}
