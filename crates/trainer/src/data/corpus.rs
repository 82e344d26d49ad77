use std::io::Read;
use std::path::{Path, PathBuf};

use crate::TrainError;

/// One training text and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// File path, `FILE:LINE` for a .jsonl record, or `embedded:NAME`.
    pub source: String,
    /// The text.
    pub text: String,
}

/// The 37 plays of Shakespeare (public domain, 4.85 MB) shipped in the crate
/// (data/SOURCE.md). No download happens at run time.
pub fn embedded_shakespeare() -> Document {
    const GZ: &[u8] = include_bytes!("../../data/shakespeare.txt.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(GZ)
        .read_to_string(&mut text)
        .expect("the embedded corpus is valid gzip and UTF-8");
    Document {
        source: "embedded:shakespeare".into(),
        text,
    }
}

/// The kinds of file `--data` reads, gzipped or not.
const EXTENSIONS: [&str; 4] = [".txt", ".jsonl", ".txt.gz", ".jsonl.gz"];

/// Loads `--data` paths: UTF-8 text files, `.jsonl` files whose records hold their text in
/// `text_field`, either gzipped (`.gz`), or folders of such files (every one below, sorted).
/// Missing files, invalid UTF-8, empty texts and bad JSON lines are errors naming the file
/// and line; nothing is skipped.
pub fn load_documents(paths: &[PathBuf], text_field: &str) -> Result<Vec<Document>, TrainError> {
    let mut documents = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files = Vec::new();
            collect_files(path, &mut files)?;
            if files.is_empty() {
                return Err(TrainError::data(
                    path,
                    None,
                    format!("folder holds no {} file", EXTENSIONS.join(", ")),
                ));
            }
            files.sort();
            for file in files {
                documents.extend(read_file(&file, text_field)?);
            }
        } else {
            documents.extend(read_file(path, text_field)?);
        }
    }
    Ok(documents)
}

/// The documents of one file: a .jsonl's records, or the whole text.
fn read_file(path: &Path, text_field: &str) -> Result<Vec<Document>, TrainError> {
    let name = path.to_string_lossy();
    if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") {
        read_jsonl(path, text_field)
    } else {
        Ok(vec![read_text(path)?])
    }
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), TrainError> {
    for entry in std::fs::read_dir(dir).map_err(TrainError::io(dir))? {
        let path = entry.map_err(TrainError::io(dir))?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else if EXTENSIONS
            .iter()
            .any(|e| path.to_string_lossy().ends_with(e))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Reads a file (gunzipped when it ends in `.gz`) as UTF-8; invalid bytes are reported with
/// their line.
pub(crate) fn read_utf8(path: &Path) -> Result<String, TrainError> {
    if !path.exists() {
        return Err(TrainError::data(path, None, "no such file or folder"));
    }
    let mut bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut plain)
            .map_err(|e| TrainError::data(path, None, format!("not valid gzip: {e}")))?;
        bytes = plain;
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        TrainError::data(
            path,
            Some(line),
            format!("not UTF-8 (invalid byte at offset {valid})"),
        )
    })
}

fn read_text(path: &Path) -> Result<Document, TrainError> {
    let text = read_utf8(path)?;
    if text.trim().is_empty() {
        return Err(TrainError::data(path, None, "file is empty"));
    }
    Ok(Document {
        source: path.display().to_string(),
        text,
    })
}

/// Non-blank lines of a .jsonl file with their 1-based numbers; a blank line inside the file
/// is an error (a trailing newline is not).
pub(crate) fn jsonl_lines(path: &Path) -> Result<Vec<(usize, serde_json::Value)>, TrainError> {
    let text = read_utf8(path)?;
    let mut lines = Vec::new();
    let body = text.strip_suffix('\n').unwrap_or(&text);
    for (i, line) in body.split('\n').enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            return Err(TrainError::data(path, Some(line_no), "blank line"));
        }
        let value = serde_json::from_str(line)
            .map_err(|e| TrainError::data(path, Some(line_no), format!("invalid JSON: {e}")))?;
        lines.push((line_no, value));
    }
    if lines.is_empty() {
        return Err(TrainError::data(path, None, "file is empty"));
    }
    Ok(lines)
}

/// The string field `field` of a .jsonl record, or an error naming the line.
pub(crate) fn string_field<'a>(
    path: &Path,
    line: usize,
    value: &'a serde_json::Value,
    field: &str,
) -> Result<&'a str, TrainError> {
    match value.get(field) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(serde_json::Value::String(_)) => Err(TrainError::data(
            path,
            Some(line),
            format!("field \"{field}\" is empty"),
        )),
        Some(_) => Err(TrainError::data(
            path,
            Some(line),
            format!("field \"{field}\" is not a string"),
        )),
        None => Err(TrainError::data(
            path,
            Some(line),
            format!("no \"{field}\" field"),
        )),
    }
}

fn read_jsonl(path: &Path, text_field: &str) -> Result<Vec<Document>, TrainError> {
    jsonl_lines(path)?
        .iter()
        .map(|(line, value)| {
            Ok(Document {
                source: format!("{}:{line}", path.display()),
                text: string_field(path, *line, value, text_field)?.to_string(),
            })
        })
        .collect()
}
