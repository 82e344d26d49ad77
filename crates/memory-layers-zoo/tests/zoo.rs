//! The model zoo: shapes, causality, routing, caching, placement, configs and parameter counts.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::Parser;
use memory_layers_test_support::host;
use memory_layers_zoo::{
    Ffn, ModelKind, Routing, Sampler, Size, TransformerConfig, ZooError, account, generate, preset,
};

type B = Flex;

fn tokens(b: usize, t: usize, seed: i64) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = (0..(b * t) as i64)
        .map(|i| (i * 31 + seed * 17) % 256)
        .collect();
    Tensor::from_data(TensorData::new(ids, [b, t]), &Default::default())
}

fn tiny(kind: ModelKind) -> TransformerConfig {
    preset(kind, Size::Tiny, None)
}

#[test]
fn every_variant_gives_logits_of_the_right_shape() {
    for kind in ModelKind::ALL {
        let model = tiny(kind).init::<B>(&Default::default()).unwrap();
        let out = model.forward(tokens(2, 12, 0)).unwrap();
        assert_eq!(out.logits.dims(), [2, 12, 256], "{kind}");
        let pk = tiny(kind).product_key_layers().len();
        assert_eq!(
            out.memory.len(),
            pk,
            "{kind}: one report per product-key layer"
        );
        assert!(host(out.logits).iter().all(|v| v.is_finite()));
    }
}

#[test]
fn a_later_token_never_changes_earlier_logits() {
    for kind in ModelKind::ALL {
        let model = tiny(kind).init::<B>(&Default::default()).unwrap();
        let a = tokens(1, 10, 1);
        let mut ids: Vec<i64> = a.to_data().convert::<i64>().into_vec().unwrap();
        ids[6] = (ids[6] + 5) % 256;
        let b = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, 10]), &Default::default());
        let la = model.forward(a).unwrap().logits;
        let lb = model.forward(b).unwrap().logits;
        let before = |l: Tensor<B, 3>| host(l.slice([0..1, 0..6, 0..256]));
        assert_eq!(
            before(la.clone()),
            before(lb.clone()),
            "{kind}: positions < 6 must not see token 6"
        );
        assert_ne!(host(la), host(lb), "{kind}: position 6 does change");
    }
}

#[test]
fn cached_generation_equals_the_full_forward_pass() {
    for kind in [ModelKind::Dense, ModelKind::MemoryPlus, ModelKind::Peer] {
        let model = tiny(kind).init::<B>(&Default::default()).unwrap();
        let full = host(model.forward(tokens(1, 9, 2)).unwrap().logits);
        let mut caches = model.new_caches();
        let ids: Vec<i64> = tokens(1, 9, 2)
            .to_data()
            .convert::<i64>()
            .into_vec()
            .unwrap();
        let device = Default::default();
        let prompt =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids[..5].to_vec(), [1, 5]), &device);
        let mut cached = host(model.forward_cached(prompt, &mut caches).unwrap().logits);
        let rest =
            Tensor::<B, 2, Int>::from_data(TensorData::new(ids[5..7].to_vec(), [1, 2]), &device);
        cached.extend(host(
            model.forward_cached(rest, &mut caches).unwrap().logits,
        ));
        for &id in &ids[7..] {
            let one = Tensor::<B, 2, Int>::from_data(TensorData::new(vec![id], [1, 1]), &device);
            cached.extend(host(model.forward_cached(one, &mut caches).unwrap().logits));
        }
        assert_eq!(cached.len(), full.len());
        for (a, b) in cached.iter().zip(&full) {
            assert!((a - b).abs() < 1e-4, "{kind}: cached {a} vs full {b}");
        }
    }
}

#[test]
fn generation_is_greedy_or_seeded() {
    let model = tiny(ModelKind::MemoryPlus)
        .init::<B>(&Default::default())
        .unwrap();
    let greedy = generate(&model, &[1, 2, 3], 6, Sampler::Greedy, |_| false).unwrap();
    assert_eq!(greedy.len(), 6);
    assert_eq!(
        greedy,
        generate(&model, &[1, 2, 3], 6, Sampler::Greedy, |_| false).unwrap()
    );
    let sample = |seed| {
        let s = Sampler::Sample {
            temperature: 1.5,
            top_k: 0,
            top_p: 0.9,
            seed,
        };
        generate(&model, &[1, 2, 3], 8, s, |_| false).unwrap()
    };
    assert_eq!(sample(4), sample(4));
    let stop = greedy[2];
    let stopped = generate(&model, &[1, 2, 3], 6, Sampler::Greedy, |g| {
        g.last() == Some(&stop)
    })
    .unwrap();
    assert_eq!(stopped.last(), Some(&stop));
    assert!(stopped.len() <= 3);
}

#[test]
fn expert_choice_respects_capacity_in_training_and_routes_top1_at_evaluation() {
    let config = tiny(ModelKind::Moe);
    let experts = config.moe.experts;
    let model = config.init::<Autodiff<B>>(&Default::default()).unwrap();
    let Ffn::Moe(moe) = &model.blocks[0].ffn else {
        panic!("moe block")
    };
    let x = Tensor::random(
        [24, 64],
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    );
    let (train, aux) = moe.assign(x.clone(), true);
    assert!(aux.is_none());
    let capacity = 24 / experts;
    for a in train.iter().flatten() {
        assert_eq!(
            a.tokens.dims(),
            [capacity],
            "each expert takes exactly its capacity"
        );
    }
    let (eval, _) = moe.assign(x, false);
    let mut routed: Vec<i64> = eval
        .iter()
        .flatten()
        .flat_map(|a| {
            a.tokens
                .to_data()
                .convert::<i64>()
                .into_vec::<i64>()
                .unwrap()
        })
        .collect();
    routed.sort_unstable();
    assert_eq!(
        routed,
        (0..24).collect::<Vec<i64>>(),
        "top-1: every token exactly once"
    );
}

#[test]
fn token_choice_has_a_balance_loss_in_training() {
    let mut config = tiny(ModelKind::Moe);
    config.moe.routing = Routing::TokenChoice;
    config.moe.top_k = 2;
    let model = config.init::<Autodiff<B>>(&Default::default()).unwrap();
    let out = model
        .forward(Tensor::from_data(
            tokens(2, 8, 3).into_data(),
            &Default::default(),
        ))
        .unwrap();
    let aux = out.aux_loss.expect("load-balancing loss").into_scalar();
    assert!(aux > 0.0 && aux.is_finite());
}

#[test]
fn memory_plus_placement_follows_the_paper() {
    let mut c = preset(ModelKind::MemoryPlus, Size::M373, None);
    assert_eq!(c.product_key_layers(), vec![4, 12, 20]);
    c.layers = 12;
    assert_eq!(c.product_key_layers(), vec![2, 6, 10]);
    assert_eq!(
        preset(ModelKind::MemoryPlus, Size::Tiny, None).product_key_layers(),
        vec![1, 2, 3]
    );
    assert_eq!(
        preset(ModelKind::Memory, Size::M373, None).product_key_layers(),
        vec![12]
    );
    assert_eq!(
        preset(ModelKind::Dense, Size::M373, None).product_key_layers(),
        Vec::<usize>::new()
    );
    c.memory.layers = Some(vec![1, 5]);
    assert_eq!(c.product_key_layers(), vec![1, 5]);
}

#[test]
fn analytic_parameter_counts_equal_the_modules() {
    for size in [Size::Tiny, Size::Small] {
        for kind in ModelKind::ALL {
            let config = preset(kind, size, None);
            let model = config.init::<B>(&Default::default()).unwrap();
            let counts = account(&config);
            assert_eq!(
                counts.total_params,
                model.num_params() as u64,
                "{kind} {size}"
            );
            let tables: usize = model.value_tables().iter().map(|t| t.num_params()).sum();
            assert_eq!(counts.value_params, tables as u64, "{kind} {size}");
            let lookup = model.embedding.num_params() + model.output.num_params();
            assert_eq!(counts.embedding_params, lookup as u64, "{kind} {size}");
        }
    }
}

#[test]
fn paper_totals_at_1_3b_are_reproduced_within_one_percent() {
    let cases = [
        (ModelKind::Moe, None, 3.545e9),
        (ModelKind::Peer, None, 3.646e9),
        (ModelKind::MemoryPlus, None, 3.377e9),
        (ModelKind::MemoryPlus, Some(4096), 35.618e9),
        (ModelKind::MemoryPlus, Some(8192), 138.748e9),
    ];
    for (kind, n_keys, paper) in cases {
        let total = account(&preset(kind, Size::B1_3, n_keys)).total_params as f64;
        assert!(
            (total / paper - 1.0).abs() < 0.01,
            "{kind} {n_keys:?}: {total:.4e} vs {paper:.4e}"
        );
    }
}

#[test]
fn memory_adds_parameters_not_compute() {
    let dense = account(&preset(ModelKind::Dense, Size::B1_3, None));
    let memory = account(&preset(ModelKind::MemoryPlus, Size::B1_3, Some(4096)));
    assert!(memory.total_params > 25 * dense.total_params);
    assert!((memory.flops_per_token as f64) < 1.05 * dense.flops_per_token as f64);
    assert!(memory.active_params < memory.total_params / 20);
}

#[test]
fn configs_round_trip_through_toml_and_invalid_ones_are_named() {
    for kind in ModelKind::ALL {
        let config = preset(kind, Size::Small, None);
        let text = toml::to_string(&config).unwrap();
        assert_eq!(toml::from_str::<TransformerConfig>(&text).unwrap(), config);
    }
    let field = |edit: fn(&mut TransformerConfig)| {
        let mut c = tiny(ModelKind::MemoryPlus);
        edit(&mut c);
        match c.validate() {
            Err(ZooError::InvalidConfig { field, .. }) => field.to_string(),
            Err(ZooError::Memory(e)) => e.to_string(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(field(|c| c.dim = 0), "dim");
    assert_eq!(field(|c| c.heads = 3), "heads");
    assert_eq!(field(|c| c.kv_heads = 3), "kv_heads");
    assert_eq!(field(|c| c.rope_theta = -1.0), "rope_theta");
    assert_eq!(field(|c| c.memory.layers = Some(vec![9])), "memory.layers");
    assert_eq!(
        field(|c| c.memory.layers = Some(vec![1, 1])),
        "memory.layers"
    );
    assert!(field(|c| c.product_keys.knn = 99).contains("knn = 99"));
    assert!(field(|c| c.product_keys.k_dim = 7).contains("k_dim = 7"));
    assert_eq!(field(|c| c.product_keys.dim = 32), "product_keys.dim");
    let mut moe = tiny(ModelKind::Moe);
    moe.moe.top_k = 9;
    assert!(matches!(
        moe.validate(),
        Err(ZooError::InvalidConfig {
            field: "moe.top_k",
            ..
        })
    ));
}

#[test]
fn kinds_and_sizes_have_one_spelling_for_flags_files_and_printing() {
    #[derive(clap::Parser)]
    struct Flags {
        #[arg(long)]
        model: ModelKind,
        #[arg(long)]
        size: Size,
    }
    let parse = |model: &str, size: &str| {
        Flags::try_parse_from(["zoo", "--model", model, "--size", size]).map(|f| (f.model, f.size))
    };
    let names = ["dense", "moe", "peer", "memory", "memory-plus"];
    for (&kind, name) in ModelKind::ALL.iter().zip(names) {
        assert_eq!(kind.to_string(), name);
        assert_eq!(parse(name, "tiny").unwrap().0, kind);
        assert_eq!(toml::Value::try_from(kind).unwrap().as_str(), Some(name));
    }
    let names = ["tiny", "small", "134m", "373m", "720m", "1.3b", "8b"];
    for (&size, name) in Size::ALL.iter().zip(names) {
        assert_eq!(size.to_string(), name);
        assert_eq!(parse("dense", name).unwrap().1, size);
        assert_eq!(toml::Value::try_from(size).unwrap().as_str(), Some(name));
    }
    assert_eq!(ModelKind::ALL.len(), 5);
    assert_eq!(Size::ALL.len(), 7);
    assert_eq!(format!("{:<7}|", ModelKind::Moe), "moe    |");
    let err = parse("transformer", "tiny")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("memory-plus"), "{err}");
    assert_eq!(
        "token-choice".parse::<Routing>().unwrap(),
        Routing::TokenChoice
    );
}

#[test]
fn sequences_longer_than_the_context_are_errors() {
    let model = tiny(ModelKind::Dense)
        .init::<B>(&Default::default())
        .unwrap();
    let err = model.forward(tokens(1, 129, 0)).unwrap_err();
    assert_eq!(err, ZooError::SequenceTooLong { len: 129, max: 128 });
}
