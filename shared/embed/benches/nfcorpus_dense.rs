//! End-to-end check of the embedding engine on a real retrieval benchmark: BEIR NFCorpus, one vector
//! per document (title + " " + text, truncated at 256 tokens), exhaustive cosine search, the setup
//! of MTEB's published all-MiniLM-L6-v2 score (nDCG@10 0.3159, Recall@100 0.3115). Matching it says
//! the whole path (tokenizer, graph, pooling, normalisation) is right on 3,633 real documents.
//!
//!     cargo bench -p quarry-embed --bench nfcorpus_dense      # QUARRY_EVAL_DIR overrides the data
//!
//! Metrics follow trec_eval: nDCG@10 with graded gains (gain = qrels grade), log2 discount, ideal
//! from all judged-relevant documents; ties broken by document id descending.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use quarry_embed::{EmbedOptions, LocalEmbedder};

fn main() {
    let dir = std::env::var_os("QUARRY_EVAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval/nfcorpus"));
    let read =
        |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()));
    let docs: Vec<(String, String)> = read("corpus.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let text = format!("{} {}", v["title"].as_str().unwrap_or(""), v["text"].as_str().unwrap_or(""));
            (v["_id"].as_str().unwrap().to_owned(), text.trim().to_owned())
        })
        .collect();
    let mut qrels: HashMap<String, HashMap<String, u32>> = HashMap::new();
    for l in read("qrels.tsv").lines().skip(1) {
        let f: Vec<&str> = l.split('\t').collect();
        qrels.entry(f[0].to_owned()).or_default().insert(f[1].to_owned(), f[2].parse().unwrap());
    }
    let queries: Vec<(String, String)> = read("queries.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["_id"].as_str().unwrap().to_owned(), v["text"].as_str().unwrap().to_owned())
        })
        .filter(|(id, _)| qrels.contains_key(id))
        .collect();

    let e = LocalEmbedder::load(
        &quarry_testkit::model_dir(),
        EmbedOptions { threads: 2, batch_size: 32, ..EmbedOptions::default() },
    )
    .expect("model");
    let t = Instant::now();
    let texts: Vec<&str> = docs.iter().map(|(_, t)| t.as_str()).collect();
    let dv = e.embed_blocking(&texts).expect("embed corpus");
    let embed_s = t.elapsed().as_secs_f64();
    let qtexts: Vec<&str> = queries.iter().map(|(_, t)| t.as_str()).collect();
    let qv = e.embed_blocking(&qtexts).expect("embed queries");

    let (mut ndcg, mut recall) = (0.0, 0.0);
    for ((qid, _), q) in queries.iter().zip(&qv) {
        let mut scored: Vec<(f32, &str)> =
            dv.iter().zip(&docs).map(|(d, (id, _))| (d.iter().zip(q).map(|(a, b)| a * b).sum(), id.as_str())).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(a.1)));
        let rel: HashMap<&str, u32> =
            qrels[qid].iter().filter(|(_, g)| **g > 0).map(|(d, g)| (d.as_str(), *g)).collect();
        let dcg: f64 = scored
            .iter()
            .take(10)
            .enumerate()
            .map(|(i, (_, d))| f64::from(*rel.get(d).unwrap_or(&0)) / (i as f64 + 2.0).log2())
            .sum();
        let mut ideal: Vec<u32> = rel.values().copied().collect();
        ideal.sort_unstable_by(|a, b| b.cmp(a));
        let idcg: f64 = ideal.iter().take(10).enumerate().map(|(i, g)| f64::from(*g) / (i as f64 + 2.0).log2()).sum();
        ndcg += if idcg > 0.0 { dcg / idcg } else { 0.0 };
        let hits = scored.iter().take(100).filter(|(_, d)| rel.contains_key(d)).count();
        recall += if rel.is_empty() { 0.0 } else { hits as f64 / rel.len() as f64 };
    }
    let n = queries.len() as f64;
    println!("NFCorpus, whole-document dense retrieval with Quarry's local embedder");
    println!(
        "{} documents embedded in {embed_s:.1} s ({:.1} docs/s, 2 threads); {} queries",
        docs.len(),
        docs.len() as f64 / embed_s,
        queries.len()
    );
    println!("| system | nDCG@10 | Recall@100 |");
    println!("| --- | --- | --- |");
    println!("| Quarry local embedder (this run) | {:.4} | {:.4} |", ndcg / n, recall / n);
    println!("| MTEB all-MiniLM-L6-v2 (published) | 0.3159 | 0.3115 |");
}
