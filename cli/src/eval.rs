//! `quarry eval DATASET_DIR`: relevance on a BEIR-format dataset (`corpus.jsonl`, `queries.jsonl`,
//! `qrels.tsv`), per search mode, with trec_eval's definitions: nDCG@10 with graded gains, Recall@100
//! and MRR@10, and query latency.
//!
//! The corpus is indexed by the same path as `quarry ingest` (into a scratch store, or `--state`
//! to keep it: a second run then embeds nothing), and queries run through the same ports and the
//! same fusion as `POST /v1/search` (unless the hidden `--fusion` names another, to measure it).
//! Chunks are ranked, then each document takes the rank of its best chunk, as a user reading
//! results would meet it. `--qrels` scores against other judgments, `--mode` runs one mode, and the
//! Python peer's figures are printed beside Quarry's where its result file is found.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use quarry_cli::relevance::{documents, load_qrels, load_queries, metrics};
use quarry_core::ports::Embedder;
use quarry_core::{Config, DocumentId};
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_local::SqliteStore;
use quarry_pipeline::Mode;

mod levers;

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
    /// Judgments to score against [default: DATASET/qrels.tsv]: a dataset's dev split, where it has one.
    #[arg(long, value_name = "FILE")]
    qrels: Option<PathBuf>,
    /// The Python peer's result file, whose figures are printed beside Quarry's
    /// [default: $PEERS_WORK/<dataset>.json, PEERS_WORK defaulting to ~/.cache/quarry-peer, when present].
    #[arg(long, value_name = "FILE")]
    peer: Option<PathBuf>,
    /// How hybrid fuses its lists, to measure the alternatives (see docs/RELEVANCE.md): rrf[:K],
    /// convex:W, calibrated:W [default: what search uses].
    #[arg(long, hide = true)]
    fusion: Option<quarry_pipeline::query::Fusion>,
    /// A document's score: its best chunk's plus this share of its other chunks' (to measure
    /// document-level aggregation; see docs/RELEVANCE.md) [default: 0, the best chunk alone].
    #[arg(long, hide = true, default_value_t = 0.0)]
    others: f32,
    /// Whole-document vectors beside chunk vectors, in semantic mode: a document scores the
    /// better of the two (`max`) or its own vector alone (`only`) (see docs/RELEVANCE.md).
    #[arg(long, hide = true, value_name = "HOW")]
    doc_vectors: Option<levers::Use>,
    /// In hybrid mode, also the run without the feedback list, and what a rule "feedback only
    /// when the keyword list is weak" would score (see docs/RELEVANCE.md).
    #[arg(long, hide = true)]
    adaptive: bool,
    /// Only this mode (semantic, keyword or hybrid) [default: all three].
    #[arg(long)]
    mode: Option<Mode>,
    /// Also show what each of these `min_score` thresholds (comma-separated) keeps: documents per
    /// query, precision and recall of what is kept.
    #[arg(long, value_delimiter = ',', value_name = "T,...")]
    min_score: Vec<f32>,
}

/// What one `min_score` keeps, summed over queries.
#[derive(Debug, Default, Clone, Copy)]
struct Kept {
    documents: f64,
    /// Over queries that keep something.
    precision: f64,
    recall: f64,
    empty: usize,
}

impl Kept {
    fn add(&mut self, ranking: &[(String, f32)], judged: &HashMap<String, u32>, threshold: f32) {
        let kept: Vec<&String> = ranking.iter().filter(|(_, s)| *s >= threshold).map(|(d, _)| d).collect();
        let relevant = judged.values().filter(|g| **g > 0).count();
        let hits = kept.iter().filter(|d| judged.get(d.as_str()).is_some_and(|g| *g > 0)).count();
        self.documents += kept.len() as f64;
        if kept.is_empty() {
            self.empty += 1;
        } else {
            self.precision += hits as f64 / kept.len() as f64;
        }
        if relevant > 0 {
            self.recall += hits as f64 / relevant as f64;
        }
    }
}

/// The peer's figures for one mode: nDCG@10, Recall@100, MRR@10.
type PeerRow = (f64, f64, f64);

/// The peer's figures by Quarry's mode names, from its result file (`metrics.dense`, `.bm25`,
/// `.hybrid`); `None` when there is no such file. A file that is there but unreadable is an error:
/// a comparison silently left out would mislead.
fn load_peer(path: &Path) -> anyhow::Result<Option<HashMap<&'static str, PeerRow>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not the peer's JSON", path.display()))?;
    let mut rows = HashMap::new();
    for (mode, theirs) in [("semantic", "dense"), ("keyword", "bm25"), ("hybrid", "hybrid")] {
        let m = &v["metrics"][theirs];
        let get = |k: &str| m[k].as_f64().with_context(|| format!("{}: no metrics.{theirs}.{k}", path.display()));
        rows.insert(mode, (get("ndcg@10")?, get("recall@100")?, get("mrr@10")?));
    }
    Ok(Some(rows))
}

/// Where the peer writes its result for `dataset` (`../shared/peers/run.sh`).
fn default_peer_file(dataset: &Path) -> Option<PathBuf> {
    let work = match std::env::var_os("PEERS_WORK") {
        Some(w) => PathBuf::from(w),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/quarry-peer"),
    };
    let name = std::path::absolute(dataset).ok()?.file_name()?.to_owned();
    Some(work.join(name).with_extension("json"))
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len().saturating_sub(1)) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN)
}

pub async fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let corpus = args.dataset.join("corpus.jsonl");
    let qrels = load_qrels(&args.qrels.clone().unwrap_or_else(|| args.dataset.join("qrels.tsv")))?;
    let peer_file = args.peer.clone().or_else(|| default_peer_file(&args.dataset));
    let peer = match &peer_file {
        Some(f) => load_peer(f)?,
        None => None,
    };
    let queries = load_queries(&args.dataset.join("queries.jsonl"), &qrels)?;
    anyhow::ensure!(!queries.is_empty(), "no query in queries.jsonl has judgments in the qrels file");
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
        // The evaluation reads Quarry's own index: a configured OpenAI vector store is left alone.
        .env("QUARRY_STORE", "native")
        .status()
        .context("cannot run quarry ingest")?;
    anyhow::ensure!(status.success(), "indexing {} failed", corpus.display());

    let store = SqliteStore::open(&state.join("state.db"), quarry_embed::DIMENSION)?;
    let keys: HashMap<DocumentId, String> =
        store.indexed_keys()?.into_iter().map(|k| (DocumentId::for_key(&k), k.as_str().to_owned())).collect();
    let embedder = LocalEmbedder::load(
        &config.model.resolved_dir(),
        EmbedOptions { threads: 0, batch_size: 1, precision: config.model.precision, ..EmbedOptions::default() },
    )
    .map_err(crate::SetupError::Model)?;
    embedder.embed(&[queries[0].1.clone()]).await?;
    let doc_vectors = match args.doc_vectors {
        Some(_) => Some(levers::DocVectors::build(&corpus, &embedder).await?),
        None => None,
    };
    if let Some(d) = &doc_vectors {
        println!("{} documents longer than one window got a whole-document vector", d.len());
    }

    println!("{}: {} documents indexed, {} queries with judgments", args.dataset.display(), keys.len(), queries.len());
    println!();
    if let (Some(_), Some(f)) = (&peer, &peer_file) {
        println!("the peer's figures (in brackets) from {}", f.display());
    }
    println!("| mode | nDCG@10 | Recall@100 | MRR@10 | p50 ms | p95 ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for mode in args.mode.map_or(Mode::ALL.to_vec(), |m| vec![m]) {
        let (mut sums, mut lat) = ((0.0, 0.0, 0.0), Vec::with_capacity(queries.len()));
        let mut kept = vec![Kept::default(); args.min_score.len()];
        let mut adaptive = levers::Adaptive::default();
        let fusion = args.fusion.unwrap_or(quarry_pipeline::query::Fusion::DEFAULT);
        for (id, text) in &queries {
            let t = Instant::now();
            // Embedded inside `retrieve`, as a search request does; kept for the levers below.
            let vector = std::cell::OnceCell::new();
            let embed = async {
                let v = embedder.embed(std::slice::from_ref(text)).await?.remove(0);
                Ok(vector.get_or_init(|| v).clone())
            };
            let hits =
                quarry_pipeline::retrieve(&store, Some(&store), mode, text, embed, args.depth, None, fusion).await?;
            let mut ranking = documents(&hits, &keys, args.others);
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            if let (Some(d), Some(how), Mode::Semantic, Some(v)) = (&doc_vectors, args.doc_vectors, mode, vector.get())
            {
                ranking = d.rescore(ranking, v, how);
            }
            if let (true, Mode::Hybrid, Some(v)) = (args.adaptive, mode, vector.get()) {
                let plain = match fusion {
                    quarry_pipeline::query::Fusion::Calibrated { semantic, .. } => {
                        quarry_pipeline::query::Fusion::Calibrated { semantic, feedback: false }
                    }
                    _ => anyhow::bail!("--adaptive measures the calibrated fusion"),
                };
                let ready = std::future::ready(Ok(v.clone()));
                let without =
                    quarry_pipeline::retrieve(&store, Some(&store), mode, text, ready, args.depth, None, plain);
                let without = documents(&without.await?, &keys, args.others);
                // Keyword mode never asks for the vector.
                let unused = std::future::pending();
                let words =
                    quarry_pipeline::retrieve(&store, Some(&store), Mode::Keyword, text, unused, 1, None, plain);
                let top = words.await?.first().map_or(0.0, |h| h.score);
                let (w, wo) = (metrics(&ranking, &qrels[id]), metrics(&without, &qrels[id]));
                adaptive.add(top, (w.0, w.1), (wo.0, wo.1));
            }
            let (n, r, m) = metrics(&ranking, &qrels[id]);
            for (k, t) in kept.iter_mut().zip(&args.min_score) {
                k.add(&ranking, &qrels[id], *t);
            }
            sums = (sums.0 + n, sums.1 + r, sums.2 + m);
        }
        let q = queries.len() as f64;
        let theirs = |i: usize| match peer.as_ref().and_then(|p| p.get(mode.name())) {
            Some(row) => format!(" ({:.4})", [row.0, row.1, row.2][i]),
            None => String::new(),
        };
        println!(
            "| {} | {:.4}{} | {:.4}{} | {:.4}{} | {:.2} | {:.2} |",
            mode.name(),
            sums.0 / q,
            theirs(0),
            sums.1 / q,
            theirs(1),
            sums.2 / q,
            theirs(2),
            pct(&lat, 0.5),
            pct(&lat, 0.95)
        );
        if args.adaptive && mode == Mode::Hybrid {
            adaptive.print();
        }
        for (k, t) in kept.iter().zip(&args.min_score) {
            let answered = (queries.len() - k.empty).max(1) as f64;
            println!(
                "|   min_score {t} | kept {:.1}/query | precision {:.4} | recall {:.4} | {} queries keep nothing | |",
                k.documents / q,
                k.precision / answered,
                k.recall / q,
                k.empty
            );
        }
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
    fn a_threshold_keeps_what_scores_at_least_it() {
        let judged: HashMap<String, u32> =
            [("a", 2), ("b", 1), ("c", 0)].into_iter().map(|(d, g)| (d.to_owned(), g)).collect();
        let ranking: Vec<(String, f32)> =
            [("a", 0.8), ("x", 0.6), ("b", 0.3)].into_iter().map(|(d, s)| (d.to_owned(), s)).collect();
        let mut k = Kept::default();
        k.add(&ranking, &judged, 0.5);
        assert_eq!((k.documents, k.precision, k.recall, k.empty), (2.0, 0.5, 0.5, 0));
        k.add(&ranking, &judged, 0.9);
        assert_eq!((k.documents, k.precision, k.recall, k.empty), (2.0, 0.5, 0.5, 1), "nothing kept: no precision");
    }

    #[test]
    fn the_peers_figures_are_read_by_mode_and_a_missing_file_is_none() {
        let dir = std::env::temp_dir().join(format!("quarry-eval-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let file = dir.join("nfcorpus.json");
        let m = |n: f64| serde_json::json!({"ndcg@10": n, "recall@100": n / 2.0, "mrr@10": n * 1.5});
        let json = serde_json::json!({"metrics": {"dense": m(0.3), "bm25": m(0.32), "hybrid": m(0.35)}});
        std::fs::write(&file, json.to_string()).expect("write");
        let rows = load_peer(&file).expect("read").expect("present");
        assert_eq!(rows["keyword"], (0.32, 0.16, 0.48));
        assert_eq!(rows["hybrid"].0, 0.35);
        assert!(load_peer(&dir.join("absent.json")).expect("no error").is_none());
        std::fs::write(&file, "{\"metrics\": {}}").expect("write");
        assert!(load_peer(&file).is_err(), "a file without the figures is an error, not a silent omission");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn documents_take_their_best_chunk_and_ties_go_by_id_descending() {
        let doc = |k: &str| DocumentId::for_key(&quarry_core::DocumentKey::new(k));
        let keys: HashMap<DocumentId, String> = ["a", "b", "c"].iter().map(|k| (doc(k), (*k).to_owned())).collect();
        let hit = |k: &str, o: u32, score: f32| quarry_core::ports::VectorHit {
            id: quarry_core::ChunkId::new(&doc(k), o),
            document: doc(k),
            score,
            text: String::new(),
            pages: None,
            span: quarry_core::CharSpan { start: 0, end: 0 },
            meta: quarry_core::meta::ChunkMeta::new(quarry_core::DocumentKey::new(k), quarry_core::Format::Text),
        };
        let hits = [hit("a", 1, 0.9), hit("b", 0, 0.5), hit("a", 0, 0.4), hit("c", 0, 0.5)];
        let order: Vec<String> = documents(&hits, &keys, 0.0).into_iter().map(|(d, _)| d).collect();
        assert_eq!(order, ["a", "c", "b"]);
        // With a share of the other chunks, a's second chunk adds to it.
        let scored = documents(&hits, &keys, 0.5);
        assert_eq!(scored[0], ("a".to_owned(), 0.9 + 0.5 * 0.4));
    }
}
