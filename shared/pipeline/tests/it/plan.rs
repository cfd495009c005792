//! Planning a batch: validation first. Every document a request names is screened before any is
//! read whole; refused ones are rejected (their earlier versions leave the index) and recorded
//! with their reason, keys that name nothing are reported; the batch's id follows from its
//! content and tenant, so the same request is the same batch and a changed file is a new one.

use quarry_core::config::Limits;
use quarry_core::event::kind;
use quarry_core::ports::{BatchRequest, BatchTracker, BlobInfo, BlobSource};
use quarry_core::{DocumentKey, PortError};
use quarry_pipeline::{Outcome, Planner, batch_id};
use quarry_testkit::fakes::{MemoryEvents, MemorySource};

use crate::reconcile::{Stores, id};

/// A source whose reads of the first bytes are throttled: the listing works, screening cannot.
struct Throttled(MemorySource);

impl BlobSource for Throttled {
    async fn head(&self, key: &DocumentKey) -> Result<BlobInfo, PortError> {
        self.0.head(key).await
    }
    async fn get(&self, key: &DocumentKey) -> Result<quarry_core::ports::Blob, PortError> {
        self.0.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, PortError> {
        self.0.list(prefix).await
    }
    async fn peek(&self, _: &DocumentKey, _: usize) -> Result<Vec<u8>, PortError> {
        Err(PortError::Throttled { operation: "source.peek", retry_after: None, source: None })
    }
}

fn planner<'a, B: BlobSource>(
    s: &'a Stores,
    source: &'a B,
    events: &'a MemoryEvents,
    limits: &'a Limits,
) -> Planner<
    'a,
    B,
    quarry_testkit::fakes::MemoryState,
    quarry_testkit::fakes::MemoryState,
    quarry_testkit::fakes::MemoryVectors,
    MemoryEvents,
> {
    Planner { source, tracker: &s.state, state: &s.state, writer: &s.vectors, events, limits, hosted: None }
}

fn request(prefix: &str, keys: &[&str]) -> BatchRequest {
    BatchRequest { prefix: Some(prefix.to_owned()), keys: keys.iter().map(|k| DocumentKey::new(*k)).collect() }
}

#[tokio::test]
async fn a_batch_is_screened_recorded_and_named_before_any_document_is_read() {
    let s = Stores::new();
    let events = MemoryEvents::default();
    let limits = Limits { max_file_bytes: 100, ..Limits::default() };
    // big.txt was indexed while small; it has grown past the limit since.
    s.source.put("docs/big.txt", b"Zinc helps wounds heal.", None);
    assert!(matches!(s.index("docs/big.txt").await, Outcome::Indexed { .. }));
    s.source.put("docs/big.txt", &[b'z'; 200], None);
    s.source.put("docs/a.txt", b"Calcium keeps bones strong.", None);
    s.source.put("docs/img.png", b"\x89PNG\r\n\x1a\n....", None);
    s.source.put("elsewhere.txt", b"Not under the prefix.", None);

    let plan = planner(&s, &s.source, &events, &limits)
        .plan(&request("docs/", &["docs/missing.txt"]), &[])
        .await
        .expect("plan");
    let jobs: Vec<(&str, Option<u64>)> = plan.jobs.iter().map(|j| (j.key.as_str(), j.size)).collect();
    assert_eq!(jobs, [("docs/a.txt", Some(27))], "the one document that passed, with its size");
    assert!(plan.jobs.iter().all(|j| j.batch.as_ref() == Some(&plan.started.batch)));
    let refused: Vec<(&str, &str)> = plan.refused.iter().map(|(k, f)| (k.as_str(), f.code.as_str())).collect();
    assert_eq!(refused, [("docs/big.txt", "file_too_large"), ("docs/img.png", "unsupported_type")]);
    assert_eq!(plan.started.missing, [DocumentKey::new("docs/missing.txt")]);
    assert_eq!(plan.started.documents, 4);
    assert_eq!(plan.listed.len(), 3, "what the prefix listed, refused or not");

    let c = s.state.counters(&plan.started.batch).await.expect("counters");
    assert_eq!((c.total, c.pending, c.failed, c.done), (4, 1, 3, 0), "the counts tell the story up front: {c:?}");
    let failures = s.state.failures(&plan.started.batch).await.expect("failures");
    let codes: Vec<(&str, &str)> = failures.iter().map(|(k, f)| (k.as_str(), f.code.as_str())).collect();
    assert!(codes.contains(&("docs/missing.txt", "not_found")), "{codes:?}");
    assert!(
        s.vectors.ids().iter().all(|c| c.parts().is_some_and(|(d, _)| d != id("docs/big.txt"))),
        "the refused file's earlier version no longer answers"
    );
    assert!(events.published().is_empty(), "a document is still to run: the batch has not ended");

    // The same request over the same content is the same batch; a changed file makes a new one.
    let again = planner(&s, &s.source, &events, &limits).plan(&request("docs/", &["docs/missing.txt"]), &[]).await;
    assert_eq!(again.expect("plan").started.batch, plan.started.batch);
    s.source.put("docs/a.txt", b"Calcium keeps bones strong and teeth too.", None);
    let changed = planner(&s, &s.source, &events, &limits).plan(&request("docs/", &["docs/missing.txt"]), &[]).await;
    assert_ne!(changed.expect("plan").started.batch, plan.started.batch);
    assert!(plan.started.batch.as_str().starts_with("b-"), "the default tenant's batch: {}", plan.started.batch);
}

#[tokio::test]
async fn a_batch_of_refused_documents_ends_at_once_and_says_so() {
    let s = Stores::new();
    let events = MemoryEvents::default();
    let limits = Limits::default();
    s.source.put("tenants/acme/empty.txt", b"", None);
    s.source.put("tenants/acme/tool.exe", b"MZ\x90\x00binary", None);

    let plan = planner(&s, &s.source, &events, &limits).plan(&request("tenants/acme/", &[]), &[]).await.expect("plan");
    assert!(plan.jobs.is_empty());
    let batch = &plan.started.batch;
    assert!(batch.as_str().starts_with("t-acme-"), "the tenant's own batch: {batch}");
    let published = events.published();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(
        (published[0].quarry_event.as_str(), published[0].resource.as_str()),
        (kind::BATCH_FAILED, batch.as_str())
    );
    assert_eq!(published[0].labels["code.empty_file"], "1");
    assert_eq!(published[0].labels["code.unsupported_type"], "1");
}

#[tokio::test]
async fn a_throttled_source_stops_the_plan_before_a_batch_is_recorded() {
    let s = Stores::new();
    let events = MemoryEvents::default();
    let limits = Limits::default();
    s.source.put("a.txt", b"Calcium keeps bones strong.", None);
    let throttled = Throttled(s.source.clone());

    let err = planner(&s, &throttled, &events, &limits).plan(&request("", &[]), &[]).await.expect_err("throttled");
    assert!(matches!(err, PortError::Throttled { .. }), "{err}");
    // No batch was recorded under the id the request would have had: nothing half-made.
    let listed = s.source.list("").await.expect("list");
    let would_be = batch_id(Some(""), listed.iter().map(|b| (&b.key, b.version.as_deref(), b.size)));
    let missing = s.state.counters(&would_be).await.expect_err("no such batch");
    assert!(matches!(missing, PortError::NotFound { .. }), "{missing}");
    let plan = planner(&s, &s.source, &events, &limits).plan(&request("", &[]), &[]).await.expect("plan");
    assert_eq!(plan.started.batch, would_be, "the retried request makes it");
}
