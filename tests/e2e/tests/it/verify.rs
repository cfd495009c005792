//! Reconciliation on the AWS stores (moto): a bucket indexed through the real handlers, every kind
//! of drift injected through the adapters, found by `quarry_pipeline::verify` over S3, DynamoDB,
//! S3 Vectors and the published keyword index, repaired (deletions through the keyword feed, what
//! must be indexed queued for the embed-workers), and after the queues drain, found clean with the
//! same chunks as before.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use quarry_core::census::VectorCensus;
use quarry_core::keywords::ChunkChange;
use quarry_core::ports::{CheckpointStore, JobQueue, VectorWriter};
use quarry_core::{DocumentId, DocumentKey};
use quarry_e2e::Stack;
use quarry_keyword::KeywordReplica;
use quarry_pipeline::verify::{self, DriftKind, Report};

fn id(key: &str) -> DocumentId {
    DocumentId::for_key(&DocumentKey::new(key))
}

fn kinds(report: &Report, key: &str) -> Vec<DriftKind> {
    report.drift.iter().filter(|d| d.document == id(key)).map(|d| d.kind).collect()
}

async fn run(stack: &Stack) -> Report {
    let keywords = KeywordReplica::new(stack.files.clone(), Duration::ZERO);
    verify::verify(&stack.source, "", &stack.state, &stack.vectors, Some(&keywords)).await.expect("verify")
}

/// Events into ingest, jobs into the embed-worker, changes into the keyword indexer.
async fn settle(stack: &Stack) {
    let r = &stack.created.resources;
    let ingest = stack.ingest();
    stack.drain(&stack.created.events_url, 1, |e| ingest.handle(e)).await;
    let worker = stack.worker();
    stack.drain(&r.queue_url, 1, |e| worker.handle(e)).await;
    let indexer = stack.keyword_indexer();
    let changes = r.keyword_queue_url.clone().expect("provisioned");
    stack.drain(&changes, 1, |e| quarry_keyword_indexer::handle(&indexer, e)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_on_the_aws_stores_is_found_and_repaired() {
    let stack = Stack::new().await;
    let long: String =
        (0..120).map(|i| format!("Sentence {i} of the orchard notes covers pruning and watering. ")).collect();
    stack.put("notes/a.md", format!("# Orchard\n\n{long}").into(), &[]).await;
    for (key, text) in
        [("notes/b.txt", "Prime the pump."), ("notes/c.txt", "Bees need clover."), ("notes/d.txt", "Rust sleeps.")]
    {
        stack.put(key, text.into(), &[]).await;
    }
    settle(&stack).await;
    let clean = run(&stack).await;
    assert!(clean.is_clean(), "{clean:?}");
    let before = stack.vector_keys().await;
    assert!(before.iter().filter(|k| k.starts_with(id("notes/a.md").as_str())).count() >= 2, "{before:?}");

    // The drift, through the adapters (no change sent: as a lost message or a hand edit leaves it).
    stack.vectors.delete_from(&id("notes/a.md"), 1).await.expect("cut a");
    stack.state.forget(&id("notes/d.txt")).await.expect("forget d");
    // Their events lost.
    stack.delete("notes/c.txt").await;
    stack.put("notes/e.txt", "Elderberries ripen late.".into(), &[]).await;
    stack.clients.sqs.purge_queue().queue_url(&stack.created.events_url).send().await.expect("purge");
    // The keyword index told b.txt has no chunks: its words vanish from keyword search alone.
    let indexer = stack.keyword_indexer();
    indexer.apply(&[ChunkChange { document: id("notes/b.txt"), chunks: 0 }]).await.expect("publish");

    let found = run(&stack).await;
    assert_eq!(kinds(&found, "notes/a.md"), [DriftKind::MissingVectors, DriftKind::KeywordsOutOfStep], "{found:?}");
    assert_eq!(kinds(&found, "notes/b.txt"), [DriftKind::KeywordsOutOfStep]);
    assert_eq!(kinds(&found, "notes/c.txt"), [DriftKind::ObjectGone]);
    assert_eq!(kinds(&found, "notes/d.txt"), [DriftKind::OrphanVectors, DriftKind::Unindexed]);
    assert_eq!(kinds(&found, "notes/e.txt"), [DriftKind::Unindexed]);

    let keyword_feed = stack.writer.feed.clone();
    let repaired =
        verify::repair(&found, &stack.state, &stack.writer, None, keyword_feed.as_ref()).await.expect("repair");
    let mut reindex: Vec<&str> = repaired.reindex.iter().map(DocumentKey::as_str).collect();
    reindex.sort_unstable();
    assert_eq!(reindex, ["notes/a.md", "notes/d.txt", "notes/e.txt"]);
    let jobs = quarry_pipeline::index_jobs(repaired.reindex.iter().map(|k| (k, None)), None);
    stack.queue.enqueue(&jobs).await.expect("enqueue");
    settle(&stack).await;

    let after = run(&stack).await;
    assert!(after.is_clean(), "{after:?}");
    let now = stack.vector_keys().await;
    let c = id("notes/c.txt");
    let e = id("notes/e.txt");
    let expected: Vec<&String> = before.iter().filter(|k| !k.starts_with(c.as_str())).collect();
    assert_eq!(now.iter().filter(|k| !k.starts_with(e.as_str())).collect::<Vec<_>>(), expected);
    let keywords = KeywordReplica::new(stack.files.clone(), Duration::ZERO);
    assert_eq!(keywords.stored().await.expect("census"), stack.vectors.stored().await.expect("census"));
}
