//! Markdown: the text a reader sees, with headings and paragraphs as breaks; the first heading is
//! the title.

use super::layout::{end_cell, end_row};
use quarry_core::{ExtractedDocument, Format};

pub(super) fn markdown(src: &str) -> ExtractedDocument {
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
