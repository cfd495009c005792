//! Chunker invariants, on the real MiniLM tokenizer and text built from every kind of boundary
//! and script the chunker must handle.

use std::sync::OnceLock;

use proptest::prelude::*;
use quarry_core::{ByteSpan, ExtractedDocument, Format, Page};
use quarry_text::{ChunkOptions, Chunker, TokenCounter, WordPiece};

fn wp() -> &'static WordPiece {
    static WP: OnceLock<WordPiece> = OnceLock::new();
    WP.get_or_init(|| {
        WordPiece::from_file(&quarry_testkit::model_dir().join("tokenizer.json")).expect("tokenizer loads")
    })
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z]{1,10}",
        2 => "[A-Z][a-z]{1,8}",
        1 => "[0-9]{1,6}",
        2 => Just(". ".to_owned()),
        1 => Just("? ".to_owned()),
        1 => Just(", ".to_owned()),
        3 => Just(" ".to_owned()),
        1 => Just("\n".to_owned()),
        1 => Just("\n\n".to_owned()),
        1 => Just("  \t ".to_owned()),
        1 => "[a-z]{30,140}",
        1 => Just("東京は日本の首都です。".to_owned()),
        1 => Just("Café naïve résumé ".to_owned()),
        1 => Just("😀🎉 ".to_owned()),
        1 => Just("Ελληνικά ".to_owned()),
        1 => Just("-".to_owned()),
        1 => Just("[SEP]".to_owned()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..400).prop_map(|v| v.concat())
}

/// Splits the text into 1-3 pages at char boundaries, with "\n\n" separators as the PDF
/// extractor writes them.
fn paged(text: String, cuts: Vec<prop::sample::Index>) -> ExtractedDocument {
    let mut bounds: Vec<usize> = cuts.iter().map(|i| i.index(text.len() + 1)).collect();
    bounds.retain(|&b| text.is_char_boundary(b));
    bounds.sort_unstable();
    bounds.dedup();
    let mut out = String::new();
    let mut pages = Vec::new();
    let mut last = 0;
    for (n, &b) in bounds.iter().chain([text.len()].iter()).enumerate() {
        if b < last {
            continue;
        }
        if n > 0 {
            out.push_str("\n\n");
        }
        let start = out.len();
        out.push_str(&text[last..b]);
        pages.push(Page { number: pages.len() as u32 + 1, span: ByteSpan { start, end: out.len() } });
        last = b;
    }
    ExtractedDocument { format: Format::Pdf, text: out, pages, title: None }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(
        body in text(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        max_tokens in 16usize..300,
        overlap_pct in 0usize..=50,
    ) {
        let doc = paged(body, cuts);
        let text = &doc.text;
        let overlap = max_tokens * overlap_pct / 100;
        let chunker = Chunker::new(wp(), ChunkOptions { max_tokens, overlap_tokens: overlap });
        let limit = chunker.limit();
        prop_assert_eq!(limit, max_tokens - 2);
        let chunks = chunker.chunk(&doc);
        let total = wp().count(text);
        if total == 0 {
            prop_assert!(chunks.is_empty());
            return Ok(());
        }
        prop_assert!(!chunks.is_empty());
        prop_assert_eq!(chunks[0].byte_span.start, 0);
        prop_assert_eq!(chunks.last().map(|c| c.byte_span.end), Some(text.len()));
        let mut tokens_without_overlap = 0;
        for (i, c) in chunks.iter().enumerate() {
            let ByteSpan { start, end } = c.byte_span;
            prop_assert!(start < end && end <= text.len());
            prop_assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
            prop_assert_eq!(&c.text, &text[start..end]);
            prop_assert_eq!(c.ordinal as usize, i);
            prop_assert_eq!(c.span.start, text[..start].chars().count());
            prop_assert_eq!(c.span.end, text[..end].chars().count());
            let n = wp().count(&c.text);
            prop_assert!(n > 0, "chunk {} has no tokens: {:?}", i, c.text);
            prop_assert_eq!(n, c.tokens as usize, "recount of chunk {} differs", i);
            prop_assert!(n <= limit, "chunk {} has {} tokens over {}", i, n, limit);
            let pages = c.pages.expect("every chunk is on a page");
            prop_assert!(pages.first <= pages.last && pages.last as usize <= doc.pages.len());
            if i > 0 {
                let p = &chunks[i - 1];
                prop_assert!(p.byte_span.start < start, "starts strictly increase");
                prop_assert!(p.byte_span.end < end, "ends strictly increase");
                prop_assert!(start <= p.byte_span.end, "no gap between chunks {} and {}", i - 1, i);
                if overlap == 0 {
                    prop_assert_eq!(start, p.byte_span.end);
                }
            }
            if overlap == 0 {
                tokens_without_overlap += n;
            }
        }
        let split = wp().words(text).iter().any(|w| w.tokens as usize > limit);
        // Pieces of a word too long for the window re-tokenise on their own (WordPiece may give
        // more or fewer tokens than the whole word), so the exact sum holds only without splits.
        if overlap == 0 && !split {
            prop_assert_eq!(tokens_without_overlap, total, "without overlap every token is in exactly one chunk");
        }
    }
}

#[test]
fn prefers_sentence_and_paragraph_boundaries() {
    let para = "Vitamin D is made in the skin. It helps absorb calcium. Deficiency is common in winter.";
    let text = [para; 12].join("\n\n");
    let doc = ExtractedDocument::single_page(Format::Text, text, None);
    let chunks = Chunker::new(wp(), ChunkOptions { max_tokens: 64, overlap_tokens: 0 }).chunk(&doc);
    assert!(chunks.len() > 3);
    for c in &chunks[..chunks.len() - 1] {
        let t = c.text.trim_end();
        assert!(t.ends_with('.'), "chunk should end at a sentence: {t:?}");
    }
}

#[test]
fn overlap_starts_at_a_sentence_when_it_can() {
    let text = (0..40).map(|i| format!("Sentence number {i} talks about protein.")).collect::<Vec<_>>().join(" ");
    let doc = ExtractedDocument::single_page(Format::Text, text, None);
    let chunks = Chunker::new(wp(), ChunkOptions { max_tokens: 64, overlap_tokens: 16 }).chunk(&doc);
    assert!(chunks.len() > 3);
    for pair in chunks.windows(2) {
        assert!(pair[1].byte_span.start < pair[0].byte_span.end, "chunks overlap");
        assert!(pair[1].text.starts_with("Sentence"), "overlap starts at a sentence: {:?}", pair[1].text);
    }
}

#[test]
fn tiny_windows_split_long_words() {
    let text = format!("short {} end", "x".repeat(90));
    let doc = ExtractedDocument::single_page(Format::Text, text, None);
    let chunker = Chunker::new(wp(), ChunkOptions { max_tokens: 16, overlap_tokens: 4 });
    let chunks = chunker.chunk(&doc);
    assert!(chunks.len() >= 2);
    for c in &chunks {
        assert!(wp().count(&c.text) <= chunker.limit(), "{:?}", c.text);
    }
    assert_eq!(wp().special_tokens(), 2);
}
