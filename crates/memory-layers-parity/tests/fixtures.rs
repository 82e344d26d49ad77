//! The parity fixtures of an independent PyTorch implementation, and the errors of broken ones.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use memory_layers_nn::import::ImportError;
use memory_layers_parity::{F32_TOLERANCE, ParityError, check_fixture};
use memory_layers_test_support::{TempPath, fixture, fixtures, rewrite_fixture};

type A = Autodiff<Flex>;

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

/// The Memory+ fixture rewritten with tensor `remove` left out and `add` (a copy of `input`)
/// added.
fn edited(name: &str, remove: &str, add: Option<&str>) -> TempPath {
    rewrite_fixture(
        &fixture("memory_plus_h2"),
        &format!("parity-{name}"),
        |tensors, _| {
            let input = tensors["input"].clone();
            tensors.remove(remove);
            if let Some(add) = add {
                tensors.insert(add.into(), input);
            }
        },
    )
}

fn check_error(path: &Path) -> ParityError {
    check_fixture::<A>(path, &Default::default(), F32_TOLERANCE).unwrap_err()
}

#[test]
fn a_missing_fixture_tensor_is_named() {
    let err = check_error(&edited("missing", "grad_output", None));
    assert!(
        matches!(&err, ParityError::Import(ImportError::MissingTensor { name, .. }) if name == "grad_output"),
        "{err}"
    );
}

#[test]
fn a_gradient_of_nothing_is_an_error() {
    let err = check_error(&edited("stray", "", Some("grad.nothing")));
    assert!(
        matches!(&err, ParityError::Import(ImportError::UnexpectedTensor { name, .. }) if name == "grad.nothing"),
        "{err}"
    );
}

#[test]
fn a_missing_parameter_is_an_import_error() {
    let err = check_error(&edited("param", "keys", None));
    assert!(matches!(&err, ParityError::Import(_)), "{err}");
    assert!(err.to_string().contains("`keys` is missing"), "{err}");
}
