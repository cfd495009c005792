//! What the search and scale benchmarks share: the evaluation data, real seed chunks embedded by
//! the real model, and the jitter that multiplies them into a large store.

#![allow(dead_code, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use quarry_core::ports::BlobSource;
use quarry_core::{Chunk, Config, DocumentKey};
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_local::JsonlSource;
use quarry_testkit::XorShift;
use quarry_text::{Preparer, WordPiece};

/// The `p` quantile of `v` (nearest rank).
pub fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The BEIR dataset to use: `QUARRY_BENCH_DATA`, or NFCorpus beside the checkout.
pub fn dataset() -> PathBuf {
    let data = std::env::var_os("QUARRY_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval/nfcorpus"));
    assert!(data.join("corpus.jsonl").is_file(), "no corpus.jsonl in {} (set QUARRY_BENCH_DATA)", data.display());
    data
}

/// The dataset's queries, in file order.
pub fn queries(data: &Path) -> Vec<String> {
    std::fs::read_to_string(data.join("queries.jsonl"))
        .expect("queries.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json")["text"].as_str().unwrap_or("").to_owned())
        .filter(|q| !q.is_empty())
        .collect()
}

/// The first `n` chunks of the corpus as ingest cuts them, with their vectors from the real model.
pub fn seeds(corpus: &Path, n: usize) -> (Vec<(DocumentKey, Chunk)>, Vec<Vec<f32>>) {
    let model_dir = quarry_testkit::model_dir();
    let preparer =
        Preparer::new(&Config::default(), WordPiece::from_file(&model_dir.join("tokenizer.json")).expect("tokenizer"));
    let (source, _) = JsonlSource::open(corpus).expect("corpus");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut seeds = Vec::new();
    for info in rt.block_on(source.list("")).expect("list") {
        let blob = rt.block_on(source.get(&info.key)).expect("get");
        if let Ok(p) = preparer.prepare_as(Some(info.key.as_str()), info.content_type.as_deref(), &blob.bytes) {
            seeds.extend(p.chunks.into_iter().map(|c| (info.key.clone(), c)));
        }
        if seeds.len() >= n {
            break;
        }
    }
    seeds.truncate(n);
    let embedder = LocalEmbedder::load(&model_dir, EmbedOptions::default()).expect("model");
    let t = Instant::now();
    let texts: Vec<&str> = seeds.iter().map(|(_, c)| c.text.as_str()).collect();
    let vectors = embedder.embed_blocking(&texts).expect("embed");
    println!("embedded {} seed chunks in {:.1}s", seeds.len(), t.elapsed().as_secs_f64());
    (seeds, vectors)
}

/// A copy of a unit vector with Gaussian noise, re-normalised: cosine ~0.9 to its source, so that
/// copies keep the topical clustering of real embeddings.
pub fn jittered(v: &[f32], r: &mut XorShift) -> Vec<f32> {
    let mut v: Vec<f32> = v.iter().map(|x| x + 0.025 * r.gauss()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Resident memory of process `pid` (this one when `None`), in MB, from /proc (0 where there is none).
pub fn rss_mb(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |p| format!("/proc/{p}/status"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .map_or(0.0, |kb: f64| kb / 1024.0)
}
