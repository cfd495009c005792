//! The keyword indexer's handler: one SQS batch of chunk changes becomes one publish of the
//! keyword index ([`quarry_keyword::KeywordIndexer`]). The function runs with reserved concurrency
//! 1, so batches are applied one at a time; should two ever run at once, the conditional manifest
//! write lets one win and the other start over from it.
//!
//! A batch either publishes whole or comes back whole: every message is reported for redelivery
//! when the publish fails retryably. A message that is not a change can never succeed: it is
//! reported too, so that the queue's redrive policy moves it to the DLQ where it can be read.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use quarry_core::Classify;
use quarry_core::keywords::{ChunkChange, ChunkReader, IndexFiles};
use quarry_keyword::KeywordIndexer;

/// A message body that is not a chunk change.
#[derive(Debug, thiserror::Error)]
#[error("message {message_id} is not a chunk change")]
pub struct BadChange {
    pub message_id: String,
    #[source]
    pub source: serde_json::Error,
}

fn failure(id: Option<String>) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id.unwrap_or_default();
    f
}

/// Applies every change of `event` in one publish.
pub async fn handle<R: ChunkReader, F: IndexFiles>(
    indexer: &KeywordIndexer<R, F>,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut changes = Vec::with_capacity(event.records.len());
    let mut ids = Vec::with_capacity(event.records.len());
    // The oldest change's send time: publish lag runs from it.
    let sent = event.records.iter().filter_map(|m| m.attributes.get("SentTimestamp")?.parse::<i64>().ok()).min();
    for m in event.records {
        quarry_lambda::queue_lag(&m);
        match serde_json::from_str::<ChunkChange>(m.body.as_deref().unwrap_or_default()) {
            Ok(change) => {
                changes.push(change);
                ids.push(m.message_id);
            }
            Err(source) => {
                let e = BadChange { message_id: m.message_id.clone().unwrap_or_default(), source };
                tracing::error!(error = %quarry_core::error::chain(&e), "message is not a chunk change");
                response.batch_item_failures.push(failure(m.message_id));
            }
        }
    }
    if changes.is_empty() {
        return response;
    }
    match indexer.apply(&changes).await {
        Ok(manifest) => {
            if let Some(sent) = sent {
                let lag = (manifest.published_ms - sent).max(0);
                metrics::histogram!(quarry_core::metric::KEYWORD_PUBLISH_LAG).record(lag as f64);
            }
        }
        Err(e) => {
            let chain = quarry_core::error::chain(&e);
            if e.class().is_retryable() {
                tracing::warn!(code = e.code(), error = %chain, changes = changes.len(), "publish failed; the batch will be retried");
            } else {
                tracing::error!(code = e.code(), error = %chain, changes = changes.len(), "publish failed; the batch goes back to the queue");
            }
            // Either way nothing was published: the batch comes back, and past the redrive policy's
            // count reaches the DLQ rather than being lost.
            response.batch_item_failures.extend(ids.into_iter().map(failure));
        }
    }
    response
}
