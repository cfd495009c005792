//! The query half: a query in one [`Mode`] becomes port calls ([`retrieve`]), lists are fused
//! ([`fuse`]) with a third from pseudo-relevance feedback ([`expand`]), and a page of hits gets its
//! highlights ([`highlight_hits`]). The HTTP API, `quarry search`, `quarry eval` and the search
//! Lambda all rank through here and hold no copy.

pub mod cache;
pub mod highlight;

use quarry_core::DocumentId;
use quarry_core::hosted::{HostedHit, HostedQuery, HostedStore};
use quarry_core::ports::{
    DocumentReader, DocumentRecord, Embedder, KeywordQuery, KeywordSearcher, VectorHit, VectorQuery, VectorSearcher,
};
use quarry_core::{Filter, PortError};
use serde::{Deserialize, Serialize};

pub use cache::QueryCache;
pub use highlight::Highlight;

/// How a query is matched: by meaning (the vector index), by words (BM25), or both, fused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Mode {
    Semantic,
    Keyword,
    Hybrid,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Semantic, Mode::Keyword, Mode::Hybrid];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Semantic => "semantic",
            Mode::Keyword => "keyword",
            Mode::Hybrid => "hybrid",
        }
    }

    /// Whether the query's embedding is needed.
    pub fn needs_vector(self) -> bool {
        self != Mode::Keyword
    }
}

/// A mode's name that is none of [`Mode::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown search mode {0:?}: use semantic, keyword or hybrid")]
pub struct UnknownMode(String);

impl std::str::FromStr for Mode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, UnknownMode> {
        Mode::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Keyword hits that feed the expansion of a hybrid query, and words added from them.
pub const FEEDBACK_HITS: usize = 10;
pub const FEEDBACK_TERMS: usize = 5;
/// The reciprocal rank fusion constant (Cormack et al.; what the peer and Anserini use).
pub const RRF_K: f32 = 60.0;
/// How deep each list goes into a hybrid fusion, at least.
pub const HYBRID_DEPTH: usize = 100;

/// How a hybrid query's lists become one ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion with constant `k` ([`fuse`]).
    Rrf { k: f32 },
    /// A convex combination of the lists' scores, each min-max normalised between its best hit and
    /// its hit at rank [`HYBRID_DEPTH`]: `semantic` weighs the semantic list, and the keyword lists
    /// share the rest ([`combine`]).
    Convex { semantic: f32 },
    /// A convex combination of calibrated scores, which read the same across queries: the
    /// semantic list's cosine (below 0 taken as 0), the keyword lists' BM25 over the query's
    /// ceiling; `semantic` weighs the first ([`calibrate`]). Without `feedback`, the expanded
    /// keyword query is left out (to measure what it adds).
    Calibrated { semantic: f32, feedback: bool },
}

impl Fusion {
    /// What `retrieve` uses: the calibrated scores, weighed evenly, beat RRF and the peer on both
    /// development sets, and read the same across queries (docs/RELEVANCE.md).
    pub const DEFAULT: Fusion = Fusion::Calibrated { semantic: 0.5, feedback: true };
}

/// A `--fusion` value that names no fusion.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown fusion {0:?}: use rrf[:K], convex:W, calibrated:W or calibrated-plain:W (W, the semantic weight, in [0, 1])"
)]
pub struct UnknownFusion(String);

impl std::str::FromStr for Fusion {
    type Err = UnknownFusion;

    /// `rrf`, `rrf:K`, `convex:W`, `calibrated:W`, `calibrated-plain:W` (no feedback list).
    fn from_str(s: &str) -> Result<Self, UnknownFusion> {
        let bad = || UnknownFusion(s.to_owned());
        let (name, arg) = s.split_once(':').map_or((s, None), |(n, a)| (n, Some(a)));
        let num = |a: Option<&str>| a.map(|a| a.parse::<f32>().map_err(|_| bad())).transpose();
        match name {
            "rrf" => match num(arg)?.unwrap_or(RRF_K) {
                k if k.is_finite() && k > 0.0 => Ok(Fusion::Rrf { k }),
                _ => Err(bad()),
            },
            "convex" => match num(arg)? {
                Some(w) if (0.0..=1.0).contains(&w) => Ok(Fusion::Convex { semantic: w }),
                _ => Err(bad()),
            },
            "calibrated" | "calibrated-plain" => match num(arg)? {
                Some(w) if (0.0..=1.0).contains(&w) => {
                    Ok(Fusion::Calibrated { semantic: w, feedback: name == "calibrated" })
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Ranked chunks for one query in one mode: the semantic list, the keyword list, or, for hybrid,
/// both fused with a third: the keyword query expanded by pseudo-relevance feedback ([`expand`])
/// (each at least [`HYBRID_DEPTH`] deep; the fused list is not cut to `depth`). `vector` is the
/// query's embedding, awaited only by the modes that need it (not keyword), and in hybrid while
/// the keyword lists run: the embedding and the two BM25 searches overlap instead of adding up
/// (hybrid p95 at 100k chunks, docs/PERFORMANCE.md). `fusion` is how hybrid's lists become one
/// ([`Fusion::DEFAULT`] but where `quarry eval` measures the alternatives). The one place a mode
/// becomes port calls.
#[allow(clippy::too_many_arguments)]
pub async fn retrieve<S: VectorSearcher, K: KeywordSearcher>(
    searcher: &S,
    keywords: Option<&K>,
    mode: Mode,
    text: &str,
    vector: impl Future<Output = Result<Vec<f32>, PortError>>,
    depth: usize,
    filter: Option<Filter>,
    fusion: Fusion,
) -> Result<Vec<VectorHit>, PortError> {
    let missing = |what: &str| PortError::InvalidInput {
        operation: "search",
        reason: format!("{} mode needs {what}", mode.name()),
    };
    let keyword = |n: usize| KeywordQuery { text: text.to_owned(), top_k: n, filter: filter.clone() };
    match mode {
        Mode::Keyword => keywords.ok_or_else(|| missing("a full-text index"))?.keyword_search(&keyword(depth)).await,
        Mode::Semantic => searcher.search(&VectorQuery { vector: vector.await?, top_k: depth, filter }).await,
        Mode::Hybrid => {
            let kw = keywords.ok_or_else(|| missing("a full-text index"))?;
            let n = depth.max(HYBRID_DEPTH);
            let semantic = async {
                searcher.search(&VectorQuery { vector: vector.await?, top_k: n, filter: filter.clone() }).await
            };
            let keyword_lists = async {
                let words = kw.keyword_search(&keyword(n)).await?;
                // Pseudo-relevance feedback: the words that weigh most in the best keyword hits,
                // added to the query, make a third list. It finds documents that say it in other
                // words, which lifts recall and, fused, the top ten (docs/RELEVANCE.md).
                let feedback: Vec<&VectorHit> = words.iter().take(FEEDBACK_HITS).collect();
                let expanded = expand(text, &feedback, FEEDBACK_TERMS);
                let wanted = !matches!(fusion, Fusion::Calibrated { feedback: false, .. });
                let third = if expanded == text || !wanted {
                    Vec::new()
                } else {
                    kw.keyword_search(&KeywordQuery { text: expanded, top_k: n, filter: filter.clone() }).await?
                };
                Ok::<_, PortError>((words, third))
            };
            // The semantic side first: polling it starts the embedding (off this thread, for a
            // model), and the keyword lists run meanwhile; the first error ends both.
            let (semantic, (words, third)) = tokio::try_join!(semantic, keyword_lists)?;
            Ok(match fusion {
                Fusion::Rrf { k } => {
                    let lists = if third.is_empty() { vec![semantic, words] } else { vec![semantic, words, third] };
                    fuse(lists, k)
                }
                Fusion::Convex { semantic: w } => {
                    let kw = if third.is_empty() { 1.0 - w } else { (1.0 - w) / 2.0 };
                    combine(vec![(semantic, w), (words, kw), (third, kw)])
                }
                Fusion::Calibrated { semantic: w, .. } => {
                    let kw = if third.is_empty() { 1.0 - w } else { (1.0 - w) / 2.0 };
                    calibrate(vec![(semantic, w, true), (words, kw, false), (third, kw, false)])
                }
            })
        }
    }
}

/// [`retrieve`] over a store that embeds for itself (OpenAI's vector stores): its search is the
/// semantic list, ranked by the store. Keyword and hybrid need Quarry's full-text index, which
/// such a store replaces, and are refused (a 400); lists end at the store's depth (50). Each hit is
/// checked against its document's state (one read per document found, at once): a hit from a file
/// that no checkpoint names (left by a crash between storing and checkpointing, a second worker's
/// upload, a removal the store has not finished) is dropped, so a replaced or deleted document's
/// old text never shows; the key is the state's (a store may cut long attributes).
pub async fn retrieve_hosted<R: DocumentReader>(
    store: &dyn HostedStore,
    state: &R,
    mode: Mode,
    text: &str,
    depth: usize,
    filter: Option<Filter>,
) -> Result<Vec<VectorHit>, PortError> {
    if mode != Mode::Semantic {
        return Err(PortError::InvalidInput {
            operation: "search",
            reason: format!(
                "{} mode needs a full-text index; the OpenAI vector store searches semantically",
                mode.name()
            ),
        });
    }
    let query = HostedQuery { text: text.to_owned(), top_k: depth.min(store.max_results()), filter };
    let hits = store.search(&query).await?;
    let documents: std::collections::BTreeSet<&DocumentId> = hits.iter().map(|h| &h.hit.document).collect();
    let records = futures::future::try_join_all(documents.iter().map(|d| state.document(d))).await?;
    let current: std::collections::HashMap<&DocumentId, DocumentRecord> =
        documents.into_iter().zip(records).filter_map(|(d, r)| Some((d, r?))).collect();
    let mut kept = Vec::with_capacity(hits.len());
    let mut dropped = 0;
    for HostedHit { handle, mut hit } in hits.iter().cloned() {
        match current.get(&hit.document) {
            Some(r) if r.handle.as_deref() == Some(handle.as_str()) => {
                if let Some(key) = &r.key {
                    hit.meta.key = key.clone();
                }
                kept.push(hit);
            }
            _ => dropped += 1,
        }
    }
    if dropped > 0 {
        tracing::info!(dropped, "hits from files no checkpoint names were left out");
    }
    Ok(kept)
}

/// The query plus the `n` words that weigh most in the feedback hits: a relevance model (RM1):
/// each word's frequency in a hit, over the hit's length, summed over hits weighted 1/rank. Only
/// words in at least two hits count (one hit's jargon is noise), never stopwords, numbers, words
/// of one or two letters, or the query's own words (by stem).
pub fn expand(query: &str, hits: &[&VectorHit], n: usize) -> String {
    use quarry_core::lexicon;
    use std::collections::{HashMap, HashSet};
    let own: HashSet<String> = lexicon::words(query).map(|w| lexicon::stem(&w).to_owned()).collect();
    // stem -> (weight, a surface form, hits it occurs in)
    let mut terms: HashMap<String, (f64, String, usize)> = HashMap::new();
    for (rank, h) in hits.iter().enumerate() {
        let words: Vec<String> = lexicon::words(&h.text)
            .filter(|w| !lexicon::is_stopword(w) && w.chars().count() > 2 && !w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        let len = words.len().max(1) as f64;
        let weight = 1.0 / (rank as f64 + 1.0);
        let mut seen = HashSet::new();
        for w in words {
            let stem = lexicon::stem(&w).to_owned();
            if own.contains(&stem) {
                continue;
            }
            let first = seen.insert(stem.clone());
            let e = terms.entry(stem).or_insert_with(|| (0.0, w, 0));
            e.0 += weight / len;
            e.2 += usize::from(first);
        }
    }
    let mut ranked: Vec<(f64, String)> =
        terms.into_values().filter(|(_, _, hits)| *hits >= 2).map(|(w, word, _)| (w, word)).collect();
    // Heaviest first; ties by the word, so that the same hits always give the same query.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = query.to_owned();
    for (_, w) in ranked.into_iter().take(n) {
        out.push(' ');
        out.push_str(&w);
    }
    out
}

/// Reciprocal rank fusion of ranked lists of chunks: a chunk's score is the sum of 1/(k + rank)
/// over the lists it is in, divided by the most it could get (first in every list), so that it
/// lies in [0, 1]. Ties go to the smaller chunk id, so that pages are stable.
pub fn fuse(lists: Vec<Vec<VectorHit>>, k: f32) -> Vec<VectorHit> {
    let best = lists.len() as f32 / (k + 1.0);
    let mut fused: std::collections::HashMap<String, (VectorHit, f32)> = std::collections::HashMap::new();
    for list in lists {
        for (rank, hit) in list.into_iter().enumerate() {
            let add = 1.0 / (k + rank as f32 + 1.0);
            fused.entry(hit.id.as_str().to_owned()).or_insert_with(|| (hit, 0.0)).1 += add;
        }
    }
    for (_, score) in fused.values_mut() {
        *score /= best;
    }
    ranked(fused)
}

/// A convex combination of ranked lists (each best first): each list's scores min-max normalised
/// between its best hit (1) and its hit at rank [`HYBRID_DEPTH`] (0; below it, 0 too), so that the
/// scores do not depend on how deep a caller asked (`quarry eval` asks 1,000 deep, a first page
/// 100), all 1 when they score alike; weighted and summed per chunk; a chunk missing from a list
/// gets 0 there. Ties go to the smaller chunk id.
pub fn combine(lists: Vec<(Vec<VectorHit>, f32)>) -> Vec<VectorHit> {
    let mut fused: std::collections::HashMap<String, (VectorHit, f32)> = std::collections::HashMap::new();
    for (list, weight) in lists {
        let hi = list.first().map_or(0.0, |h| h.score);
        let lo = list.get(list.len().min(HYBRID_DEPTH).saturating_sub(1)).map_or(0.0, |h| h.score);
        let span = hi - lo;
        for hit in list {
            // A list whose hits all score alike (one hit, say) gives each its full weight.
            let add = if span > f32::EPSILON {
                weight * ((hit.score - lo) / span).clamp(0.0, 1.0)
            } else if hit.score >= lo {
                weight
            } else {
                0.0
            };
            fused.entry(hit.id.as_str().to_owned()).or_insert_with(|| (hit, 0.0)).1 += add;
        }
    }
    ranked(fused)
}

/// A convex combination of calibrated scores: each list `(hits, weight, semantic)` adds
/// `weight × score` per chunk, where a semantic hit's score is its cosine (the store's similarity
/// `(1 + cos) / 2` mapped back, below 0 taken as 0) and a keyword hit's is already over its
/// query's ceiling. No list is normalised by its own spread, so a weak match scores low whatever
/// else matched. Ties go to the smaller chunk id.
pub fn calibrate(lists: Vec<(Vec<VectorHit>, f32, bool)>) -> Vec<VectorHit> {
    let mut fused: std::collections::HashMap<String, (VectorHit, f32)> = std::collections::HashMap::new();
    for (list, weight, semantic) in lists {
        for hit in list {
            let score = if semantic { (2.0 * hit.score - 1.0).max(0.0) } else { hit.score };
            fused.entry(hit.id.as_str().to_owned()).or_insert_with(|| (hit, 0.0)).1 += weight * score;
        }
    }
    ranked(fused)
}

/// Fused chunks with their summed scores, clamped to [0, 1], best first; ties to the smaller chunk
/// id, so that pages are stable.
fn ranked(fused: std::collections::HashMap<String, (VectorHit, f32)>) -> Vec<VectorHit> {
    let mut out: Vec<VectorHit> = fused
        .into_values()
        .map(|(mut h, s)| {
            h.score = s.clamp(0.0, 1.0);
            h
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.as_str().cmp(b.id.as_str())));
    out
}

/// The query's vector, from `cache` when the same model embedded the same text lately.
pub async fn embed_query<E: Embedder>(embedder: &E, cache: &QueryCache, query: &str) -> Result<Vec<f32>, PortError> {
    let model = &embedder.model().id;
    if let Some(v) = cache.get(model, query) {
        return Ok(v);
    }
    let v = crate::embed_timed(embedder, &[query.to_owned()], "query")
        .await?
        .0
        .pop()
        .ok_or_else(|| PortError::InvalidInput { operation: "embed", reason: "no vector for the query".into() })?;
    cache.put(model, query, v.clone());
    Ok(v)
}

/// The highlights of a page of hits by query words alone (no embedding call).
pub fn word_highlights(query: &str, hits: &[VectorHit]) -> Vec<Vec<Highlight>> {
    let terms = highlight::QueryTerms::new(query);
    hits.iter().map(|h| terms.highlights(&h.text)).collect()
}

/// The highlights of a page of hits: sentences by query words and, for hits that share no word
/// with the query, the sentence nearest it in meaning, from one embedding call for all of them
/// (`query_vector` is the query's own; without one, words alone decide).
pub async fn highlight_hits<E: Embedder>(
    embedder: &E,
    query: &str,
    query_vector: Option<&[f32]>,
    hits: &[VectorHit],
) -> Result<Vec<Vec<Highlight>>, PortError> {
    let mut marks = word_highlights(query, hits);
    let Some(q) = query_vector else { return Ok(marks) };
    let mut owners = Vec::new();
    let mut texts = Vec::new();
    let mut spans = Vec::new();
    for (i, h) in hits.iter().enumerate() {
        if !marks[i].is_empty() {
            continue;
        }
        for (span, sentence) in highlight::semantic_candidates(&h.text) {
            owners.push(i);
            spans.push(span);
            texts.push(sentence);
        }
    }
    if texts.is_empty() {
        return Ok(marks);
    }
    let (vectors, _) = crate::embed_timed(embedder, &texts, "query").await?;
    for (i, mark) in marks.iter_mut().enumerate() {
        let mine: Vec<(Highlight, Vec<f32>)> = owners
            .iter()
            .zip(spans.iter().zip(&vectors))
            .filter(|(o, _)| **o == i)
            .map(|(_, (s, v))| (*s, v.clone()))
            .collect();
        if let Some(best) = highlight::most_similar(q, &mine) {
            mark.push(best);
        }
    }
    Ok(marks)
}

#[cfg(test)]
mod tests {
    use quarry_core::meta::ChunkMeta;
    use quarry_core::ports::VectorHit;
    use quarry_core::{CharSpan, ChunkId, DocumentId, DocumentKey, Format};

    use super::fuse;

    fn hit(doc: &str, ordinal: u32) -> VectorHit {
        let document = DocumentId::for_key(&DocumentKey::new(doc));
        VectorHit {
            id: ChunkId::new(&document, ordinal),
            document,
            score: 0.5,
            text: String::new(),
            pages: None,
            span: CharSpan { start: 0, end: 0 },
            meta: ChunkMeta::new(DocumentKey::new(doc), Format::Text),
        }
    }

    #[test]
    fn feedback_expands_the_query_with_words_its_best_hits_share() {
        let with = |doc: &str, text: &str| VectorHit { text: text.to_owned(), ..hit(doc, 0) };
        let hits = [
            with("a", "Statins lower cholesterol. Cholesterol in the arteries causes plaque."),
            with("b", "High cholesterol and arterial plaque: statins and diet."),
            with("c", "Plaque builds up when LDL cholesterol is high; 2019 data."),
            with("d", "A unique word appears once: zebrafish."),
        ];
        let refs: Vec<&VectorHit> = hits.iter().collect();
        let out = super::expand("statin therapy", &refs, 2);
        assert_eq!(out, "statin therapy cholesterol plaque", "shared, heavy words; not the query's own (statins)");
        assert_eq!(super::expand("statin", &refs[3..], 5), "statin", "one hit's words are not evidence");
        assert_eq!(super::expand("x", &[], 5), "x");
    }

    #[test]
    fn reciprocal_rank_fusion() {
        let (a, b, c, d) = (hit("a", 0), hit("b", 0), hit("c", 0), hit("d", 0));
        let fused = fuse(vec![vec![a.clone(), b.clone(), c.clone()], vec![b.clone(), d.clone(), a.clone()]], 60.0);
        let order: Vec<&ChunkId> = fused.iter().map(|h| &h.id).collect();
        // b: 1/62 + 1/61; a: 1/61 + 1/63; then c (1/63) and d (1/62): d before c.
        assert_eq!(order, [&b.id, &a.id, &d.id, &c.id]);
        let best = 2.0 / 61.0;
        assert!((fused[0].score - (1.0 / 62.0 + 1.0 / 61.0) / best).abs() < 1e-6);
        assert!(fused.iter().all(|h| (0.0..=1.0).contains(&h.score)));
        // First in every list scores exactly 1.
        let top = fuse(vec![vec![a.clone()], vec![a.clone()]], 60.0);
        assert!((top[0].score - 1.0).abs() < 1e-6);
        // Equal scores: ordered by chunk id, whatever the input order.
        let tie1 = fuse(vec![vec![c.clone()], vec![d.clone()]], 60.0);
        let tie2 = fuse(vec![vec![d.clone()], vec![c.clone()]], 60.0);
        assert_eq!(tie1.iter().map(|h| &h.id).collect::<Vec<_>>(), tie2.iter().map(|h| &h.id).collect::<Vec<_>>());
        assert!(fuse(vec![vec![], vec![]], 60.0).is_empty());
    }

    #[test]
    fn convex_combination_of_min_max_normalised_lists() {
        let scored = |doc: &str, score: f32| VectorHit { score, ..hit(doc, 0) };
        let semantic = vec![scored("a", 0.9), scored("b", 0.7), scored("c", 0.5)];
        let keyword = vec![scored("c", 12.0), scored("d", 6.0), scored("a", 3.0)];
        let fused = super::combine(vec![(semantic, 0.6), (keyword, 0.4)]);
        let by = |d: &str| fused.iter().find(|h| h.document == hit(d, 0).document).map(|h| h.score);
        // a: 0.6 * 1 + 0.4 * 0; c: 0.6 * 0 + 0.4 * 1; b: 0.6 * 0.5; d: 0.4 * 1/3.
        assert_eq!(fused.iter().map(|h| h.document.clone()).collect::<Vec<_>>().len(), 4);
        assert!((by("a").unwrap_or(0.0) - 0.6).abs() < 1e-6 && (by("c").unwrap_or(0.0) - 0.4).abs() < 1e-6);
        assert!((by("b").unwrap_or(0.0) - 0.3).abs() < 1e-6 && (by("d").unwrap_or(0.0) - 0.4 / 3.0).abs() < 1e-6);
        assert!(fused.windows(2).all(|w| w[0].score >= w[1].score), "best first");
        assert!(super::combine(vec![(Vec::new(), 1.0)]).is_empty());
        // A list of one hit (no spread) gives it its full weight.
        let one = super::combine(vec![(vec![scored("a", 0.4)], 0.5)]);
        assert!((one[0].score - 0.5).abs() < 1e-6, "{}", one[0].score);
    }

    #[test]
    fn calibrated_scores_add_the_cosine_and_the_keyword_scores_as_they_are() {
        let scored = |doc: &str, score: f32| VectorHit { score, ..hit(doc, 0) };
        // Similarities (1 + cos) / 2: a has cos 0.6, b cos 0.2, c cos -0.2 (taken as 0).
        let semantic = vec![scored("a", 0.8), scored("b", 0.6), scored("c", 0.4)];
        let keyword = vec![scored("b", 0.5), scored("d", 0.1)];
        let fused = super::calibrate(vec![(semantic, 0.5, true), (keyword, 0.5, false)]);
        let by = |d: &str| fused.iter().find(|h| h.document == hit(d, 0).document).map_or(-1.0, |h| h.score);
        assert!((by("a") - 0.3).abs() < 1e-6 && (by("b") - 0.35).abs() < 1e-6, "{} {}", by("a"), by("b"));
        assert!(by("c").abs() < 1e-6 && (by("d") - 0.05).abs() < 1e-6);
        assert!(fused.windows(2).all(|w| w[0].score >= w[1].score), "best first");
        // Not normalised by the list's own spread: a weak best match stays weak.
        let weak = super::calibrate(vec![(vec![scored("a", 0.55)], 0.5, true), (vec![scored("a", 0.05)], 0.5, false)]);
        assert!(weak[0].score < 0.1, "{}", weak[0].score);
    }

    #[test]
    fn fusions_parse() {
        use super::Fusion;
        assert_eq!("rrf".parse::<Fusion>().ok(), Some(Fusion::Rrf { k: super::RRF_K }));
        assert_eq!("rrf:20".parse::<Fusion>().ok(), Some(Fusion::Rrf { k: 20.0 }));
        assert_eq!("convex:0.3".parse::<Fusion>().ok(), Some(Fusion::Convex { semantic: 0.3 }));
        assert_eq!("calibrated:0.5".parse::<Fusion>().ok(), Some(Fusion::DEFAULT));
        assert_eq!(
            "calibrated-plain:0.4".parse::<Fusion>().ok(),
            Some(Fusion::Calibrated { semantic: 0.4, feedback: false })
        );
        for bad in ["convex", "convex:1.5", "rrf:x", "rrf:-1", "rrf:NaN", "sum", "calibrated", "calibrated:2"] {
            assert!(bad.parse::<Fusion>().is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_parse_by_name() {
        for m in super::Mode::ALL {
            assert_eq!(m.name().parse::<super::Mode>().ok(), Some(m));
        }
        assert!("fuzzy".parse::<super::Mode>().is_err());
    }
}
