//! The census ports (`quarry verify`): every document each store holds, listed.

use std::time::Duration;

use quarry_core::census::{StateCensus, StoredChunks, VectorCensus};
use quarry_core::ports::{Checkpoint, CheckpointStore, VectorWriter};
use quarry_core::{ContentHash, DocumentStatus, Failure};

use super::{doc, record};

/// Indexed, failed and in-flight documents are all listed, with their keys and chunk counts; a
/// forgotten one is not.
pub async fn state_census<S: CheckpointStore + StateCensus>(store: &S) {
    let ((ka, a), (kb, b), (_, c), (kd, d)) =
        (doc("census/a.txt"), doc("census/b.txt"), doc("census/c.txt"), doc("census/d.txt"));
    let long = Duration::from_secs(60);
    for id in [&a, &b, &c, &d] {
        store.acquire(id, &ContentHash::of(id.as_str().as_bytes()), long).await.expect("acquire");
    }
    let checkpoint = |document, key, chunks| Checkpoint {
        document,
        key,
        content_hash: ContentHash::of(b"x"),
        chunks,
        model: "m".into(),
        handle: None,
    };
    store.checkpoint(&checkpoint(a.clone(), ka.clone(), 3)).await.expect("checkpoint");
    let failure = Failure { code: "unsupported_format".into(), message: "no".into(), retryable: false };
    store.fail(&b, &kb, &failure).await.expect("fail");
    store.checkpoint(&checkpoint(d.clone(), kd, 1)).await.expect("checkpoint");
    store.forget(&d).await.expect("forget");

    let listed = store.documents().await.expect("census");
    let find = |id| listed.iter().find(|r| &r.id == id);
    let got = find(&a).expect("an indexed document is listed");
    assert_eq!((&got.key, &got.status), (&Some(ka), &DocumentStatus::Indexed { chunks: 3 }));
    let got = find(&b).expect("a failed document is listed");
    assert_eq!((&got.key, &got.status), (&Some(kb), &DocumentStatus::Failed { failure }));
    assert!(
        matches!(find(&c).map(|r| &r.status), Some(DocumentStatus::Processing { .. })),
        "a document in flight is listed as such"
    );
    assert!(find(&d).is_none(), "a forgotten document is not listed");
}

/// Each document's stored ordinals, holes and tails included; what `delete_from` removed is gone.
pub async fn vector_census<S: VectorWriter + VectorCensus>(store: &S, dim: usize) {
    let ((_, a), (_, b)) = (doc("census/vectors-a.md"), doc("census/vectors-b.md"));
    let v = || -> Vec<f32> { (0..dim).map(|j| if j == 0 { 1.0 } else { 0.5 }).collect() };
    let recs: Vec<_> =
        [(&a, 0), (&a, 1), (&a, 2), (&b, 0), (&b, 5)].into_iter().map(|(d, o)| record(d, o, v())).collect();
    store.upsert(&recs).await.expect("upsert");
    let of = |listed: &[StoredChunks], id| listed.iter().find(|s| &s.document == id).map(|s| s.ordinals.clone());
    let listed = store.stored().await.expect("census");
    assert_eq!(of(&listed, &a), Some(vec![0, 1, 2]));
    assert_eq!(of(&listed, &b), Some(vec![0, 5]), "a hole and a tail are as stored");
    store.delete_from(&a, 1).await.expect("delete the tail");
    store.delete_from(&b, 0).await.expect("delete all");
    let listed = store.stored().await.expect("census");
    assert_eq!(of(&listed, &a), Some(vec![0]));
    assert_eq!(of(&listed, &b), None, "a document with no chunk left is not listed");
}
