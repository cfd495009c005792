//! Text extraction: bytes in, [`ExtractedDocument`] out, or a typed [`ExtractError`] that says
//! exactly what is wrong with the file. The format is chosen by content sniffing first (magic
//! numbers cannot lie about a PDF or a ZIP) and the file name's extension second (text formats
//! have no magic). Every limit is configurable; every parser that might panic on hostile input is
//! fenced so that one bad file fails alone.

use std::borrow::Cow;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};

use quarry_core::config::Limits;
use quarry_core::{ByteSpan, Classify, ErrorClass, ExtractedDocument, Format, Page};

/// Why a document yields no text. Every variant is the document's fault, so none is retried.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes, over the {limit}-byte limit (limits.max_file_bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("unsupported file type: {what}")]
    Unsupported { what: String },
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
            ExtractError::Empty => "empty_file",
            ExtractError::TooLarge { .. } => "file_too_large",
            ExtractError::Unsupported { .. } => "unsupported_type",
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

/// Binary signatures that are not documents we read, so the error can name what the file is.
const FOREIGN_MAGIC: &[(&[u8], &str)] = &[
    (b"\x89PNG\r\n\x1a\n", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
    (b"GIF87a", "GIF image"),
    (b"GIF89a", "GIF image"),
    (b"RIFF", "RIFF media (WebP, WAV or AVI)"),
    (b"\x1f\x8b", "gzip archive"),
    (b"BZh", "bzip2 archive"),
    (b"\xfd7zXZ\x00", "xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy or password-protected Office file (.doc/.xls, or encrypted .docx)"),
    (b"SQLite format 3\x00", "SQLite database"),
    (b"\x00\x00\x00\x18ftyp", "MP4 video"),
    (b"\x00\x00\x00\x20ftyp", "MP4 video"),
    (b"ID3", "MP3 audio"),
    (b"OggS", "Ogg media"),
    (b"fLaC", "FLAC audio"),
    (b"\x00asm", "WebAssembly module"),
];

fn ext_format(ext: &str) -> Option<Format> {
    Some(match ext {
        "txt" | "text" | "log" | "rst" | "adoc" => Format::Text,
        "md" | "markdown" | "mdown" | "mkd" => Format::Markdown,
        "html" | "htm" | "xhtml" => Format::Html,
        "pdf" => Format::Pdf,
        "docx" => Format::Docx,
        "csv" | "tsv" => Format::Csv,
        "json" | "jsonl" | "ndjson" => Format::Json,
        _ => return None,
    })
}

/// The format a declared content type names; generic types (`application/octet-stream`, which
/// S3 gives objects uploaded without one) name none.
fn mime_format(content_type: &str) -> Option<Format> {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    Some(match essence.as_str() {
        "text/plain" => Format::Text,
        "text/markdown" | "text/x-markdown" => Format::Markdown,
        "text/html" | "application/xhtml+xml" => Format::Html,
        "application/pdf" => Format::Pdf,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Format::Docx,
        "text/csv" | "text/tab-separated-values" => Format::Csv,
        "application/json" | "application/x-ndjson" | "application/jsonl" => Format::Json,
        _ => return None,
    })
}

/// Extensions of files we recognise as not being documents; better a clear "unsupported" than
/// mojibake from a text decoder that happened to succeed.
const UNSUPPORTED_EXT: &[&str] = &[
    "doc", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "rtf", "epub", "png", "jpg", "jpeg", "gif", "webp",
    "tif", "tiff", "bmp", "svg", "mp3", "mp4", "wav", "mov", "avi", "zip", "gz", "tgz", "bz2", "xz", "7z", "rar",
    "exe", "dll", "so", "bin", "iso", "dmg", "class", "jar", "wasm", "sqlite", "db", "parquet",
];

impl Extractor {
    pub fn new(limits: Limits) -> Self {
        Extractor { limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What can be told before reading a byte, from an event's key and size alone: empty, over the
    /// size limit, or a kind of file Quarry does not read. Everything else is decided by
    /// [`Extractor::extract_as`] on the bytes.
    pub fn screen(&self, name: &str, size: u64) -> Result<(), ExtractError> {
        if size == 0 {
            return Err(ExtractError::Empty);
        }
        if size > self.limits.max_file_bytes {
            return Err(ExtractError::TooLarge { size, limit: self.limits.max_file_bytes });
        }
        match quarry_core::DocumentKey::new(name).extension() {
            Some(e) if UNSUPPORTED_EXT.contains(&e.as_str()) => {
                Err(ExtractError::Unsupported { what: format!("a .{e} file") })
            }
            _ => Ok(()),
        }
    }

    /// Decides the format from the bytes and, for text, the file name's extension.
    pub fn detect(&self, name: Option<&str>, bytes: &[u8]) -> Result<Format, ExtractError> {
        self.detect_as(name, None, bytes)
    }

    /// [`Extractor::detect`] with the content type the source declares (S3's `Content-Type`, a
    /// JSONL record's text), consulted after magic bytes and extension and before sniffing: keys
    /// without an extension are common in buckets, and sniffing cannot tell markdown from text.
    pub fn detect_as(
        &self,
        name: Option<&str>,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Format, ExtractError> {
        let ext = name.and_then(|n| quarry_core::DocumentKey::new(n).extension());
        let ext = ext.as_deref();
        if bytes.starts_with(b"%PDF-") {
            return Ok(Format::Pdf);
        }
        if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            return match ext {
                Some("xlsx" | "pptx" | "odt" | "ods" | "odp" | "epub" | "zip" | "jar") => {
                    Err(ExtractError::Unsupported { what: format!("a .{} file", ext.unwrap_or("zip")) })
                }
                // The DOCX reader tells a Word document from another ZIP by its parts.
                _ => Ok(Format::Docx),
            };
        }
        if let Some((_, what)) = FOREIGN_MAGIC.iter().find(|(m, _)| bytes.starts_with(m)) {
            return Err(ExtractError::Unsupported { what: (*what).to_owned() });
        }
        match ext {
            Some("pdf") => {
                return Err(ExtractError::CorruptPdf { reason: "no %PDF- header".into(), source: None });
            }
            Some("docx") => {
                return Err(ExtractError::CorruptDocx { reason: "not a ZIP container".into(), source: None });
            }
            Some(e) if UNSUPPORTED_EXT.contains(&e) => {
                return Err(ExtractError::Unsupported { what: format!("a .{e} file") });
            }
            Some(e) => {
                if let Some(f) = ext_format(e) {
                    return Ok(f);
                }
            }
            None => {}
        }
        if let Some(f) = content_type.and_then(mime_format) {
            return Ok(f);
        }
        // No telling extension: look at the start of the text.
        let head = &bytes[..bytes.len().min(1024)];
        let head = String::from_utf8_lossy(head);
        let t = head.trim_start_matches('\u{feff}').trim_start();
        let lower = t.get(..t.len().min(64)).unwrap_or("").to_ascii_lowercase();
        if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
            Ok(Format::Html)
        } else if (t.starts_with('{') || t.starts_with('['))
            && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
        {
            Ok(Format::Json)
        } else {
            Ok(Format::Text)
        }
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
        if bytes.is_empty() {
            return Err(ExtractError::Empty);
        }
        let size = bytes.len() as u64;
        if size > self.limits.max_file_bytes {
            return Err(ExtractError::TooLarge { size, limit: self.limits.max_file_bytes });
        }
        let format = self.detect_as(name, content_type, bytes)?;
        let tsv = name.is_some_and(|n| n.to_ascii_lowercase().ends_with(".tsv"));
        let doc = match format {
            Format::Pdf => self.pdf(bytes)?,
            Format::Docx => self.docx(bytes)?,
            Format::Text => ExtractedDocument::single_page(format, decode(bytes)?.into_owned(), None),
            Format::Markdown => markdown(&decode(bytes)?),
            Format::Html => {
                let src = decode(bytes)?;
                let limit = self.limits.html_max_depth;
                if html_depth(&src) > limit as usize {
                    return Err(ExtractError::TooDeep { format: Format::Html, limit });
                }
                html(&src)
            }
            Format::Csv => csv_text(&decode(bytes)?, tsv)?,
            Format::Json => self.json(&decode(bytes)?)?,
        };
        if doc.text.len() > self.limits.max_chars && doc.text.chars().count() > self.limits.max_chars {
            return Err(ExtractError::TooMuchText { limit: self.limits.max_chars });
        }
        if doc.text.trim().is_empty() {
            return Err(ExtractError::NoText { format });
        }
        Ok(doc)
    }

    fn pdf(&self, bytes: &[u8]) -> Result<ExtractedDocument, ExtractError> {
        let panicked =
            |what: &str| ExtractError::CorruptPdf { reason: format!("the PDF parser failed on {what}"), source: None };
        let mut doc = catch_unwind(AssertUnwindSafe(|| lopdf::Document::load_mem(bytes)))
            .map_err(|_| panicked("the file structure"))?
            .map_err(|e| ExtractError::CorruptPdf {
                reason: "cannot read the file structure".into(),
                source: Some(e),
            })?;
        if doc.is_encrypted() {
            // An owner password alone (empty user password) only restricts printing and editing:
            // readers open such files, so we do too.
            if doc.decrypt("").is_err() {
                return Err(ExtractError::EncryptedPdf);
            }
        }
        let page_ids = doc.get_pages();
        if page_ids.is_empty() {
            return Err(ExtractError::CorruptPdf { reason: "the page tree has no pages".into(), source: None });
        }
        if page_ids.len() > self.limits.max_pdf_pages as usize {
            return Err(ExtractError::TooManyPages { pages: page_ids.len(), limit: self.limits.max_pdf_pages });
        }
        let title = doc
            .trailer
            .get(b"Info")
            .and_then(|o| o.as_reference())
            .and_then(|id| doc.get_dictionary(id))
            .and_then(|info| info.get(b"Title"))
            .ok()
            .and_then(|t| t.as_str().ok())
            .map(pdf_string)
            .filter(|t| !t.trim().is_empty());
        let mut texts = Vec::with_capacity(page_ids.len());
        for &number in page_ids.keys() {
            let mut s = String::new();
            let r = catch_unwind(AssertUnwindSafe(|| {
                let mut out = pdf_extract::PlainTextOutput::new(&mut s);
                pdf_extract::output_doc_page(&doc, &mut out, number)
            }));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(ExtractError::CorruptPdf { reason: format!("page {number}: {e:?}"), source: None });
                }
                Err(_) => return Err(panicked(&format!("page {number}"))),
            }
            texts.push((number, clean(&s).into_owned()));
        }
        if texts.iter().all(|(_, t)| t.trim().is_empty()) {
            return Err(ExtractError::ScannedPdf { pages: texts.len() });
        }
        let mut text = String::new();
        let mut pages = Vec::with_capacity(texts.len());
        for (number, t) in texts {
            if !text.is_empty() {
                // A paragraph break between pages: the chunker's strongest boundary short of a page.
                text.push_str("\n\n");
            }
            let t = t.trim();
            let start = text.len();
            text.push_str(t);
            pages.push(Page { number, span: ByteSpan { start, end: text.len() } });
        }
        Ok(ExtractedDocument { format: Format::Pdf, text, pages, title })
    }

    fn docx(&self, bytes: &[u8]) -> Result<ExtractedDocument, ExtractError> {
        let corrupt = |reason: &str, e: zip::result::ZipError| ExtractError::CorruptDocx {
            reason: reason.to_owned(),
            source: Some(Box::new(e)),
        };
        let mut zip =
            zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| corrupt("not a readable ZIP", e))?;
        if zip.index_for_name("word/document.xml").is_none() {
            let what = if zip.index_for_name("xl/workbook.xml").is_some() {
                "an Excel workbook (.xlsx)"
            } else if zip.index_for_name("ppt/presentation.xml").is_some() {
                "a PowerPoint deck (.pptx)"
            } else {
                "a ZIP archive that is not a Word document"
            };
            return Err(ExtractError::Unsupported { what: what.to_owned() });
        }
        let mut budget = self.limits.docx_max_uncompressed_bytes;
        let xml = self.read_part(&mut zip, "word/document.xml", &mut budget)?;
        let body = docx_text(&xml)?;
        let title = match zip.index_for_name("docProps/core.xml") {
            Some(_) => self.read_part(&mut zip, "docProps/core.xml", &mut budget).ok().and_then(|x| docx_title(&x)),
            None => None,
        };
        Ok(ExtractedDocument::single_page(Format::Docx, clean(&body).into_owned(), title))
    }

    /// Reads one ZIP part within the ratio and total-size limits, trusting neither the header's
    /// declared size (it can lie) nor the data (it can inflate without end).
    fn read_part<R: Read + std::io::Seek>(
        &self,
        zip: &mut zip::ZipArchive<R>,
        name: &str,
        budget: &mut u64,
    ) -> Result<Vec<u8>, ExtractError> {
        let entry = zip.by_name(name).map_err(|e| ExtractError::CorruptDocx {
            reason: format!("cannot open {name}"),
            source: Some(Box::new(e)),
        })?;
        let compressed = entry.compressed_size().max(1);
        let max_ratio = self.limits.docx_max_ratio;
        let bomb = |inflated: u64| ExtractError::ZipBomb { part: name.to_owned(), compressed, inflated };
        let declared = entry.size();
        // Small parts may compress very well legitimately (a page of repeated markup); the ratio
        // only matters once the inflated size is large enough to hurt.
        let ratio_floor = 1 << 20;
        let cap = (*budget).min(compressed.saturating_mul(max_ratio).max(ratio_floor));
        if declared > cap {
            return Err(bomb(declared));
        }
        let mut out = Vec::with_capacity(declared.min(cap) as usize);
        let read = entry.take(cap + 1).read_to_end(&mut out).map_err(|e| ExtractError::CorruptDocx {
            reason: format!("cannot inflate {name}"),
            source: Some(Box::new(e)),
        })?;
        if read as u64 > cap {
            return Err(bomb(read as u64));
        }
        *budget -= read as u64;
        Ok(out)
    }

    fn json(&self, text: &str) -> Result<ExtractedDocument, ExtractError> {
        let limit = self.limits.json_max_depth;
        if json_depth(text.as_bytes()) > limit as usize {
            return Err(ExtractError::TooDeep { format: Format::Json, limit });
        }
        let mut out = String::new();
        // A stream of values: a .json file holds one, JSON Lines hold one a line.
        for value in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
            let value = value.map_err(ExtractError::Json)?;
            render_json(&value, &mut Vec::new(), &mut out);
            out.push('\n');
        }
        Ok(ExtractedDocument::single_page(Format::Json, out, None))
    }
}

fn pdf_string(bytes: &[u8]) -> String {
    if bytes.starts_with(b"\xfe\xff") {
        let units: Vec<u16> = bytes[2..].chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        String::from_utf16_lossy(&units)
    } else {
        // PDFDocEncoding matches Latin-1 for printable characters.
        bytes.iter().map(|&b| b as char).collect()
    }
}

/// Decodes text: UTF-8 (with or without BOM) and UTF-16 (with BOM, or without one when the NUL
/// pattern is unmistakable). Anything else is an error that says where decoding failed, never
/// a lossy guess.
pub fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, ExtractError> {
    let utf16 = |body: &[u8], le: bool, what: &str| -> Result<Cow<'static, str>, ExtractError> {
        if !body.len().is_multiple_of(2) {
            return Err(ExtractError::Encoding { detail: format!("{what} text has an odd number of bytes") });
        }
        let units = body
            .chunks_exact(2)
            .map(|c| if le { u16::from_le_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], c[1]]) });
        let mut s = String::with_capacity(body.len() / 2);
        for (i, r) in char::decode_utf16(units).enumerate() {
            match r {
                Ok(c) => s.push(c),
                Err(_) => {
                    return Err(ExtractError::Encoding {
                        detail: format!("{what} has an unpaired surrogate at byte {}", i * 2),
                    });
                }
            }
        }
        Ok(Cow::Owned(clean(&s).into_owned()))
    };
    if bytes.starts_with(b"\xff\xfe\x00\x00") || bytes.starts_with(b"\x00\x00\xfe\xff") {
        return Err(ExtractError::Encoding { detail: "UTF-32 is not supported; save the file as UTF-8".into() });
    }
    if let Some(body) = bytes.strip_prefix(b"\xff\xfe") {
        return utf16(body, true, "UTF-16LE");
    }
    if let Some(body) = bytes.strip_prefix(b"\xfe\xff") {
        return utf16(body, false, "UTF-16BE");
    }
    let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    if let Some(le) = bom_less_utf16(body) {
        return utf16(body, le, if le { "UTF-16LE" } else { "UTF-16BE" });
    }
    if let Some(offset) = memchr::memchr(0, &body[..body.len().min(8192)]) {
        return Err(ExtractError::Binary { offset });
    }
    match std::str::from_utf8(body) {
        Ok(s) => Ok(clean(s)),
        Err(e) => {
            let at = e.valid_up_to();
            Err(ExtractError::Encoding {
                detail: format!(
                    "invalid UTF-8 at byte {at} (0x{:02x}); save the file as UTF-8 (it may be Latin-1 or Windows-1252)",
                    body[at]
                ),
            })
        }
    }
}

/// UTF-16 text of mostly ASCII has a NUL in every other byte: LE puts it second, BE first.
fn bom_less_utf16(b: &[u8]) -> Option<bool> {
    let n = b.len().min(4096) & !1;
    if n < 8 {
        return None;
    }
    let (mut even, mut odd) = (0, 0);
    for pair in b[..n].chunks_exact(2) {
        even += usize::from(pair[0] == 0);
        odd += usize::from(pair[1] == 0);
    }
    let pairs = n / 2;
    if odd * 10 >= pairs * 9 && even == 0 {
        Some(true)
    } else if even * 10 >= pairs * 9 && odd == 0 {
        Some(false)
    } else {
        None
    }
}

/// Normalises line ends to `\n`, turns form feeds into paragraph breaks and drops other control
/// characters, which carry no meaning for search and confuse tokenizers. Borrows when there is
/// nothing to change, as in most files.
pub fn clean(s: &str) -> Cow<'_, str> {
    let needs = s.bytes().any(|b| (b < 0x20 && b != b'\n' && b != b'\t') || b == 0x7f)
        || s.contains(|c: char| ('\u{80}'..='\u{9f}').contains(&c));
    if !needs {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push('\n');
                }
            }
            '\x0c' => out.push_str("\n\n"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn markdown(src: &str) -> ExtractedDocument {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let mut out = String::with_capacity(src.len());
    let mut title: Option<String> = None;
    let mut in_h1 = false;
    let mut in_meta = false;
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    for ev in Parser::new_ext(src, opts) {
        if let Event::Start(
            Tag::Paragraph
            | Tag::Heading { .. }
            | Tag::BlockQuote(_)
            | Tag::CodeBlock(_)
            | Tag::List(_)
            | Tag::Item
            | Tag::Table(_)
            | Tag::TableRow,
        ) = &ev
        {
            // Blocks also end together when nested (an item's text, then its sub-list): separate
            // them where they start too, or "item" and "sub-item" glue into one word.
            if !out.is_empty() && !out.ends_with(['\n', ' ']) {
                out.push('\n');
            }
        }
        match ev {
            Event::Start(Tag::MetadataBlock(_)) => in_meta = true,
            Event::End(TagEnd::MetadataBlock(_)) => in_meta = false,
            Event::Start(Tag::Heading { level: pulldown_cmark::HeadingLevel::H1, .. }) if title.is_none() => {
                in_h1 = true;
                title = Some(String::new());
            }
            Event::Text(t) | Event::Code(t) if !in_meta => {
                if in_h1 && let Some(tt) = title.as_mut() {
                    tt.push_str(&t);
                }
                out.push_str(&t);
            }
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            Event::End(TagEnd::Heading(_)) => {
                in_h1 = false;
                out.push_str("\n\n");
            }
            Event::End(TagEnd::Paragraph | TagEnd::CodeBlock | TagEnd::BlockQuote(_) | TagEnd::Table) => {
                out.push_str("\n\n")
            }
            Event::End(TagEnd::Item) => out.push('\n'),
            Event::End(TagEnd::TableRow | TagEnd::TableHead) => end_row(&mut out),
            Event::End(TagEnd::TableCell) => end_cell(&mut out),
            Event::Rule => out.push_str("\n\n"),
            _ => {}
        }
    }
    let title = title.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    ExtractedDocument::single_page(Format::Markdown, out, title)
}

fn html(src: &str) -> ExtractedDocument {
    use scraper::{Html, Node};
    let doc = Html::parse_document(src);
    let mut out = String::with_capacity(src.len() / 2);
    let mut title = None;
    // Iterative walk: hostile HTML can nest deep enough to overflow a recursive one.
    let mut stack = vec![(doc.tree.root(), false)];
    while let Some((node, closing)) = stack.pop() {
        match node.value() {
            Node::Element(el) => {
                let name = el.name();
                let block = matches!(
                    name,
                    "p" | "div"
                        | "section"
                        | "article"
                        | "header"
                        | "footer"
                        | "main"
                        | "aside"
                        | "nav"
                        | "h1"
                        | "h2"
                        | "h3"
                        | "h4"
                        | "h5"
                        | "h6"
                        | "ul"
                        | "ol"
                        | "table"
                        | "blockquote"
                        | "pre"
                        | "figure"
                        | "form"
                        | "fieldset"
                        | "details"
                        | "dl"
                );
                let line = matches!(name, "li" | "tr" | "dt" | "dd" | "figcaption" | "caption" | "summary");
                if !closing && (block || line) && !out.is_empty() && !out.ends_with(['\n', ' ']) {
                    // Nested blocks close together; separate them where they open too.
                    out.push('\n');
                }
                if closing {
                    if name == "tr" {
                        end_row(&mut out);
                    } else if block {
                        out.push_str("\n\n");
                    } else if line {
                        out.push('\n');
                    } else if matches!(name, "td" | "th") {
                        end_cell(&mut out);
                    }
                    continue;
                }
                match name {
                    "script" | "style" | "noscript" | "template" | "svg" | "math" | "iframe" | "object" | "canvas"
                    | "head" => {
                        if name == "head" {
                            title = node
                                .descendants()
                                .find(|n| n.value().as_element().is_some_and(|e| e.name() == "title"))
                                .map(|t| {
                                    t.descendants()
                                        .filter_map(|d| d.value().as_text().map(|s| s.to_string()))
                                        .collect::<String>()
                                })
                                .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                                .filter(|t| !t.is_empty());
                        }
                        continue;
                    }
                    "br" => out.push('\n'),
                    "img" => {
                        if let Some(alt) = el.attr("alt").filter(|a| !a.trim().is_empty()) {
                            out.push_str(alt.trim());
                            out.push(' ');
                        }
                    }
                    _ => {}
                }
                if el.attr("hidden").is_some() || el.attr("aria-hidden") == Some("true") {
                    continue;
                }
                stack.push((node, true));
                let children: Vec<_> = node.children().collect();
                for child in children.into_iter().rev() {
                    stack.push((child, false));
                }
            }
            Node::Text(t) => {
                // Whitespace in HTML renders as one space.
                let mut first = true;
                let starts_ws = t.starts_with(char::is_whitespace);
                for word in t.split_whitespace() {
                    if (!first || starts_ws) && !out.ends_with([' ', '\n']) && !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(word);
                    first = false;
                }
                if t.ends_with(char::is_whitespace) && !first && !out.ends_with([' ', '\n']) {
                    out.push(' ');
                }
            }
            Node::Document | Node::Fragment => {
                let children: Vec<_> = node.children().collect();
                for child in children.into_iter().rev() {
                    stack.push((child, false));
                }
            }
            _ => {}
        }
    }
    let text = tidy_breaks(&out);
    ExtractedDocument::single_page(Format::Html, clean(&text).into_owned(), title)
}

/// Nesting depth of HTML elements, estimated in one pass without building a tree: start tags
/// open, end tags close, and elements that never nest (void elements, self-closed tags, and the
/// ones HTML closes implicitly, such as `p` and `li`) are not counted. Text inside `script`,
/// `style` and comments is skipped. An upper bound for well-formed pages, exact for the nested-div
/// bombs it exists to stop.
fn html_depth(src: &str) -> usize {
    const FLAT: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr",
        "p", "li", "dt", "dd", "tr", "td", "th", "option", "!doctype",
    ];
    let b = src.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'<', &b[i..]) {
        i += off + 1;
        if b[i..].starts_with(b"!--") {
            i = memchr::memmem::find(&b[i..], b"-->").map_or(b.len(), |e| i + e + 3);
            continue;
        }
        let closing = b.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let end = b[start..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'!' || *c == b'-'))
            .map_or(b.len(), |e| start + e);
        if end == start {
            continue;
        }
        let name = src[start..end].to_ascii_lowercase();
        let tag_end = memchr::memchr(b'>', &b[end..]).map_or(b.len(), |e| end + e);
        let self_closed = tag_end > 0 && b.get(tag_end - 1) == Some(&b'/');
        if closing {
            depth = depth.saturating_sub(1);
        } else if !self_closed && !FLAT.contains(&name.as_str()) {
            depth += 1;
            max = max.max(depth);
            if name == "script" || name == "style" {
                let close = format!("</{name}");
                let rest = &src[tag_end.min(b.len())..];
                i = rest.to_ascii_lowercase().find(&close).map_or(b.len(), |e| tag_end + e);
                continue;
            }
        }
        i = tag_end.min(b.len());
    }
    max
}

/// Collapses the runs of blank lines and trailing spaces that block elements leave behind.
fn tidy_breaks(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut newlines = 0;
    for line in s.split('\n') {
        let l = line.trim();
        if l.is_empty() {
            newlines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if newlines >= 2 { "\n\n" } else { "\n" });
        }
        out.push_str(l);
        newlines = 1;
    }
    out
}

fn csv_text(src: &str, tsv: bool) -> Result<ExtractedDocument, ExtractError> {
    let first = src.lines().next().unwrap_or("");
    let delimiter = if tsv {
        b'\t'
    } else {
        // The most frequent candidate in the header line.
        [b',', b';', b'\t', b'|'].into_iter().max_by_key(|d| first.bytes().filter(|b| b == d).count()).unwrap_or(b',')
    };
    // The csv crate reads an unterminated quote to the end of the file, silently folding every
    // later row into one field; refuse that instead of indexing a mangled table.
    if let Some(line) = unclosed_quote(src, delimiter) {
        return Err(ExtractError::CsvQuote { line });
    }
    let mut rdr =
        csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).has_headers(true).from_reader(src.as_bytes());
    let headers: Vec<String> = rdr.headers().map_err(ExtractError::Csv)?.iter().map(|h| h.trim().to_owned()).collect();
    let mut out = String::with_capacity(src.len() + src.len() / 2);
    // Each row becomes one line of "column: value" pairs, so a chunk keeps the meaning of its
    // cells without the header row that may be chunks away.
    for rec in rdr.records() {
        let rec = rec.map_err(ExtractError::Csv)?;
        let mut first_cell = true;
        for (i, v) in rec.iter().enumerate() {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            if !first_cell {
                out.push_str("; ");
            }
            if let Some(h) = headers.get(i).filter(|h| !h.is_empty()) {
                out.push_str(h);
                out.push_str(": ");
            }
            out.push_str(v);
            first_cell = false;
        }
        out.push('\n');
    }
    if out.trim().is_empty() {
        // A header line alone still says something.
        out = headers.join("; ");
    }
    Ok(ExtractedDocument::single_page(Format::Csv, clean(&out).into_owned(), None))
}

/// The line where a quoted field opens without closing, following RFC 4180 quoting (a quote
/// opens a field only at its start; `""` inside is an escaped quote).
fn unclosed_quote(src: &str, delimiter: u8) -> Option<usize> {
    let b = src.as_bytes();
    let (mut line, mut open_line) = (1, 0);
    let (mut in_quote, mut at_field_start) = (false, true);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_quote {
            if c == b'"' {
                if b.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    in_quote = false;
                }
            } else if c == b'\n' {
                line += 1;
            }
        } else if c == b'"' && at_field_start {
            in_quote = true;
            open_line = line;
        } else if c == b'\n' {
            line += 1;
        }
        at_field_start = !in_quote && (c == delimiter || c == b'\n' || (c == b'\r'));
        i += 1;
    }
    in_quote.then_some(open_line)
}

/// Deepest nesting of arrays and objects, counted without parsing (strings skipped), so an
/// adversarial file is refused before a recursive parser sees it.
fn json_depth(b: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// One line per scalar, `key.path: value`: readable to people and to the embedding model.
fn render_json<'a>(v: &'a serde_json::Value, path: &mut Vec<&'a str>, out: &mut String) {
    use serde_json::Value;
    let leaf = |path: &[&str], out: &mut String, s: &str| {
        if !path.is_empty() {
            out.push_str(&path.join("."));
            out.push_str(": ");
        }
        out.push_str(s);
        out.push('\n');
    };
    match v {
        Value::Null => {}
        Value::Bool(b) => leaf(path, out, if *b { "true" } else { "false" }),
        Value::Number(n) => leaf(path, out, &n.to_string()),
        Value::String(s) => {
            if !s.trim().is_empty() {
                leaf(path, out, s)
            }
        }
        Value::Array(items) => {
            for item in items {
                render_json(item, path, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.push(k);
                render_json(item, path, out);
                path.pop();
            }
        }
    }
}

fn docx_text(xml: &[u8]) -> Result<String, ExtractError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut out = String::new();
    let mut in_text = false;
    // Inside a table cell, paragraphs are lines of one cell, not paragraphs of the document.
    let mut cell_depth = 0usize;
    let mut buf = Vec::new();
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(|e| ExtractError::CorruptDocx {
            reason: format!("word/document.xml is not well-formed near byte {}", reader.buffer_position()),
            source: Some(Box::new(e)),
        })?;
        match ev {
            Event::Start(e) => match e.local_name().into_inner() {
                "t" => in_text = true,
                "tab" => out.push('\t'),
                "br" | "cr" => out.push('\n'),
                "tc" => cell_depth += 1,
                "tbl" if !out.is_empty() && !out.ends_with('\n') => out.push_str("\n\n"),
                _ => {}
            },
            Event::Empty(e) => match e.local_name().into_inner() {
                "tab" => out.push('\t'),
                "br" | "cr" => out.push('\n'),
                "p" => out.push_str("\n\n"),
                _ => {}
            },
            Event::End(e) => match e.local_name().into_inner() {
                "t" => in_text = false,
                "p" if cell_depth > 0 => out.push(' '),
                "p" => out.push_str("\n\n"),
                "tc" => {
                    cell_depth = cell_depth.saturating_sub(1);
                    end_cell(&mut out);
                }
                "tr" => end_row(&mut out),
                "tbl" => out.push('\n'),
                _ => {}
            },
            Event::Text(t) if in_text => {
                out.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) if in_text => {
                // Character and entity references (&amp; &#8217;) arrive as their own events.
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    out.push(c);
                } else {
                    match r.as_ref() {
                        "amp" => out.push('&'),
                        "lt" => out.push('<'),
                        "gt" => out.push('>'),
                        "quot" => out.push('"'),
                        "apos" => out.push('\''),
                        _ => {}
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(tidy_breaks(&out))
}

/// Ends a table cell: ` | ` before the next one.
fn end_cell(out: &mut String) {
    out.truncate(out.trim_end_matches([' ', '\t']).len());
    out.push_str(" | ");
}

/// Ends a table row on its own line, without the separator its last cell left.
fn end_row(out: &mut String) {
    out.truncate(out.trim_end_matches([' ', '|']).len());
    out.push('\n');
}

fn docx_title(xml: &[u8]) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut inside = false;
    let mut title = String::new();
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) if e.local_name().into_inner() == "title" => inside = true,
            Event::End(e) if e.local_name().into_inner() == "title" => break,
            Event::Text(t) if inside => title.push_str(&t.xml10_content()),
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let t = title.trim();
    (!t.is_empty()).then(|| t.to_owned())
}
