//! Whose fault a failure is decides what stays searchable. A fault of the system (an embedder that
//! answers with the wrong number of vectors, a store that refuses a write) marks the document
//! failed and keeps the chunks of its last good version; a fault of the document (too large to
//! take) removes them, so that nothing stale answers. A document another worker holds is left to
//! it: pending for a local run, redelivered from a queue.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quarry_core::ports::{
    BatchOutcome, CheckpointStore, DocumentReader, Embedder, IndexJob, ModelInfo, VectorRecord, VectorWriter,
};
use quarry_core::{Classify, Config, ContentHash, DocumentId, DocumentKey, DocumentStatus, ErrorClass, PortError};
use quarry_pipeline::{CoalescingEmbedder, Indexer, Retries, Runner};
use quarry_testkit::fakes::{LengthEmbedder, MemoryEvents, MemorySource, MemoryState, MemoryVectors};
use quarry_text::{Preparer, WordPiece};

/// The length embedder; once `short` is set, one vector too few.
#[derive(Default)]
struct Embedding {
    inner: LengthEmbedder,
    short: AtomicBool,
}

impl Embedder for Embedding {
    fn model(&self) -> &ModelInfo {
        self.inner.model()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        let mut vectors = self.inner.embed(texts).await?;
        if self.short.load(Ordering::SeqCst) {
            vectors.pop();
        }
        Ok(vectors)
    }
}

/// The vector store, refusing upserts for good once `refuse` is set.
struct Refusing {
    inner: MemoryVectors,
    refuse: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("the table is read-only")]
struct ReadOnly;

impl VectorWriter for Refusing {
    async fn upsert(&self, records: &[VectorRecord]) -> Result<(), PortError> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(PortError::Permanent { operation: "vectors.upsert", source: Box::new(ReadOnly) });
        }
        self.inner.upsert(records).await
    }
    async fn delete_from(&self, document: &DocumentId, keep: u32) -> Result<u64, PortError> {
        self.inner.delete_from(document, keep).await
    }
}

struct Fixture {
    source: MemorySource,
    state: MemoryState,
    vectors: Refusing,
    embedder: Embedding,
    preparer: Preparer<WordPiece>,
    events: MemoryEvents,
    budget: quarry_core::config::Budget,
}

impl Fixture {
    fn new() -> Self {
        let tokenizer = WordPiece::from_file(&quarry_testkit::model_dir().join("tokenizer.json")).expect("tokenizer");
        let mut config = Config::default();
        config.limits.max_file_bytes = 1_000;
        Fixture {
            source: MemorySource::default(),
            state: MemoryState::default(),
            vectors: Refusing { inner: MemoryVectors::new(2), refuse: AtomicBool::new(false) },
            embedder: Embedding::default(),
            preparer: Preparer::new(&config, tokenizer),
            events: MemoryEvents::default(),
            budget: quarry_core::config::Budget::default(),
        }
    }

    async fn run(&self, job: &IndexJob, retries: Retries) -> Result<Option<BatchOutcome>, PortError> {
        self.run_with(&self.embedder, job, retries).await
    }

    async fn run_with<E: Embedder>(
        &self,
        embedder: &E,
        job: &IndexJob,
        retries: Retries,
    ) -> Result<Option<BatchOutcome>, PortError> {
        let runner = Runner {
            indexer: Indexer {
                source: &self.source,
                state: &self.state,
                embedder,
                cache: &self.state,
                writer: &self.vectors,
                preparer: &self.preparer,
                lease: Duration::from_secs(60),
                spend: &quarry_core::spend::NoLedger,
                budget: &self.budget,
                hosted: None,
            },
            batches: &self.state,
            events: &self.events,
            retries,
        };
        runner.run(job).await
    }

    fn stored(&self) -> Vec<String> {
        self.vectors.inner.ids().iter().map(ToString::to_string).collect()
    }

    async fn status(&self, key: &str) -> Option<DocumentStatus> {
        let id = DocumentId::for_key(&DocumentKey::new(key));
        self.state.document(&id).await.expect("read").map(|d| d.status)
    }
}

fn job(key: &str, size: Option<u64>) -> IndexJob {
    IndexJob::index(DocumentKey::new(key), None, size)
}

/// The failure recorded for the job, which must be the system's: not retryable, the code given.
fn system_failure(outcome: Option<BatchOutcome>, code: &str, names: &str) {
    let Some(BatchOutcome::Failed { failure, .. }) = outcome else { panic!("failed: {outcome:?}") };
    assert_eq!((failure.code.as_str(), failure.retryable), (code, false), "{failure:?}");
    assert!(failure.message.contains(names), "the cause is kept in the message: {}", failure.message);
}

#[tokio::test]
async fn an_embedder_answering_short_fails_the_document_and_keeps_its_last_version() {
    let f = Fixture::new();
    f.source.put("a.txt", b"Calcium keeps bones strong.", None);
    assert!(matches!(f.run(&job("a.txt", None), Retries::Record).await, Ok(Some(BatchOutcome::Indexed { .. }))));
    let before = f.stored();

    f.source.put("a.txt", b"Calcium and vitamin D keep bones strong.", None);
    f.embedder.short.store(true, Ordering::SeqCst);
    let outcome = f.run(&job("a.txt", None), Retries::Record).await.expect("recorded, not returned");
    system_failure(outcome, "internal", "the embedder returned 0 vectors for 1 texts");
    assert_eq!(f.stored(), before, "the last good version still answers");
    assert!(matches!(f.status("a.txt").await, Some(DocumentStatus::Failed { .. })));

    // The same through the merging embedder `quarry ingest` and `quarry serve` use.
    let merging = CoalescingEmbedder::new(Embedding { short: AtomicBool::new(true), ..Embedding::default() }, 64);
    f.source.put("a.txt", b"Calcium, vitamin D and vitamin K keep bones strong.", None);
    let outcome = f.run_with(&merging, &job("a.txt", None), Retries::Record).await.expect("recorded");
    system_failure(outcome, "internal", "the embedder returned 0 vectors for 1 texts");
    assert_eq!(f.stored(), before);
}

#[tokio::test]
async fn a_store_refusing_writes_fails_the_document_and_keeps_its_last_version() {
    let f = Fixture::new();
    f.source.put("a.txt", b"Calcium keeps bones strong.", None);
    f.run(&job("a.txt", None), Retries::Record).await.expect("indexed");
    let before = f.stored();

    f.source.put("a.txt", b"Calcium and vitamin D keep bones strong.", None);
    f.vectors.refuse.store(true, Ordering::SeqCst);
    let outcome = f.run(&job("a.txt", None), Retries::Record).await.expect("recorded");
    system_failure(outcome, "internal", "the table is read-only");
    assert_eq!(f.stored(), before);
    // From a queue the same: recorded, not redelivered, since a retry would meet the same refusal.
    f.source.put("b.txt", b"Iron is carried by haemoglobin.", None);
    let outcome = f.run(&job("b.txt", None), Retries::Redeliver).await.expect("recorded");
    system_failure(outcome, "internal", "vectors.upsert failed");
}

#[tokio::test]
async fn a_document_over_the_size_limit_is_refused_unread_and_its_old_version_removed() {
    let f = Fixture::new();
    f.source.put("a.txt", b"Calcium keeps bones strong.", None);
    f.run(&job("a.txt", None), Retries::Record).await.expect("indexed");
    assert_eq!(f.stored().len(), 1);

    // The job says 5,000 bytes: refused on that, before any read (the source still holds the
    // small file, which would index fine if it were read).
    let Ok(Some(BatchOutcome::Failed { failure, .. })) = f.run(&job("a.txt", Some(5_000)), Retries::Record).await
    else {
        panic!("refused");
    };
    assert_eq!((failure.code.as_str(), failure.retryable), ("file_too_large", false), "{failure:?}");
    assert!(f.stored().is_empty(), "nothing of the earlier version answers");
    assert!(matches!(f.status("a.txt").await, Some(DocumentStatus::Failed { .. })));
}

#[tokio::test]
async fn a_document_another_worker_holds_stays_pending_or_comes_back_from_the_queue() {
    let f = Fixture::new();
    let text = b"Magnesium relaxes muscles.";
    f.source.put("a.txt", text, None);
    let id = DocumentId::for_key(&DocumentKey::new("a.txt"));
    f.state.acquire(&id, &ContentHash::of(text), Duration::from_secs(60)).await.expect("held elsewhere");

    assert_eq!(f.run(&job("a.txt", None), Retries::Record).await.expect("no error"), None, "left to its holder");
    let err = f.run(&job("a.txt", None), Retries::Redeliver).await.expect_err("back to the queue");
    assert!(matches!(err, PortError::Conflict { .. }) && err.class() == ErrorClass::Retryable, "{err}");
    assert!(f.stored().is_empty());
    assert!(matches!(f.status("a.txt").await, Some(DocumentStatus::Processing { .. })));
}
