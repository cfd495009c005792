//! Query latency of the flat index at 100,000 x 384 (the int8 scan on two threads where there are
//! two cores), with and without a 1% filter, and recall@10 against an exact scan; then top 101 (a
//! first page's depth) and its recall@101. Clustered synthetic
//! unit vectors (200 topics), so that neighbours are meaningful as with real embeddings.
//!
//!     cargo bench -p quarry-local --bench vector_index
//!     QUARRY_BENCH_N=1000000 cargo bench -p quarry-local --bench vector_index   # another size

#![allow(clippy::print_stdout, clippy::expect_used)]

use std::time::Instant;

use quarry_core::{ChunkId, DocumentId, DocumentKey};
use quarry_local::FlatIndex;
use quarry_local::vector_index::{BINARY_FROM, PARALLEL_FROM};
use quarry_testkit::XorShift;

const D: usize = 384;
/// A first page's depth in the API.
const DEEP: usize = 101;

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

fn main() {
    let n: usize = std::env::var("QUARRY_BENCH_N").map_or(100_000, |v| v.parse().expect("QUARRY_BENCH_N: a count"));
    let mut r = XorShift::new(42);
    let centers: Vec<Vec<f32>> = (0..200).map(|_| (0..D).map(|_| r.gauss() * 0.35).collect()).collect();
    let docs: Vec<DocumentId> = (0..n / 10).map(|i| DocumentId::for_key(&DocumentKey::new(format!("d{i}")))).collect();
    // File-backed, as the store holds it (`FlatIndex::open_files`); `QUARRY_BENCH_STORAGE=memory`
    // for the in-memory fallback.
    let scratch = std::env::temp_dir().join(format!("quarry-bench-vectors-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let in_memory = std::env::var("QUARRY_BENCH_STORAGE").is_ok_and(|s| s == "memory");
    let mut idx = if in_memory {
        FlatIndex::new(D)
    } else {
        match FlatIndex::open_files(D, &scratch.join("v.vectors"), &scratch.join("v.codes"), 0).expect("files") {
            quarry_local::vector_index::Opened::Empty(idx) => idx,
            other => panic!("a fresh scratch folder holds no index: {other:?}"),
        }
    };
    let mut vectors = Vec::with_capacity(n);
    for i in 0..n {
        let v: Vec<f32> = centers[i % 200].iter().map(|c| c + r.gauss()).collect();
        let d = &docs[i / 10];
        idx.upsert(ChunkId::new(d, (i % 10) as u32), d.clone(), &v).expect("upsert");
        vectors.push(v);
    }
    let queries: Vec<Vec<f32>> =
        (0..300).map(|i| centers[(i * 7) % 200].iter().map(|c| c + r.gauss()).collect()).collect();
    let wanted: std::collections::HashSet<DocumentId> = docs.iter().step_by(100).cloned().collect();
    let filter = |d: &DocumentId| wanted.contains(d);
    let (mut plain, mut filtered, mut found, mut found_filtered) = (Vec::new(), Vec::new(), 0usize, 0usize);
    // A first page's depth (the API ranks 101 deep for the pages after it): its latency and recall.
    let (mut deep, mut found_deep) = (Vec::new(), 0usize);
    for q in &queries {
        let t = Instant::now();
        let hits = idx.search(q, 10, None).expect("search");
        plain.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let f = idx.search(q, 10, Some(&filter)).expect("search");
        filtered.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(f.len(), 10);
        // Exact top-10 by brute force over the raw vectors.
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let mut all: Vec<(f32, usize)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>() / norm(v), i))
            .collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<ChunkId> =
            all.iter().take(10).map(|&(_, i)| ChunkId::new(&docs[i / 10], (i % 10) as u32)).collect();
        found += hits.iter().filter(|h| want.contains(&h.id)).count();
        let t = Instant::now();
        let page = idx.search(q, DEEP, None).expect("search");
        deep.push(t.elapsed().as_secs_f64() * 1e3);
        let want: std::collections::HashSet<ChunkId> =
            all.iter().take(DEEP).map(|&(_, i)| ChunkId::new(&docs[i / 10], (i % 10) as u32)).collect();
        found_deep += page.iter().filter(|h| want.contains(&h.id)).count();
        let want: Vec<ChunkId> = all
            .iter()
            .filter(|&&(_, i)| filter(&docs[i / 10]))
            .take(10)
            .map(|&(_, i)| ChunkId::new(&docs[i / 10], (i % 10) as u32))
            .collect();
        found_filtered += f.iter().filter(|h| want.contains(&h.id)).count();
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!(
        "flat index ({}), {n} x {D}, int8 scan on two threads from {PARALLEL_FROM} slots, one-bit pass first from \
         {BINARY_FROM}, {} queries, top-10",
        if in_memory { "vectors in memory" } else { "vectors in a file" },
        queries.len()
    );
    println!("| query | p50 ms | p95 ms | recall@10 vs exact |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| no filter | {:.2} | {:.2} | {:.3} |",
        pct(&plain, 0.5),
        pct(&plain, 0.95),
        found as f64 / (queries.len() * 10) as f64
    );
    println!(
        "| 1% filter | {:.2} | {:.2} | {:.3} |",
        pct(&filtered, 0.5),
        pct(&filtered, 0.95),
        found_filtered as f64 / (queries.len() * 10) as f64
    );
    println!(
        "| no filter, top {DEEP} (recall@{DEEP}) | {:.2} | {:.2} | {:.3} |",
        pct(&deep, 0.5),
        pct(&deep, 0.95),
        found_deep as f64 / (queries.len() * DEEP) as f64
    );
}
