//! Reference import: the layers of the parity fixtures of an independent PyTorch
//! implementation (their parameters only), and a typed error for every kind of broken file.

use std::collections::HashMap;
use std::path::Path;

use burn::backend::Flex;
use memory_layers_nn::import::{
    ImportError, ReferenceFile, ReferenceLayer, ReferenceParam, load_reference,
};
use memory_layers_test_support::{TempPath, Tensors, fixture, fixtures, rewrite_fixture};
use safetensors::{Dtype, SafeTensors};

/// The names of the layer parameters in a fixture (which also holds inputs and expected results).
fn param_names(fixture: &Path) -> Vec<String> {
    let file = ReferenceFile::open(fixture).unwrap().with_extra(|_| true);
    let layer = file.into_layer::<Flex>(&Default::default()).unwrap();
    layer
        .reference_params()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Writes the parameters of `fixture` to a layer file named after `name`, with `edit` applied
/// to its tensors (and metadata).
fn layer_file(
    fixture: &Path,
    name: &str,
    edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>),
) -> TempPath {
    let params = param_names(fixture);
    rewrite_fixture(fixture, &format!("import-{name}"), |tensors, metadata| {
        tensors.retain(|n, _| params.contains(n));
        edit(tensors, metadata);
    })
}

/// The layer of the Memory+ fixture, with `edit` applied.
fn edited(name: &str, edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>)) -> TempPath {
    layer_file(&fixture("memory_plus_h2"), name, edit)
}

fn import_error(path: &Path) -> ImportError {
    load_reference::<Flex>(path, &Default::default())
        .map(|_| ())
        .unwrap_err()
}

#[test]
fn import_builds_the_configured_variant() {
    let files = fixtures();
    assert!(files.len() >= 8, "fixtures missing: {files:?}");
    for (i, fixture) in files.iter().enumerate() {
        let path = layer_file(fixture, &format!("layer{i}"), |_, _| ());
        let (layer, config) = load_reference::<Flex>(&path, &Default::default()).unwrap();
        assert_params_are_the_files(&layer, fixture);
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

/// Every parameter holds the file's tensor of its reference name (Linear weights transposed).
fn assert_params_are_the_files(layer: &ReferenceLayer<Flex>, fixture: &Path) {
    let bytes = std::fs::read(fixture).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    for (name, param) in layer.reference_params() {
        let view = tensors.tensor(&name).unwrap();
        let file: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let ours = match param {
            ReferenceParam::Matrix(p) => p.into_data(),
            ReferenceParam::LinearWeight(p) => p.transpose().into_data(),
            ReferenceParam::Vector(p) => p.into_data(),
        };
        assert_eq!(ours.shape.as_slice(), view.shape(), "{name}");
        assert_eq!(ours.to_vec::<f32>().unwrap(), file, "{name}");
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
    // A fixture's inputs and expected results are not parameters either, unless let through.
    let fixture = &fixtures()[0];
    assert!(matches!(
        import_error(fixture),
        ImportError::UnexpectedTensor { .. }
    ));
    let file = ReferenceFile::open(fixture).unwrap().with_extra(|_| true);
    assert!(file.into_layer::<Flex>(&Default::default()).is_ok());
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

    let garbage = tempfile::Builder::new()
        .suffix(".safetensors")
        .tempfile()
        .unwrap()
        .into_temp_path();
    std::fs::write(&garbage, b"not a safetensors file").unwrap();
    assert!(
        import_error(&garbage)
            .to_string()
            .contains("not a safetensors file")
    );
    let missing = Path::new("/nonexistent/fixture.safetensors");
    assert!(matches!(import_error(missing), ImportError::Io(_)));
}
