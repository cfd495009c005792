//! DOCX: the body's paragraphs and tables as text, the title from the document's properties, and
//! every ZIP part read within ratio and size limits, so that a zip bomb is refused, not inflated.

use std::io::Read;

use quarry_core::ExtractedDocument;
use quarry_core::Format;
use quarry_core::config::Limits;
use quarry_core::format::Refusal;

use super::ExtractError;
use super::decode::clean;
use super::layout::{end_cell, end_row, tidy_breaks};

pub(super) fn extract(limits: &Limits, bytes: &[u8]) -> Result<ExtractedDocument, ExtractError> {
    let corrupt = |reason: &str, e: zip::result::ZipError| ExtractError::CorruptDocx {
        reason: reason.to_owned(),
        source: Some(Box::new(e)),
    };
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| corrupt("not a readable ZIP", e))?;
    if zip.index_for_name("word/document.xml").is_none() {
        let what = if zip.index_for_name("xl/workbook.xml").is_some() {
            "an Excel workbook (.xlsx)"
        } else if zip.index_for_name("ppt/presentation.xml").is_some() {
            "a PowerPoint deck (.pptx)"
        } else {
            "a ZIP archive that is not a Word document"
        };
        return Err(Refusal::Unsupported { what: what.to_owned() }.into());
    }
    let mut budget = limits.docx_max_uncompressed_bytes;
    let xml = read_part(limits, &mut zip, "word/document.xml", &mut budget)?;
    let body = docx_text(&xml)?;
    let title = match zip.index_for_name("docProps/core.xml") {
        Some(_) => read_part(limits, &mut zip, "docProps/core.xml", &mut budget).ok().and_then(|x| docx_title(&x)),
        None => None,
    };
    Ok(ExtractedDocument::single_page(Format::Docx, clean(&body).into_owned(), title))
}

/// Reads one ZIP part within the ratio and total-size limits, trusting neither the header's
/// declared size (it can lie) nor the data (it can inflate without end).
fn read_part<R: Read + std::io::Seek>(
    limits: &Limits,
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    budget: &mut u64,
) -> Result<Vec<u8>, ExtractError> {
    let entry = zip
        .by_name(name)
        .map_err(|e| ExtractError::CorruptDocx { reason: format!("cannot open {name}"), source: Some(Box::new(e)) })?;
    let compressed = entry.compressed_size().max(1);
    let max_ratio = limits.docx_max_ratio;
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
