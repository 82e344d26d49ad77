//! `cargo xtask bench`: the benchmark cases whose names are a contract, timed on one backend,
//! written as JSON ([`BenchResult`]); `--report` turns our results and PyTorch's
//! (tools/bench/torch_bench.py) into docs/performance.md. The kernel cases' shapes and inputs
//! come from memory-layers-benches, which the criterion benches share.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::backend::{AutodiffBackend, Backend};
use memory_layers_benches::{Host, LookupCase, MemoryPlusCase, RetrievalCase, fma_peak_gflops};
use memory_layers_cli::{BackendKind, Job, dispatch};
use memory_layers_train::TrainBackend;
use memory_layers_zoo::{Size, SwiGluFfnConfig};
use rayon::prelude::*;

use super::corpus::CorpusCase;
use crate::bench_result::{BenchFile, BenchResult};
use steps::{Only, experiment_cases, finetune_cases, size_cases, train_cases};

mod steps;

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Which cases to time.
    #[arg(long, value_enum, default_value = "default")]
    suite: Suite,
    /// Only the train-step cases whose name contains one of these (e.g. `dense`, or
    /// `tiny,_experiments,capacity`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Bytes of text the corpus suite generates.
    #[arg(long, default_value = "2G", value_parser = memory_layers_cli::parse_count)]
    corpus_bytes: usize,
    /// Write the results to this JSON file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: BackendKind,
    /// Instead of running: write docs/performance.md from `--ours` and `--torch` results.
    #[arg(long)]
    report: bool,
    /// Our results (for --report; repeatable, one section per host).
    #[arg(long, default_values = ["target/bench/ours.json"])]
    ours: Vec<PathBuf>,
    /// PyTorch's results (for --report; repeatable): tools/bench/torch_bench.py's kernels and
    /// tools/bench/torch_train.py's train steps. Missing files are left out.
    #[arg(
        long,
        default_values = ["target/bench/torch.json", "target/bench/torch-train.json"]
    )]
    torch: Vec<PathBuf>,
    /// GPU results to add to the report (for --report).
    #[arg(long)]
    gpu: Option<PathBuf>,
    /// The GPU's memory bandwidth in GB/s, for the lookup's share of it (H200: 4800).
    #[arg(long, default_value_t = 4800.0)]
    gpu_bandwidth: f64,
}

/// Median seconds of `run` (one warm-up, then at least 3 iterations or 2 seconds, at most 20).
fn time<B: Backend>(device: &B::Device, mut run: impl FnMut()) -> f64 {
    let mut once = || {
        let start = Instant::now();
        run();
        B::sync(device).expect("device sync");
        start.elapsed().as_secs_f64()
    };
    once();
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < 3 || (started.elapsed().as_secs_f64() < 2.0 && samples.len() < 20) {
        samples.push(once());
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn result(
    name: &str,
    config: serde_json::Value,
    median_s: f64,
    work: f64,
    unit: &str,
) -> BenchResult {
    eprintln!(
        "{name:<40} {median_s:>10.4} s  {:>12.2} {unit}",
        work / median_s
    );
    BenchResult {
        name: name.into(),
        config,
        median_s: Some(median_s),
        throughput: Some(work / median_s),
        unit: unit.into(),
    }
}

/// STREAM triad `a = b + s·c` over 64M-element f32 arrays (256 MB each), all cores.
fn stream_triad() -> BenchResult {
    let n = 64 << 20;
    let (b, c) = (vec![1.0f32; n], vec![2.0f32; n]);
    let mut a = vec![0.0f32; n];
    let run = |a: &mut Vec<f32>| {
        a.par_chunks_mut(1 << 16)
            .zip(b.par_chunks(1 << 16).zip(c.par_chunks(1 << 16)))
            .for_each(|(a, (b, c))| {
                for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                    *a = b + 3.0 * c;
                }
            });
    };
    run(&mut a);
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            run(&mut a);
            start.elapsed().as_secs_f64()
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let config = serde_json::json!({"elements": n, "bytes_per_array": 4 * n});
    result(
        "stream_triad",
        config,
        samples[3],
        3.0 * 4.0 * n as f64 / 1e9,
        "GB/s",
    )
}

/// The host's f32 FMA throughput on every thread, the yardstick of the train steps.
fn fma_peak() -> BenchResult {
    let gflops = fma_peak_gflops();
    eprintln!("{:<40} {:>10} {gflops:>14.2} GFLOP/s", "fma_peak", "");
    let config = serde_json::json!({"threads": rayon::current_num_threads(), "simd": memory_layers_benches::simd_level()});
    BenchResult {
        name: "fma_peak".into(),
        config,
        median_s: None,
        throughput: Some(gflops),
        unit: "GFLOP/s".into(),
    }
}

/// A named set of benchmark cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Suite {
    /// Every contract case (≤ 10 min on 2 cores).
    Default,
    /// Retrieval, lookup, Memory+ vs SwiGLU, memory bandwidth (triad).
    Kernels,
    /// Whole train steps: at `small`, at `tiny`, and at the sizes the experiment suites
    /// train (their base, the capacity suite's narrowest models).
    Train,
    /// A generated corpus end to end (`--corpus-bytes`, 2 GB): prepare with bytes and with a
    /// sampled BPE, a few train steps from the shards, the final evaluation; each phase's
    /// time and peak memory (minutes; not part of `default`).
    Corpus,
    /// The GPU check: the kernels, the train steps, and dense vs Memory+ steps at 134m
    /// (8 × 4096 tokens; a GPU's job, hours on a CPU).
    Gpu,
}

/// A suite, with its train steps narrowed by name.
struct Cases {
    suite: Suite,
    only: Vec<String>,
    corpus_bytes: usize,
}

impl Job for Cases {
    type Output = Vec<BenchResult>;

    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<Vec<BenchResult>> {
        let device = &devices[0];
        let Self {
            suite,
            only,
            corpus_bytes,
        } = self;
        if suite == Suite::Corpus {
            let case = CorpusCase {
                bytes: corpus_bytes as u64,
                dir: PathBuf::from("target/bench/corpus"),
            };
            return case.run::<B>(device);
        }
        let kernels = matches!(suite, Suite::Default | Suite::Kernels | Suite::Gpu);
        let train = matches!(suite, Suite::Default | Suite::Train | Suite::Gpu);
        let mut out = vec![fma_peak()];
        if kernels {
            out.push(stream_triad());
            out.extend(kernel_cases::<B>(device)?);
        }
        let only = Only(&only);
        if train {
            let mut cases = size_cases(Size::Small);
            if suite != Suite::Gpu {
                cases.extend(size_cases(Size::Tiny));
                cases.extend(experiment_cases()?);
            }
            out.extend(train_cases::<B>(device, cases, only)?);
            if suite != Suite::Gpu {
                out.extend(finetune_cases::<B>(device, only)?);
            }
        }
        if suite == Suite::Gpu {
            out.extend(train_cases::<B>(device, size_cases(Size::M134), only)?);
        }
        Ok(out)
    }
}

fn kernel_cases<B: TrainBackend>(device: &B::Device) -> anyhow::Result<Vec<BenchResult>> {
    type I<B> = <B as AutodiffBackend>::InnerBackend;
    let mut out = Vec::new();

    let case = RetrievalCase::CONTRACT;
    let (queries, sub_keys) = case.inputs::<I<B>>(device)?;
    let seconds = time::<I<B>>(device, || {
        let r = memory_layers_keys::retrieve(queries.clone(), sub_keys.clone(), case.knn);
        let _ = (r.scores, r.indices);
    });
    let config = serde_json::json!({"queries": [case.queries(), case.k_dim], "tokens": case.tokens, "heads": case.heads, "n_keys": case.n_keys, "knn": case.knn});
    out.push(result(
        RetrievalCase::NAME,
        config,
        seconds,
        case.queries() as f64,
        "queries/s",
    ));

    let case = LookupCase::CONTRACT;
    let bytes = case.bytes() as f64 / 1e9;
    let config = serde_json::json!({"values": [case.rows, case.dim], "bags": case.bags, "per_bag": case.per_bag, "weights": "softmax"});
    {
        let table = case.table::<I<B>>(device)?;
        let indices = case.indices::<I<B>>(device);
        let weights = case.weights::<I<B>>(device);
        let seconds = time::<I<B>>(device, || {
            let _ = table
                .lookup(indices.clone(), weights.clone())
                .expect("in range");
        });
        out.push(result(
            LookupCase::FWD,
            config.clone(),
            seconds,
            bytes,
            "GB/s",
        ));
    }
    {
        // The backward gives the weight gradient and the value gradient as sparse rows.
        let mut table = case.table::<B>(device)?;
        table.set_sparse_grads(true);
        let indices = case.indices::<B>(device);
        let weights = case.weights::<B>(device).detach().require_grad();
        let seconds = time::<B>(device, || {
            let y = table
                .lookup(indices.clone(), weights.clone())
                .expect("in range");
            let _ = y.sum().backward();
            let _ = table.take_row_grads().expect("one backend");
        });
        let mut config = config;
        config["value_grad"] = "sparse rows".into();
        out.push(result(LookupCase::FWD_BWD, config, seconds, bytes, "GB/s"));
    }

    let case = MemoryPlusCase::CONTRACT;
    let (batch, seq, dim) = (case.batch, case.seq, case.dim);
    let x = case.input::<B>(device).require_grad();
    let mut memory = case.config().init_with_values::<B>(device)?;
    memory.values.set_sparse_grads(true);
    let seconds = time::<B>(device, || {
        let y = memory.forward(x.clone()).expect("valid input").output;
        let _ = y.sum().backward();
        let _ = memory.values.take_row_grads().expect("one backend");
    });
    let config = serde_json::json!({"dim": dim, "heads": case.heads, "knn": case.knn, "k_dim": case.k_dim, "n_keys": case.n_keys, "input": [batch, seq, dim], "value_grad": "sparse rows"});
    out.push(result(
        MemoryPlusCase::NAME,
        config,
        seconds,
        case.tokens() as f64,
        "tokens/s",
    ));

    let swiglu = SwiGluFfnConfig::new(dim, 2048).init::<B>(device);
    let seconds = time::<B>(device, || {
        let _ = swiglu.forward(x.clone()).sum().backward();
    });
    let config = serde_json::json!({"dim": dim, "hidden": 2048, "input": [batch, seq, dim]});
    out.push(result(
        "swiglu_fwd_bwd",
        config,
        seconds,
        (batch * seq) as f64,
        "tokens/s",
    ));
    Ok(out)
}

/// Runs a suite and prints / writes its results.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.report {
        let gpu = args.gpu.as_deref().map(|path| (path, args.gpu_bandwidth));
        return super::report::write(
            &args.ours,
            &args.torch,
            gpu,
            Path::new("docs/performance.md"),
        );
    }
    let cases = Cases {
        suite: args.suite,
        only: args.only,
        corpus_bytes: args.corpus_bytes,
    };
    let results = dispatch(args.backend, cases)?;
    let mut host = Host::detect();
    if args.backend != BackendKind::Flex {
        host.gpu = Some(format!("{:?} backend", args.backend));
    }
    let text = serde_json::to_string_pretty(&BenchFile {
        host: Some(host),
        results,
    })?;
    match &args.json {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}
