//! What kind of file a document is, and whether Quarry will take it, decided from what can be known
//! before parsing: its size, its name, the content type its source declares and its first bytes.
//!
//! Both halves need this without the parsers: every entry point screens a file before work is made
//! for it (the ingest Lambda from an S3 event, `quarry ingest` from a folder listing, a batch over a
//! prefix in the search Lambda), and extraction picks its parser by the same [`detect`]. Magic
//! numbers come first (they cannot lie about a PDF or a ZIP), the extension second (text formats
//! have no magic), the declared type third, and a look at the text last.

use crate::config::Limits;
use crate::domain::{DocumentKey, Format};
use crate::error::{Classify, ErrorClass};

/// Why a file is refused before it is read. Each is the file's fault: never retried.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes, over the {limit}-byte limit (limits.max_file_bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("unsupported file type: {what}")]
    Unsupported { what: String },
}

impl Classify for Refusal {
    fn class(&self) -> ErrorClass {
        ErrorClass::BadInput
    }

    fn code(&self) -> &'static str {
        match self {
            Refusal::Empty => "empty_file",
            Refusal::TooLarge { .. } => "file_too_large",
            Refusal::Unsupported { .. } => "unsupported_type",
        }
    }
}

/// Why [`detect`] names no format.
#[derive(Debug, thiserror::Error)]
pub enum Undetected {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Named `.pdf` but without the header every PDF starts with.
    #[error("no %PDF- header")]
    NoPdfHeader,
    /// Named `.docx` but not a ZIP container, which every Word document is.
    #[error("not a ZIP container")]
    NotZip,
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
/// Extensions of files Quarry does not read: refused by name, before any byte is read.
pub const UNSUPPORTED_EXT: &[&str] = &[
    "doc", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "rtf", "epub", "png", "jpg", "jpeg", "gif", "webp",
    "tif", "tiff", "bmp", "svg", "mp3", "mp4", "wav", "mov", "avi", "zip", "gz", "tgz", "bz2", "xz", "7z", "rar",
    "exe", "dll", "so", "bin", "iso", "dmg", "class", "jar", "wasm", "sqlite", "db", "parquet",
];

/// Decides the format from the bytes and, for text, the file name's extension, then the content
/// type the source declares (S3's `Content-Type`, a JSONL record's text): keys without an
/// extension are common in buckets, and sniffing cannot tell markdown from text. `name` is the
/// file name or key.
pub fn detect(name: Option<&str>, content_type: Option<&str>, bytes: &[u8]) -> Result<Format, Undetected> {
    let ext = name.and_then(|n| DocumentKey::new(n).extension());
    let ext = ext.as_deref();
    let unsupported = |what: String| Undetected::Refused(Refusal::Unsupported { what });
    if bytes.starts_with(b"%PDF-") {
        return Ok(Format::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return match ext {
            Some("xlsx" | "pptx" | "odt" | "ods" | "odp" | "epub" | "zip" | "jar") => {
                Err(unsupported(format!("a .{} file", ext.unwrap_or("zip"))))
            }
            // The DOCX reader tells a Word document from another ZIP by its parts.
            _ => Ok(Format::Docx),
        };
    }
    // Signatures of two or three bytes ("MZ", "ID3", "BZh") also begin ordinary words: in a file
    // named as text they are taken for text, which decoding then judges (a real binary fails
    // there as binary content); longer ones (PNG, SQLite) are never prose.
    let text_named = ext.and_then(ext_format).is_some_and(|f| !matches!(f, Format::Pdf | Format::Docx));
    if let Some((_, what)) = FOREIGN_MAGIC.iter().find(|(m, _)| bytes.starts_with(m) && !(text_named && m.len() < 4)) {
        return Err(unsupported((*what).to_owned()));
    }
    match ext {
        Some("pdf") => return Err(Undetected::NoPdfHeader),
        Some("docx") => return Err(Undetected::NotZip),
        Some(e) if UNSUPPORTED_EXT.contains(&e) => return Err(unsupported(format!("a .{e} file"))),
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

/// The size rule alone: not empty, not over `limits.max_file_bytes`.
pub fn check_size(limits: &Limits, size: u64) -> Result<(), Refusal> {
    if size == 0 {
        return Err(Refusal::Empty);
    }
    if size > limits.max_file_bytes {
        return Err(Refusal::TooLarge { size, limit: limits.max_file_bytes });
    }
    Ok(())
}

/// Bytes of a file's start that [`screen`] looks at: enough for every magic number above.
pub const HEAD_BYTES: usize = 8192;

/// The one screening rule, applied wherever work is made for a file and again by extraction:
/// refuses a file that is empty, over `limits.max_file_bytes`, or of a kind Quarry does not read.
/// `head` is the file's first bytes where the caller has them (a folder), empty where it has only
/// a name and a size (an S3 event, a listing): a PDF named `.txt` is then found out by extraction.
pub fn screen(
    limits: &Limits,
    key: &DocumentKey,
    size: u64,
    content_type: Option<&str>,
    head: &[u8],
) -> Result<(), Refusal> {
    check_size(limits, size)?;
    match detect(Some(key.as_str()), content_type, head) {
        Err(Undetected::Refused(r)) => Err(r),
        // A broken PDF or DOCX is a reason extraction gives with the whole file in hand.
        Ok(_) | Err(Undetected::NoPdfHeader | Undetected::NotZip) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screening_by_size_name_and_first_bytes() {
        let limits = Limits { max_file_bytes: 100, ..Limits::default() };
        let key = |k: &str| DocumentKey::new(k);
        let code = |r: Result<(), Refusal>| r.err().map(|e| e.code());
        assert_eq!(code(screen(&limits, &key("a.txt"), 0, None, b"")), Some("empty_file"));
        assert_eq!(code(screen(&limits, &key("a.txt"), 101, None, b"")), Some("file_too_large"));
        assert_eq!(code(screen(&limits, &key("a.png"), 10, None, b"")), Some("unsupported_type"));
        assert_eq!(code(screen(&limits, &key("a.txt"), 10, None, b"\x89PNG\r\n\x1a\nxx")), Some("unsupported_type"));
        assert_eq!(code(screen(&limits, &key("a.txt"), 10, None, b"hello")), None);
        assert_eq!(code(screen(&limits, &key("notes.md"), 10, None, b"MZ-80 notes")), None, "a word, not an .exe");
        assert_eq!(code(screen(&limits, &key("song"), 10, None, b"ID3\x03\x00")), Some("unsupported_type"));
        assert_eq!(code(screen(&limits, &key("a.pdf"), 10, None, b"")), None, "extraction names a broken PDF");
        assert_eq!(code(screen(&limits, &key("noext"), 10, None, b"")), None);
    }
}
