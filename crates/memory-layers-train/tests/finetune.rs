//! Finetuning a trained run: what each method may change changes, nothing else does, the base
//! run is never written, and bad requests are named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use memory_layers_data::FactsConfig;
use memory_layers_train::{
    Background, FinetuneMethod, RunDir, TrainConfig, TrainError, TrainOptions, TrainOverrides,
    open_run, train,
};
use memory_layers_zoo::{ModelKind, Size, Transformer};

type B = Autodiff<Flex>;

/// A fresh folder for one test, removed when dropped.
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("finetune-{name}-"))
        .tempdir()
        .unwrap()
}

/// A tiny base of `kind` trained for a few steps on facts and a little of the plays, in `dir`.
fn base(kind: ModelKind, dir: &Path) -> PathBuf {
    let mut config = TrainConfig::new(kind, Size::Tiny);
    config.model.layers = 2;
    config.model.memory.layers = Some(vec![1]);
    let keys = &mut config.model.product_keys;
    *keys = keys.clone().with_n_keys(8);
    config.data.embedded_bytes = Some(20_000);
    config.data.facts = Some(FactsConfig {
        people: 4,
        bios_per_person: 2,
        seed: 1,
        first: 0,
    });
    (config.optim.batch_size, config.optim.seq_len) = (2, 32);
    config.optim.steps = 4;
    config.optim.warmup_steps = 1;
    let run = &mut config.run;
    (
        run.qa_limit,
        run.recall_limit,
        run.eval_tokens,
        run.eval_batches,
    ) = (1, 2, 256, 1);
    run.out = dir.join(format!("base-{kind}"));
    train::<B>(config, &Default::default(), TrainOptions::default()).unwrap();
    dir.join(format!("base-{kind}"))
}

/// A finetuning run of `base` with `method` on four new people, `steps` steps, into `out`.
fn finetune_config(base: &Path, method: FinetuneMethod, steps: usize, out: &Path) -> TrainConfig {
    let overrides = TrainOverrides {
        steps: Some(steps),
        out: Some(out.to_path_buf()),
        top_t: (method == FinetuneMethod::SparseMemory).then_some(5),
        lr: Some(if method.values_only() { 0.5 } else { 1e-2 }),
        ..TrainOverrides::default()
    };
    let mut config = overrides
        .apply(TrainConfig::finetune(base, method).unwrap(), false)
        .unwrap();
    config.data.facts = Some(FactsConfig {
        people: 4,
        bios_per_person: 2,
        seed: 1,
        first: 4,
    });
    config.optim.batch_size = 2;
    if let Some(f) = &mut config.finetune {
        (f.background_batches, f.lora_rank) = (8, 2);
    }
    config
}

fn finetune(base: &Path, method: FinetuneMethod, steps: usize, out: &Path) -> Transformer<Flex> {
    let config = finetune_config(base, method, steps, out);
    train::<B>(config, &Default::default(), TrainOptions::default()).unwrap();
    open_run::<Flex>(out, &Default::default()).unwrap().model
}

/// Every parameter of `model` by its path, as host floats.
fn params(model: &Transformer<Flex>) -> BTreeMap<String, Vec<f32>> {
    struct Collect {
        path: Vec<String>,
        out: BTreeMap<String, Vec<f32>>,
    }
    impl<Bk: Backend> ModuleVisitor<Bk> for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
            let values = param.val().into_data().convert::<f32>().into_vec().unwrap();
            self.out.insert(self.path.join("."), values);
        }
    }
    let mut collect = Collect {
        path: Vec::new(),
        out: BTreeMap::new(),
    };
    model.visit(&mut collect);
    collect.out
}

/// The parameters that differ between `a` and `b`.
fn changed(a: &Transformer<Flex>, b: &Transformer<Flex>) -> Vec<String> {
    let (a, b) = (params(a), params(b));
    assert_eq!(a.len(), b.len());
    a.keys().filter(|k| a[*k] != b[*k]).cloned().collect()
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn each_method_changes_only_what_it_trains_and_never_the_base() {
    let tmp = scratch("methods");
    let root = tmp.path();
    let base_dir = base(ModelKind::MemoryPlus, root);
    let before = snapshot(&base_dir);
    let device = Default::default();
    let base_model = open_run::<Flex>(&base_dir, &device).unwrap().model;
    let pool_rows = |m: &Transformer<Flex>| -> Vec<Vec<f32>> {
        let pool = m.pool.as_ref().unwrap().weight.val();
        let width = pool.dims()[1];
        let values = pool.into_data().convert::<f32>().into_vec::<f32>().unwrap();
        values.chunks(width).map(<[f32]>::to_vec).collect()
    };

    // memory: the pool alone, every row a step reads.
    let memory = finetune(&base_dir, FinetuneMethod::Memory, 1, &root.join("memory"));
    assert_eq!(
        changed(&base_model, &memory),
        vec!["pool.weight".to_string()]
    );

    // sparse-memory: the pool alone, at most t = 5 rows per step.
    let sparse = finetune(
        &base_dir,
        FinetuneMethod::SparseMemory,
        1,
        &root.join("sparse"),
    );
    assert_eq!(
        changed(&base_model, &sparse),
        vec!["pool.weight".to_string()]
    );
    let (old, new) = (pool_rows(&base_model), pool_rows(&sparse));
    let rows = old.iter().zip(&new).filter(|(a, b)| a != b).count();
    assert!((1..=5).contains(&rows), "{rows} rows changed");
    let dense_rows = pool_rows(&memory);
    let memory_rows = old.iter().zip(&dense_rows).filter(|(a, b)| a != b).count();
    assert!(
        memory_rows > rows,
        "memory finetuning updates every row read"
    );
    assert!(RunDir::new(root.join("sparse")).background().exists());

    // lora: the merged checkpoint differs from the base in adapted weights only.
    let lora = finetune(&base_dir, FinetuneMethod::Lora, 2, &root.join("lora"));
    let lora_changed = changed(&base_model, &lora);
    assert!(!lora_changed.is_empty());
    for name in &lora_changed {
        let adapted = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"];
        assert!(
            adapted
                .iter()
                .any(|w| name.ends_with(&format!("{w}.weight")))
                && !name.contains("memory"),
            "{name} is not an adapted weight"
        );
    }

    // full: more than the pool.
    let full = finetune(&base_dir, FinetuneMethod::Full, 1, &root.join("full"));
    assert!(changed(&base_model, &full).len() > 3);

    assert_eq!(snapshot(&base_dir), before, "the base run was written to");
}

#[test]
fn a_finetuning_run_resumes_exactly() {
    let tmp = scratch("resume");
    let root = tmp.path();
    let base_dir = base(ModelKind::MemoryPlus, root);
    let device = Default::default();
    for method in [FinetuneMethod::Lora, FinetuneMethod::SparseMemory] {
        let straight = finetune(
            &base_dir,
            method,
            3,
            &root.join(format!("{method}-straight")),
        );
        let out = root.join(format!("{method}-resumed"));
        finetune(&base_dir, method, 2, &out);
        let config = finetune_config(&base_dir, method, 3, &out);
        let options = TrainOptions {
            resume: true,
            ..TrainOptions::default()
        };
        train::<B>(config, &device, options).unwrap();
        let resumed = open_run::<Flex>(&out, &device).unwrap().model;
        assert!(changed(&straight, &resumed).is_empty(), "{method}");
    }
}

#[test]
fn bad_finetuning_requests_are_named() {
    let tmp = scratch("errors");
    let root = tmp.path();
    let dense = base(ModelKind::Dense, root);
    let memory = base(ModelKind::MemoryPlus, root);
    let device = Default::default();
    let err = |config: TrainConfig| -> String {
        let options = TrainOptions::default();
        train::<B>(config, &device, options)
            .unwrap_err()
            .to_string()
    };
    for method in [FinetuneMethod::Memory, FinetuneMethod::SparseMemory] {
        let e = err(finetune_config(&dense, method, 1, &root.join("x")));
        assert!(
            e.contains("finetune.method") && e.contains("no memory layers"),
            "{e}"
        );
    }
    for top_t in [0, 65] {
        let mut config = finetune_config(&memory, FinetuneMethod::SparseMemory, 1, &root.join("t"));
        config.finetune.as_mut().unwrap().top_t = top_t;
        let e = err(config);
        assert!(e.contains("finetune.top_t") && e.contains("64 rows"), "{e}");
    }
    let mut config = finetune_config(&memory, FinetuneMethod::Lora, 1, &root.join("r"));
    config.finetune.as_mut().unwrap().lora_rank = 0;
    let e = err(config);
    assert!(e.contains("lora.rank"), "{e}");
    // Counts of another pool.
    let other = root.join("other.json");
    let counts = Background {
        batches: 1,
        sequences: 1,
        seq_len: 32,
        values: 16,
        df: vec![0; 16],
    };
    std::fs::write(&other, serde_json::to_string(&counts).unwrap()).unwrap();
    let mut config = finetune_config(&memory, FinetuneMethod::SparseMemory, 1, &root.join("b"));
    config.finetune.as_mut().unwrap().background = Some(other.clone());
    let e = err(config);
    assert!(
        e.contains("other.json") && e.contains("another model shape"),
        "{e}"
    );
    // No new text.
    let mut config = finetune_config(&memory, FinetuneMethod::Memory, 1, &root.join("d"));
    config.data.facts = None;
    let e = err(config);
    assert!(e.contains("needs the new text"), "{e}");
    // The base's own directory as the output (--overwrite would delete the base).
    let config = finetune_config(&memory, FinetuneMethod::Full, 1, &memory);
    let options = TrainOptions {
        overwrite: true,
        ..TrainOptions::default()
    };
    let e = train::<B>(config, &device, options)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("run.out") && e.contains("base run's directory"),
        "{e}"
    );
    assert!(
        RunDir::new(&memory).latest_checkpoint().is_some(),
        "the base is still there"
    );
    // Not a run.
    let e = TrainConfig::finetune(&root.join("nowhere"), FinetuneMethod::Full)
        .err()
        .unwrap();
    assert!(matches!(e, TrainError::Checkpoint { .. }), "{e}");
}
