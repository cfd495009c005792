//! CSV and TSV: each row as `column: value` lines, the delimiter sniffed, and an unclosed quote
//! named by its line.

use quarry_core::{ExtractedDocument, Format};

use super::ExtractError;
use super::decode::clean;

pub(super) fn csv_text(src: &str, tsv: bool) -> Result<ExtractedDocument, ExtractError> {
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
