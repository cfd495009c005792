//! The embed-worker handler: each SQS message is one job (index or delete one document), run by
//! the pipeline's [`Runner`], the same runner as the embedded default's batches.
//!
//! What comes back for redelivery is only what may pass next time: a throttled or failed call, or
//! a document another worker holds ([`Retries::Redeliver`]). A bad file, or any other permanent
//! failure, is rejected with its reason by the runner and not retried. A message that keeps
//! failing reaches the DLQ by the queue's redrive policy.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use quarry_core::PortError;
use quarry_core::ports::{
    BatchTracker, BlobSource, CheckpointStore, DocumentPreparer, Embedder, EmbeddingCache, EventPublisher, IndexJob,
    VectorWriter,
};
use quarry_core::spend::SpendLedger;
use quarry_lambda::sqs_batch;
use quarry_pipeline::{Indexer, Retries, Runner};

/// Documents processed at once per invocation; their embedding calls are merged.
pub const CONCURRENCY: usize = 4;

/// The job runner over the AWS ports.
#[derive(Debug)]
pub struct Worker<'a, B, S, E, C, W, P, K, V, L> {
    pub runner: Runner<'a, B, S, E, C, W, P, K, V, L>,
}

/// A message body that is not a job.
#[derive(Debug, thiserror::Error)]
#[error("message {message_id} is not an index job")]
pub struct BadJob {
    pub message_id: String,
    #[source]
    pub source: serde_json::Error,
}

impl<'a, B, S, E, C, W, P, K, V, L> Worker<'a, B, S, E, C, W, P, K, V, L>
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
    /// The indexer, the tracker that records jobs of a batch, and where a batch's end with
    /// failures is published; retryable failures go back to the queue.
    pub fn new(indexer: Indexer<'a, B, S, E, C, W, P, L>, batches: &'a K, events: &'a V) -> Self {
        Worker { runner: Runner { indexer, batches, events, retries: Retries::Redeliver } }
    }

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
    pub async fn job(&self, job: &IndexJob) -> Result<(), PortError> {
        self.runner.run(job).await.map(|_| ())
    }
}
