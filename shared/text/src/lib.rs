//! From raw bytes to redacted, chunked text with provenance: the first stage of Quarry's pipeline,
//! shared by the embed-worker Lambda and the embedded default. Pure computation: no I/O beyond
//! what the caller hands in.

pub mod chunk;
pub mod extract;
pub mod redact;

pub use chunk::{ChunkOptions, Chunker, TokenCounter};
pub use extract::{ExtractError, Extractor};
pub use quarry_tokenizer::{TokenizerError, WordPiece};
pub use redact::{Redacted, Redactor};

pub use quarry_core::Prepared;
use quarry_core::ports::{BlobInfo, DocumentPreparer};
use quarry_core::{Config, DocumentKey, ExtractedDocument};

/// Extraction, redaction and chunking, configured once and reused for every document.
#[derive(Debug)]
pub struct Preparer<T: TokenCounter> {
    extractor: Extractor,
    redactor: Redactor,
    counter: T,
    options: ChunkOptions,
}

impl<T: TokenCounter> Preparer<T> {
    pub fn new(config: &Config, counter: T) -> Self {
        Preparer {
            extractor: Extractor::new(config.limits.clone()),
            redactor: Redactor::new(&config.redaction.kinds()),
            counter,
            options: ChunkOptions::for_config(config),
        }
    }

    /// The limits extraction and screening apply.
    pub fn limits(&self) -> &quarry_core::config::Limits {
        self.extractor.limits()
    }

    pub fn counter(&self) -> &T {
        &self.counter
    }

    /// `name` is the file name or key (for its extension).
    pub fn prepare(&self, name: Option<&str>, bytes: &[u8]) -> Result<Prepared, ExtractError> {
        self.prepare_as(name, None, bytes)
    }

    /// [`Preparer::prepare`] with the content type the source declares.
    pub fn prepare_as(
        &self,
        name: Option<&str>,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Prepared, ExtractError> {
        let extracted = self.extractor.extract_as(name, content_type, bytes)?;
        Ok(self.prepare_extracted(&extracted))
    }

    pub fn prepare_extracted(&self, extracted: &ExtractedDocument) -> Prepared {
        let (document, redactions) = self.redactor.redact_document(extracted);
        let chunks = Chunker::new(&self.counter, self.options).chunk(&document);
        Prepared { document, redactions, chunks }
    }
}

impl<T: TokenCounter> DocumentPreparer for Preparer<T> {
    type Error = ExtractError;

    fn screen(&self, info: &BlobInfo) -> Result<(), ExtractError> {
        Ok(quarry_core::format::screen(
            self.extractor.limits(),
            &info.key,
            info.size,
            info.content_type.as_deref(),
            b"",
        )?)
    }

    fn prepare_document(
        &self,
        key: &DocumentKey,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Prepared, ExtractError> {
        self.prepare_as(Some(key.as_str()), content_type, bytes)
    }
}
