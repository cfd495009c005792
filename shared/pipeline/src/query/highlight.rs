//! Which sentences of a result answer the query: character spans into the result's `text`.
//!
//! Sentences are scored by the distinct query words they contain (stopwords dropped, light
//! stemming), so a sentence that names the query's subject beats one that only shares "the". Up to
//! two best sentences are returned in reading order. A result that matched by meaning alone shares
//! no word with the query; its sentences are then embedded with the query's model and the one most
//! similar to the query is highlighted ([`semantic_candidates`], [`most_similar`]), so the
//! highlight says why a result without the query's words is there.

use quarry_core::lexicon;
use serde::{Deserialize, Serialize};

/// A highlighted passage: `text[start..end]`, in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Highlight {
    pub start: usize,
    pub end: usize,
}

/// Most sentences highlighted per result.
pub const MAX_HIGHLIGHTS: usize = 2;

/// Sentence spans in characters: a sentence ends after `.`, `!` or `?` followed by white space,
/// or at a line break; surrounding white space is left out.
fn sentences(chars: &[char]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 0..chars.len() {
        let end_here = chars[i] == '\n'
            || (matches!(chars[i], '.' | '!' | '?') && chars.get(i + 1).is_none_or(|c| c.is_whitespace()));
        if end_here || i + 1 == chars.len() {
            let end = if chars[i] == '\n' { i } else { i + 1 };
            let (mut a, mut b) = (start, end);
            while a < b && chars[a].is_whitespace() {
                a += 1;
            }
            while b > a && chars[b - 1].is_whitespace() {
                b -= 1;
            }
            if b > a {
                out.push((a, b));
            }
            start = i + 1;
        }
    }
    out
}

/// Sentences embedded per result at most, for a semantic highlight (the first ones: a chunk is a
/// few hundred tokens).
pub const MAX_EMBEDDED_SENTENCES: usize = 12;

/// The sentences of `text` to embed for a semantic highlight, with their spans; empty when there
/// is no choice to make (one sentence or none).
pub fn semantic_candidates(text: &str) -> Vec<(Highlight, String)> {
    let chars: Vec<char> = text.chars().collect();
    let spans = sentences(&chars);
    if spans.len() < 2 {
        return Vec::new();
    }
    spans
        .into_iter()
        .take(MAX_EMBEDDED_SENTENCES)
        .map(|(a, b)| (Highlight { start: a, end: b }, chars[a..b].iter().collect()))
        .collect()
}

/// The candidate whose vector is nearest the query's (unit vectors: the dot product is the cosine).
pub fn most_similar(query: &[f32], candidates: &[(Highlight, Vec<f32>)]) -> Option<Highlight> {
    let dot = |v: &[f32]| v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>();
    candidates.iter().max_by(|a, b| dot(&a.1).total_cmp(&dot(&b.1))).map(|(h, _)| *h)
}

/// The query's words as highlighting matches them: stopwords dropped, light stemming. Built once
/// per page, not once per result.
#[derive(Debug, Clone, Default)]
pub struct QueryTerms {
    ids: rustc_hash::FxHashMap<String, usize>,
    /// Byte lengths of the shortest and longest term: a word outside them (allowing for the
    /// suffix a stem drops) cannot match, and most words are ruled out by that alone.
    shortest: usize,
    longest: usize,
}

/// The longest suffix [`lexicon::stem`] drops, in bytes.
const LONGEST_SUFFIX: usize = 3;

impl QueryTerms {
    pub fn new(query: &str) -> Self {
        let mut ids = rustc_hash::FxHashMap::default();
        for w in lexicon::words(query).filter(|w| !lexicon::is_stopword(w)) {
            let next = ids.len();
            ids.entry(lexicon::stem(&w).to_owned()).or_insert(next);
        }
        let shortest = ids.keys().map(String::len).min().unwrap_or(0);
        let longest = ids.keys().map(String::len).max().unwrap_or(0);
        QueryTerms { ids, shortest, longest }
    }

    /// The term `word` (as it appears in a text) stands for, if any: lowercased as
    /// `lexicon::words` does (the whole word at once: a final sigma differs), then stemmed.
    fn term(&self, word: &str, buffer: &mut String) -> Option<usize> {
        let ascii = word.is_ascii();
        if ascii && (word.len() < self.shortest || word.len() > self.longest + LONGEST_SUFFIX) {
            return None;
        }
        let lower = if !ascii {
            *buffer = word.to_lowercase();
            buffer.as_str()
        } else if word.bytes().any(|b| b.is_ascii_uppercase()) {
            buffer.clear();
            buffer.push_str(word);
            buffer.make_ascii_lowercase();
            buffer.as_str()
        } else {
            word
        };
        self.ids.get(lexicon::stem(lower)).copied()
    }

    /// Up to [`MAX_HIGHLIGHTS`] sentences of `text` with the most distinct query words, in reading
    /// order; none when no sentence has one.
    ///
    /// One pass over the words, then one over the sentences. The first version built a string per
    /// sentence and per word and cost ~24 us a 1 kB result, a quarter of a keyword search's whole
    /// HTTP overhead at 100k chunks (`--bench search`); see `benches/highlight.rs` for today's.
    pub fn highlights(&self, text: &str) -> Vec<Highlight> {
        if self.ids.is_empty() {
            return Vec::new();
        }
        // (character offset, term) of every query word in the text, in order.
        let mut found: Vec<(usize, usize)> = Vec::new();
        let mut buffer = String::new();
        // The word being read: its first byte and character.
        let mut word: Option<(usize, usize)> = None;
        for (chars, (at, c)) in text.char_indices().enumerate() {
            if c.is_alphanumeric() {
                word.get_or_insert((at, chars));
            } else if let Some((from, first)) = word.take()
                && let Some(id) = self.term(&text[from..at], &mut buffer)
            {
                found.push((first, id));
            }
        }
        if let Some((from, first)) = word
            && let Some(id) = self.term(&text[from..], &mut buffer)
        {
            found.push((first, id));
        }
        if found.is_empty() {
            return Vec::new();
        }
        let mut seen = vec![false; self.ids.len()];
        let mut scored: Vec<(usize, (usize, usize))> = sentences(&text.chars().collect::<Vec<_>>())
            .into_iter()
            .filter_map(|(a, b)| {
                seen.iter_mut().for_each(|s| *s = false);
                let distinct = found
                    .iter()
                    .filter(|(at, _)| (a..b).contains(at))
                    .filter(|&&(_, id)| !std::mem::replace(&mut seen[id], true))
                    .count();
                (distinct > 0).then_some((distinct, (a, b)))
            })
            .collect();
        // Most query words first; the earlier sentence on a tie.
        scored.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.0.cmp(&y.1.0)));
        let mut best: Vec<Highlight> =
            scored.into_iter().take(MAX_HIGHLIGHTS).map(|(_, (start, end))| Highlight { start, end }).collect();
        best.sort_by_key(|h| h.start);
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn highlights(query: &str, text: &str) -> Vec<Highlight> {
        QueryTerms::new(query).highlights(text)
    }

    fn spans(query: &str, text: &str) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        highlights(query, text).iter().map(|h| chars[h.start..h.end].iter().collect()).collect()
    }

    #[test]
    fn the_most_similar_sentence_wins_when_no_word_is_shared() {
        let text = "Sunlight makes vitamin D. Calcium keeps bones strong. Tea is hot.";
        let c = semantic_candidates(text);
        assert_eq!(c.len(), 3);
        let chars: Vec<char> = text.chars().collect();
        let said = |h: Highlight| chars[h.start..h.end].iter().collect::<String>();
        assert_eq!(said(c[1].0), "Calcium keeps bones strong.");
        let vectors = vec![(c[0].0, vec![0.6, 0.8]), (c[1].0, vec![1.0, 0.0]), (c[2].0, vec![0.0, 1.0])];
        assert_eq!(most_similar(&[0.9, 0.1], &vectors).map(said).as_deref(), Some("Calcium keeps bones strong."));
        assert!(semantic_candidates("One sentence only.").is_empty(), "nothing to choose");
    }

    #[test]
    fn best_sentences_in_reading_order() {
        let text =
            "Fish is tasty. Sodium raises blood pressure in some people.\nPotassium lowers blood pressures!  The end.";
        assert_eq!(
            spans("does sodium raise blood pressure?", text),
            ["Sodium raises blood pressure in some people.", "Potassium lowers blood pressures!"]
        );
        assert_eq!(spans("tasty fish", text), ["Fish is tasty."]);
        assert!(spans("the of and", text).is_empty(), "stopwords alone highlight nothing");
        assert!(spans("vitamin", text).is_empty(), "no query word, no highlight");
    }

    #[test]
    fn offsets_are_characters_not_bytes() {
        let text = "Grüße aus Köln. Café au lait contains caféine.";
        assert_eq!(spans("caféine", text), ["Café au lait contains caféine."]);
        let h = highlights("caféine", text)[0];
        assert_eq!((h.start, h.end), (16, 46));
    }

    #[test]
    fn sentence_splitting() {
        let of = |t: &str| sentences(&t.chars().collect::<Vec<_>>());
        assert_eq!(of("  One. Two?\n\nThree"), [(2, 6), (7, 11), (13, 18)]);
        assert_eq!(of("3.5 grams. Next"), [(0, 10), (11, 15)], "a decimal point does not end a sentence");
        assert!(of("   ").is_empty());
    }
}
