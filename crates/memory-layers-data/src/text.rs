//! Text files cut into documents as they are read: a chunk at a time, never the whole file,
//! so a text file larger than memory prepares as long as its documents fit.

use std::io::Read;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::corpus::{open_decoded, read_error};
use crate::{DataError, Document};

/// What ends a document in a text file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocSeparator {
    /// Nothing: the file is one document.
    #[default]
    Whole,
    /// An empty line (or one of white space only); runs of them are one separator.
    BlankLine,
    /// This text, wherever it appears (`<|endoftext|>`); it is not part of any document.
    Marker(String),
}

impl std::str::FromStr for DocSeparator {
    type Err = String;

    /// `whole`, `blank-line`, or any other text but an empty one as a marker.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(match text {
            "" => {
                return Err(
                    "an empty separator would end a document at every byte: use \
                            whole, blank-line or a marker such as '<|endoftext|>'"
                        .into(),
                );
            }
            "whole" => Self::Whole,
            "blank-line" => Self::BlankLine,
            marker => Self::Marker(marker.to_string()),
        })
    }
}

impl std::fmt::Display for DocSeparator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Whole => f.write_str("whole"),
            Self::BlankLine => f.write_str("blank-line"),
            Self::Marker(marker) => f.write_str(marker),
        }
    }
}

/// How a text file is read: the bytes read at a time, and the longest document (a longer one
/// is cut at the line end before this length, or here where a line is longer still).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Splitting {
    pub(crate) chunk: usize,
    pub(crate) max_document: usize,
}

impl Default for Splitting {
    fn default() -> Self {
        Self {
            chunk: 1 << 20,
            max_document: MAX_DOCUMENT_BYTES,
        }
    }
}

/// Why an empty `doc_separator` is refused (it would end a document at every byte).
pub const EMPTY_SEPARATOR: &str =
    "is empty: use whole, blank-line or a marker such as '<|endoftext|>'";

/// The longest document a text file gives, in bytes: what bounds the memory of reading one.
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// The documents of one text file, in order; stops after its first error.
pub(crate) struct TextDocuments {
    path: PathBuf,
    separator: DocSeparator,
    splitting: Splitting,
    /// The decoded file, opened on the first read; `None` again once it is exhausted.
    reader: Option<Box<dyn Read + Send>>,
    opened: bool,
    /// Bytes read; those from `start` on are not yet given out as documents.
    pending: Vec<u8>,
    /// Where the bytes not yet given out start in `pending` (the rest is dropped once per
    /// chunk read, not once per document).
    start: usize,
    /// Newlines before `start`: the line the next document starts on.
    line: usize,
    /// Documents given out.
    given: usize,
    done: bool,
}

impl TextDocuments {
    pub(crate) fn new(path: PathBuf, separator: DocSeparator, splitting: Splitting) -> Self {
        Self {
            path,
            separator,
            splitting,
            reader: None,
            opened: false,
            pending: Vec::new(),
            start: 0,
            line: 1,
            given: 0,
            done: false,
        }
    }

    /// The bytes not yet given out.
    fn rest(&self) -> &[u8] {
        &self.pending[self.start..]
    }

    /// Where the next separator is in [`rest`](Self::rest): its start and end.
    fn separator_at(&self) -> Option<(usize, usize)> {
        let bytes = self.rest();
        match &self.separator {
            DocSeparator::Whole => None,
            DocSeparator::Marker(marker) => memchr::memmem::find(bytes, marker.as_bytes())
                .map(|start| (start, start + marker.len())),
            DocSeparator::BlankLine => memchr::memchr_iter(b'\n', bytes).find_map(|start| {
                let rest = &bytes[start + 1..];
                let blank = rest
                    .iter()
                    .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))?;
                (rest[blank] == b'\n').then_some((start, start + 1 + blank + 1))
            }),
        }
    }

    /// Where a document too long to wait for its separator is cut: after the last newline
    /// within the longest length, else at a character boundary there.
    fn forced_cut(&self) -> usize {
        let (max, rest) = (self.splitting.max_document, self.rest());
        match memchr::memrchr(b'\n', &rest[..max]) {
            Some(newline) => newline + 1,
            None => (1..=max)
                .rev()
                .find(|&at| is_char_start(rest[at]))
                .unwrap_or(max),
        }
    }

    /// Gives out `rest[..end]` as a document (if it holds more than white space) and drops
    /// `rest[..skip]`.
    fn take(&mut self, end: usize, skip: usize) -> Option<Result<Document, DataError>> {
        let line = self.line;
        self.line += memchr::memchr_iter(b'\n', &self.rest()[..skip]).count();
        let bytes = self.rest()[..end].to_vec();
        self.start += skip;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let at = line + memchr::memchr_iter(b'\n', &e.as_bytes()[..valid]).count();
                self.done = true;
                return Some(Err(DataError::input(&self.path, Some(at), "not UTF-8")));
            }
        };
        if text.trim().is_empty() {
            return None;
        }
        self.given += 1;
        let source = match self.separator {
            DocSeparator::Whole if line == 1 => self.path.display().to_string(),
            _ => format!("{}:{line}", self.path.display()),
        };
        Some(Ok(Document { source, text }))
    }

    /// Reads the next chunk into `pending`; `false` at the end of the file.
    fn fill(&mut self) -> Result<bool, DataError> {
        if !self.opened {
            self.opened = true;
            self.reader = Some(open_decoded(&self.path)?);
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(false);
        };
        self.pending.drain(..self.start);
        self.start = 0;
        let start = self.pending.len();
        self.pending.resize(start + self.splitting.chunk, 0);
        let read = reader.read(&mut self.pending[start..]);
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                self.pending.truncate(start);
                return Err(read_error(&self.path, self.line, e));
            }
        };
        self.pending.truncate(start + n);
        if n == 0 {
            self.reader = None;
        }
        Ok(n > 0)
    }
}

/// Whether `byte` starts a UTF-8 character (is not a continuation byte).
fn is_char_start(byte: u8) -> bool {
    byte & 0b1100_0000 != 0b1000_0000
}

impl Iterator for TextDocuments {
    type Item = Result<Document, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            // A separator past the longest document comes after a forced cut.
            let max = self.splitting.max_document;
            if let Some((start, end)) = self.separator_at().filter(|&(start, _)| start <= max) {
                match self.take(start, end) {
                    Some(document) => return Some(document),
                    None => continue,
                }
            }
            if self.rest().len() > self.splitting.max_document {
                let cut = self.forced_cut();
                match self.take(cut, cut) {
                    Some(document) => return Some(document),
                    None => continue,
                }
            }
            match self.fill() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    let end = self.rest().len();
                    if let Some(document) = self.take(end, end) {
                        return Some(document);
                    }
                    if self.given == 0 {
                        return Some(Err(DataError::input(&self.path, None, "file is empty")));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documents of `text` written to a file, read `chunk` bytes at a time.
    fn split(text: &str, separator: DocSeparator, chunk: usize, max: usize) -> Vec<Document> {
        let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        std::fs::write(&path, text).unwrap();
        let splitting = Splitting {
            chunk,
            max_document: max,
        };
        TextDocuments::new(path.to_path_buf(), separator, splitting)
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn texts(docs: &[Document]) -> Vec<&str> {
        docs.iter().map(|d| d.text.as_str()).collect()
    }

    #[test]
    fn an_empty_separator_is_refused() {
        assert!("".parse::<DocSeparator>().is_err());
        let empty = DocSeparator::Marker(String::new());
        assert!(crate::documents(&[PathBuf::from("any.txt")], "text", &empty).is_err());
    }

    #[test]
    fn separators_cut_documents_across_chunk_boundaries() {
        let text = "one\nline two\n\n  \n\nthree é\n\nfour<|endoftext|>five\n";
        for chunk in [1, 2, 3, 7, 64] {
            let blank = split(text, DocSeparator::BlankLine, chunk, 1 << 20);
            assert_eq!(
                texts(&blank),
                ["one\nline two", "three é", "four<|endoftext|>five\n"],
                "chunk {chunk}"
            );
            assert_eq!(blank[1].source.rsplit(':').next(), Some("6"), "its line");
            let marked = split(text, "<|endoftext|>".parse().unwrap(), chunk, 1 << 20);
            assert_eq!(
                texts(&marked),
                ["one\nline two\n\n  \n\nthree é\n\nfour", "five\n"]
            );
            let whole = split(text, DocSeparator::Whole, chunk, 1 << 20);
            assert_eq!(texts(&whole), [text]);
        }
    }

    #[test]
    fn a_document_longer_than_the_limit_is_cut_at_a_line_end() {
        let line = "a sentence of some length.\n";
        let text = line.repeat(40);
        let docs = split(&text, DocSeparator::Whole, 16, 100);
        assert!(docs.len() > 10, "{}", docs.len());
        assert!(
            docs.iter()
                .all(|d| d.text.len() <= 100 && d.text.ends_with('\n'))
        );
        assert_eq!(
            docs.iter().map(|d| d.text.as_str()).collect::<String>(),
            text
        );
        // A separator past the limit in the chunk just read still comes after a cut.
        let docs = split(
            &format!("{text}\n{text}"),
            DocSeparator::BlankLine,
            4096,
            100,
        );
        assert!(
            docs.iter().all(|d| d.text.len() <= 100),
            "a document over the limit"
        );
        // A line longer than the limit is cut at a character boundary.
        let long = "é".repeat(200);
        let docs = split(&long, DocSeparator::Whole, 7, 99);
        assert_eq!(
            docs.iter().map(|d| d.text.as_str()).collect::<String>(),
            long
        );
    }

    #[test]
    fn bad_bytes_and_empty_files_are_named() {
        let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
        std::fs::write(&path, b"fine\n\nstill fine\nbad \xff here\n").unwrap();
        let mut docs = TextDocuments::new(
            path.to_path_buf(),
            DocSeparator::BlankLine,
            Splitting::default(),
        );
        assert_eq!(docs.next().unwrap().unwrap().text, "fine");
        let err = docs.next().unwrap().unwrap_err().to_string();
        assert!(err.contains(":4: not UTF-8"), "{err}");
        assert!(docs.next().is_none(), "stops after its error");
        std::fs::write(&path, " \n\n").unwrap();
        let mut docs = TextDocuments::new(
            path.to_path_buf(),
            DocSeparator::BlankLine,
            Splitting::default(),
        );
        assert!(
            docs.next()
                .unwrap()
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
    }
}
