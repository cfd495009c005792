//! The one job runner: a job (index or delete one document) runs through the [`Indexer`], and its
//! outcome is recorded in the job's batch. The embed-worker Lambda runs one job per SQS message;
//! `quarry ingest`, `quarry retry`, batches started over the local API and the folder watcher run
//! many at once with [`Runner::run_all`]. Only the concurrency and [`Retries`] differ.

use futures::StreamExt;
use quarry_core::event::Severity;
use quarry_core::metric::{self, outcome as named};
use quarry_core::ports::{
    BatchOutcome, BatchTracker, BlobSource, CheckpointStore, DocumentPreparer, Embedder, EmbeddingCache,
    EventPublisher, IndexJob, JobAction, VectorWriter,
};
use quarry_core::spend::SpendLedger;
use quarry_core::{Classify, DocumentId, DocumentKey, ErrorClass, Failure, PortError};

use crate::count_error;
use crate::index::{Indexer, Outcome};

fn count(outcome: &'static str) {
    metrics::counter!(metric::DOCUMENTS, "outcome" => outcome).increment(1);
}

/// Why a paused document waits: a budget would be passed by embedding it.
pub const BUDGET_EXHAUSTED: &str = "budget_exhausted";

/// What happens to a failure that may pass next time (throttling, a busy document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// Returned as an error, for a queue to deliver the job again (SQS); nothing is recorded.
    Redeliver,
    /// Recorded in the batch as a retryable failure (or, for a busy document, left pending), for
    /// `quarry retry` or the next run: there is no queue to bring it back.
    Record,
}

/// The indexer, the tracker a job's batch is recorded in, where a batch's end with failures is
/// published, and what to do with retryable failures.
#[derive(Debug)]
pub struct Runner<'a, B, S, E, C, W, P, K, V, L> {
    pub indexer: Indexer<'a, B, S, E, C, W, P, L>,
    pub batches: &'a K,
    pub events: &'a V,
    pub retries: Retries,
}

impl<B, S, E, C, W, P, K, V, L> Runner<'_, B, S, E, C, W, P, K, V, L>
where
    B: BlobSource,
    S: CheckpointStore,
    E: Embedder,
    C: EmbeddingCache,
    W: VectorWriter,
    P: DocumentPreparer,
    K: BatchTracker,
    V: EventPublisher,
    L: SpendLedger,
{
    /// Runs one job to its end. Returns how it ended for its batch (`None` for a deletion, or for
    /// a document another worker holds, which stays pending), or, with [`Retries::Redeliver`], the
    /// error that should bring the job back.
    #[tracing::instrument(skip_all, err, fields(document = %quarry_core::DocumentId::for_key(&job.key)))]
    pub async fn run(&self, job: &IndexJob) -> Result<Option<BatchOutcome>, PortError> {
        let key = &job.key;
        if job.action == JobAction::Delete {
            self.indexer.remove(key).await?;
            count(named::DELETED);
            return Ok(None);
        }
        // What a batch counts as processed for a document that failed before it was read.
        let size = job.size.unwrap_or(0);
        let mut for_batch = None;
        let outcome = match self.indexer.index_sized(key, job.size, job.batch.as_ref()).await {
            Ok(Outcome::Indexed { chunks, bytes, usage }) => {
                // Deleted while it was being indexed, after its removal was handled: look once
                // more, so that a deleted file never stays searchable.
                if let Err(PortError::NotFound { .. }) = self.indexer.source.head(key).await {
                    self.indexer.remove(key).await?;
                }
                if usage.nanodollars > 0 {
                    let charged = crate::spend::charges(self.indexer.budget, job.batch.as_ref());
                    crate::spend::warn_if_near(self.indexer.spend, self.indexer.budget, &charged, self.events).await?;
                }
                Some(BatchOutcome::Indexed { chunks, bytes })
            }
            // Nothing was spent, nothing is lost: the document waits in its batch, which says why.
            Ok(Outcome::Paused { exhausted, .. }) => {
                let e = &exhausted;
                self.events.publish(&crate::spend::budget_event(&e.scope, e.held, e.limit, Severity::Critical)).await?;
                Some(BatchOutcome::Paused { reason: BUDGET_EXHAUSTED.to_owned() })
            }
            Ok(Outcome::Unchanged { bytes, chunks, indexed_ms }) => {
                // Checkpointed since the batch began: for the batch, its own work, from a run
                // killed between the checkpoint and the batch's record (or a duplicate delivery),
                // not a document it found already indexed. Found by killing `quarry ingest` at
                // random moments (cli/tests/it/kills.rs): the resumed batch counted them as
                // unchanged. This run itself did nothing, and says so to its caller and metrics.
                if let Some(b) = &job.batch
                    && indexed_ms >= self.batches.timing(b).await?.created_ms
                {
                    for_batch = Some(BatchOutcome::Indexed { chunks, bytes });
                }
                Some(BatchOutcome::Unchanged { bytes })
            }
            Ok(Outcome::Failed { failure, bytes }) => Some(BatchOutcome::Failed { failure, bytes }),
            Ok(Outcome::Busy) => {
                count(named::BUSY);
                match self.retries {
                    Retries::Redeliver => return Err(PortError::Conflict { operation: "index.lease" }),
                    Retries::Record => None,
                }
            }
            // Deleted after the job was made: nothing of it may stay behind, and nothing will
            // change by trying again.
            Err(e @ PortError::NotFound { .. }) => {
                count_error(&e);
                self.indexer.remove(key).await?;
                Some(BatchOutcome::Failed { failure: Failure::from_error(&e), bytes: size })
            }
            Err(e) if e.class().is_retryable() => {
                count_error(&e);
                match self.retries {
                    Retries::Redeliver => return Err(e),
                    Retries::Record => Some(BatchOutcome::Failed { failure: Failure::from_error(&e), bytes: size }),
                }
            }
            // The document is at fault (unreadable where it is): rejected, so that nothing of an
            // earlier version stays in results.
            Err(e) if e.class() == ErrorClass::BadInput => {
                count_error(&e);
                let failure = Failure::from_error(&e);
                tracing::warn!(code = e.code(), "document cannot be indexed");
                self.indexer.reject(key, &failure).await?;
                Some(BatchOutcome::Failed { failure, bytes: size })
            }
            // The system is at fault (a broken model, a full disk, a refused write): the document is
            // marked failed for `quarry retry` or an operator, and the chunks of its last good
            // version stay searchable.
            Err(e) => {
                count_error(&e);
                tracing::error!(code = e.code(), error = %quarry_core::error::chain(&e), "indexing failed; not retried");
                let failure = Failure::from_error(&e);
                self.indexer.state.fail(&DocumentId::for_key(key), key, &failure).await?;
                Some(BatchOutcome::Failed { failure, bytes: size })
            }
        };
        let name = match &outcome {
            Some(BatchOutcome::Indexed { .. }) => named::INDEXED,
            Some(BatchOutcome::Unchanged { .. }) => named::UNCHANGED,
            Some(BatchOutcome::Paused { .. }) => named::PAUSED,
            Some(BatchOutcome::Failed { failure, .. }) => {
                metrics::counter!(metric::DOCUMENT_FAILURES, "code" => failure.code.clone()).increment(1);
                named::FAILED
            }
            // Busy, counted above.
            None => return Ok(None),
        };
        count(name);
        if let (Some(batch), Some(o)) = (&job.batch, for_batch.as_ref().or(outcome.as_ref())) {
            self.batches.record(batch, key, o).await?;
            metrics::counter!(metric::BATCH_DOCUMENTS, "outcome" => name).increment(1);
            crate::batch::report_end(self.batches, self.events, batch).await?;
        }
        Ok(outcome)
    }

    /// Runs `jobs` as they come, `concurrency` at a time (their embedding calls merge when the
    /// embedder is a [`crate::CoalescingEmbedder`]), handing each result to `done` as it ends; an
    /// error `done` returns stops the run. A slot is refilled as soon as a job ends, so one large
    /// document never idles the others. `quarry ingest` and `quarry retry` run a list; `quarry
    /// serve` runs its job queue for as long as it serves.
    pub async fn run_all(
        &self,
        jobs: impl futures::Stream<Item = IndexJob>,
        concurrency: usize,
        mut done: impl FnMut(&IndexJob, Result<Option<BatchOutcome>, PortError>) -> Result<(), PortError>,
    ) -> Result<(), PortError> {
        let mut results = std::pin::pin!(
            jobs.map(|job| async move {
                let result = self.run(&job).await;
                (job, result)
            })
            .buffer_unordered(concurrency.max(1))
        );
        while let Some((job, result)) = results.next().await {
            done(&job, result)?;
        }
        Ok(())
    }
}

/// Jobs that index `keys` (with their sizes, where known) as part of `batch`: for a retry or a
/// watcher's pass.
pub fn index_jobs<'a>(
    keys: impl IntoIterator<Item = (&'a DocumentKey, Option<u64>)>,
    batch: Option<&quarry_core::BatchId>,
) -> Vec<IndexJob> {
    keys.into_iter().map(|(key, size)| IndexJob::index(key.clone(), batch.cloned(), size)).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use quarry_core::metric::{self, stage};
    use quarry_core::ports::{Embedder, ModelInfo, VectorRecord, VectorWriter};
    use quarry_core::{BatchId, Config, DocumentKey, PortError};
    use quarry_testkit::fakes::{LengthEmbedder, MemorySource, MemoryState, MemoryVectors};
    use quarry_text::{Preparer, WordPiece};

    use super::*;
    use crate::testing::Recorded;

    /// The in-memory ports a runner runs on, with the real preparer.
    struct Fixture {
        preparer: Preparer<WordPiece>,
        source: MemorySource,
        state: MemoryState,
        vectors: MemoryVectors,
        embedder: LengthEmbedder,
        events: quarry_testkit::fakes::MemoryEvents,
        budget: quarry_core::config::Budget,
    }

    impl Fixture {
        fn new() -> Self {
            let model = quarry_testkit::model_dir();
            let tokenizer = WordPiece::from_file(&model.join("tokenizer.json")).expect("tokenizer");
            Fixture {
                preparer: Preparer::new(&Config::default(), tokenizer),
                source: MemorySource::default(),
                state: MemoryState::default(),
                vectors: MemoryVectors::new(2),
                embedder: LengthEmbedder::default(),
                events: quarry_testkit::fakes::MemoryEvents::default(),
                budget: quarry_core::config::Budget::default(),
            }
        }

        #[allow(clippy::type_complexity)]
        fn runner(
            &self,
        ) -> Runner<
            '_,
            MemorySource,
            MemoryState,
            LengthEmbedder,
            MemoryState,
            MemoryVectors,
            Preparer<WordPiece>,
            MemoryState,
            quarry_testkit::fakes::MemoryEvents,
            quarry_core::spend::NoLedger,
        > {
            Runner {
                indexer: Indexer {
                    source: &self.source,
                    state: &self.state,
                    embedder: &self.embedder,
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
                retries: Retries::Record,
            }
        }
    }

    #[tokio::test]
    async fn every_outcome_and_stage_is_counted() {
        let recorded = Recorded::default();
        let f = Fixture::new();
        let (source, state) = (&f.source, &f.state);
        let runner = f.runner();
        source.put("a.txt", b"Calcium keeps bones strong.", None);
        source.put("locked.pdf", &quarry_testkit::encrypted_pdf(&["secret"]), None);
        let batch = BatchId::new("b1");
        let items: Vec<(DocumentKey, u64)> =
            ["a.txt", "locked.pdf", "gone.txt"].iter().map(|k| (DocumentKey::new(*k), 1)).collect();
        state.create(&batch, &items).await.expect("batch");
        let job = |k: &str| IndexJob::index(DocumentKey::new(k), Some(batch.clone()), None);
        for key in ["a.txt", "a.txt", "locked.pdf", "gone.txt"] {
            runner.run(&job(key)).await.expect("runs");
        }
        let delete = IndexJob { action: JobAction::Delete, ..IndexJob::index(DocumentKey::new("a.txt"), None, None) };
        runner.run(&delete).await.expect("deletes");

        let docs = |o: &str| recorded.counter(metric::DOCUMENTS, &[("outcome", o)]);
        assert_eq!((docs("indexed"), docs("unchanged"), docs("failed"), docs("deleted")), (1, 1, 2, 1));
        assert_eq!(recorded.counter(metric::DOCUMENT_FAILURES, &[("code", "encrypted_pdf")]), 1);
        assert_eq!(recorded.counter(metric::DOCUMENT_FAILURES, &[("code", "not_found")]), 1);
        assert_eq!(recorded.counter(metric::ERRORS, &[("class", "bad_input"), ("code", "not_found")]), 1);
        assert_eq!(recorded.counter(metric::BATCH_DOCUMENTS, &[]), 4, "every job of the batch");
        // Three reads (a.txt twice, the PDF); the rest only for the one document indexed.
        assert_eq!(recorded.histogram_count(metric::STAGE_LATENCY, &[("stage", stage::FETCH)]), 3);
        for s in [stage::PREPARE, stage::EMBED, stage::UPSERT, stage::CHECKPOINT] {
            assert_eq!(recorded.histogram_count(metric::STAGE_LATENCY, &[("stage", s)]), 1, "{s} once");
        }
        assert_eq!(recorded.histogram_count(metric::DOCUMENT_LATENCY, &[]), 1);
        assert_eq!(recorded.counter(metric::EMBEDDING_CALLS, &[("purpose", "index"), ("status", "ok")]), 1);
        assert_eq!(recorded.counter(metric::CHUNKS_INDEXED, &[]), 1);
        assert!(recorded.counter(metric::TOKENS_EMBEDDED, &[]) >= 5);
        assert_eq!(recorded.counter(metric::EMBEDDING_CACHE, &[("result", "miss")]), 1);
    }

    /// Vectors as [`LengthEmbedder`] makes them; bills a token per byte at 20 nanodollars.
    struct Priced(ModelInfo);

    impl Embedder for Priced {
        fn model(&self) -> &ModelInfo {
            &self.0
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
            LengthEmbedder(self.0.clone()).embed(texts).await
        }
        fn usage(&self, texts: &[String]) -> quarry_core::ports::Usage {
            let tokens = texts.iter().map(|t| t.len() as u64).sum::<u64>();
            quarry_core::ports::Usage { tokens, nanodollars: tokens * 20 }
        }
    }

    #[tokio::test]
    async fn a_budget_warns_near_its_limit_and_pauses_the_document_that_would_pass_it() {
        use quarry_core::DocumentStatus;
        use quarry_core::config::{Budget, Usd};
        use quarry_core::event::Severity;
        use quarry_core::ports::{DocumentReader, Embedder as _};
        use quarry_core::spend::{SpendLedger, SpendScope};

        let f = Fixture::new();
        let embedder = Priced(ModelInfo { id: "priced".into(), dimension: 2, max_tokens: 512 });
        let (a, b) = (&b"Calcium keeps bones strong."[..], &b"Vitamin D helps the body absorb calcium from food."[..]);
        f.source.put("a.txt", a, None);
        f.source.put("b.txt", b, None);
        let cost = |bytes: &[u8]| {
            let chunks = f.preparer.prepare(Some("x.txt"), bytes).expect("prepare").chunks;
            embedder.usage(&chunks.into_iter().map(|c| c.text).collect::<Vec<_>>()).nanodollars
        };
        let batch = BatchId::new("budgeted");
        f.state.create(&batch, &[(DocumentKey::new("a.txt"), 1), (DocumentKey::new("b.txt"), 1)]).await.expect("batch");
        // a.txt fills 90 % of the batch's budget; b.txt would pass it.
        let budget = Budget { batch_usd: Some(Usd(cost(a) * 10 / 9)), ..Budget::default() };
        let runner = Runner {
            indexer: Indexer {
                source: &f.source,
                state: &f.state,
                embedder: &embedder,
                cache: &f.state,
                writer: &f.vectors,
                preparer: &f.preparer,
                lease: Duration::from_secs(60),
                spend: &f.state,
                budget: &budget,
                hosted: None,
            },
            batches: &f.state,
            events: &f.events,
            retries: Retries::Record,
        };
        let job = |k: &str| IndexJob::index(DocumentKey::new(k), Some(batch.clone()), None);

        assert!(matches!(runner.run(&job("a.txt")).await.expect("runs"), Some(BatchOutcome::Indexed { .. })));
        let warned = f.events.published();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!((warned[0].severity, warned[0].resource.as_str()), (Severity::Warning, "batch#budgeted"));

        let paused = runner.run(&job("b.txt")).await.expect("a paused document is not an error");
        assert_eq!(paused, Some(BatchOutcome::Paused { reason: BUDGET_EXHAUSTED.into() }));
        let all = f.events.published();
        assert_eq!((all.len(), all[1].severity), (2, Severity::Critical), "{all:?}");
        let c = f.state.counters(&batch).await.expect("counters");
        assert_eq!((c.done, c.pending, c.paused, c.failed), (1, 1, 1, 0), "{c:?}");
        let status = f.state.document(&DocumentId::for_key(&DocumentKey::new("b.txt"))).await.expect("read");
        assert_eq!(status.map(|d| d.status), Some(DocumentStatus::Pending), "its lease is given back");
        let spent = f.state.spent(&SpendScope::Batch(batch.clone())).await.expect("spent");
        assert_eq!((spent.used.nanodollars, spent.reserved_nanodollars), (cost(a), 0), "only a.txt was paid for");
    }

    /// A vector store that throttles its next upsert.
    struct Throttling<'a> {
        inner: &'a MemoryVectors,
        fail: std::sync::atomic::AtomicBool,
    }

    impl VectorWriter for Throttling<'_> {
        async fn upsert(&self, records: &[VectorRecord]) -> Result<(), PortError> {
            if self.fail.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(PortError::Throttled { operation: "test.upsert", retry_after: None, source: None });
            }
            self.inner.upsert(records).await
        }
        async fn delete_from(&self, document: &DocumentId, keep: u32) -> Result<u64, PortError> {
            self.inner.delete_from(document, keep).await
        }
    }

    /// A failure worth retrying gives the lease back: the redelivery takes the document at once
    /// instead of finding it held (and, delivered again and again before the lease ends, reaching
    /// the DLQ with the document left `processing`, as injected DynamoDB throttling showed).
    #[tokio::test]
    async fn a_retryable_failure_gives_the_lease_back_for_the_redelivery() {
        use quarry_core::DocumentStatus;
        use quarry_core::ports::DocumentReader;

        let f = Fixture::new();
        f.source.put("a.txt", b"Calcium keeps bones strong.", None);
        let writer = Throttling { inner: &f.vectors, fail: std::sync::atomic::AtomicBool::new(true) };
        let runner = Runner {
            indexer: Indexer {
                source: &f.source,
                state: &f.state,
                embedder: &f.embedder,
                cache: &f.state,
                writer: &writer,
                preparer: &f.preparer,
                lease: Duration::from_secs(900),
                spend: &quarry_core::spend::NoLedger,
                budget: &f.budget,
                hosted: None,
            },
            batches: &f.state,
            events: &f.events,
            retries: Retries::Redeliver,
        };
        let job = IndexJob::index(DocumentKey::new("a.txt"), None, None);
        let err = runner.run(&job).await.expect_err("throttled");
        assert!(err.class().is_retryable(), "{err}");
        let id = DocumentId::for_key(&DocumentKey::new("a.txt"));
        let status = f.state.document(&id).await.expect("read").map(|d| d.status);
        assert_eq!(status, Some(DocumentStatus::Pending), "the lease is given back");
        let again = runner.run(&job).await.expect("the redelivery runs at once");
        assert!(matches!(again, Some(BatchOutcome::Indexed { .. })), "{again:?}");
    }

    #[tokio::test]
    async fn a_batch_that_ends_with_failures_is_published_by_the_last_outcome() {
        let f = Fixture::new();
        let (source, state, events) = (&f.source, &f.state, &f.events);
        let runner = f.runner();
        source.put("a.txt", b"Calcium keeps bones strong.", None);
        source.put("locked.pdf", &quarry_testkit::encrypted_pdf(&["secret"]), None);
        let (good, bad) = (BatchId::new("good"), BatchId::new("bad"));
        let items = |keys: &[&str]| keys.iter().map(|k| (DocumentKey::new(*k), 1)).collect::<Vec<_>>();
        state.create(&good, &items(&["a.txt"])).await.expect("batch");
        state.create(&bad, &items(&["a.txt", "locked.pdf", "gone.txt"])).await.expect("batch");
        let job = |b: &BatchId, k: &str| IndexJob::index(DocumentKey::new(k), Some(b.clone()), None);

        runner.run(&job(&good, "a.txt")).await.expect("runs");
        assert!(events.published().is_empty(), "a batch without failures says nothing");
        runner.run(&job(&bad, "locked.pdf")).await.expect("runs");
        runner.run(&job(&bad, "gone.txt")).await.expect("runs");
        assert!(events.published().is_empty(), "nothing until the batch has ended");
        runner.run(&job(&bad, "a.txt")).await.expect("runs");
        let published = events.published();
        assert_eq!(published.len(), 1, "{published:?}");
        let e = &published[0];
        assert_eq!((e.quarry_event.as_str(), e.resource.as_str()), ("batch_failed", "bad"));
        assert_eq!(e.summary, "batch bad: 2 of 3 documents failed (encrypted_pdf 1, not_found 1)");
        assert_eq!(e.labels["code.encrypted_pdf"], "1");
        assert!(!serde_json::to_string(e).expect("json").contains("locked.pdf"), "no document keys: {e:?}");

        // The last job delivered again (or a second worker that saw the same end): the same
        // occurrence, which the router sends once. A retry that changes the counts is a new end.
        runner.run(&job(&bad, "gone.txt")).await.expect("runs");
        source.put("gone.txt", b"Back again.", None);
        runner.run(&job(&bad, "gone.txt")).await.expect("runs");
        let all = events.published();
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].occurrence, all[0].occurrence);
        assert_ne!(all[2].occurrence, all[0].occurrence);
        assert_eq!(all[2].summary, "batch bad: 1 of 3 documents failed (encrypted_pdf 1)");
    }
}
