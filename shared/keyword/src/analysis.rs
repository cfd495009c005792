//! Words as keyword search sees them, the same when a chunk is indexed and when a query is read:
//! runs of letters and digits, lowercased, diacritics folded, then the Snowball English (Porter 2)
//! stemmer. Stopwords are never indexed: a query never asks for them.

use quarry_core::lexicon;
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

/// Term-frequency weight of the title against the body's 1: titles are short and say what a
/// document is about (docs/RELEVANCE.md). The title's words are indexed this many times.
pub const TITLE_WEIGHT: usize = 2;

/// Most distinct words of a query that are scored.
pub const MAX_QUERY_TERMS: usize = 64;

static STEMMER: LazyLock<rust_stemmers::Stemmer> =
    LazyLock::new(|| rust_stemmers::Stemmer::create(rust_stemmers::Algorithm::English));

/// Calls `f` with each word of `text` (a run of letters and digits, as `lexicon::words` splits),
/// lowercased, without allocating for words that are lowercase already.
fn each_word(text: &str, buf: &mut String, mut f: impl FnMut(&str)) {
    for run in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        if run.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
            f(run);
        } else {
            buf.clear();
            buf.extend(run.chars().flat_map(char::to_lowercase));
            f(buf);
        }
    }
}

/// A lowercase word as the index keys it: diacritics folded, stemmed; `None` for a stopword.
fn stem(word: &str) -> Option<String> {
    let folded: std::borrow::Cow<'_, str> = if word.is_ascii() {
        word.into()
    } else {
        word.nfd().filter(|c| !unicode_normalization::char::is_combining_mark(*c)).collect::<String>().into()
    };
    if lexicon::is_stopword(word) || lexicon::is_stopword(&folded) {
        return None;
    }
    Some(STEMMER.stem(&folded).into_owned())
}

/// Words kept by [`STEMS`] before it starts again: NFCorpus's 7,281 chunks hold about 30,000
/// distinct words; a stream of unique tokens (ids, numbers) cannot grow it without bound.
const STEM_CACHE: usize = 200_000;

thread_local! {
    /// Lowercase word -> its term (`None`: a stopword), so that each distinct word is folded and
    /// stemmed once per thread. Stemming every occurrence was most of the cost of indexing:
    /// rebuilding the keyword index of NFCorpus's 7,281 chunks took 1,021 ms without it.
    static STEMS: std::cell::RefCell<rustc_hash::FxHashMap<Box<str>, Option<Box<str>>>> =
        std::cell::RefCell::default();
}

/// Calls `f` with the term of each word of `text` that is not a stopword.
fn each_term(text: &str, buf: &mut String, mut f: impl FnMut(&str)) {
    STEMS.with_borrow_mut(|stems| {
        each_word(text, buf, |w| {
            if let Some(term) = stems.get(w) {
                if let Some(term) = term {
                    f(term);
                }
                return;
            }
            if stems.len() >= STEM_CACHE {
                stems.clear();
            }
            let term = stem(w).map(String::into_boxed_str);
            if let Some(term) = &term {
                f(term);
            }
            stems.insert(w.into(), term);
        });
    });
}

/// The stemmed, deduplicated words of a query that can match, stopwords dropped.
pub fn query_terms(text: &str) -> Vec<Box<str>> {
    let mut out: Vec<Box<str>> = Vec::new();
    let mut buf = String::new();
    each_term(text, &mut buf, |k| {
        if out.len() < MAX_QUERY_TERMS && !out.iter().any(|o| **o == *k) {
            out.push(k.into());
        }
    });
    out
}

/// The analysis as a tantivy tokenizer: each term of a text in turn, stopwords dropped. A chunk's
/// title is added to its document [`TITLE_WEIGHT`] times and its body once, so that term
/// frequencies and the length norm count the title that many times. The terms of one text are
/// kept in one buffer and the token reused: a `String` per token (tantivy's pre-tokenised text)
/// made allocation a fifth of a rebuild's profile.
#[derive(Debug, Clone, Default)]
pub struct Analyzer {
    terms: String,
    ends: Vec<usize>,
    word: String,
    token: tantivy::tokenizer::Token,
}

/// The terms of one text, from [`Analyzer`].
#[derive(Debug)]
pub struct Terms<'a> {
    analyzer: &'a mut Analyzer,
    next: usize,
}

impl tantivy::tokenizer::Tokenizer for Analyzer {
    type TokenStream<'a> = Terms<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Terms<'a> {
        let Analyzer { terms, ends, word, token } = self;
        terms.clear();
        ends.clear();
        *token = tantivy::tokenizer::Token::default();
        each_term(text, word, |t| {
            terms.push_str(t);
            ends.push(terms.len());
        });
        Terms { analyzer: self, next: 0 }
    }
}

impl tantivy::tokenizer::TokenStream for Terms<'_> {
    fn advance(&mut self) -> bool {
        let a = &mut *self.analyzer;
        let Some(&end) = a.ends.get(self.next) else { return false };
        let start = if self.next == 0 { 0 } else { a.ends[self.next - 1] };
        a.token.text.clear();
        a.token.text.push_str(&a.terms[start..end]);
        a.token.position = self.next;
        self.next += 1;
        true
    }

    fn token(&self) -> &tantivy::tokenizer::Token {
        &self.analyzer.token
    }

    fn token_mut(&mut self) -> &mut tantivy::tokenizer::Token {
        &mut self.analyzer.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_folded_stemmed_and_stopwords_dropped() {
        let terms = query_terms("The Running of the runners, CAFÉ cafe running");
        let terms: Vec<&str> = terms.iter().map(|t| &**t).collect();
        assert_eq!(terms, ["run", "runner", "cafe"]);
    }

    #[test]
    fn the_tokenizer_gives_each_term_in_turn() {
        use tantivy::tokenizer::{TokenStream, Tokenizer};
        let mut analyzer = Analyzer::default();
        let mut terms = |text: &str| {
            let mut stream = analyzer.token_stream(text);
            let mut out = Vec::new();
            while stream.advance() {
                out.push((stream.token().text.clone(), stream.token().position));
            }
            out
        };
        let want = [("zebra", 0), ("run", 1), ("zebra", 2), ("cafe", 3)];
        assert_eq!(terms("The zebras RUN; zebra, café"), want.map(|(t, p)| (t.to_owned(), p)));
        assert!(terms("the of and").is_empty());
        assert_eq!(terms("Facts"), [("fact".to_owned(), 0)], "a second text starts afresh");
    }
}
