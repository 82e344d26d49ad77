use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use tempfile::TempPath;

/// The tensors of a safetensors file, owned: name → (dtype, shape, little-endian bytes).
pub type Tensors = HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// The parity fixtures, `fixtures/parity/*.safetensors` of the workspace, sorted.
pub fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    files
}

/// The parity fixture `name` (without `.safetensors`), e.g. `memory_plus_h2`.
pub fn fixture(name: &str) -> PathBuf {
    let file = format!("{name}.safetensors");
    fixtures()
        .into_iter()
        .find(|p| p.ends_with(&file))
        .unwrap_or_else(|| panic!("no fixture {file}"))
}

/// Writes a copy of the safetensors file `source`, with `edit` applied to its tensors and
/// metadata, to a temporary file named after `name`, and returns its path (the file is removed
/// when the path is dropped).
pub fn rewrite_fixture(
    source: &Path,
    name: &str,
    edit: impl FnOnce(&mut Tensors, &mut HashMap<String, String>),
) -> TempPath {
    let bytes = std::fs::read(source).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut metadata = metadata.metadata().clone().unwrap_or_default();
    let mut owned: Tensors = tensors
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut owned, &mut metadata);
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let path = tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .suffix(".safetensors")
        .tempfile()
        .unwrap()
        .into_temp_path();
    safetensors::serialize_to_file(views, Some(metadata), &path).unwrap();
    path
}
