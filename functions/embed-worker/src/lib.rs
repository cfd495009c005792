//! The embed-worker handler: each SQS message is one job (index or delete one document), run
//! through the same [`Indexer`] as the embedded default.
//!
//! What comes back for redelivery is only what may pass next time: a throttled or failed call, or
//! a document another worker holds. A bad file is already recorded as failed with its reason by the
//! indexer; any other permanent error is recorded the same way here, and neither is retried. A
//! message that keeps failing reaches the DLQ by the queue's redrive policy.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use quarry_core::ports::{
    BatchTracker, BlobSource, CheckpointStore, Embedder, EmbeddingCache, IndexJob, JobAction, VectorWriter,
};
use quarry_core::{Classify, DocumentId, Failure, PortError};
use quarry_lambda::sqs_batch;
use quarry_pipeline::{Indexer, Outcome, batch_outcome};
use quarry_text::TokenCounter;

/// Documents processed at once per invocation; their embedding calls are merged.
pub const CONCURRENCY: usize = 4;

/// The indexer over the AWS ports, and the batch tracker for jobs that belong to a batch.
#[derive(Debug)]
pub struct Worker<'a, B, S, E, C, W, T: TokenCounter, K> {
    pub indexer: Indexer<'a, B, S, E, C, W, T>,
    pub batches: &'a K,
}

/// A message body that is not a job.
#[derive(Debug, thiserror::Error)]
#[error("message {message_id} is not an index job")]
pub struct BadJob {
    pub message_id: String,
    #[source]
    pub source: serde_json::Error,
}

impl<B, S, E, C, W, T, K> Worker<'_, B, S, E, C, W, T, K>
where
    B: BlobSource,
    S: CheckpointStore,
    E: Embedder,
    C: EmbeddingCache,
    W: VectorWriter,
    T: TokenCounter,
    K: BatchTracker,
{
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        sqs_batch(event, CONCURRENCY, |m| self.message(m)).await
    }

    async fn message(&self, m: SqsMessage) -> Result<(), PortError> {
        let job: IndexJob =
            serde_json::from_str(m.body.as_deref().unwrap_or_default()).map_err(|source| PortError::Permanent {
                operation: "embed_worker.decode",
                source: Box::new(BadJob { message_id: m.message_id.clone().unwrap_or_default(), source }),
            })?;
        self.job(&job).await
    }

    /// Runs one job to its end, or returns the error that should bring it back.
    #[tracing::instrument(skip_all, err, fields(document = %DocumentId::for_key(&job.key)))]
    pub async fn job(&self, job: &IndexJob) -> Result<(), PortError> {
        let (result, bytes) = match job.action {
            JobAction::Delete => {
                self.indexer.remove(&job.key).await?;
                return Ok(());
            }
            JobAction::Index => {
                let result = match self.indexer.index(&job.key).await {
                    // Deleted after the event was sent: the removal event cleans up too, but a
                    // late job must not leave anything behind.
                    Err(PortError::NotFound { what }) => {
                        self.indexer.remove(&job.key).await?;
                        Err(PortError::NotFound { what })
                    }
                    other => other,
                };
                (result, 0)
            }
        };
        if result.as_ref().is_err_and(|e| e.class().is_retryable()) {
            return result.map(|_| ());
        }
        match &result {
            Ok(Outcome::Busy) => return Err(PortError::Conflict { operation: "embed_worker.lease" }),
            Ok(Outcome::Indexed { .. }) => {
                // The object may have been deleted while it was being indexed, after its removal
                // event was handled: look once more, so a deleted file never stays searchable.
                if let Err(PortError::NotFound { .. }) = self.indexer.source.head(&job.key).await {
                    self.indexer.remove(&job.key).await?;
                }
            }
            Err(PortError::NotFound { .. }) => {}
            Err(e) => {
                tracing::error!(code = e.code(), error = %quarry_core::error::chain(e), "indexing failed; not retried");
                let document = DocumentId::for_key(&job.key);
                self.indexer.state.fail(&document, &job.key, &Failure::from_error(e)).await?;
            }
            Ok(_) => {}
        }
        if let (Some(batch), Some(outcome)) = (&job.batch, batch_outcome(&result, bytes)) {
            self.batches.record(batch, &job.key, &outcome).await?;
        }
        Ok(())
    }
}
