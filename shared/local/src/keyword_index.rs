//! An in-memory inverted index for keyword search: BM25 over a chunk's title and body, scored the
//! way SQLite FTS5's `bm25()` scores (k1 = 1.2, b = 0.75, column-weighted term frequency, length
//! in tokens of both columns, idf floored at 1e-6), with term-at-a-time accumulation.
//!
//! Why not FTS5 itself: it scores every row that holds any query word through an auxiliary
//! function, row by row, with no top-k pruning. At 100,000 chunks a query with a common word cost
//! 20-25 ms p95 and a feedback-expanded hybrid query 80 ms (docs/PERFORMANCE.md). Summing the
//! same BM25 over plain posting arrays costs well under a millisecond there, exactly, so no
//! dynamic pruning (WAND, MaxScore) is needed at this scale.
//!
//! Words: runs of letters and digits, lowercased, diacritics folded, then the Snowball English
//! (Porter 2) stemmer, the successor of the Porter stemmer FTS5 used. Stopwords count towards a
//! chunk's length but are not indexed: a query never asks for them.

use crate::vector_index::Documents;
use quarry_core::{DocumentId, lexicon};
use rustc_hash::FxHashMap;
use std::sync::LazyLock;
use unicode_normalization::UnicodeNormalization;

/// Term-frequency weight of the title column against the body's 1: titles are short and say what
/// a document is about (docs/RELEVANCE.md).
pub const TITLE_WEIGHT: u32 = 2;
/// BM25's term-frequency saturation `k1` and length normalisation `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25 {
    pub k1: f32,
    pub b: f32,
}

impl Default for Bm25 {
    /// FTS5's and Lucene's defaults (docs/RELEVANCE.md compares others).
    fn default() -> Self {
        Bm25 { k1: 1.2, b: 0.75 }
    }
}
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

/// The stemmed, deduplicated words of a query that can match, stopwords dropped.
pub fn query_terms(text: &str) -> Vec<Box<str>> {
    let mut out: Vec<Box<str>> = Vec::new();
    let mut buf = String::new();
    each_word(text, &mut buf, |w| {
        if out.len() < MAX_QUERY_TERMS
            && let Some(k) = stem(w)
            && !out.iter().any(|o| **o == *k)
        {
            out.push(k.into());
        }
    });
    out
}

#[derive(Debug, Default)]
struct Postings {
    slots: Vec<u32>,
    /// Title count times [`TITLE_WEIGHT`] plus body count.
    tfs: Vec<u16>,
}

/// One keyword hit: the chunk's rowid in the store, its document, and its BM25 score (higher is
/// better; no fixed scale).
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordHit {
    pub rowid: i64,
    pub document: DocumentId,
    pub score: f32,
}

/// Chunks by their store rowid. Removing a chunk marks its slot dead; once a quarter of the slots
/// are dead, the postings are compacted. Until then a word's document frequency still counts its
/// dead postings, which moves idf a little and never the set of results.
#[derive(Debug, Default)]
pub struct KeywordIndex {
    vocab: FxHashMap<Box<str>, u32>,
    postings: Vec<Postings>,
    rows: Vec<i64>,
    lens: Vec<u32>,
    alive: Vec<bool>,
    slot_doc: Vec<u32>,
    documents: Documents,
    by_row: FxHashMap<i64, u32>,
    live: usize,
    live_tokens: u64,
    /// Lowercase word -> its term (`None`: a stopword), so that each distinct word is folded,
    /// stemmed and looked up once: building from 100k chunks is mostly this.
    words: FxHashMap<Box<str>, Option<u32>>,
    /// (term, weighted count) of the chunk being indexed; kept for its allocation.
    scratch: Vec<(u32, u32)>,
    bm25: Bm25,
}

impl KeywordIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scores from now on with `bm25` (the postings do not depend on it).
    pub fn set_bm25(&mut self, bm25: Bm25) {
        self.bm25 = bm25;
    }

    /// Live chunks.
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The term of a lowercase word, created if new; `None` for a stopword.
    fn term(&mut self, word: &str) -> Option<u32> {
        if let Some(&t) = self.words.get(word) {
            return t;
        }
        let t = stem(word).map(|k| {
            let next = self.postings.len() as u32;
            let t = *self.vocab.entry(k.into()).or_insert(next);
            if t == next {
                self.postings.push(Postings::default());
            }
            t
        });
        self.words.insert(word.into(), t);
        t
    }

    /// Indexes a chunk, replacing what `rowid` held before.
    pub fn upsert(&mut self, rowid: i64, document: &DocumentId, title: &str, body: &str) {
        self.remove(rowid);
        let mut counts = std::mem::take(&mut self.scratch);
        counts.clear();
        let mut tokens = 0u32;
        let mut buf = String::new();
        for (text, weight) in [(title, TITLE_WEIGHT), (body, 1)] {
            each_word(text, &mut buf, |w| {
                tokens += 1;
                if let Some(t) = self.term(w) {
                    counts.push((t, weight));
                }
            });
        }
        counts.sort_unstable_by_key(|c| c.0);
        let doc = self.documents.intern(document);
        let slot = self.rows.len() as u32;
        self.rows.push(rowid);
        self.lens.push(tokens);
        self.alive.push(true);
        self.slot_doc.push(doc);
        self.by_row.insert(rowid, slot);
        self.live += 1;
        self.live_tokens += u64::from(tokens);
        for group in counts.chunk_by(|a, b| a.0 == b.0) {
            let tf: u32 = group.iter().map(|c| c.1).sum();
            let p = &mut self.postings[group[0].0 as usize];
            p.slots.push(slot);
            p.tfs.push(u16::try_from(tf).unwrap_or(u16::MAX));
        }
        self.scratch = counts;
    }

    /// Removes a chunk; `false` when the index does not hold it.
    pub fn remove(&mut self, rowid: i64) -> bool {
        let Some(slot) = self.by_row.remove(&rowid) else { return false };
        let s = slot as usize;
        self.alive[s] = false;
        self.live -= 1;
        self.live_tokens -= u64::from(self.lens[s]);
        let dead = self.rows.len() - self.live;
        if dead >= 1024 && dead * 4 >= self.rows.len() {
            self.compact();
        }
        true
    }

    /// Drops dead slots from every array and posting list, renumbering the live ones in order.
    fn compact(&mut self) {
        let mut new_slot = vec![u32::MAX; self.rows.len()];
        let mut next = 0u32;
        for (s, alive) in self.alive.iter().enumerate() {
            if *alive {
                new_slot[s] = next;
                next += 1;
            }
        }
        fn keep<T>(v: &mut Vec<T>, alive: &[bool]) {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                alive[i - 1]
            });
        }
        keep(&mut self.rows, &self.alive);
        keep(&mut self.lens, &self.alive);
        keep(&mut self.slot_doc, &self.alive);
        self.alive = vec![true; self.rows.len()];
        for p in &mut self.postings {
            let mut w = 0;
            for r in 0..p.slots.len() {
                let n = new_slot[p.slots[r] as usize];
                if n != u32::MAX {
                    p.slots[w] = n;
                    p.tfs[w] = p.tfs[r];
                    w += 1;
                }
            }
            p.slots.truncate(w);
            p.tfs.truncate(w);
        }
        self.by_row = self.rows.iter().enumerate().map(|(s, &r)| (r, s as u32)).collect();
    }

    /// The most any chunk could score for `terms`: each known term's BM25 weight as its frequency
    /// grows without bound (`idf × (k1 + 1)`). A score over it reads the same across queries: how
    /// much of everything the query asks for the chunk says, and how often.
    pub fn ceiling(&self, terms: &[Box<str>]) -> f32 {
        let n = self.live as f32;
        terms
            .iter()
            .filter_map(|t| self.vocab.get(t))
            .map(|&term| {
                let hits = self.postings[term as usize].slots.len() as f32;
                let idf = ((n - hits + 0.5) / (hits + 0.5)).ln();
                (if idf <= 0.0 { 1e-6 } else { idf }) * (self.bm25.k1 + 1.0)
            })
            .sum()
    }

    /// The `k` best chunks for `terms` (from [`query_terms`]) among the documents `accept` takes
    /// (all when `None`), best first; equal scores in insertion order.
    pub fn search(
        &self,
        terms: &[Box<str>],
        k: usize,
        accept: Option<&dyn Fn(&DocumentId) -> bool>,
    ) -> Vec<KeywordHit> {
        if self.live == 0 || k == 0 {
            return Vec::new();
        }
        let n = self.live as f32;
        let avgdl = (self.live_tokens as f32 / n).max(1.0);
        let allowed: Option<Vec<bool>> = accept.map(|f| self.documents.accepted(f));
        let mut scores = vec![0f32; self.rows.len()];
        let mut touched: Vec<u32> = Vec::new();
        // The length norm `k1 × (1 − b + b × len / avgdl)` as one multiply-add per posting.
        let Bm25 { k1, b } = self.bm25;
        let (flat, per_token) = (k1 * (1.0 - b), k1 * b / avgdl);
        for t in terms {
            let Some(&term) = self.vocab.get(t) else { continue };
            let p = &self.postings[term as usize];
            let hits = p.slots.len() as f32;
            let idf = ((n - hits + 0.5) / (hits + 0.5)).ln();
            let idf = if idf <= 0.0 { 1e-6 } else { idf };
            for (&slot, &tf) in p.slots.iter().zip(&p.tfs) {
                let s = slot as usize;
                if !self.alive[s] || allowed.as_ref().is_some_and(|a| !a[self.slot_doc[s] as usize]) {
                    continue;
                }
                let tf = f32::from(tf);
                let norm = flat + per_token * self.lens[s] as f32;
                if scores[s] == 0.0 {
                    touched.push(slot);
                }
                scores[s] += idf * tf * (k1 + 1.0) / (tf + norm);
            }
        }
        let mut scored: Vec<(f32, u32)> = touched.into_iter().map(|s| (scores[s as usize], s)).collect();
        let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, order);
            scored.truncate(k);
        }
        scored.sort_unstable_by(order);
        scored
            .into_iter()
            .map(|(score, s)| KeywordHit {
                rowid: self.rows[s as usize],
                document: self.documents.id(self.slot_doc[s as usize]).clone(),
                score,
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn doc(n: u32) -> DocumentId {
        DocumentId::parse(&format!("{n:032x}")).expect("id")
    }

    fn rows(hits: &[KeywordHit]) -> Vec<i64> {
        hits.iter().map(|h| h.rowid).collect()
    }

    #[test]
    fn words_are_folded_stemmed_and_stopwords_dropped() {
        let terms = query_terms("The Running of the runners, CAFÉ cafe running");
        let terms: Vec<&str> = terms.iter().map(|t| &**t).collect();
        assert_eq!(terms, ["run", "runner", "cafe"]);
    }

    #[test]
    fn scores_equal_sqlite_fts5_bm25() {
        // The scores FTS5 gave before this index replaced it, on words both stemmers leave alone.
        let rows_in: [(&str, &str); 6] = [
            ("Apple", "apple banana and a cherry"),
            ("", "apple apple cherry"),
            ("Kiwi notes", "kiwi lime date of the fig"),
            ("", "fig grape fig grape fig"),
            ("", "the lime was green"),
            ("Cherry", "kiwi"),
        ];
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE VIRTUAL TABLE f USING fts5(title, body, tokenize = 'porter unicode61 remove_diacritics 2')",
        )
        .unwrap();
        let mut ix = KeywordIndex::new();
        for (i, (title, body)) in rows_in.iter().enumerate() {
            db.execute(
                "INSERT INTO f (rowid, title, body) VALUES (?1, ?2, ?3)",
                rusqlite::params![i as i64, title, body],
            )
            .unwrap();
            ix.upsert(i as i64, &doc(i as u32), title, body);
        }
        for q in ["apple cherry", "kiwi", "fig lime", "cherry kiwi grape", "the apple"] {
            let expr = query_terms(q).iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" OR ");
            let mut stmt =
                db.prepare("SELECT rowid, bm25(f, 2.0, 1.0) FROM f WHERE f MATCH ?1 ORDER BY 2, rowid").unwrap();
            let want: Vec<(i64, f64)> = stmt
                .query_map([&expr], |r| Ok((r.get(0)?, -r.get::<_, f64>(1)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let got = ix.search(&query_terms(q), 10, None);
            assert_eq!(rows(&got), want.iter().map(|w| w.0).collect::<Vec<_>>(), "{q}");
            for (g, w) in got.iter().zip(&want) {
                assert!((f64::from(g.score) - w.1).abs() < 1e-5 * w.1.abs().max(1e-6), "{q}: {} vs {}", g.score, w.1);
            }
        }
    }

    #[test]
    fn rare_words_weigh_more_and_titles_count_double() {
        let mut ix = KeywordIndex::new();
        for i in 0..20 {
            ix.upsert(i, &doc(i as u32), "", "common filler text about nothing in particular");
        }
        ix.upsert(100, &doc(100), "", "common words and one rare zebra");
        ix.upsert(101, &doc(101), "", "common common common common");
        let hits = ix.search(&query_terms("common zebra"), 3, None);
        assert_eq!(hits[0].rowid, 100);

        let mut ix = KeywordIndex::new();
        ix.upsert(1, &doc(1), "", "zebra facts and more words here");
        ix.upsert(2, &doc(2), "Zebra", "facts and more words here");
        ix.upsert(3, &doc(3), "", "nothing to see");
        ix.upsert(4, &doc(4), "", "nothing to see");
        assert_eq!(ix.search(&query_terms("zebra"), 2, None)[0].rowid, 2);
    }

    #[test]
    fn upsert_replaces_remove_forgets_and_compaction_keeps_results() {
        let mut ix = KeywordIndex::new();
        ix.upsert(7, &doc(1), "", "old words");
        ix.upsert(7, &doc(1), "", "new words");
        assert_eq!(ix.len(), 1);
        assert!(ix.search(&query_terms("old"), 10, None).is_empty());
        assert_eq!(rows(&ix.search(&query_terms("new"), 10, None)), [7]);
        assert!(ix.remove(7));
        assert!(!ix.remove(7));
        assert!(ix.search(&query_terms("words"), 10, None).is_empty());

        // Enough removals to compact; what is left must still be found with the same scores.
        let mut ix = KeywordIndex::new();
        for i in 0..4000 {
            ix.upsert(i, &doc((i % 50) as u32), "", if i % 2 == 0 { "even lemur" } else { "odd lemur" });
        }
        let before = ix.search(&query_terms("odd lemur"), 5, None);
        for i in (0..4000).step_by(2) {
            assert!(ix.remove(i));
        }
        assert!(ix.rows.len() < 4000, "compacted");
        assert_eq!(ix.len(), 2000);
        let after = ix.search(&query_terms("odd lemur"), 5, None);
        assert_eq!(rows(&after), rows(&before));
        assert!(ix.search(&query_terms("even"), 5, None).is_empty());
        let all = ix.search(&query_terms("lemur"), 5000, None);
        assert_eq!(all.len(), 2000);
        assert!(all.iter().all(|h| h.rowid % 2 == 1));
    }

    #[test]
    fn filters_decide_inside_the_scan_so_top_k_stays_full() {
        let mut ix = KeywordIndex::new();
        for i in 0..10 {
            ix.upsert(i, &doc(i as u32), "", if i < 8 { "otter otter otter" } else { "otter" });
        }
        let want = [doc(8), doc(9)];
        let accept = |d: &DocumentId| want.contains(d);
        let hits = ix.search(&query_terms("otter"), 2, Some(&accept));
        assert_eq!(rows(&hits), [8, 9]);
    }

    proptest::proptest! {
        /// Whatever the sequence of upserts and removals (and compactions), a word finds exactly
        /// the live chunks that hold it.
        #[test]
        fn finds_exactly_the_live_chunks_holding_a_word(
            ops in proptest::collection::vec((0i64..300, proptest::collection::vec(0usize..6, 0..4), proptest::bool::ANY), 1..3000)
        ) {
            const WORDS: [&str; 6] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
            let mut ix = KeywordIndex::new();
            let mut model: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
            for (row, words, remove) in ops {
                if remove {
                    proptest::prop_assert_eq!(ix.remove(row), model.remove(&row).is_some());
                } else {
                    let body: Vec<&str> = words.iter().map(|&w| WORDS[w]).collect();
                    ix.upsert(row, &doc(row as u32), "", &body.join(" "));
                    model.insert(row, words);
                }
            }
            proptest::prop_assert_eq!(ix.len(), model.len());
            for (w, word) in WORDS.iter().enumerate() {
                let mut got = rows(&ix.search(&query_terms(word), usize::MAX, None));
                got.sort_unstable();
                let want: Vec<i64> = model.iter().filter(|(_, ws)| ws.contains(&w)).map(|(r, _)| *r).collect();
                proptest::prop_assert_eq!(got, want);
            }
        }
    }
}
