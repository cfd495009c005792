//! The ingest handler: S3 event notifications, delivered through SQS, become jobs.
//!
//! A created object is screened on what the event already says (size, kind of file: the one rule,
//! [`quarry_core::format::screen`]) and, when it passes, sent to the jobs queue as a small pointer
//! message; one that cannot be indexed is rejected with its reason, without a download
//! ([`quarry_pipeline::reject`]: any chunks of an earlier version leave the index). A removed
//! object is forgotten here ([`quarry_pipeline::forget`]). `s3:TestEvent`, folder markers
//! and other buckets' events are ignored.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use quarry_core::config::Limits;
use quarry_core::format::screen;
use quarry_core::ports::{CheckpointStore, IndexJob, JobQueue, VectorWriter};
use quarry_core::{Classify, DocumentId, DocumentKey, Failure, PortError};
use quarry_lambda::{S3Change, s3_changes, sqs_batch};

/// Messages handled at once: each is a few small calls.
pub const CONCURRENCY: usize = 8;

/// The ports and settings the handler needs, built once per cold start.
#[derive(Debug)]
pub struct Ingest<'a, Q, S, W> {
    pub queue: &'a Q,
    pub state: &'a S,
    pub writer: &'a W,
    pub limits: &'a Limits,
    /// The documents bucket: events from anywhere else are a wiring mistake, not documents.
    pub bucket: &'a str,
    /// The OpenAI vector store, where it holds the documents: a removed or refused document's
    /// file leaves it.
    pub hosted: Option<&'a dyn quarry_core::hosted::HostedStore>,
}

/// A message body that is not an S3 notification.
#[derive(Debug, thiserror::Error)]
#[error("message {message_id} is not an S3 event notification")]
pub struct BadMessage {
    pub message_id: String,
    #[source]
    pub source: quarry_lambda::NotAnS3Event,
}

impl<Q: JobQueue, S: CheckpointStore, W: VectorWriter> Ingest<'_, Q, S, W> {
    /// One SQS batch of S3 notifications; retryable failures come back for redelivery.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        sqs_batch(event, CONCURRENCY, |m| self.message(m)).await
    }

    async fn message(&self, m: SqsMessage) -> Result<(), PortError> {
        let changes = s3_changes(m.body.as_deref().unwrap_or_default()).map_err(|source| PortError::Permanent {
            operation: "ingest.decode",
            source: Box::new(BadMessage { message_id: m.message_id.clone().unwrap_or_default(), source }),
        })?;
        let mut jobs = Vec::new();
        for change in changes {
            if let Some(job) = self.change(change).await? {
                jobs.push(job);
            }
        }
        self.queue.enqueue(&jobs).await
    }

    /// Handles one change; returns the job to send for a created object that passed screening.
    #[tracing::instrument(skip_all, err)]
    pub async fn change(&self, change: S3Change) -> Result<Option<IndexJob>, PortError> {
        match change {
            S3Change::Created { bucket, key, size, etag } => {
                if bucket != self.bucket {
                    tracing::warn!(bucket, "event from another bucket ignored");
                    return Ok(None);
                }
                // Console "folders" are zero-byte keys ending in '/'.
                if key.ends_with('/') {
                    return Ok(None);
                }
                let key = DocumentKey::new(key);
                if let Err(e) = screen(self.limits, &key, size, None, b"") {
                    tracing::info!(document = %DocumentId::for_key(&key), code = e.code(), "refused before download");
                    quarry_pipeline::reject(self.state, self.writer, self.hosted, &key, &Failure::from_error(&e))
                        .await?;
                    return Ok(None);
                }
                Ok(Some(IndexJob { version: etag, ..IndexJob::index(key, None, Some(size)) }))
            }
            S3Change::Removed { bucket, key } => {
                if bucket != self.bucket {
                    tracing::warn!(bucket, "event from another bucket ignored");
                    return Ok(None);
                }
                let document = DocumentId::for_key(&DocumentKey::new(key));
                let removed = quarry_pipeline::forget(self.state, self.writer, self.hosted, &document).await?;
                tracing::info!(document = %document, removed, "removed from the index");
                Ok(None)
            }
        }
    }
}
