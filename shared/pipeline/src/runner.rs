//! The one job runner: a job (index or delete one document) runs through the [`Indexer`], and its
//! outcome is recorded in the job's batch. The embed-worker Lambda runs one job per SQS message;
//! `quarry ingest`, `quarry retry`, batches started over the local API and the folder watcher run
//! many at once with [`Runner::run_all`]. Only the concurrency and [`Retries`] differ.

use futures::StreamExt;
use quarry_core::ports::{
    BatchOutcome, BatchTracker, BlobSource, CheckpointStore, DocumentPreparer, Embedder, EmbeddingCache, IndexJob,
    JobAction, VectorWriter,
};
use quarry_core::{Classify, DocumentId, DocumentKey, ErrorClass, Failure, PortError};

use crate::index::{Indexer, Outcome};

/// What happens to a failure that may pass next time (throttling, a busy document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// Returned as an error, for a queue to deliver the job again (SQS); nothing is recorded.
    Redeliver,
    /// Recorded in the batch as a retryable failure (or, for a busy document, left pending), for
    /// `quarry retry` or the next run: there is no queue to bring it back.
    Record,
}

/// The indexer, the tracker a job's batch is recorded in, and what to do with retryable failures.
#[derive(Debug)]
pub struct Runner<'a, B, S, E, C, W, P, K> {
    pub indexer: Indexer<'a, B, S, E, C, W, P>,
    pub batches: &'a K,
    pub retries: Retries,
}

impl<B, S, E, C, W, P, K> Runner<'_, B, S, E, C, W, P, K>
where
    B: BlobSource,
    S: CheckpointStore,
    E: Embedder,
    C: EmbeddingCache,
    W: VectorWriter,
    P: DocumentPreparer,
    K: BatchTracker,
{
    /// Runs one job to its end. Returns how it ended for its batch (`None` for a deletion, or for
    /// a document another worker holds, which stays pending), or, with [`Retries::Redeliver`], the
    /// error that should bring the job back.
    #[tracing::instrument(skip_all, err, fields(document = %quarry_core::DocumentId::for_key(&job.key)))]
    pub async fn run(&self, job: &IndexJob) -> Result<Option<BatchOutcome>, PortError> {
        let key = &job.key;
        if job.action == JobAction::Delete {
            self.indexer.remove(key).await?;
            return Ok(None);
        }
        // What a batch counts as processed for a document that failed before it was read.
        let size = job.size.unwrap_or(0);
        let outcome = match self.indexer.index_sized(key, job.size).await {
            Ok(Outcome::Indexed { chunks, bytes }) => {
                // Deleted while it was being indexed, after its removal was handled: look once
                // more, so that a deleted file never stays searchable.
                if let Err(PortError::NotFound { .. }) = self.indexer.source.head(key).await {
                    self.indexer.remove(key).await?;
                }
                Some(BatchOutcome::Indexed { chunks, bytes })
            }
            Ok(Outcome::Unchanged { bytes }) => Some(BatchOutcome::Unchanged { bytes }),
            Ok(Outcome::Failed { failure, bytes }) => Some(BatchOutcome::Failed { failure, bytes }),
            Ok(Outcome::Busy) => match self.retries {
                Retries::Redeliver => return Err(PortError::Conflict { operation: "index.lease" }),
                Retries::Record => None,
            },
            // Deleted after the job was made: nothing of it may stay behind, and nothing will
            // change by trying again.
            Err(e @ PortError::NotFound { .. }) => {
                self.indexer.remove(key).await?;
                Some(BatchOutcome::Failed { failure: Failure::from_error(&e), bytes: size })
            }
            Err(e) if e.class().is_retryable() => match self.retries {
                Retries::Redeliver => return Err(e),
                Retries::Record => Some(BatchOutcome::Failed { failure: Failure::from_error(&e), bytes: size }),
            },
            // The document is at fault (unreadable where it is): rejected, so that nothing of an
            // earlier version stays in results.
            Err(e) if e.class() == ErrorClass::BadInput => {
                let failure = Failure::from_error(&e);
                tracing::warn!(code = e.code(), "document cannot be indexed");
                self.indexer.reject(key, &failure).await?;
                Some(BatchOutcome::Failed { failure, bytes: size })
            }
            // The system is at fault (a broken model, a full disk, a refused write): the document is
            // marked failed for `quarry retry` or an operator, and the chunks of its last good
            // version stay searchable.
            Err(e) => {
                tracing::error!(code = e.code(), error = %quarry_core::error::chain(&e), "indexing failed; not retried");
                let failure = Failure::from_error(&e);
                self.indexer.state.fail(&DocumentId::for_key(key), key, &failure).await?;
                Some(BatchOutcome::Failed { failure, bytes: size })
            }
        };
        if let (Some(batch), Some(o)) = (&job.batch, &outcome) {
            self.batches.record(batch, key, o).await?;
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
