//! Reference import and the parity fixtures of an independent PyTorch implementation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use memory_layer::import::{ImportError, ReferenceLayer, load_reference};
use memory_layer::parity::{F32_TOLERANCE, check_fixture};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

type A = Autodiff<Flex>;

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_fixture_passes() {
    let files = fixtures();
    assert!(files.len() >= 8, "fixtures missing: {files:?}");
    let mut peers = 0;
    for path in files {
        let report = check_fixture::<A>(&path, &Default::default(), F32_TOLERANCE).unwrap();
        for check in &report.checks {
            assert!(
                check.passed,
                "{}: {} rel {:e}",
                path.display(),
                check.name,
                check.relative
            );
        }
        report.retrieval.clone().unwrap();
        assert!(
            report.checks.len() >= 7,
            "outputs and every gradient compared"
        );
        peers += usize::from(report.config.peer);
    }
    assert!(peers >= 2);
}

/// Rewrites the first fixture with `edit` applied to its tensors (and metadata).
fn edited(
    name: &str,
    edit: impl FnOnce(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>, &mut HashMap<String, String>),
) -> PathBuf {
    let source = fixtures()
        .into_iter()
        .find(|p| p.ends_with("memory_plus_h2.safetensors"))
        .unwrap();
    let bytes = std::fs::read(source).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = metadata.metadata().clone().unwrap();
    let mut owned: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut owned, &mut metadata);
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let path = std::env::temp_dir().join(format!(
        "memory-layer-import-{}-{name}.safetensors",
        std::process::id()
    ));
    safetensors::serialize_to_file(views, Some(metadata), &path).unwrap();
    path
}

fn import_error(path: &Path) -> ImportError {
    load_reference::<Flex>(path, &Default::default())
        .map(|_| ())
        .unwrap_err()
}

#[test]
fn import_builds_the_configured_variant() {
    for path in fixtures() {
        let (layer, config) = load_reference::<Flex>(&path, &Default::default()).unwrap();
        match layer {
            ReferenceLayer::Memory(memory) => {
                assert!(!config.peer);
                assert_eq!(memory.layer.swilu_projection.is_some(), config.swilu);
                assert_eq!(memory.layer.gating.is_some(), config.gated);
                assert_eq!(
                    memory.values.weight.dims(),
                    [config.n_keys * config.n_keys, config.v_dim]
                );
            }
            ReferenceLayer::Peer(peer) => {
                assert!(config.peer);
                assert_eq!(
                    peer.values_u.weight.dims(),
                    [config.n_keys * config.n_keys, config.dim]
                );
            }
        }
    }
}

#[test]
fn missing_tensor_is_named() {
    let path = edited("missing", |t, _| {
        t.remove("swilu_projection.bias");
    });
    let err = import_error(&path);
    assert!(
        matches!(&err, ImportError::MissingTensor { name, .. } if name == "swilu_projection.bias"),
        "{err}"
    );
    assert!(err.to_string().contains("swilu_projection.bias"));
}

#[test]
fn wrong_shape_and_dtype_are_named() {
    let path = edited("shape", |t, _| {
        let keys = t.get_mut("keys").unwrap();
        keys.1 = vec![keys.1[1], keys.1[0]];
    });
    let err = import_error(&path);
    assert!(
        matches!(&err, ImportError::TensorType { name, .. } if name == "keys"),
        "{err}"
    );
    let path = edited("dtype", |t, _| {
        let keys = t.get_mut("keys").unwrap();
        keys.0 = Dtype::I32;
    });
    assert!(
        import_error(&path)
            .to_string()
            .contains("`keys` is I32 [28, 6], expected F32")
    );
}

#[test]
fn unexpected_tensor_is_an_error() {
    let path = edited("extra", |t, _| {
        t.insert(
            "gating.weight".into(),
            (Dtype::F32, vec![1, 24], vec![0; 96]),
        );
    });
    let err = import_error(&path);
    assert!(
        matches!(&err, ImportError::UnexpectedTensor { name, .. } if name == "gating.weight"),
        "{err}"
    );
}

#[test]
fn bad_metadata_and_files_are_errors() {
    let path = edited("noconfig", |_, m| {
        m.remove("config");
    });
    assert!(import_error(&path).to_string().contains("no \"config\""));
    let path = edited("badconfig", |_, m| {
        m.insert("config".into(), "{\"dim\": 24}".into());
    });
    assert!(
        import_error(&path)
            .to_string()
            .contains("config\" is invalid")
    );
    let path = edited("badknn", |_, m| {
        let config = m["config"].replace("\"knn\": 5", "\"knn\": 50");
        m.insert("config".into(), config);
    });
    let err = import_error(&path);
    assert!(err.to_string().contains("knn = 50"), "{err}");

    let garbage = std::env::temp_dir().join(format!(
        "memory-layer-garbage-{}.safetensors",
        std::process::id()
    ));
    std::fs::write(&garbage, b"not a safetensors file").unwrap();
    assert!(
        import_error(&garbage)
            .to_string()
            .contains("not a safetensors file")
    );
    let missing = Path::new("/nonexistent/fixture.safetensors");
    assert!(matches!(import_error(missing), ImportError::Io { .. }));
}
