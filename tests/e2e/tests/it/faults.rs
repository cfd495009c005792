//! An embed-worker killed mid-document on moto: once between its vector upsert and its
//! checkpoint, once in the middle of its upsert (half the chunks written). A kill is the handler's
//! future dropped at that point, as a process death leaves it: nothing after runs, the lease stays
//! held, the message stays on the queue. Its redelivery, once the lease has expired, completes:
//! every chunk once, the checkpoint last, and `quarry verify` finds the stores (S3, DynamoDB, S3
//! Vectors and the published keyword index) in step.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quarry_core::DocumentKey;
use quarry_core::ports::{DocumentReader, VectorRecord, VectorWriter};
use quarry_core::{DocumentId, DocumentStatus, PortError};
use quarry_e2e::{Stack, sqs_event};
use quarry_keyword::KeywordReplica;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    AfterUpsert,
    MidUpsert,
}

/// Writes through to `inner` until armed; then its next upsert writes all (or half) of its
/// records, signals, and never returns.
struct Killing<'a, W> {
    inner: &'a W,
    kill: Kill,
    armed: AtomicBool,
    killed: tokio::sync::Notify,
}

impl<W: VectorWriter> VectorWriter for Killing<'_, W> {
    async fn upsert(&self, records: &[VectorRecord]) -> Result<(), PortError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            let written = if self.kill == Kill::MidUpsert { &records[..records.len() / 2] } else { records };
            self.inner.upsert(written).await?;
            self.killed.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.upsert(records).await
    }

    async fn delete_from(&self, document: &DocumentId, keep: u32) -> Result<u64, PortError> {
        self.inner.delete_from(document, keep).await
    }
}

const LEASE: Duration = Duration::from_millis(1500);

async fn killed_then_redelivered(kill: Kill) {
    let stack = Stack::new().await;
    let text: String =
        (0..150).map(|i| format!("Sentence {i} of the orchard notes covers pruning and grafting. ")).collect();
    stack.put("notes/long.md", format!("# Orchard\n\n{text}").into(), &[]).await;
    let ingest = stack.ingest();
    stack.drain(&stack.created.events_url, 1, |e| ingest.handle(e)).await;
    let jobs = stack.receive(&stack.created.resources.queue_url).await;
    assert_eq!(jobs.len(), 1, "one job");
    let event = sqs_event(&jobs);

    let killing =
        Killing { inner: &stack.writer, kill, armed: AtomicBool::new(true), killed: tokio::sync::Notify::new() };
    let worker = stack.worker_through(&stack.embedder, &killing, LEASE);
    tokio::select! {
        r = worker.handle(event.clone()) => panic!("{kill:?}: the worker finished instead of dying: {r:?}"),
        () = killing.killed.notified() => {}
    }
    let id = DocumentId::for_key(&DocumentKey::new("notes/long.md"));
    let status = stack.state.document(&id).await.expect("state").map(|d| d.status);
    assert!(matches!(status, Some(DocumentStatus::Processing { attempt: 1 })), "{kill:?}: left mid-flight: {status:?}");
    let stored = stack.vector_keys().await.len();
    assert!(stored > 0, "{kill:?}: something was written before the kill");

    // SQS hands the message out again once its visibility ends; the lease has expired by then.
    tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
    let again = stack.worker_through(&stack.embedder, &stack.writer, LEASE);
    let response = again.handle(event).await;
    assert!(response.batch_item_failures.is_empty(), "{kill:?}: the redelivery completes: {response:?}");
    let Some(DocumentStatus::Indexed { chunks }) = stack.state.document(&id).await.expect("state").map(|d| d.status)
    else {
        panic!("{kill:?}: not indexed after the redelivery")
    };
    let keys = stack.vector_keys().await;
    assert_eq!(keys.len(), chunks as usize, "{kill:?}: every chunk once: {keys:?}");
    assert!(chunks >= 2 && (kill == Kill::AfterUpsert || stored < keys.len()), "{kill:?}: {stored} then {chunks}");

    let indexer = stack.keyword_indexer();
    let changes = stack.created.resources.keyword_queue_url.clone().expect("provisioned");
    stack.drain(&changes, 1, |e| quarry_keyword_indexer::handle(&indexer, e)).await;
    let keywords = KeywordReplica::new(stack.files.clone(), Duration::ZERO);
    let report = quarry_pipeline::verify::verify(&stack.source, "", &stack.state, &stack.vectors, Some(&keywords))
        .await
        .expect("verify");
    assert!(report.is_clean(), "{kill:?}: no orphan, no stale tail, no drift: {report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_upsert_and_checkpoint_is_completed_by_the_redelivery() {
    killed_then_redelivered(Kill::AfterUpsert).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_upsert_is_completed_by_the_redelivery() {
    killed_then_redelivered(Kill::MidUpsert).await;
}

/// DynamoDB and S3 Vectors failing half their data-plane calls (throttling and 5xx, in each
/// service's error format, injected by the moto launcher): the SDK's retries and SQS's redeliveries
/// carry every document through, each indexed once, and the stores end in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_vector_stores_failing_half_their_calls_leave_every_document_indexed_once() {
    let stack = Stack::named("faults50").await;
    let long: String = (0..120).map(|i| format!("Sentence {i} about irrigation schedules and soil. ")).collect();
    stack.put("docs/long.md", format!("# Irrigation\n\n{long}").into(), &[]).await;
    let keys: Vec<String> = (0..5).map(|i| format!("docs/note-{i}.txt")).collect();
    for (i, key) in keys.iter().enumerate() {
        stack.put(key, format!("Note {i}: prune the pear trees in row {i} before the frost.").into(), &[]).await;
    }
    let ingest = stack.ingest();
    let (_, ingest_failures) = stack.drain(&stack.created.events_url, 1, |e| ingest.handle(e)).await;
    // As deployed: a failed message comes back after the queue's visibility timeout, which
    // outlasts the lease (scaled down: 2 s and 1 s).
    let worker = stack.worker_through(&stack.embedder, &stack.writer, Duration::from_secs(1));
    let (_, worker_failures) =
        stack.drain_with(&stack.created.resources.queue_url, 1, Duration::from_secs(2), |e| worker.handle(e)).await;
    let indexer = stack.keyword_indexer();
    let changes = stack.created.resources.keyword_queue_url.clone().expect("provisioned");
    stack.drain(&changes, 1, |e| quarry_keyword_indexer::handle(&indexer, e)).await;
    assert!(ingest_failures + worker_failures > 0, "faults reached the handlers past the SDK's retries");

    // The checks read through the same faulty stores: each read is tried until it gets through.
    async fn through<T, F: std::future::Future<Output = Result<T, PortError>>>(f: impl Fn() -> F) -> T {
        for _ in 0..7 {
            if let Ok(v) = f().await {
                return v;
            }
        }
        f().await.expect("a read through the faults")
    }
    let mut total = 0;
    for key in keys.iter().map(String::as_str).chain(["docs/long.md"]) {
        let id = DocumentId::for_key(&DocumentKey::new(key));
        match through(|| stack.state.document(&id)).await.map(|d| d.status) {
            Some(DocumentStatus::Indexed { chunks }) => total += chunks as usize,
            other => panic!("{key}: {other:?}"),
        }
    }
    let keywords = KeywordReplica::new(stack.files.clone(), Duration::ZERO);
    let report =
        through(|| quarry_pipeline::verify::verify(&stack.source, "", &stack.state, &stack.vectors, Some(&keywords)))
            .await;
    assert_eq!(report.stored_chunks, total as u64, "every chunk once");
    assert!(report.is_clean(), "{report:?}");
}
