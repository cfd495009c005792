//! PDF: text per page with page numbers kept, the document's title, and typed errors for what
//! a reader meets (encrypted, scanned, truncated). lopdf and pdf-extract may panic on hostile
//! input, so every call into them is fenced: one bad file fails alone.

use std::panic::{AssertUnwindSafe, catch_unwind};

use quarry_core::config::Limits;
use quarry_core::{ByteSpan, ExtractedDocument, Format, Page};

use super::ExtractError;
use super::decode::clean;

pub(super) fn extract(limits: &Limits, bytes: &[u8]) -> Result<ExtractedDocument, ExtractError> {
    let panicked =
        |what: &str| ExtractError::CorruptPdf { reason: format!("the PDF parser failed on {what}"), source: None };
    let mut doc = catch_unwind(AssertUnwindSafe(|| lopdf::Document::load_mem(bytes)))
        .map_err(|_| panicked("the file structure"))?
        .map_err(|e| ExtractError::CorruptPdf { reason: "cannot read the file structure".into(), source: Some(e) })?;
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
    if page_ids.len() > limits.max_pdf_pages as usize {
        return Err(ExtractError::TooManyPages { pages: page_ids.len(), limit: limits.max_pdf_pages });
    }
    if let Some(number) = parent_cycle(&doc, &page_ids) {
        return Err(ExtractError::CorruptPdf {
            reason: format!("page {number}'s parents form a loop in the page tree"),
            source: None,
        });
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

/// Parent links deeper than any real page tree (lopdf's own tree walk stops at this depth too).
const MAX_TREE_DEPTH: usize = 256;

/// The first page whose `Parent` chain loops or runs deeper than [`MAX_TREE_DEPTH`]. pdf-extract
/// follows the chain to inherit a page's resources and never stops on a loop: found by the fuzz
/// harness (a page whose parent is itself hung extraction forever), so it is refused first.
fn parent_cycle(doc: &lopdf::Document, pages: &std::collections::BTreeMap<u32, lopdf::ObjectId>) -> Option<u32> {
    for (&number, &id) in pages {
        let mut seen = std::collections::HashSet::from([id]);
        let mut at = id;
        for depth in 0.. {
            let parent = doc.get_dictionary(at).and_then(|d| d.get(b"Parent")).and_then(lopdf::Object::as_reference);
            let Ok(parent) = parent else { break };
            if depth >= MAX_TREE_DEPTH || !seen.insert(parent) {
                return Some(number);
            }
            at = parent;
        }
    }
    None
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
