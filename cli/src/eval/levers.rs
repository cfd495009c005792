//! The whole-document-vector lever (issue 13), measured rather than shipped: beside its chunk
//! vectors, each document too long for one window (256 tokens) but within the model's positions
//! (512) gets one vector of its whole text, and a document's semantic score becomes the better of
//! its best chunk and that vector (`max`), or that vector alone where it has one (`only`).
//! Measured in semantic mode, where the lever acts; docs/RELEVANCE.md has the figures.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use quarry_core::ports::BlobSource;
use quarry_embed::LocalEmbedder;
use quarry_local::JsonlSource;

/// The model's position embeddings: the longest input it can take at all.
const POSITIONS: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Use {
    /// A document scores the better of its best chunk and its whole-document vector.
    Max,
    /// A document with a whole-document vector scores by it alone.
    Only,
}

/// Document key → unit vector of its whole text, for documents of 2 windows' worth or less.
pub struct DocVectors(HashMap<String, Vec<f32>>);

impl DocVectors {
    /// Embeds every document of the corpus file whose text, as `quarry ingest` reads it (the same
    /// JSONL source), takes more than one window and at most 512 positions.
    pub async fn build(corpus: &Path, embedder: &LocalEmbedder) -> anyhow::Result<Self> {
        let (source, _) = JsonlSource::open(corpus).with_context(|| format!("cannot read {}", corpus.display()))?;
        let t = embedder.tokenizer();
        let (mut keys, mut inputs) = (Vec::new(), Vec::new());
        for info in source.list("").await? {
            let blob = source.get(&info.key).await?;
            let mut ids = vec![t.cls_id];
            t.for_each_word(&String::from_utf8_lossy(&blob.bytes), |_, _, w| ids.extend_from_slice(w));
            ids.push(t.sep_id);
            if ids.len() > quarry_embed::MAX_TOKENS && ids.len() <= POSITIONS {
                keys.push(info.key.as_str().to_owned());
                inputs.push(ids);
            }
        }
        let vectors = embedder.embed_ids(&inputs)?;
        Ok(Self(keys.into_iter().zip(vectors).collect()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `ranking` (documents by their best chunk's cosine) re-scored with the documents' own
    /// vectors, and re-sorted as `metrics` expects.
    pub fn rescore(&self, ranking: Vec<(String, f32)>, query: &[f32], how: Use) -> Vec<(String, f32)> {
        let mut scores: HashMap<String, f32> = ranking.into_iter().collect();
        for (key, v) in &self.0 {
            // On the chunk hits' scale: the vector index answers (1 + cos) / 2.
            let cos: f32 = (1.0 + v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>()) / 2.0;
            let e = scores.entry(key.clone()).or_insert(f32::MIN);
            *e = match how {
                Use::Max => e.max(cos),
                Use::Only => cos,
            };
        }
        let mut out: Vec<(String, f32)> = scores.into_iter().collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        out
    }
}

/// One query's figures for the adaptive-feedback measurement.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// The keyword list's best score (BM25 over the query's ceiling).
    keyword_top: f32,
    /// nDCG@10 and Recall@100 with the feedback list.
    with: (f64, f64),
    /// The same without it.
    without: (f64, f64),
}

/// Per query, hybrid with and without the feedback list, and the keyword list's best score:
/// what an adaptive rule "feedback only when the keyword list is weaker than τ" would score,
/// worked out exactly from the two runs.
#[derive(Default)]
pub struct Adaptive {
    rows: Vec<Row>,
}

fn mean(rows: &[Row], f: impl Fn(&Row) -> f64) -> f64 {
    rows.iter().map(f).sum::<f64>() / rows.len().max(1) as f64
}

impl Adaptive {
    pub fn add(&mut self, keyword_top: f32, with: (f64, f64), without: (f64, f64)) {
        self.rows.push(Row { keyword_top, with, without });
    }

    pub fn print(&self) {
        let mut rows = self.rows.clone();
        rows.sort_by(|a, b| a.keyword_top.total_cmp(&b.keyword_top));
        println!();
        println!("feedback by the keyword list's strength (quartiles of its best score)");
        println!();
        println!("| keyword top score | queries | nDCG@10 with | without | R@100 with | without |");
        println!("| --- | --- | --- | --- | --- | --- |");
        let n = rows.len();
        for q in 0..4 {
            let part = &rows[q * n / 4..(q + 1) * n / 4];
            let (Some(first), Some(last)) = (part.first(), part.last()) else { continue };
            println!(
                "| {:.3} to {:.3} | {} | {:.4} | {:.4} | {:.4} | {:.4} |",
                first.keyword_top,
                last.keyword_top,
                part.len(),
                mean(part, |r| r.with.0),
                mean(part, |r| r.without.0),
                mean(part, |r| r.with.1),
                mean(part, |r| r.without.1)
            );
        }
        println!();
        println!("| feedback when the keyword top score is below | nDCG@10 | R@100 |");
        println!("| --- | --- | --- |");
        for tau in [0.0f32, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.01] {
            let pick = |r: &Row| if r.keyword_top < tau { r.with } else { r.without };
            println!("| {tau:.2} | {:.4} | {:.4} |", mean(&rows, |r| pick(r).0), mean(&rows, |r| pick(r).1));
        }
    }
}
