//! A JSON Lines file as the bucket: each line `{"_id", "title"?, "text", ...}` is one document, the
//! format of BEIR corpora and of most exported datasets. The key is `_id`; the document's text is
//! the title, a blank line, then the text, declared as `text/plain` so that a body starting with a
//! brace is not mistaken for JSON. Other scalar fields become user metadata, filterable like S3
//! object metadata.
//!
//! A line that is not a usable record is not a reason to refuse the file: it is reported by line
//! number, the way a bad file in a folder is, and every other record is indexed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quarry_core::ports::{Blob, BlobInfo, BlobSource};
use quarry_core::{Classify, ContentHash, DocumentKey, ErrorClass, PortError};

/// The content type of every record: the text is assembled here, never sniffed.
pub const RECORD_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// Why one line of a JSONL file is not a document.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("line {line} is not valid JSON")]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line} is not a JSON object")]
    NotObject { line: usize },
    #[error("line {line} has no \"_id\" (a non-empty string or a number)")]
    MissingId { line: usize },
    #[error("line {line} has neither \"text\" nor \"title\" as a non-empty string")]
    NoText { line: usize },
    #[error("line {line} repeats \"_id\" {id:?} of line {first}")]
    DuplicateId { line: usize, id: String, first: usize },
}

impl JsonlError {
    pub fn line(&self) -> usize {
        match self {
            JsonlError::Json { line, .. }
            | JsonlError::NotObject { line }
            | JsonlError::MissingId { line }
            | JsonlError::NoText { line }
            | JsonlError::DuplicateId { line, .. } => *line,
        }
    }
}

impl Classify for JsonlError {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }

    fn code(&self) -> &'static str {
        match self {
            JsonlError::Json { .. } => "jsonl_invalid_json",
            JsonlError::NotObject { .. } => "jsonl_not_object",
            JsonlError::MissingId { .. } => "jsonl_missing_id",
            JsonlError::NoText { .. } => "jsonl_no_text",
            JsonlError::DuplicateId { .. } => "jsonl_duplicate_id",
        }
    }
}

/// A line that could not be read as a document, with the key it is reported under: its `_id`
/// when it has one, else `line:N`.
#[derive(Debug)]
pub struct Rejected {
    pub key: DocumentKey,
    pub size: u64,
    pub error: JsonlError,
}

#[derive(Debug, Clone)]
struct Record {
    text: String,
    version: String,
    metadata: BTreeMap<String, String>,
}

/// The records of one JSONL file, read once at open.
#[derive(Debug, Clone)]
pub struct JsonlSource {
    path: PathBuf,
    records: BTreeMap<DocumentKey, Record>,
}

impl JsonlSource {
    /// Reads `path`; the lines that are not documents come back beside the source.
    pub fn open(path: &Path) -> std::io::Result<(Self, Vec<Rejected>)> {
        Ok(JsonlSource::from_bytes(path, &std::fs::read(path)?))
    }

    /// The records of `data`, as if read from `path`.
    pub fn from_bytes(path: &Path, data: &[u8]) -> (Self, Vec<Rejected>) {
        let (records, rejected) = parse(data);
        (JsonlSource { path: path.to_owned(), records }, rejected)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn info(&self, key: &DocumentKey, r: &Record) -> BlobInfo {
        BlobInfo {
            key: key.clone(),
            size: r.text.len() as u64,
            version: Some(r.version.clone()),
            content_type: Some(RECORD_CONTENT_TYPE.to_owned()),
            metadata: r.metadata.clone(),
        }
    }

    fn record(&self, key: &DocumentKey) -> Result<&Record, PortError> {
        self.records.get(key).ok_or_else(|| PortError::NotFound { what: format!("record {key}") })
    }
}

fn parse(data: &[u8]) -> (BTreeMap<DocumentKey, Record>, Vec<Rejected>) {
    let mut records = BTreeMap::new();
    let mut first_line: BTreeMap<DocumentKey, usize> = BTreeMap::new();
    let mut rejected = Vec::new();
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let size = raw.len() as u64;
        let reject = |key: Option<&str>, error| Rejected {
            key: DocumentKey::new(key.map_or_else(|| format!("line:{line}"), str::to_owned)),
            size,
            error,
        };
        let value: serde_json::Value = match serde_json::from_slice(raw) {
            Ok(v) => v,
            Err(source) => {
                rejected.push(reject(None, JsonlError::Json { line, source }));
                continue;
            }
        };
        let serde_json::Value::Object(mut obj) = value else {
            rejected.push(reject(None, JsonlError::NotObject { line }));
            continue;
        };
        let id = match obj.remove("_id") {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                rejected.push(reject(None, JsonlError::MissingId { line }));
                continue;
            }
        };
        let field = |obj: &mut serde_json::Map<String, serde_json::Value>, name: &str| match obj.remove(name) {
            Some(serde_json::Value::String(s)) => s.trim().to_owned(),
            _ => String::new(),
        };
        let title = field(&mut obj, "title");
        let body = field(&mut obj, "text");
        if title.is_empty() && body.is_empty() {
            rejected.push(reject(Some(&id), JsonlError::NoText { line }));
            continue;
        }
        let key = DocumentKey::new(id.clone());
        if let Some(&first) = first_line.get(&key) {
            rejected.push(Rejected {
                key: DocumentKey::new(format!("line:{line}")),
                size,
                error: JsonlError::DuplicateId { line, id, first },
            });
            continue;
        }
        first_line.insert(key.clone(), line);
        let text = match (title.is_empty(), body.is_empty()) {
            (false, false) => format!("{title}\n\n{body}"),
            (false, true) => title.clone(),
            _ => body,
        };
        let mut metadata = BTreeMap::new();
        if !title.is_empty() {
            metadata.insert("title".to_owned(), title);
        }
        for (k, v) in obj {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                // Nested values are not filterable metadata; they stay out rather than as JSON text.
                _ => continue,
            };
            metadata.insert(k, v);
        }
        // The version changes whenever the record does, so an edited line is re-indexed.
        let version = ContentHash::of(raw).as_str().to_owned();
        records.insert(key, Record { text, version, metadata });
    }
    (records, rejected)
}

impl BlobSource for JsonlSource {
    async fn head(&self, key: &DocumentKey) -> Result<BlobInfo, PortError> {
        Ok(self.info(key, self.record(key)?))
    }

    async fn get(&self, key: &DocumentKey) -> Result<Blob, PortError> {
        let r = self.record(key)?;
        Ok(Blob { info: self.info(key, r), bytes: r.text.as_bytes().to_vec() })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, PortError> {
        Ok(self.records.iter().filter(|(k, _)| k.as_str().starts_with(prefix)).map(|(k, r)| self.info(k, r)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(text: &str) -> (JsonlSource, Vec<Rejected>) {
        let (records, rejected) = parse(text.as_bytes());
        (JsonlSource { path: PathBuf::from("t.jsonl"), records }, rejected)
    }

    #[tokio::test]
    async fn records_become_documents() {
        let (src, rejected) = open(concat!(
            "{\"_id\": \"MED-10\", \"title\": \"Statins\", \"text\": \"{braces} first.\", \"year\": 2012, \"x\": [1]}\n",
            "\n",
            "{\"_id\": 7, \"text\": \"only a body\"}\r\n",
        ));
        assert!(rejected.is_empty(), "{rejected:?}");
        let keys: Vec<String> = src.list("").await.expect("list").into_iter().map(|b| b.key.to_string()).collect();
        assert_eq!(keys, ["7", "MED-10"]);
        let b = src.get(&DocumentKey::new("MED-10")).await.expect("get");
        assert_eq!(b.bytes, b"Statins\n\n{braces} first.");
        assert_eq!(b.info.content_type.as_deref(), Some(RECORD_CONTENT_TYPE));
        assert_eq!(b.info.metadata.get("title").map(String::as_str), Some("Statins"));
        assert_eq!(b.info.metadata.get("year").map(String::as_str), Some("2012"));
        assert!(!b.info.metadata.contains_key("x"), "nested values are not metadata");
        assert_eq!(src.get(&DocumentKey::new("7")).await.expect("get").bytes, b"only a body");
        assert!(matches!(src.get(&DocumentKey::new("nope")).await, Err(PortError::NotFound { .. })));
    }

    #[test]
    fn bad_lines_are_reported_by_line_and_the_rest_is_kept() {
        let (src, rejected) = open(concat!(
            "{\"_id\": \"a\", \"text\": \"fine\"}\n",
            "{not json\n",
            "[1, 2]\n",
            "{\"text\": \"no id\"}\n",
            "{\"_id\": \"b\", \"title\": \"  \", \"text\": \"\"}\n",
            "{\"_id\": \"a\", \"text\": \"again\"}\n",
            "{\"_id\": \"c\", \"title\": \"title only\"}\n",
        ));
        let got: Vec<(String, usize, &str)> =
            rejected.iter().map(|r| (r.key.to_string(), r.error.line(), r.error.code())).collect();
        assert_eq!(
            got,
            [
                ("line:2".to_owned(), 2, "jsonl_invalid_json"),
                ("line:3".to_owned(), 3, "jsonl_not_object"),
                ("line:4".to_owned(), 4, "jsonl_missing_id"),
                ("b".to_owned(), 5, "jsonl_no_text"),
                ("line:6".to_owned(), 6, "jsonl_duplicate_id"),
            ]
        );
        assert_eq!(src.len(), 2);
        assert!(rejected.iter().all(|r| r.error.class() == ErrorClass::BadInput));
    }

    #[test]
    fn an_edited_record_gets_a_new_version() {
        let (a, _) = open("{\"_id\": \"a\", \"text\": \"one\"}\n");
        let (b, _) = open("{\"_id\": \"a\", \"text\": \"two\"}\n");
        let key = DocumentKey::new("a");
        assert_ne!(a.info(&key, a.record(&key).expect("a")).version, b.info(&key, b.record(&key).expect("b")).version);
    }
}
