use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use parquet::schema::types::Type as ParquetType;

use crate::text::{Splitting, TextDocuments};
use crate::{DataError, DocSeparator, EMPTY_SEPARATOR};

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
    const GZ: &[u8] = include_bytes!("../data/shakespeare.txt.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(GZ)
        .read_to_string(&mut text)
        .expect("the embedded corpus is valid gzip and UTF-8");
    Document {
        source: "embedded:shakespeare".into(),
        text,
    }
}

/// The kinds of file `--data` reads: text and .jsonl, plain, gzipped or zstd-compressed, and
/// parquet.
const EXTENSIONS: [&str; 7] = [
    ".txt",
    ".jsonl",
    ".txt.gz",
    ".jsonl.gz",
    ".txt.zst",
    ".jsonl.zst",
    ".parquet",
];

/// The files `--data` paths name: files as given, folders expanded to every file below with
/// a known extension, sorted by path. A missing path or a folder without such files is an
/// error naming it.
pub fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            collect_files(path, &mut found)?;
            if found.is_empty() {
                return Err(DataError::input(
                    path,
                    None,
                    format!("folder holds no {} file", EXTENSIONS.join(", ")),
                ));
            }
            found.sort();
            files.extend(found);
        } else if path.exists() {
            files.push(path.clone());
        } else {
            return Err(DataError::input(path, None, "no such file or folder"));
        }
    }
    Ok(files)
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), DataError> {
    for entry in std::fs::read_dir(dir).map_err(DataError::io(dir))? {
        let path = entry.map_err(DataError::io(dir))?.path();
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

/// The documents of `--data` paths, read one at a time: a text file is cut into documents by
/// `separator` (by default it is one), a .jsonl record (its `text_field`) or a parquet row
/// (its `text_field` column) is one. Files are decompressed and read in chunks as they go, so
/// only the current document is in memory, whatever the file's size. Invalid UTF-8, bad JSON,
/// blank lines in .jsonl, missing fields and empty files are errors naming the file and line;
/// nothing is skipped.
pub fn documents(
    paths: &[PathBuf],
    text_field: &str,
    separator: &DocSeparator,
) -> Result<impl Iterator<Item = Result<Document, DataError>>, DataError> {
    if *separator == DocSeparator::Marker(String::new()) {
        return Err(DataError::setting(
            "data.doc_separator",
            "\"\"",
            EMPTY_SEPARATOR,
        ));
    }
    let field = text_field.to_string();
    let separator = separator.clone();
    Ok(input_files(paths)?
        .into_iter()
        .flat_map(move |path| FileDocuments::new(path, field.clone(), &separator)))
}

/// The documents of one file, as an iterator that stops after its first error.
enum FileDocuments {
    /// A text file, read in chunks and cut into documents.
    Text(TextDocuments),
    /// A parquet file being read row by row (its text column only).
    Parquet {
        path: PathBuf,
        field: String,
        rows: Option<RowIter<'static>>,
        row: usize,
    },
    /// A .jsonl file being read line by line.
    Jsonl {
        path: PathBuf,
        field: String,
        lines: Option<std::io::Lines<BufReader<Box<dyn Read + Send>>>>,
        line: usize,
    },
}

impl FileDocuments {
    fn new(path: PathBuf, field: String, separator: &DocSeparator) -> Self {
        let name = path.to_string_lossy();
        if name.ends_with(".parquet") {
            return Self::Parquet {
                path,
                field,
                rows: None,
                row: 0,
            };
        }
        if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") || name.ends_with(".jsonl.zst") {
            Self::Jsonl {
                path,
                field,
                lines: None,
                line: 0,
            }
        } else {
            Self::Text(TextDocuments::new(
                path,
                separator.clone(),
                Splitting::default(),
            ))
        }
    }
}

impl Iterator for FileDocuments {
    type Item = Result<Document, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Text(texts) => texts.next(),
            Self::Parquet {
                path,
                field,
                rows,
                row,
            } => {
                if *row == 0 {
                    match parquet_rows(path, field) {
                        Ok(iter) => *rows = Some(iter),
                        Err(e) => {
                            *row = 1;
                            return Some(Err(e));
                        }
                    }
                }
                let next = rows.as_mut()?.next();
                *row += 1;
                let text = match next {
                    None if *row == 1 => Err(DataError::input(&*path, None, "file is empty")),
                    None => return None,
                    Some(Err(e)) => Err(DataError::input(
                        &*path,
                        Some(*row),
                        format!("not readable as parquet: {e}"),
                    )),
                    Some(Ok(record)) => parquet_text(path, *row, &record, field),
                };
                if text.is_err() {
                    *rows = None;
                }
                Some(text.map(|text| Document {
                    source: format!("{}:{row}", path.display()),
                    text,
                }))
            }
            Self::Jsonl {
                path,
                field,
                lines,
                line,
            } => {
                let stop = |lines: &mut Option<_>, e| {
                    *lines = None;
                    Some(Err(e))
                };
                if *line == 0 {
                    match open_decoded(path) {
                        Ok(reader) => *lines = Some(BufReader::new(reader).lines()),
                        Err(e) => {
                            *line = 1;
                            return stop(lines, e);
                        }
                    }
                }
                let next = lines.as_mut()?.next();
                *line += 1;
                let text = match next {
                    None if *line == 1 => {
                        return stop(lines, DataError::input(&*path, None, "file is empty"));
                    }
                    None => return None,
                    Some(Err(e)) => return stop(lines, read_error(path, *line, e)),
                    Some(Ok(text)) => text,
                };
                let record = jsonl_record(path, *line, &text)
                    .and_then(|value| Ok(string_field(path, *line, &value, field)?.to_string()));
                match record {
                    Ok(text) => Some(Ok(Document {
                        source: format!("{}:{line}", path.display()),
                        text,
                    })),
                    Err(e) => stop(lines, e),
                }
            }
        }
    }
}

/// The rows of a parquet file, projected on its `field` column.
fn parquet_rows(path: &Path, field: &str) -> Result<RowIter<'static>, DataError> {
    let bad = |e: parquet::errors::ParquetError| {
        DataError::input(path, None, format!("not readable as parquet: {e}"))
    };
    let file = File::open(path).map_err(DataError::io(path))?;
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let schema = reader.metadata().file_metadata().schema();
    let column = schema
        .get_fields()
        .iter()
        .find(|f| f.name() == field)
        .ok_or_else(|| DataError::input(path, None, format!("no \"{field}\" column")))?
        .clone();
    let projection = ParquetType::group_type_builder(schema.name())
        .with_fields(vec![column])
        .build()
        .map_err(bad)?;
    RowIter::from_file_into(Box::new(reader))
        .project(Some(projection))
        .map_err(bad)
}

/// The text of a parquet row's one column, or an error naming the row.
fn parquet_text(path: &Path, row: usize, record: &Row, field: &str) -> Result<String, DataError> {
    let bad = |what: &str| DataError::input(path, Some(row), format!("column \"{field}\" {what}"));
    match record.get_column_iter().next().map(|(_, value)| value) {
        Some(Field::Str(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(Field::Str(_)) => Err(bad("is empty")),
        Some(Field::Null) | None => Err(bad("is null")),
        Some(_) => Err(bad("is not a string")),
    }
}

/// A reader of `path`'s bytes, decompressed when it ends in `.gz` (every gzip member) or
/// `.zst` (every zstd frame).
pub(crate) fn open_decoded(path: &Path) -> Result<Box<dyn Read + Send>, DataError> {
    if !path.exists() {
        return Err(DataError::input(path, None, "no such file or folder"));
    }
    let file = BufReader::new(File::open(path).map_err(DataError::io(path))?);
    Ok(match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Some("zst") => Box::new(
            zstd::stream::read::Decoder::with_buffer(file)
                .map_err(|e| DataError::input(path, None, format!("not valid zstd: {e}")))?,
        ),
        _ => Box::new(file),
    })
}

/// An error met while reading `path` at `line`: bad compression or invalid UTF-8, named.
pub(crate) fn read_error(path: &Path, line: usize, e: std::io::Error) -> DataError {
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => "gzip",
        Some("zst") => "zstd",
        _ => "",
    };
    if e.kind() == std::io::ErrorKind::InvalidData && e.to_string().contains("UTF-8") {
        DataError::input(path, Some(line), "not UTF-8")
    } else if !format.is_empty() {
        DataError::input(path, Some(line), format!("not valid {format}: {e}"))
    } else {
        DataError::io(path)(e)
    }
}

/// Reads a file (decompressed as [`open_decoded`] does) as UTF-8; invalid bytes are
/// reported with their line.
pub fn read_utf8(path: &Path) -> Result<String, DataError> {
    let mut bytes = Vec::new();
    open_decoded(path)?
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, 1, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        DataError::input(
            path,
            Some(line),
            format!("not UTF-8 (invalid byte at offset {valid})"),
        )
    })
}

/// A .jsonl line parsed; a blank line is an error (a trailing newline is not a line).
fn jsonl_record(path: &Path, line: usize, text: &str) -> Result<serde_json::Value, DataError> {
    if text.trim().is_empty() {
        return Err(DataError::input(path, Some(line), "blank line"));
    }
    serde_json::from_str(text)
        .map_err(|e| DataError::input(path, Some(line), format!("invalid JSON: {e}")))
}

/// Non-blank lines of a small .jsonl file (QA sets, recall probes) with their 1-based
/// numbers; a blank line inside the file is an error (a trailing newline is not).
pub(crate) fn jsonl_lines(path: &Path) -> Result<Vec<(usize, serde_json::Value)>, DataError> {
    let text = read_utf8(path)?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    if body.is_empty() {
        return Err(DataError::input(path, None, "file is empty"));
    }
    body.split('\n')
        .enumerate()
        .map(|(i, line)| Ok((i + 1, jsonl_record(path, i + 1, line)?)))
        .collect()
}

/// The string field `field` of a .jsonl record, or an error naming the line.
pub(crate) fn string_field<'a>(
    path: &Path,
    line: usize,
    value: &'a serde_json::Value,
    field: &str,
) -> Result<&'a str, DataError> {
    match value.get(field) {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(serde_json::Value::String(_)) => Err(DataError::input(
            path,
            Some(line),
            format!("field \"{field}\" is empty"),
        )),
        Some(_) => Err(DataError::input(
            path,
            Some(line),
            format!("field \"{field}\" is not a string"),
        )),
        None => Err(DataError::input(
            path,
            Some(line),
            format!("no \"{field}\" field"),
        )),
    }
}
