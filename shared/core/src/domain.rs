//! Domain types. Ids are deterministic so that every write downstream is an idempotent upsert:
//! the same document key always gives the same [`DocumentId`], and chunk `n` of it always the same
//! [`ChunkId`], however often a message is delivered or a batch resumed.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// Where a document lives in its source: an S3 object key, or a path relative to the local
/// "bucket" folder, always with `/` separators and already URL-decoded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentKey(String);

impl DocumentKey {
    pub fn new(key: impl Into<String>) -> Self {
        DocumentKey(key.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The lower-cased extension of the key's last path segment, if any.
    pub fn extension(&self) -> Option<String> {
        let name = self.0.rsplit('/').next().unwrap_or(&self.0);
        let (stem, ext) = name.rsplit_once('.')?;
        (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
    }
}

impl fmt::Display for DocumentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A document's stable id, derived from its key: replacing a file keeps its id, so the new
/// version's chunks overwrite the old ones and stale ones can be found by ordinal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentId(String);

impl DocumentId {
    pub fn for_key(key: &DocumentKey) -> Self {
        let digest = Sha256::new().chain_update(b"quarry/doc/v1\0").chain_update(key.as_str()).finalize();
        // 128 bits: collision-free for any realistic corpus, short enough for S3 Vectors keys.
        DocumentId(hex(&digest[..16]))
    }
    /// Parses an id received from a client; only the shape [`DocumentId::for_key`] produces.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| DocumentId(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `{document id}-{ordinal}`: document key + chunk ordinal, as the vector store's key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChunkId(String);

impl ChunkId {
    pub fn new(doc: &DocumentId, ordinal: u32) -> Self {
        // Zero-padded so that lexicographic order (S3 Vectors, SQLite TEXT keys) is ordinal order.
        ChunkId(format!("{}-{ordinal:06}", doc.as_str()))
    }
    /// An id read back from a store that wrote [`ChunkId::new`]'s output.
    pub fn from_stored(id: String) -> Self {
        ChunkId(id)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Splits the id back into its document id and ordinal.
    pub fn parts(&self) -> Option<(DocumentId, u32)> {
        let (doc, ord) = self.0.split_once('-')?;
        Some((DocumentId::parse(doc)?, ord.parse().ok()?))
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of a document's bytes: "unchanged" means the same hash, whatever the timestamp says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContentHash(String);

impl ContentHash {
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(hex(&Sha256::digest(bytes)))
    }
    /// A hash read back from a store that wrote [`ContentHash::as_str`].
    pub fn from_stored(hex: String) -> Self {
        ContentHash(hex)
    }

    pub fn of_text(text: &str) -> Self {
        Self::of(text.as_bytes())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A half-open range of byte offsets into a UTF-8 string. Internal: used for slicing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ByteSpan {
    pub start: usize,
    pub end: usize,
}

/// A half-open range of Unicode scalar value (char) offsets into a document's extracted text.
/// This is what the API returns: it does not depend on how the text is encoded in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CharSpan {
    pub start: usize,
    pub end: usize,
}

/// The formats Quarry extracts text from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
    Csv,
    Json,
}

impl Format {
    pub const ALL: [Format; 7] =
        [Format::Text, Format::Markdown, Format::Html, Format::Pdf, Format::Docx, Format::Csv, Format::Json];

    /// The format [`Format::name`] names.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
    pub fn mime(self) -> &'static str {
        match self {
            Format::Text => "text/plain",
            Format::Markdown => "text/markdown",
            Format::Html => "text/html",
            Format::Pdf => "application/pdf",
            Format::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Format::Csv => "text/csv",
            Format::Json => "application/json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One page of an extracted document (PDFs have many; every other format has one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// 1-based, as a reader would cite it.
    pub number: u32,
    /// Where this page's text sits in [`ExtractedDocument::text`].
    pub span: ByteSpan,
}

/// The text of a document, with its page structure, ready for redaction and chunking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractedDocument {
    pub format: Format,
    pub text: String,
    /// Pages in order, covering `text` without gaps; separators between pages belong to no page.
    pub pages: Vec<Page>,
    pub title: Option<String>,
}

impl ExtractedDocument {
    /// A single-page document.
    pub fn single_page(format: Format, text: String, title: Option<String>) -> Self {
        let span = ByteSpan { start: 0, end: text.len() };
        ExtractedDocument { format, text, pages: vec![Page { number: 1, span }], title }
    }

    /// The page holding byte offset `at`, or the nearest page before it (offsets in separators).
    pub fn page_at(&self, at: usize) -> Option<u32> {
        let i = self.pages.partition_point(|p| p.span.start <= at);
        self.pages.get(i.checked_sub(1)?).map(|p| p.number)
    }
}

/// First and last page a chunk touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRange {
    pub first: u32,
    pub last: u32,
}

/// A piece of a document's redacted text, sized for the embedding model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub ordinal: u32,
    pub text: String,
    pub span: CharSpan,
    pub byte_span: ByteSpan,
    pub pages: Option<PageRange>,
    /// Model tokens in `text`, special tokens excluded.
    pub tokens: u32,
}

/// The kinds of personal or secret data the redactor replaces before anything is embedded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    Ssn,
    Card,
    Iban,
    Ipv4,
    Ipv6,
    AwsAccessKey,
    AwsSecretKey,
    Jwt,
    PrivateKey,
    ApiKey,
}

impl PiiKind {
    pub const ALL: [PiiKind; 12] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Ssn,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ipv4,
        PiiKind::Ipv6,
        PiiKind::AwsAccessKey,
        PiiKind::AwsSecretKey,
        PiiKind::Jwt,
        PiiKind::PrivateKey,
        PiiKind::ApiKey,
    ];

    /// The name used in configuration and reports.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Ssn => "ssn",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
            PiiKind::Ipv4 => "ipv4",
            PiiKind::Ipv6 => "ipv6",
            PiiKind::AwsAccessKey => "aws_access_key",
            PiiKind::AwsSecretKey => "aws_secret_key",
            PiiKind::Jwt => "jwt",
            PiiKind::PrivateKey => "private_key",
            PiiKind::ApiKey => "api_key",
        }
    }

    /// What replaces a match in the text.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Ssn => "[SSN]",
            PiiKind::Card => "[CARD]",
            PiiKind::Iban => "[IBAN]",
            PiiKind::Ipv4 => "[IPV4]",
            PiiKind::Ipv6 => "[IPV6]",
            PiiKind::AwsAccessKey => "[AWS_ACCESS_KEY]",
            PiiKind::AwsSecretKey => "[AWS_SECRET_KEY]",
            PiiKind::Jwt => "[JWT]",
            PiiKind::PrivateKey => "[PRIVATE_KEY]",
            PiiKind::ApiKey => "[API_KEY]",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        PiiKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How many of each kind were redacted in a document. Only counts are ever logged or stored.
pub type RedactionCounts = BTreeMap<PiiKind, u32>;

/// A document prepared for embedding: what the first stage (extract, redact, chunk) makes of it.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The redacted text and its pages: what chunk spans point into.
    pub document: ExtractedDocument,
    pub redactions: RedactionCounts,
    pub chunks: Vec<Chunk>,
}

/// A batch of documents indexed together, tracked from validation to the last document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchId(String);

impl BatchId {
    pub fn new(id: impl Into<String>) -> Self {
        BatchId(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Counters of a batch. `total = pending + done + failed + skipped` at every moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounters {
    pub total: u64,
    pub pending: u64,
    pub done: u64,
    pub failed: u64,
    /// Unchanged since the last indexing: nothing to embed.
    pub skipped: u64,
    /// Of the pending, those paused because a budget ran out (`BatchOutcome::Paused`).
    pub paused: u64,
    pub bytes_total: u64,
    pub bytes_done: u64,
}

/// Where one document stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DocumentStatus {
    Pending,
    Processing { attempt: u32 },
    Indexed { chunks: u32 },
    Unchanged,
    Failed { failure: Failure },
    Deleted,
}

/// Why a document failed: a stable code, a message for people, and whether a retry may help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

impl Failure {
    /// Records an error with its whole source chain in the message: the chain is what a user
    /// needs to see why their file failed.
    pub fn from_error<E: std::error::Error + crate::Classify>(err: &E) -> Self {
        let message = crate::error::chain(err);
        Failure { code: err.code().to_owned(), message, retryable: err.class().is_retryable() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_round_trip() {
        let key = DocumentKey::new("reports/2024 Q1.pdf");
        let a = DocumentId::for_key(&key);
        assert_eq!(a, DocumentId::for_key(&DocumentKey::new("reports/2024 Q1.pdf")));
        assert_ne!(a, DocumentId::for_key(&DocumentKey::new("reports/2024 Q2.pdf")));
        assert_eq!(a.as_str().len(), 32);
        assert_eq!(DocumentId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(DocumentId::parse("NOT-AN-ID"), None);

        let c = ChunkId::new(&a, 7);
        assert!(c.as_str().ends_with("-000007"));
        assert_eq!(c.parts(), Some((a.clone(), 7)));
        assert!(ChunkId::new(&a, 9) < ChunkId::new(&a, 10), "lexicographic order is ordinal order");
    }

    #[test]
    fn extension_ignores_dotfiles_and_folders() {
        assert_eq!(DocumentKey::new("a/b/Report.PDF").extension().as_deref(), Some("pdf"));
        assert_eq!(DocumentKey::new("a.d/README").extension(), None);
        assert_eq!(DocumentKey::new(".bashrc").extension(), None);
    }

    #[test]
    fn page_lookup() {
        let doc = ExtractedDocument {
            format: Format::Pdf,
            text: "aaa\n\nbbb".into(),
            pages: vec![
                Page { number: 1, span: ByteSpan { start: 0, end: 3 } },
                Page { number: 2, span: ByteSpan { start: 5, end: 8 } },
            ],
            title: None,
        };
        assert_eq!(doc.page_at(0), Some(1));
        assert_eq!(doc.page_at(4), Some(1));
        assert_eq!(doc.page_at(5), Some(2));
    }

    #[test]
    fn content_hash_is_sha256() {
        assert_eq!(
            ContentHash::of(b"abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn pii_names_round_trip() {
        for k in PiiKind::ALL {
            assert_eq!(PiiKind::from_name(k.name()), Some(k));
            assert!(k.placeholder().starts_with('[') && k.placeholder().ends_with(']'));
        }
    }
}
