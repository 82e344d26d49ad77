//! Every bad input is an error naming the file, the line or the field.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use memory_layers_data::{DataError, DocSeparator, Document, documents, load_qa};

/// A scratch directory named after `name`, removed when dropped.
fn dir(name: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(&format!("data-inputs-{name}-"))
        .tempdir()
        .unwrap()
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// Every document of `paths`, read as a run streams them.
fn load_documents(paths: &[PathBuf], field: &str) -> Result<Vec<Document>, DataError> {
    documents(paths, field, &DocSeparator::Whole)?.collect()
}

/// The error of loading `paths`, as (message, line).
fn data_error(result: Result<impl std::fmt::Debug, DataError>) -> (String, Option<usize>) {
    match result {
        Err(e @ DataError::Input { line, .. }) => (e.to_string(), line),
        other => panic!("expected a data error, got {other:?}"),
    }
}

#[test]
fn text_inputs() {
    let tmp = dir("text");
    let d = tmp.path();
    let (msg, _) = data_error(load_documents(&[d.join("missing.txt")], "text"));
    assert!(
        msg.contains("missing.txt") && msg.contains("no such file"),
        "{msg}"
    );

    let bad = write(&d.join("latin1.txt"), b"line one\nline two\ncaf\xe9\n");
    let (msg, line) = data_error(load_documents(&[bad], "text"));
    assert_eq!(line, Some(3));
    assert!(
        msg.contains("latin1.txt:3") && msg.contains("not UTF-8"),
        "{msg}"
    );

    let empty = write(&d.join("empty.txt"), b"  \n\n");
    assert!(
        data_error(load_documents(&[empty], "text"))
            .0
            .contains("empty")
    );

    let folder = d.join("folder");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    assert!(
        data_error(load_documents(std::slice::from_ref(&folder), "text"))
            .0
            .contains("no .txt, .jsonl, .txt.gz, .jsonl.gz, .txt.zst, .jsonl.zst, .parquet file")
    );
    write(&folder.join("sub/b.txt"), b"second");
    write(&folder.join("a.txt"), b"first");
    write(&folder.join("notes.md"), b"ignored: not .txt");
    let docs = load_documents(&[folder], "text").unwrap();
    assert_eq!(
        docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
        ["first", "second"]
    );
}

/// gzip-compressed `bytes`.
fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn gzipped_jsonl_shards_with_another_field() {
    let tmp = dir("shards");
    let d = tmp.path();
    let shards = d.join("corpus");
    std::fs::create_dir_all(&shards).unwrap();
    write(
        &shards.join("part-00001.jsonl.gz"),
        &gz(b"{\"content\": \"three\"}\n"),
    );
    write(
        &shards.join("part-00000.jsonl.gz"),
        &gz(b"{\"content\": \"one\", \"id\": 1}\n{\"content\": \"two\"}\n"),
    );
    write(&shards.join("notes.txt.gz"), &gz(b"four"));
    let docs = load_documents(std::slice::from_ref(&shards), "content").unwrap();
    assert_eq!(
        docs.iter().map(|d| d.text.as_str()).collect::<Vec<_>>(),
        ["four", "one", "two", "three"],
        "every shard, in name order"
    );
    assert!(docs[1].source.ends_with("part-00000.jsonl.gz:1"));
    // The default field is "text": these records lack it.
    let (msg, line) = data_error(load_documents(std::slice::from_ref(&shards), "text"));
    assert_eq!(line, Some(1));
    assert!(msg.contains("no \"text\" field"), "{msg}");
    let broken = write(&d.join("broken.txt.gz"), b"not gzip at all");
    let (msg, _) = data_error(load_documents(&[broken], "text"));
    assert!(
        msg.contains("broken.txt.gz") && msg.contains("gzip"),
        "{msg}"
    );
    let broken = write(&d.join("broken.jsonl.zst"), b"not zstd either");
    let (msg, _) = data_error(load_documents(&[broken], "text"));
    assert!(
        msg.contains("broken.jsonl.zst") && msg.contains("zstd"),
        "{msg}"
    );
    let latin1 = write(
        &d.join("latin1.jsonl.gz"),
        &gz(b"{\"text\": \"caf\xe9\"}\n"),
    );
    let (msg, line) = data_error(load_documents(&[latin1], "text"));
    assert_eq!(line, Some(1));
    assert!(msg.contains("not UTF-8"), "{msg}");
}

#[test]
fn jsonl_inputs() {
    let tmp = dir("jsonl");
    let d = tmp.path();
    let ok = write(
        &d.join("ok.jsonl"),
        b"{\"text\": \"one\"}\n{\"text\": \"two\"}\n",
    );
    assert_eq!(load_documents(&[ok], "text").unwrap().len(), 2);
    let cases: [(&str, &[u8], usize, &str); 4] = [
        (
            "badjson.jsonl",
            b"{\"text\": \"one\"}\n{text: two}\n",
            2,
            "invalid JSON",
        ),
        (
            "nofield.jsonl",
            b"{\"text\": \"one\"}\n{\"body\": \"two\"}\n",
            2,
            "no \"text\" field",
        ),
        ("notstring.jsonl", b"{\"text\": 3}\n", 1, "not a string"),
        (
            "blank.jsonl",
            b"{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n",
            2,
            "blank line",
        ),
    ];
    for (name, bytes, expected_line, what) in cases {
        let path = write(&d.join(name), bytes);
        let (msg, line) = data_error(load_documents(&[path], "text"));
        assert_eq!(line, Some(expected_line), "{msg}");
        assert!(msg.contains(name) && msg.contains(what), "{msg}");
    }
}

#[test]
fn qa_inputs() {
    let tmp = dir("qa");
    let d = tmp.path();
    let ok = write(
        &d.join("qa.jsonl"),
        b"{\"question\": \"Who?\", \"answer\": \"Me\"}\n",
    );
    assert_eq!(load_qa(&ok).unwrap()[0].answer, "Me");
    let no_answer = write(
        &d.join("noanswer.jsonl"),
        b"{\"question\": \"Who?\", \"answer\": \"Me\"}\n{\"question\": \"Why?\"}\n",
    );
    let (msg, line) = data_error(load_qa(&no_answer));
    assert_eq!(line, Some(2));
    assert!(msg.contains("no \"answer\" field"), "{msg}");
    let empty_question = write(
        &d.join("emptyq.jsonl"),
        b"{\"question\": \"\", \"answer\": \"x\"}\n",
    );
    assert!(
        data_error(load_qa(&empty_question))
            .0
            .contains("\"question\" is empty")
    );
    assert!(
        data_error(load_qa(&d.join("nothere.jsonl")))
            .0
            .contains("no such file")
    );
}

/// Parquet files written by pyarrow (tests/data/make_parquet.py): snappy and zstd pages, two
/// row groups, the text in another column.
#[test]
fn parquet_inputs() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for file in ["records-snappy.parquet", "records-zstd.parquet"] {
        let docs = load_documents(&[data.join(file)], "content").unwrap();
        assert_eq!(docs.len(), 50, "{file}: both row groups");
        assert_eq!(docs[31].text, "Parquet record 31: to be, or not to be.");
        assert!(docs[0].source.ends_with(&format!("{file}:1")));
    }
    let (msg, _) = data_error(load_documents(&[data.join("records-zstd.parquet")], "text"));
    assert!(msg.contains("no \"text\" column"), "{msg}");
    let (msg, line) = data_error(load_documents(&[data.join("null-text.parquet")], "content"));
    assert_eq!(line, Some(2));
    assert!(msg.contains("is null"), "{msg}");
    let (msg, _) = data_error(load_documents(&[data.join("int-text.parquet")], "content"));
    assert!(msg.contains("not a string"), "{msg}");
    let (msg, _) = data_error(load_documents(
        &[data.join("records-gzip.parquet")],
        "content",
    ));
    assert!(
        msg.to_lowercase().contains("gzip"),
        "the codec named: {msg}"
    );
    let tmp = dir("parquet");
    let d = tmp.path();
    let fake = write(&d.join("fake.parquet"), b"{\"text\": \"not parquet\"}\n");
    let (msg, _) = data_error(load_documents(&[fake], "text"));
    assert!(
        msg.contains("fake.parquet") && msg.contains("parquet"),
        "{msg}"
    );
}
