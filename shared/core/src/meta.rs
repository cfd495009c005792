//! The metadata every chunk carries, in one place: the reserved fields Quarry sets on every chunk
//! of a document (`key`, `format`, `title`) and the user's own (`user.<name>`: S3 object metadata,
//! a JSONL record's extra fields). Chunks store and filters address the flat map
//! ([`Metadata`]) in both deployments, as S3 Vectors stores it; code writes it only through
//! [`ChunkMeta`] and reads the reserved fields only through [`key`], [`format`] and [`title`].

use std::collections::BTreeMap;

use serde_json::Value;

use crate::domain::{DocumentKey, Format};

/// A chunk's metadata as stored and filtered: reserved fields and `user.`-prefixed ones.
pub type Metadata = BTreeMap<String, Value>;

/// The document's key (S3 object key, path in the folder).
pub const KEY: &str = "key";
/// The detected format's name ([`Format::name`]).
pub const FORMAT: &str = "format";
/// The document's own title, where it has one (PDF and DOCX properties, HTML `<title>`, the
/// first Markdown heading).
pub const TITLE: &str = "title";
/// What user metadata is named under, so that no user field can shadow a reserved one.
pub const USER_PREFIX: &str = "user.";
/// A user's own `title` field ([`USER_PREFIX`] + [`TITLE`]), which keyword search weighs when the
/// document has no title of its own.
pub const USER_TITLE: &str = "user.title";

/// The typed view a document's chunks are written from.
#[derive(Debug, Clone, Copy)]
pub struct ChunkMeta<'a> {
    pub key: &'a DocumentKey,
    pub format: Format,
    pub title: Option<&'a str>,
    pub user: &'a BTreeMap<String, String>,
}

impl ChunkMeta<'_> {
    /// The flat map stored with every chunk of the document.
    pub fn to_metadata(&self) -> Metadata {
        let mut m = Metadata::new();
        m.insert(KEY.to_owned(), Value::from(self.key.as_str()));
        m.insert(FORMAT.to_owned(), Value::from(self.format.name()));
        if let Some(t) = self.title {
            m.insert(TITLE.to_owned(), Value::from(t));
        }
        for (k, v) in self.user {
            m.entry(format!("{USER_PREFIX}{k}")).or_insert_with(|| Value::from(v.as_str()));
        }
        m
    }
}

/// The document key a chunk was stored with.
pub fn key(m: &Metadata) -> Option<&str> {
    m.get(KEY).and_then(Value::as_str)
}

/// The format name a chunk was stored with.
pub fn format(m: &Metadata) -> Option<&str> {
    m.get(FORMAT).and_then(Value::as_str)
}

/// The title keyword search weighs: the document's own, or else the user's `title` field, or "".
pub fn title(m: &Metadata) -> &str {
    [TITLE, USER_TITLE].iter().find_map(|k| m.get(*k).and_then(Value::as_str)).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_fields_are_written_and_read_back_and_user_fields_never_shadow_them() {
        let key = DocumentKey::new("a/b.pdf");
        let user = BTreeMap::from([("team".to_owned(), "search".to_owned()), ("title".to_owned(), "T2".to_owned())]);
        let m = ChunkMeta { key: &key, format: Format::Pdf, title: None, user: &user }.to_metadata();
        assert_eq!((self::key(&m), format(&m), title(&m)), (Some("a/b.pdf"), Some("pdf"), "T2"));
        assert_eq!(m.get("user.team"), Some(&Value::from("search")));
        let m = ChunkMeta { key: &key, format: Format::Pdf, title: Some("T1"), user: &user }.to_metadata();
        assert_eq!(title(&m), "T1", "the document's own title first");
        assert_eq!(USER_TITLE, format!("{USER_PREFIX}{TITLE}"));
    }
}
