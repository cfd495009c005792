//! Token-aware chunking on natural boundaries. The text is tokenised once into words with token
//! counts (see [`quarry_tokenizer::wordpiece`]); chunks are then packed greedily up to the model's window,
//! cutting at the strongest boundary available in the back half of the window: a page break, then
//! a blank line, a line break, a sentence end, a space, and only as a last resort between a word
//! and its punctuation. One pass, linear in the text.
//!
//! Invariants (property-tested in `tests/chunk_props.rs`): no chunk is empty; spans are valid
//! char boundaries, starts and ends strictly increase; the first chunk starts at 0, the last ends
//! at the text's end and each starts no later than the previous ends, so every character is
//! covered; re-tokenising a chunk's text gives its recorded count, never over the limit.

use quarry_core::{ByteSpan, CharSpan, Chunk, ExtractedDocument, PageRange};

pub use quarry_tokenizer::TokenCounter;
use quarry_tokenizer::Word;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions {
    /// The model's window, special tokens included.
    pub max_tokens: usize,
    pub overlap_tokens: usize,
}

impl ChunkOptions {
    /// The window of the embedder the configuration picks, in its tokens.
    pub fn for_config(config: &quarry_core::Config) -> Self {
        let (max_tokens, overlap_tokens) = config.chunk_window();
        ChunkOptions { max_tokens: max_tokens as usize, overlap_tokens: overlap_tokens as usize }
    }
}

const NO_SPACE: u8 = 0;
const SPACE: u8 = 1;
const SENTENCE: u8 = 2;
const LINE: u8 = 3;
const PARAGRAPH: u8 = 4;
const PAGE: u8 = 5;

#[derive(Debug)]
pub struct Chunker<'t, T: TokenCounter> {
    counter: &'t T,
    limit: usize,
    overlap: usize,
}

impl<'t, T: TokenCounter> Chunker<'t, T> {
    pub fn new(counter: &'t T, opts: ChunkOptions) -> Self {
        let limit = opts.max_tokens.saturating_sub(counter.special_tokens()).max(1);
        // Overlap beyond half the window would make chunks mostly repeats; config validation
        // refuses it, and this keeps the chunker safe when called directly.
        let overlap = opts.overlap_tokens.min(limit / 2);
        Chunker { counter, limit, overlap }
    }

    /// Tokens a chunk may hold, special tokens excluded.
    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn chunk(&self, doc: &ExtractedDocument) -> Vec<Chunk> {
        let text = doc.text.as_str();
        let (words, hard) = self.words(text);
        if words.is_empty() {
            return Vec::new();
        }
        let levels = boundary_levels(text, &words, doc);
        let mut prefix = Vec::with_capacity(words.len() + 1);
        prefix.push(0usize);
        for w in &words {
            prefix.push(prefix[prefix.len() - 1] + w.tokens as usize);
        }
        let n = words.len();
        // Cuts as word ranges [s, c).
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        let mut s = 0;
        let mut prev_cut = 0;
        // Next hard gap (inside a split word) after each position: chunks never span one, because
        // re-tokenising the joined pieces could give a different count.
        let mut next_hard = vec![n; n + 1];
        for i in (1..n).rev() {
            next_hard[i] = if hard[i] { i } else { next_hard[i + 1] };
        }
        loop {
            let budget = prefix[s] + self.limit;
            let mut e = prefix.partition_point(|&p| p <= budget) - 1;
            e = e.min(next_hard[s + 1]).min(n).max(s + 1);
            let c = if e == n { n } else { self.choose_cut(&prefix, &levels, s, prev_cut.max(s) + 1, e) };
            ranges.push((s, c));
            if c == n {
                break;
            }
            let next = if self.overlap == 0 || hard[c] {
                c
            } else {
                let room = self.overlap.min(self.limit.saturating_sub(words[c].tokens as usize));
                overlap_start(&prefix, &levels, &hard, s, c, room)
            };
            prev_cut = c;
            s = next;
        }

        let mut bounds: Vec<usize> = Vec::with_capacity(ranges.len() * 2);
        let last = ranges.len() - 1;
        let spans: Vec<ByteSpan> = ranges
            .iter()
            .enumerate()
            .map(|(k, &(s, c))| {
                let start = if k == 0 { 0 } else { words[s].start };
                let end = if k == last { text.len() } else { words[c].start };
                ByteSpan { start, end }
            })
            .collect();
        for sp in &spans {
            bounds.push(sp.start);
            bounds.push(sp.end);
        }
        let to_char = char_offsets(text, bounds);
        spans
            .iter()
            .zip(&ranges)
            .enumerate()
            .map(|(k, (sp, &(s, c)))| {
                let first = doc.page_at(words[s].start);
                let lastp = doc.page_at(words[c - 1].end.saturating_sub(1));
                Chunk {
                    ordinal: k as u32,
                    text: text[sp.start..sp.end].to_owned(),
                    span: CharSpan { start: to_char(sp.start), end: to_char(sp.end) },
                    byte_span: *sp,
                    pages: first.zip(lastp).map(|(first, last)| PageRange { first, last }),
                    tokens: (prefix[c] - prefix[s]) as u32,
                }
            })
            .collect()
    }

    /// Words with their counts; a word over the limit on its own (possible only with small
    /// windows) is split into pieces that fit, and the gaps between pieces are marked hard.
    fn words(&self, text: &str) -> (Vec<Word>, Vec<bool>) {
        let raw = self.counter.words(text);
        if raw.iter().all(|w| (w.tokens as usize) <= self.limit) {
            let n = raw.len();
            return (raw, vec![false; n + 1]);
        }
        let mut words = Vec::with_capacity(raw.len() + 8);
        let mut hard = Vec::with_capacity(raw.len() + 9);
        for w in raw {
            if (w.tokens as usize) <= self.limit {
                hard.push(false);
                words.push(w);
                continue;
            }
            let mut first = true;
            let mut start = w.start;
            while start < w.end {
                // Longest char prefix of the rest that fits, by halving then growing.
                let rest = &text[start..w.end];
                let cuts: Vec<usize> = rest.char_indices().map(|(i, _)| i).skip(1).chain([rest.len()]).collect();
                let fits = |len: usize| self.counter.count(&rest[..len]) <= self.limit;
                let k = cuts.partition_point(|&len| fits(len)).max(1);
                let len = cuts[k - 1];
                let tokens = self.counter.count(&rest[..len]) as u32;
                hard.push(!first);
                words.push(Word { start, end: start + len, tokens });
                first = false;
                start += len;
            }
        }
        hard.push(false);
        (words, hard)
    }

    /// Picks where to end the chunk that starts at word `s`: among cuts in `lo..=e` that fill at
    /// least half the window, the strongest boundary, the furthest one on ties.
    fn choose_cut(&self, prefix: &[usize], levels: &[u8], s: usize, lo: usize, e: usize) -> usize {
        let lo = lo.min(e);
        let half = prefix[s] + self.limit / 2;
        let mut best: Option<(u8, usize)> = None;
        let mut best_any: Option<(u8, usize)> = None;
        for j in (lo..=e).rev() {
            let l = levels[j];
            if best_any.is_none_or(|(bl, _)| l > bl) {
                best_any = Some((l, j));
            }
            if prefix[j] >= half && best.is_none_or(|(bl, _)| l > bl) {
                best = Some((l, j));
            }
        }
        best.or(best_any).map_or(e, |(_, j)| j)
    }
}

/// Where the next chunk starts so that it repeats at most `room` tokens before the cut `c`: the
/// earliest sentence start (or else word start) in that window, never before the current chunk.
fn overlap_start(prefix: &[usize], levels: &[u8], hard: &[bool], s: usize, c: usize, room: usize) -> usize {
    let mut sentence = None;
    let mut word = None;
    for j in (s + 1..c).rev() {
        if prefix[c] - prefix[j] > room {
            break;
        }
        if hard[j] {
            continue;
        }
        if levels[j] >= SENTENCE {
            sentence = Some(j);
        } else if levels[j] >= SPACE {
            word = Some(j);
        }
    }
    sentence.or(word).unwrap_or(c)
}

/// The strength of the boundary before each word (index 0 unused; index n for the end).
fn boundary_levels(text: &str, words: &[Word], doc: &ExtractedDocument) -> Vec<u8> {
    let b = text.as_bytes();
    let mut levels = vec![NO_SPACE; words.len() + 1];
    levels[words.len()] = PAGE;
    for i in 1..words.len() {
        let gap = &b[words[i - 1].end..words[i].start];
        let prev = &text[words[i - 1].start..words[i - 1].end];
        let newlines = gap.iter().filter(|&&c| c == b'\n').count();
        let level = if newlines >= 2 {
            PARAGRAPH
        } else if newlines == 1 {
            LINE
        } else if matches!(prev, "." | "!" | "?" | "…") && !gap.is_empty() || matches!(prev, "。" | "！" | "？") {
            SENTENCE
        } else if gap.is_empty() {
            NO_SPACE
        } else {
            SPACE
        };
        levels[i] = level;
    }
    for page in doc.pages.iter().skip(1) {
        let i = words.partition_point(|w| w.start < page.span.start);
        if i > 0 && i < words.len() {
            levels[i] = PAGE;
        }
    }
    levels
}

/// Maps byte offsets to char offsets in one pass over the text.
fn char_offsets(text: &str, mut bounds: Vec<usize>) -> impl Fn(usize) -> usize {
    let ascii = text.is_ascii();
    bounds.sort_unstable();
    bounds.dedup();
    let mut map: Vec<(usize, usize)> = Vec::with_capacity(bounds.len());
    if !ascii {
        let mut chars = 0;
        let mut pos = 0;
        for &b in &bounds {
            chars += text[pos..b].chars().count();
            pos = b;
            map.push((b, chars));
        }
    }
    move |b| {
        if ascii {
            return b;
        }
        let i = map.partition_point(|&(x, _)| x < b);
        map.get(i).map_or(b, |&(_, c)| c)
    }
}
