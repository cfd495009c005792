//! HTML: visible text only (no scripts, styles or markup), block elements as breaks, the title
//! from `<title>`, and a nesting-depth check that runs before a parser builds a tree.

use super::decode::clean;
use super::layout::{end_cell, end_row, tidy_breaks};
use quarry_core::{ExtractedDocument, Format};

pub(super) fn html(src: &str) -> ExtractedDocument {
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
pub(super) fn html_depth(src: &str) -> usize {
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
