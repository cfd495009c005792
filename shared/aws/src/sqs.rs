//! SQS as the job queue: small pointer messages (action, key, version, batch), sent ten at a time,
//! the most SendMessageBatch takes. Entries SQS reports as failed on its side are sent again with
//! back-off; an entry refused as the sender's fault is an error naming its code.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use quarry_core::PortError;
use quarry_core::ports::{IndexJob, JobQueue};
use tracing::instrument;

use crate::{build_error, port_error};

/// SendMessageBatch's limit.
pub const BATCH: usize = 10;
const ATTEMPTS: u32 = 5;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
}

/// An entry SQS would not take.
#[derive(Debug, thiserror::Error)]
#[error("SQS refused a message ({code}): {message}")]
pub struct EntryRefused {
    pub code: String,
    pub message: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        SqsQueue { client, queue_url: queue_url.into() }
    }

    async fn send_ten(&self, jobs: &[IndexJob]) -> Result<(), PortError> {
        let mut pending: Vec<(String, String)> = jobs
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let body = serde_json::to_string(j)
                    .map_err(|e| PortError::Permanent { operation: "sqs.encode_job", source: Box::new(e) })?;
                Ok((i.to_string(), body))
            })
            .collect::<Result<_, PortError>>()?;
        for attempt in 1..=ATTEMPTS {
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body)
                        .build()
                        .map_err(build_error("sqs.send_message_batch"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| port_error("sqs.send_message_batch", e))?;
            if let Some(bad) = out.failed().iter().find(|f| f.sender_fault()) {
                return Err(PortError::Permanent {
                    operation: "sqs.send_message_batch",
                    source: Box::new(EntryRefused {
                        code: bad.code().to_owned(),
                        message: bad.message().unwrap_or_default().to_owned(),
                    }),
                });
            }
            let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
            pending.retain(|(id, _)| failed.contains(&id.as_str()));
            if pending.is_empty() {
                return Ok(());
            }
            tracing::warn!(failed = pending.len(), attempt, "SQS failed some entries; sending them again");
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Err(PortError::Throttled { operation: "sqs.send_message_batch", retry_after: None, source: None })
    }
}

impl JobQueue for SqsQueue {
    #[instrument(skip_all, err, fields(jobs = jobs.len()))]
    async fn enqueue(&self, jobs: &[IndexJob]) -> Result<(), PortError> {
        for ten in jobs.chunks(BATCH) {
            self.send_ten(ten).await?;
        }
        Ok(())
    }
}
