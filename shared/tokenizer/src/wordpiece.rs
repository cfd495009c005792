//! BERT WordPiece, as all-MiniLM-L6-v2's `tokenizer.json` defines it (BertNormalizer with
//! lower-casing and accent stripping, BertPreTokenizer, WordPiece with `##` continuations and a
//! 100-character word limit), written for speed: the chunker must size every document, and the
//! target is 50 MB/s for the whole extract, redact and chunk stage on one core.
//!
//! The trick is that BERT tokenisation is a sum over pre-tokenised words: normalisation is
//! per-character and the pre-tokenizer splits on whitespace and punctuation, so a text's tokens are
//! the concatenation of its words' tokens. Words repeat (Zipf), so each distinct word is
//! tokenised once and cached. Agreement with Hugging Face `tokenizers` is checked against a
//! committed fixture (see `tests/wordpiece_reference.rs`).

use std::cell::RefCell;
use std::path::Path;

use rustc_hash::FxHashMap;
use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_normalization::UnicodeNormalization;

/// A word of the source text as the tokenizer sees it, with its byte span in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Word {
    pub start: usize,
    pub end: usize,
    pub tokens: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer file {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tokenizer file {path} is not a BERT WordPiece tokenizer.json")]
    Parse {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("tokenizer vocabulary lacks the special token {0}")]
    MissingToken(&'static str),
}

impl quarry_core::Classify for TokenizerError {
    fn class(&self) -> quarry_core::ErrorClass {
        quarry_core::ErrorClass::Permanent
    }
    fn code(&self) -> &'static str {
        "tokenizer_unavailable"
    }
}

#[derive(serde::Deserialize)]
struct TokenizerJson {
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
    model: WordPieceJson,
}

#[derive(serde::Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
}

#[derive(serde::Deserialize)]
struct WordPieceJson {
    vocab: FxHashMap<String, u32>,
    #[serde(default = "default_max_chars")]
    max_input_chars_per_word: usize,
}

fn default_max_chars() -> usize {
    100
}

/// The vocabulary and the WordPiece algorithm. Immutable and shareable across threads; each thread
/// keeps its own word cache (see [`WordPiece::words`]).
#[derive(Debug)]
pub struct WordPiece {
    vocab: FxHashMap<String, u32>,
    /// Continuation pieces, stored without their `##` so lookups need no allocation.
    continuation: FxHashMap<String, u32>,
    max_word_chars: usize,
    /// Added tokens ("[CLS]", "[SEP]", ...): Hugging Face matches them verbatim anywhere in the
    /// input, before normalisation, so a document that contains "[SEP]" gets the real token.
    specials: Vec<(String, u32)>,
    pub unk_id: u32,
    pub cls_id: u32,
    pub sep_id: u32,
    pub pad_id: u32,
}

type Cache = FxHashMap<Box<str>, Box<[u32]>>;

thread_local! {
    // Word → token ids. Per thread so the tokenizer needs no lock; bounded so a hostile document
    // of unique words cannot grow it without limit.
    static CACHE: RefCell<Cache> = RefCell::new(FxHashMap::default());
}
const CACHE_LIMIT: usize = 200_000;

impl WordPiece {
    /// Loads `tokenizer.json` (Hugging Face format) from the model folder.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read(path).map_err(|source| TokenizerError::Read { path: path.to_owned(), source })?;
        let parsed: TokenizerJson =
            serde_json::from_slice(&text).map_err(|source| TokenizerError::Parse { path: path.to_owned(), source })?;
        let specials = parsed.added_tokens.into_iter().map(|t| (t.content, t.id)).collect();
        Self::from_vocab(parsed.model.vocab, parsed.model.max_input_chars_per_word, specials)
    }

    pub fn from_vocab(
        vocab: FxHashMap<String, u32>,
        max_word_chars: usize,
        specials: Vec<(String, u32)>,
    ) -> Result<Self, TokenizerError> {
        let id = |t: &'static str| vocab.get(t).copied().ok_or(TokenizerError::MissingToken(t));
        let (unk_id, cls_id, sep_id, pad_id) = (id("[UNK]")?, id("[CLS]")?, id("[SEP]")?, id("[PAD]")?);
        let continuation = vocab.iter().filter_map(|(k, v)| k.strip_prefix("##").map(|s| (s.to_owned(), *v))).collect();
        Ok(WordPiece { vocab, continuation, max_word_chars, specials, unk_id, cls_id, sep_id, pad_id })
    }

    /// WordPiece of one normalised word: greedy longest match first, the whole word as `[UNK]`
    /// when any part has no piece.
    fn wordpiece(&self, word: &str, out: &mut Vec<u32>) {
        if word.chars().count() > self.max_word_chars {
            out.push(self.unk_id);
            return;
        }
        let mark = out.len();
        let mut start = 0;
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while start < end {
                let piece = &word[start..end];
                let table = if start == 0 { &self.vocab } else { &self.continuation };
                if let Some(&id) = table.get(piece) {
                    found = Some(id);
                    break;
                }
                end -= 1;
                while !word.is_char_boundary(end) {
                    end -= 1;
                }
            }
            match found {
                Some(id) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(mark);
                    out.push(self.unk_id);
                    return;
                }
            }
        }
    }

    /// Token ids of an already-normalised word, through the thread's cache.
    fn word_ids<R>(&self, cache: &mut Cache, normalized: &str, f: impl FnOnce(&[u32]) -> R) -> R {
        if let Some(ids) = cache.get(normalized) {
            return f(ids);
        }
        let mut ids = Vec::with_capacity(4);
        self.wordpiece(normalized, &mut ids);
        let r = f(&ids);
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(normalized.into(), ids.into_boxed_slice());
        r
    }

    /// Splits `text` into the words BERT's pre-tokenizer sees, with their source spans, calling
    /// `emit(start, end, ids)` for each in order. Special tokens are not added.
    pub fn for_each_word(&self, text: &str, mut emit: impl FnMut(usize, usize, &[u32])) {
        // One borrow per call, not per word. Re-entrant use (a tokenizer call inside `emit`) would
        // find the cache taken: it then works with a fresh one rather than panicking.
        CACHE.with(|cell| match cell.try_borrow_mut() {
            Ok(mut cache) => self.scan(text, &mut cache, &mut emit),
            Err(_) => self.scan(text, &mut Cache::default(), &mut emit),
        });
    }

    fn scan(&self, text: &str, cache: &mut Cache, emit: &mut impl FnMut(usize, usize, &[u32])) {
        let bytes = text.as_bytes();
        let mut norm = String::with_capacity(32);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b < 0x80 {
                // ASCII fast path: the overwhelming majority of the bytes of real documents.
                if b.is_ascii_alphanumeric() {
                    let start = i;
                    while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                        i += 1;
                    }
                    if i < bytes.len() && (bytes[i] >= 0x80 || is_ascii_control(bytes[i])) {
                        // The word goes on with non-ASCII letters, or through a control character
                        // that normalisation deletes: take the general path.
                        i = self.general_word(text, start, cache, &mut norm, emit);
                        continue;
                    }
                    let w = &text[start..i];
                    if w.bytes().any(|c| c.is_ascii_uppercase()) {
                        norm.clear();
                        norm.extend(w.bytes().map(|c| c.to_ascii_lowercase() as char));
                        self.word_ids(cache, &norm, |ids| emit(start, i, ids));
                    } else {
                        self.word_ids(cache, w, |ids| emit(start, i, ids));
                    }
                } else if b.is_ascii_punctuation() {
                    if let Some((len, id)) = self.special_at(&text[i..]) {
                        emit(i, i + len, &[id]);
                        i += len;
                        continue;
                    }
                    self.word_ids(cache, &text[i..i + 1], |ids| emit(i, i + 1, ids));
                    i += 1;
                } else {
                    // Whitespace and control characters: boundaries that yield no token.
                    i += 1;
                }
            } else {
                i = self.general_word(text, i, cache, &mut norm, emit);
            }
        }
    }

    /// The general path for words with non-ASCII characters, from `start` (a char boundary).
    /// Returns where the scan continues.
    fn general_word(
        &self,
        text: &str,
        start: usize,
        cache: &mut Cache,
        norm: &mut String,
        emit: &mut impl FnMut(usize, usize, &[u32]),
    ) -> usize {
        norm.clear();
        let mut word_start = start;
        let mut pos = start;
        let flush =
            |cache: &mut Cache, norm: &mut String, ws: usize, we: usize, emit: &mut dyn FnMut(usize, usize, &[u32])| {
                if !norm.is_empty() {
                    self.word_ids(cache, norm, |ids| emit(ws, we, ids));
                    norm.clear();
                }
            };
        for c in text[start..].chars() {
            let len = c.len_utf8();
            let class = classify(c);
            if c.is_ascii() && !c.is_ascii_alphanumeric() && class != CharClass::Skip {
                // ASCII space or punctuation ends the word; the fast path takes it from here
                // (it also knows the special tokens, which start with ASCII punctuation).
                flush(cache, norm, word_start, pos, emit);
                return pos;
            }
            match class {
                CharClass::Skip => {}
                CharClass::Space => flush(cache, norm, word_start, pos, emit),
                CharClass::Isolated => {
                    flush(cache, norm, word_start, pos, emit);
                    let mut one = String::new();
                    normalize_into(c, &mut one);
                    if !one.is_empty() {
                        self.word_ids(cache, &one, |ids| emit(pos, pos + len, ids));
                    }
                }
                CharClass::Word => {
                    if norm.is_empty() {
                        word_start = pos;
                    }
                    // Accent stripping may leave punctuation standing alone after decomposition.
                    for n in c.nfd() {
                        if get_general_category(n) == GeneralCategory::NonspacingMark {
                            continue;
                        }
                        if is_punctuation(n) {
                            flush(cache, norm, word_start, pos, emit);
                            let s: String = n.to_lowercase().collect();
                            self.word_ids(cache, &s, |ids| emit(pos, pos + len, ids));
                            word_start = pos + len;
                        } else {
                            norm.extend(n.to_lowercase());
                        }
                    }
                }
            }
            pos += len;
        }
        flush(cache, norm, word_start, pos, emit);
        pos
    }

    fn special_at(&self, rest: &str) -> Option<(usize, u32)> {
        self.specials.iter().find(|(t, _)| rest.starts_with(t.as_str())).map(|(t, id)| (t.len(), *id))
    }

    /// Token count of `text` without special tokens.
    pub fn count(&self, text: &str) -> usize {
        let mut n = 0;
        self.for_each_word(text, |_, _, ids| n += ids.len());
        n
    }

    /// Token ids of `text` without special tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.for_each_word(text, |_, _, ids| out.extend_from_slice(ids));
        out
    }

    /// The words of `text` with their token counts.
    pub fn words(&self, text: &str) -> Vec<Word> {
        let mut out = Vec::with_capacity(text.len() / 5);
        self.for_each_word(text, |start, end, ids| out.push(Word { start, end, tokens: ids.len() as u32 }));
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CharClass {
    /// Removed by BertNormalizer's clean_text.
    Skip,
    Space,
    /// Punctuation and CJK ideographs: a word of their own.
    Isolated,
    Word,
}

fn classify(c: char) -> CharClass {
    // Deletion comes first, as in BertNormalizer: U+0085 and vertical tab are whitespace to
    // Rust but control characters to BERT, so they join the words around them.
    if c == '\t' || c == '\n' || c == '\r' {
        return CharClass::Space;
    }
    if c == '\0' || c == '\u{fffd}' || is_other(c) {
        return CharClass::Skip;
    }
    if c.is_whitespace() {
        return CharClass::Space;
    }
    if is_chinese(c) || is_punctuation(c) {
        return CharClass::Isolated;
    }
    CharClass::Word
}

/// ASCII control characters that BertNormalizer deletes (tab and line ends are whitespace).
fn is_ascii_control(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f
}

fn is_other(c: char) -> bool {
    use GeneralCategory::*;
    matches!(get_general_category(c), Control | Format | Surrogate | PrivateUse | Unassigned)
}

/// BERT's punctuation: all ASCII punctuation (which includes `$`, `+`, `^`... that Unicode calls
/// symbols) plus Unicode's P* categories.
fn is_punctuation(c: char) -> bool {
    use GeneralCategory::*;
    c.is_ascii_punctuation()
        || matches!(
            get_general_category(c),
            ConnectorPunctuation
                | DashPunctuation
                | ClosePunctuation
                | FinalPunctuation
                | InitialPunctuation
                | OtherPunctuation
                | OpenPunctuation
        )
}

fn is_chinese(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B920..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn normalize_into(c: char, out: &mut String) {
    for n in c.nfd() {
        if get_general_category(n) != GeneralCategory::NonspacingMark {
            out.extend(n.to_lowercase());
        }
    }
}
