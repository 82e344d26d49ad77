//! A run trains from the token shards `prepare` wrote, and damage to them is named.

use std::path::{Path, PathBuf};

use memory_layers_data::{
    Batches, DataError, Manifest, PrepareConfig, Segment, Split, TokenizerKind, prepare_corpus,
};
use memory_layers_train::{RunDir, TrainConfig, TrainError, prepare_data};
use memory_layers_zoo::{ModelKind, Size};

/// `count` short documents, one .txt file each, in a fresh folder under `root`.
fn corpus(root: &Path, count: usize) -> PathBuf {
    let folder = root.join("corpus");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..count {
        let text = format!(
            "Document {i}: {}",
            "memory layers at scale. ".repeat(1 + i % 7)
        );
        std::fs::write(folder.join(format!("doc-{i:04}.txt")), text).unwrap();
    }
    folder
}

#[test]
fn a_run_trains_from_prepared_shards_and_damage_is_named() {
    let tmp = tempfile::Builder::new()
        .prefix("train-prepared-")
        .tempdir()
        .unwrap();
    let root = tmp.path();
    let config = PrepareConfig {
        tokenizer: TokenizerKind::Bpe,
        vocab_size: 300,
        val_fraction: 0.2,
        shard_tokens: 1000,
        ..PrepareConfig::new(vec![corpus(root, 300)], root.join("prepared"))
    };
    let manifest = prepare_corpus(&config, &[], false).unwrap();
    assert_eq!(manifest.tokenizer, TokenizerKind::Bpe);
    assert!(Manifest::tokenizer_file(&config.out).exists());

    let mut run = TrainConfig::new(ModelKind::Dense, Size::Tiny);
    run.data.prepared = Some(config.out.clone());
    run.data.facts = None;
    let out = RunDir::new(root.join("run"));
    out.create().unwrap();
    let data = prepare_data(&mut run, &out, false, false).unwrap();
    assert_eq!(
        run.model.vocab_size, manifest.vocab_size,
        "the folder's tokenizer"
    );
    assert_eq!(run.data.tokenizer, TokenizerKind::Bpe);
    let window = run.optim.seq_len + 1;
    let expected: usize = manifest
        .train
        .shards
        .iter()
        .map(|s| s.tokens / window)
        .sum();
    assert_eq!(data.batches.len(Split::Train), expected);
    // A batch is windows of the shards: the same as reading them by hand.
    let files = Manifest::open(&config.out, &manifest.train).unwrap();
    let by_hand = Batches::from_segments(
        files.into_iter().map(Segment::File).collect(),
        Vec::new(),
        run.optim.seq_len,
        run.run.seed,
    );
    assert_eq!(
        data.batches.train_batch(7, 4).unwrap(),
        by_hand.train_batch(7, 4).unwrap()
    );

    // A shard cut short is named, as is a folder never prepared.
    let shard = config.out.join(&manifest.train.shards[1].file);
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 4]).unwrap();
    let err = prepare_data(&mut run.clone(), &out, false, false)
        .err()
        .unwrap();
    assert!(
        matches!(&err, TrainError::Data(DataError::Input { path, .. }) if path == &shard)
            && err.to_string().contains("damaged"),
        "{err}"
    );
    run.data.prepared = Some(root.join("nowhere"));
    let err = prepare_data(&mut run, &out, false, false).err().unwrap();
    assert!(err.to_string().contains("memory-layers prepare"), "{err}");
}

#[test]
fn the_final_evaluation_scores_its_budget_of_a_larger_split_with_an_error_bar() {
    let tmp = tempfile::Builder::new()
        .prefix("train-eval-budget-")
        .tempdir()
        .unwrap();
    let root = tmp.path();
    let config = PrepareConfig {
        tokenizer: TokenizerKind::Byte,
        val_fraction: 0.5,
        ..PrepareConfig::new(vec![corpus(root, 300)], root.join("prepared"))
    };
    let manifest = prepare_corpus(&config, &[], false).unwrap();
    let mut run = TrainConfig::new(ModelKind::Dense, Size::Tiny);
    run.data.prepared = Some(config.out.clone());
    run.data.facts = None;
    (run.optim.steps, run.optim.batch_size, run.optim.seq_len) = (2, 2, 32);
    run.run.out = root.join("run");
    run.run.eval_tokens = 10 * 32;
    let val_sequences = manifest.val.tokens / 33;
    assert!(val_sequences > 100, "the split is larger than the budget");
    let summary = memory_layers_train::train::<burn::backend::Autodiff<burn::backend::Flex>>(
        run,
        &Default::default(),
        memory_layers_train::TrainOptions::default(),
    )
    .unwrap();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("run/eval.json")).unwrap())
            .unwrap();
    assert_eq!(
        saved["val_tokens"],
        10 * 32,
        "the budget, in whole sequences"
    );
    let se = saved["val_loss_se"].as_f64().unwrap();
    assert!(se > 0.0 && se < summary.eval.val_loss, "{se}");
    assert_eq!(summary.eval.val_tokens, 320);
}
