//! `quarry eval DATASET_DIR`: relevance on a BEIR-format dataset (`corpus.jsonl`, `queries.jsonl`,
//! `qrels.tsv`), per search mode, with trec_eval's definitions: nDCG@10 with graded gains, Recall@100
//! and MRR@10, and query latency.
//!
//! The corpus is indexed by the same path as `quarry ingest` (into a scratch store, or `--state`
//! to keep it: a second run then embeds nothing), and queries run through the same ports and the
//! same fusion as `POST /v1/search`. Chunks are ranked, then each document takes the rank of its
//! best chunk, as a user reading results would meet it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use quarry_core::ports::{Embedder, VectorHit};
use quarry_core::{Config, DocumentId};
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_local::SqliteStore;
use quarry_pipeline::Mode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A BEIR-format folder: corpus.jsonl, queries.jsonl, qrels.tsv (header, then query-id, corpus-id, score).
    dataset: PathBuf,
    /// Keep the index here (re-used by the next run) instead of a scratch folder.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Chunks each mode retrieves per query before documents are ranked.
    #[arg(long, default_value_t = 1000)]
    depth: usize,
}

/// Query id → document key → graded relevance.
type Qrels = BTreeMap<String, HashMap<String, u32>>;

fn load_qrels(path: &Path) -> anyhow::Result<Qrels> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut qrels = Qrels::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(f.len() == 3, "{} line {}: expected query-id, corpus-id, score", path.display(), i + 1);
        let grade: u32 =
            f[2].trim().parse().with_context(|| format!("{} line {}: bad score", path.display(), i + 1))?;
        qrels.entry(f[0].to_owned()).or_default().insert(f[1].to_owned(), grade);
    }
    Ok(qrels)
}

fn load_queries(path: &Path, qrels: &Qrels) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{} line {} is not JSON", path.display(), i + 1))?;
        let id = match &v["_id"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => anyhow::bail!("{} line {} has no _id", path.display(), i + 1),
        };
        if qrels.contains_key(&id) {
            out.push((id, v["text"].as_str().unwrap_or_default().to_owned()));
        }
    }
    Ok(out)
}

/// Per-query metrics, trec_eval style: documents by score, ties by id descending; the ideal DCG
/// from every judged relevant document.
fn metrics(ranking: &[(String, f32)], judged: &HashMap<String, u32>) -> (f64, f64, f64) {
    let relevant: HashMap<&str, u32> = judged.iter().filter(|(_, g)| **g > 0).map(|(d, g)| (d.as_str(), *g)).collect();
    let dcg: f64 = ranking
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, (d, _))| f64::from(relevant.get(d.as_str()).copied().unwrap_or(0)) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<u32> = relevant.values().copied().collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal.iter().take(10).enumerate().map(|(i, g)| f64::from(*g) / ((i + 2) as f64).log2()).sum();
    let ndcg = if idcg > 0.0 { dcg / idcg } else { 0.0 };
    let found = ranking.iter().take(100).filter(|(d, _)| relevant.contains_key(d.as_str())).count();
    let recall = if relevant.is_empty() { 0.0 } else { found as f64 / relevant.len() as f64 };
    let mrr = ranking
        .iter()
        .take(10)
        .position(|(d, _)| relevant.contains_key(d.as_str()))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64);
    (ndcg, recall, mrr)
}

/// Documents in the order of their best chunk.
fn documents(hits: &[VectorHit], keys: &HashMap<DocumentId, String>) -> Vec<(String, f32)> {
    let mut best: HashMap<&str, f32> = HashMap::new();
    for h in hits {
        if let Some(k) = keys.get(&h.document) {
            let e = best.entry(k.as_str()).or_insert(f32::MIN);
            *e = e.max(h.score);
        }
    }
    let mut out: Vec<(String, f32)> = best.into_iter().map(|(k, s)| (k.to_owned(), s)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    out
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len().saturating_sub(1)) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN)
}

pub async fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let corpus = args.dataset.join("corpus.jsonl");
    let qrels = load_qrels(&args.dataset.join("qrels.tsv"))?;
    let queries = load_queries(&args.dataset.join("queries.jsonl"), &qrels)?;
    anyhow::ensure!(!queries.is_empty(), "no query in queries.jsonl has judgments in qrels.tsv");
    anyhow::ensure!(args.depth >= 100, "--depth must be at least 100 (Recall@100)");

    let scratch = std::env::temp_dir().join(format!("quarry-eval-{}", std::process::id()));
    let state = args.state.clone().unwrap_or_else(|| scratch.clone());
    // Index exactly as `quarry ingest` does.
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("ingest")
        .arg(&corpus)
        .arg("--state")
        .arg(&state)
        .arg("--quiet")
        .status()
        .context("cannot run quarry ingest")?;
    anyhow::ensure!(status.success(), "indexing {} failed", corpus.display());

    let store = SqliteStore::open(&state.join("state.db"), quarry_embed::DIMENSION)?;
    let keys: HashMap<DocumentId, String> =
        store.indexed_keys()?.into_iter().map(|k| (DocumentId::for_key(&k), k.as_str().to_owned())).collect();
    let embedder = LocalEmbedder::load(&config.model.resolved_dir(), EmbedOptions { threads: 0, batch_size: 1 })
        .map_err(crate::SetupError::Model)?;
    embedder.embed(&[queries[0].1.clone()]).await?;

    println!("{}: {} documents indexed, {} queries with judgments", args.dataset.display(), keys.len(), queries.len());
    println!();
    println!("| mode | nDCG@10 | Recall@100 | MRR@10 | p50 ms | p95 ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for mode in Mode::ALL {
        let (mut sums, mut lat) = ((0.0, 0.0, 0.0), Vec::with_capacity(queries.len()));
        for (id, text) in &queries {
            let t = Instant::now();
            let vector = if mode.needs_vector() {
                Some(embedder.embed(std::slice::from_ref(text)).await?.remove(0))
            } else {
                None
            };
            let hits = quarry_pipeline::retrieve(&store, Some(&store), mode, text, vector, args.depth, None).await?;
            let ranking = documents(&hits, &keys);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            let (n, r, m) = metrics(&ranking, &qrels[id]);
            sums = (sums.0 + n, sums.1 + r, sums.2 + m);
        }
        let q = queries.len() as f64;
        println!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.2} | {:.2} |",
            mode.name(),
            sums.0 / q,
            sums.1 / q,
            sums.2 / q,
            pct(&lat, 0.5),
            pct(&lat, 0.95)
        );
    }
    if args.state.is_none() {
        drop(store);
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trec_eval_definitions() {
        let judged: HashMap<String, u32> =
            [("a", 2), ("b", 1), ("c", 0), ("z", 1)].into_iter().map(|(d, g)| (d.to_owned(), g)).collect();
        let ranking: Vec<(String, f32)> =
            [("x", 0.9), ("a", 0.8), ("c", 0.7), ("b", 0.6)].into_iter().map(|(d, s)| (d.to_owned(), s)).collect();
        let (ndcg, recall, mrr) = metrics(&ranking, &judged);
        // DCG = 2/log2(3) + 1/log2(5); ideal = 2/log2(2) + 1/log2(3) + 1/log2(4).
        let dcg = 2.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 2.0 + 1.0 / 3f64.log2() + 0.5;
        assert!((ndcg - dcg / idcg).abs() < 1e-12, "{ndcg}");
        assert!((recall - 2.0 / 3.0).abs() < 1e-12, "grade 0 is not relevant: {recall}");
        assert!((mrr - 0.5).abs() < 1e-12);
        assert_eq!(metrics(&[], &judged), (0.0, 0.0, 0.0));
    }

    #[test]
    fn documents_take_their_best_chunk_and_ties_go_by_id_descending() {
        let doc = |k: &str| DocumentId::for_key(&quarry_core::DocumentKey::new(k));
        let keys: HashMap<DocumentId, String> = ["a", "b", "c"].iter().map(|k| (doc(k), (*k).to_owned())).collect();
        let hit = |k: &str, o: u32, score: f32| VectorHit {
            id: quarry_core::ChunkId::new(&doc(k), o),
            document: doc(k),
            score,
            text: String::new(),
            pages: None,
            span: quarry_core::CharSpan { start: 0, end: 0 },
            metadata: Default::default(),
        };
        let hits = [hit("a", 1, 0.9), hit("b", 0, 0.5), hit("a", 0, 0.4), hit("c", 0, 0.5)];
        let order: Vec<String> = documents(&hits, &keys).into_iter().map(|(d, _)| d).collect();
        assert_eq!(order, ["a", "c", "b"]);
    }
}
