//! The flat index against brute force: exact on small sets, recall@10 >= 0.98 on large ones,
//! filters that keep top-k full, and writes that keep ids and slots consistent.

use proptest::prelude::*;
use quarry_core::{ChunkId, DocumentId, DocumentKey};
use quarry_local::{FlatIndex, IndexError};
use quarry_testkit::XorShift;

fn doc(i: usize) -> DocumentId {
    DocumentId::for_key(&DocumentKey::new(format!("doc-{i}")))
}

/// `n` vectors around 50 topics, so that neighbours are meaningful as with real embeddings.
fn clustered(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut r = XorShift::new(seed);
    let centers: Vec<Vec<f32>> = (0..50).map(|_| (0..dim).map(|_| r.unit()).collect()).collect();
    (0..n).map(|i| centers[i % 50].iter().map(|c| c + r.unit() * 0.8).collect()).collect()
}

fn brute(vs: &[Vec<f32>], q: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<usize> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut s: Vec<(f32, usize)> = vs
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>() / (norm(v) * norm(q)), i))
        .collect();
    s.sort_by(|a, b| b.0.total_cmp(&a.0));
    s.into_iter().take(k).map(|(_, i)| i).collect()
}

fn build(vs: &[Vec<f32>], docs_of: impl Fn(usize) -> usize) -> FlatIndex {
    let mut idx = FlatIndex::new(vs[0].len());
    for (i, v) in vs.iter().enumerate() {
        let d = doc(docs_of(i));
        idx.upsert(ChunkId::new(&d, i as u32), d, v).expect("valid vector");
    }
    idx
}

fn ordinals(hits: &[quarry_local::IndexHit]) -> Vec<usize> {
    hits.iter().map(|h| h.id.parts().expect("chunk id").1 as usize).collect()
}

#[test]
fn small_sets_are_exact_and_scores_are_similarities() {
    let vs = clustered(500, 64, 7);
    let idx = build(&vs, |i| i);
    for qi in [0, 17, 333] {
        let hits = idx.search(&vs[qi], 10, None).expect("search");
        assert_eq!(ordinals(&hits), brute(&vs, &vs[qi], 10, |_| true));
        assert!((hits[0].score - 1.0).abs() < 1e-5, "a vector is its own nearest neighbour at similarity 1");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(hits.iter().all(|h| (0.0..=1.0).contains(&h.score)));
    }
}

#[test]
fn large_sets_keep_recall_at_10_above_098() {
    let vs = clustered(12_000, 384, 11);
    let idx = build(&vs, |i| i);
    let queries = clustered(40, 384, 99);
    let mut found = 0;
    for q in &queries {
        let got = ordinals(&idx.search(q, 10, None).expect("search"));
        let want = brute(&vs, q, 10, |_| true);
        found += got.iter().filter(|g| want.contains(g)).count();
    }
    let recall = found as f64 / (queries.len() * 10) as f64;
    assert!(recall >= 0.98, "recall@10 {recall}");
}

#[test]
fn the_one_bit_first_pass_keeps_recall_at_10_above_098_filtered_or_not() {
    let vs = clustered(12_000, 384, 13);
    // The first pass from 4,096 candidates: both the whole set and the half a filter keeps use it.
    let idx = build(&vs, |i| i).with_binary_from(quarry_local::vector_index::EXACT_BELOW);
    // Queries near stored vectors, as a real query lands near the documents that answer it.
    let mut r = XorShift::new(5);
    let queries: Vec<Vec<f32>> = (0..40).map(|i| vs[i * 297].iter().map(|x| x + r.unit() * 0.8).collect()).collect();
    let evens: std::collections::HashSet<DocumentId> = (0..12_000).step_by(2).map(doc).collect();
    let keep = |d: &DocumentId| evens.contains(d);
    let (mut found, mut found_filtered) = (0, 0);
    for q in &queries {
        let got = ordinals(&idx.search(q, 10, None).expect("search"));
        let want = brute(&vs, q, 10, |_| true);
        found += got.iter().filter(|g| want.contains(g)).count();
        let hits = idx.search(q, 10, Some(&keep)).expect("search");
        assert_eq!(hits.len(), 10, "top-k stays full under a filter");
        assert!(hits.iter().all(|h| keep(&h.document)));
        let want = brute(&vs, q, 10, |i| i % 2 == 0);
        found_filtered += ordinals(&hits).iter().filter(|g| want.contains(g)).count();
    }
    let n = (queries.len() * 10) as f64;
    assert!(found as f64 / n >= 0.98, "recall@10 {}", found as f64 / n);
    assert!(found_filtered as f64 / n >= 0.98, "filtered recall@10 {}", found_filtered as f64 / n);
}

#[test]
fn filters_are_applied_before_ranking_so_top_k_stays_full() {
    let vs = clustered(9_000, 128, 5);
    let idx = build(&vs, |i| i % 300);
    let wanted = doc(7);
    let keep = |d: &DocumentId| *d == wanted;
    let hits = idx.search(&vs[0], 10, Some(&keep)).expect("search");
    assert_eq!(hits.len(), 10, "30 chunks match the filter; all 10 slots are filled");
    assert!(hits.iter().all(|h| h.document == wanted));
    assert_eq!(ordinals(&hits), brute(&vs, &vs[0], 10, |i| i % 300 == 7));
}

#[test]
fn a_kept_filter_answer_leaves_out_documents_added_after_it() {
    let vs = clustered(600, 16, 9);
    let mut idx = build(&vs[..500], |i| i % 50);
    let wanted = |d: &DocumentId| *d == doc(7) || *d == doc(60);
    let kept = idx.accepted(&wanted);
    let before = idx.search_among(&vs[7], 10, Some(&kept)).expect("search");
    assert_eq!(before, idx.search(&vs[7], 10, Some(&wanted)).expect("search"), "the same as deciding it anew");
    // Document 60 arrives after the answer was decided: numbered past its end, it is not let in.
    for (i, v) in vs.iter().enumerate().skip(500) {
        idx.upsert(ChunkId::new(&doc(60), i as u32), doc(60), v).expect("valid vector");
    }
    let hits = idx.search_among(&vs[7], 100, Some(&kept)).expect("search");
    assert!(hits.iter().all(|h| h.document == doc(7)), "{hits:?}");
    let anew = idx.search(&vs[7], 200, Some(&wanted)).expect("search");
    assert_eq!(anew.iter().filter(|h| h.document == doc(60)).count(), 100, "decided anew, it is");
}

#[test]
fn writes_upsert_remove_and_drop_stale_tails() {
    let mut idx = FlatIndex::new(4);
    let d = doc(1);
    for ord in 0..5u32 {
        idx.upsert(ChunkId::new(&d, ord), d.clone(), &[1.0, ord as f32, 0.0, 0.5]).expect("upsert");
    }
    let other = doc(2);
    idx.upsert(ChunkId::new(&other, 0), other.clone(), &[0.0, 0.0, 1.0, 0.0]).expect("upsert");
    assert_eq!(idx.len(), 6);
    // Re-upserting an id replaces it rather than duplicating it.
    idx.upsert(ChunkId::new(&d, 0), d.clone(), &[0.0, 0.0, 0.0, 1.0]).expect("upsert");
    assert_eq!(idx.len(), 6);
    let top = idx.search(&[0.0, 0.0, 0.0, 1.0], 1, None).expect("search");
    assert_eq!(top[0].id, ChunkId::new(&d, 0));
    // A new version with 2 chunks drops ordinals 2.. of that document only.
    assert_eq!(idx.remove_document_from(&d, 2).expect("in memory"), 3);
    assert_eq!(idx.len(), 3);
    assert!(idx.contains(&ChunkId::new(&d, 1)) && !idx.contains(&ChunkId::new(&d, 2)));
    assert!(idx.contains(&ChunkId::new(&other, 0)));
    assert!(idx.remove(&ChunkId::new(&other, 0)).expect("in memory"));
    assert!(!idx.remove(&ChunkId::new(&other, 0)).expect("in memory"));
    let all = idx.search(&[1.0, 1.0, 0.0, 0.0], 10, None).expect("search");
    assert_eq!(all.len(), 2);
}

#[test]
fn bad_vectors_are_refused() {
    let mut idx = FlatIndex::new(3);
    let d = doc(1);
    assert!(matches!(
        idx.upsert(ChunkId::new(&d, 0), d.clone(), &[1.0, 2.0]),
        Err(IndexError::Dimension { got: 2, want: 3 })
    ));
    assert!(matches!(idx.upsert(ChunkId::new(&d, 0), d.clone(), &[1.0, f32::NAN, 0.0]), Err(IndexError::NotFinite)));
    assert!(matches!(idx.upsert(ChunkId::new(&d, 0), d.clone(), &[0.0, 0.0, 0.0]), Err(IndexError::Zero)));
    assert!(idx.search(&[1.0, 0.0], 5, None).is_err());
    assert!(idx.is_empty());
    assert!(idx.search(&[1.0, 0.0, 0.0], 5, None).expect("empty index searches").is_empty());
}

proptest! {
    /// Any sequence of upserts and removals leaves the index equal to a plain map of the survivors.
    #[test]
    fn writes_match_a_model(ops in prop::collection::vec((0u32..30, any::<bool>(), -1.0f32..1.0), 1..200)) {
        let mut idx = FlatIndex::new(2);
        let mut model = std::collections::BTreeMap::new();
        let d = doc(0);
        for (ord, insert, x) in ops {
            let id = ChunkId::new(&d, ord);
            if insert {
                idx.upsert(id.clone(), d.clone(), &[x, 1.0]).expect("valid");
                model.insert(ord, x);
            } else {
                prop_assert_eq!(idx.remove(&id).expect("in memory"), model.remove(&ord).is_some());
            }
            prop_assert_eq!(idx.len(), model.len());
        }
        let hits = idx.search(&[0.0, 1.0], 100, None).expect("search");
        let mut got: Vec<u32> = hits.iter().map(|h| h.id.parts().expect("id").1).collect();
        got.sort_unstable();
        prop_assert_eq!(got, model.keys().copied().collect::<Vec<_>>());
    }
}
