//! Text extraction: bytes in, [`ExtractedDocument`] out, or a typed [`ExtractError`] that says
//! exactly what is wrong with the file. The format comes from [`quarry_core::format::detect`] (the
//! same detection screening uses), then one module per format reads it. Every limit is
//! configurable; every parser that might panic on hostile input is fenced so that one bad file
//! fails alone.

mod decode;
mod delimited;
mod docx;
mod html;
mod json;
mod layout;
mod markdown;
mod pdf;

use quarry_core::config::Limits;
use quarry_core::format::{self, Refusal, Undetected};
use quarry_core::{Classify, ErrorClass, ExtractedDocument, Format};

pub use decode::{clean, decode};

/// Why a document yields no text. Every variant is the document's fault, so none is retried.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// Empty, too large, or not a kind of file Quarry reads: what screening finds
    /// ([`quarry_core::format::screen`]), found again here with the bytes in hand.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the file is binary data, not text (NUL bytes near offset {offset})")]
    Binary { offset: usize },
    #[error("the text cannot be decoded: {detail}")]
    Encoding { detail: String },
    #[error("the PDF is corrupt or truncated: {reason}")]
    CorruptPdf {
        reason: String,
        #[source]
        source: Option<lopdf::Error>,
    },
    #[error("the PDF is encrypted with a password")]
    EncryptedPdf,
    #[error(
        "the PDF has no text layer on any of its {pages} pages (scanned images need OCR, which Quarry does not do)"
    )]
    ScannedPdf { pages: usize },
    #[error("the PDF has {pages} pages, over the {limit}-page limit (limits.max_pdf_pages)")]
    TooManyPages { pages: usize, limit: u32 },
    #[error("the Word document is corrupt or truncated: {reason}")]
    CorruptDocx {
        reason: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error(
        "the Word document looks like a zip bomb: {part} would inflate to {inflated} bytes from {compressed} (limits.docx_max_ratio, limits.docx_max_uncompressed_bytes)"
    )]
    ZipBomb { part: String, compressed: u64, inflated: u64 },
    #[error("the CSV file cannot be parsed")]
    Csv(#[source] csv::Error),
    #[error("the CSV file has a quoted field opened on line {line} that never closes")]
    CsvQuote { line: usize },
    #[error("the JSON is not valid")]
    Json(#[source] serde_json::Error),
    #[error("the {format} nests deeper than {limit} levels (limits.{format}_max_depth)")]
    TooDeep { format: Format, limit: u32 },
    #[error("the document has over {limit} characters of text (limits.max_chars)")]
    TooMuchText { limit: usize },
    #[error("the {format} file has no text to index")]
    NoText { format: Format },
}

impl Classify for ExtractError {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }

    fn code(&self) -> &'static str {
        match self {
            ExtractError::Refused(r) => r.code(),
            ExtractError::Binary { .. } => "binary_content",
            ExtractError::Encoding { .. } => "undecodable_text",
            ExtractError::CorruptPdf { .. } => "corrupt_pdf",
            ExtractError::EncryptedPdf => "encrypted_pdf",
            ExtractError::ScannedPdf { .. } => "scanned_pdf",
            ExtractError::TooManyPages { .. } => "too_many_pages",
            ExtractError::CorruptDocx { .. } => "corrupt_docx",
            ExtractError::ZipBomb { .. } => "zip_bomb",
            ExtractError::Csv(_) | ExtractError::CsvQuote { .. } => "invalid_csv",
            ExtractError::Json(_) => "invalid_json",
            ExtractError::TooDeep { .. } => "too_deeply_nested",
            ExtractError::TooMuchText { .. } => "too_much_text",
            ExtractError::NoText { .. } => "no_text",
        }
    }
}

/// Extracts text within configured limits.
#[derive(Debug, Clone, Default)]
pub struct Extractor {
    limits: Limits,
}

impl Extractor {
    pub fn new(limits: Limits) -> Self {
        Extractor { limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Decides the format from the bytes and, for text, the file name's extension.
    pub fn detect(&self, name: Option<&str>, bytes: &[u8]) -> Result<Format, ExtractError> {
        self.detect_as(name, None, bytes)
    }

    /// [`Extractor::detect`] with the content type the source declares ([`format::detect`]).
    pub fn detect_as(
        &self,
        name: Option<&str>,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Format, ExtractError> {
        format::detect(name, content_type, bytes).map_err(|e| match e {
            Undetected::Refused(r) => ExtractError::Refused(r),
            Undetected::NoPdfHeader => ExtractError::CorruptPdf { reason: e.to_string(), source: None },
            Undetected::NotZip => ExtractError::CorruptDocx { reason: e.to_string(), source: None },
        })
    }

    /// Extracts the text of a document. `name` is the file name or key, used for its extension.
    pub fn extract(&self, name: Option<&str>, bytes: &[u8]) -> Result<ExtractedDocument, ExtractError> {
        self.extract_as(name, None, bytes)
    }

    /// [`Extractor::extract`] with the source's declared content type (see [`Extractor::detect_as`]).
    pub fn extract_as(
        &self,
        name: Option<&str>,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<ExtractedDocument, ExtractError> {
        format::check_size(&self.limits, bytes.len() as u64)?;
        let format = self.detect_as(name, content_type, bytes)?;
        let tsv = name.is_some_and(|n| n.to_ascii_lowercase().ends_with(".tsv"));
        let doc = match format {
            Format::Pdf => pdf::extract(&self.limits, bytes)?,
            Format::Docx => docx::extract(&self.limits, bytes)?,
            Format::Text => ExtractedDocument::single_page(format, decode(bytes)?.into_owned(), None),
            Format::Markdown => markdown::markdown(&decode(bytes)?),
            Format::Html => {
                let src = decode(bytes)?;
                let limit = self.limits.html_max_depth;
                if html::html_depth(&src) > limit as usize {
                    return Err(ExtractError::TooDeep { format: Format::Html, limit });
                }
                html::html(&src)
            }
            Format::Csv => delimited::csv_text(&decode(bytes)?, tsv)?,
            Format::Json => json::extract(&self.limits, &decode(bytes)?)?,
        };
        if doc.text.len() > self.limits.max_chars && doc.text.chars().count() > self.limits.max_chars {
            return Err(ExtractError::TooMuchText { limit: self.limits.max_chars });
        }
        if doc.text.trim().is_empty() {
            return Err(ExtractError::NoText { format });
        }
        Ok(doc)
    }
}
