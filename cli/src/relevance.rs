//! Relevance by trec_eval's definitions over a BEIR-format dataset: the judgments and queries,
//! documents ranked by their best chunk, and nDCG@10 (graded gains), Recall@100 and MRR@10 per
//! query. `quarry eval` prints them; the AWS keyword benchmark scores the AWS path with them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context;
use quarry_core::DocumentId;
use quarry_core::ports::VectorHit;

/// Query id → document key → graded relevance.
pub type Qrels = BTreeMap<String, HashMap<String, u32>>;

pub fn load_qrels(path: &Path) -> anyhow::Result<Qrels> {
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

pub fn load_queries(path: &Path, qrels: &Qrels) -> anyhow::Result<Vec<(String, String)>> {
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
pub fn metrics(ranking: &[(String, f32)], judged: &HashMap<String, u32>) -> (f64, f64, f64) {
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
pub fn documents(hits: &[VectorHit], keys: &HashMap<DocumentId, String>, others: f32) -> Vec<(String, f32)> {
    // Each document's best chunk, and the sum of its other chunks' scores.
    let mut best: HashMap<&str, (f32, f32)> = HashMap::new();
    for h in hits {
        if let Some(k) = keys.get(&h.document) {
            let e = best.entry(k.as_str()).or_insert((f32::MIN, 0.0));
            if h.score > e.0 {
                if e.0 > f32::MIN {
                    e.1 += e.0;
                }
                e.0 = h.score;
            } else {
                e.1 += h.score;
            }
        }
    }
    let mut out: Vec<(String, f32)> =
        best.into_iter().map(|(k, (top, rest))| (k.to_owned(), top + others * rest)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    out
}
