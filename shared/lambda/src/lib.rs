//! Glue every Quarry Lambda shares: the one SQS batch helper (partial batch responses), S3 event
//! notifications read from SQS messages (URL-decoded keys, `s3:TestEvent` ignored), JSON logs and
//! metrics as CloudWatch EMF, flushed once per invocation.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use quarry_core::{Classify, PortError};
use serde::Deserialize;

/// JSON logs on stdout for CloudWatch, filtered by `RUST_LOG` (default `info`). Never logs
/// document text or queries: the handlers only put keys, ids, counts and codes in fields.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time() // CloudWatch stamps every line
        .try_init();
}

pub use quarry_telemetry::emf::Emf;

/// Installs the EMF recorder (counting this cold start) and the JSON logs: the first thing every
/// function's `main` does, before anything records.
pub fn init() -> Result<Emf, quarry_telemetry::emf::InstallError> {
    init_logging();
    Emf::install()
}

/// Runs one invocation and flushes its metrics after it, whatever it returned: one EMF flush per
/// invocation, as the log agent expects.
pub async fn flushed<T>(emf: Emf, invocation: impl Future<Output = T>) -> T {
    let out = invocation.await;
    emf.flush();
    out
}

/// How long a message waited in its queue, from SQS's `SentTimestamp` attribute.
pub fn queue_lag(m: &SqsMessage) {
    let sent = m.attributes.get("SentTimestamp").and_then(|t| t.parse::<u64>().ok());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    if let Some(sent) = sent {
        metrics::histogram!(quarry_core::metric::QUEUE_LAG).record(now.saturating_sub(sent) as f64);
    }
}

/// Runs `handle` on every message of an SQS batch, `concurrency` at a time, and reports the
/// messages to deliver again. Only retryable failures are reported: a permanent one has been
/// recorded by the handler with its reason, and redelivering it would fail the same way. A message
/// that keeps failing retryably reaches the DLQ through the queue's redrive policy.
pub async fn sqs_batch<F, Fut>(event: SqsEvent, concurrency: usize, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), PortError>>,
{
    let results: Vec<(Option<String>, Result<(), PortError>)> = futures::stream::iter(event.records)
        .map(|m| {
            queue_lag(&m);
            let id = m.message_id.clone();
            let fut = handle(m);
            async move { (id, fut.await) }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for (id, result) in results {
        let Err(e) = result else { continue };
        let chain = quarry_core::error::chain(&e);
        if e.class().is_retryable() {
            tracing::warn!(message_id = id.as_deref(), code = e.code(), error = %chain, "message will be retried");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.unwrap_or_default();
            response.batch_item_failures.push(failure);
        } else {
            tracing::error!(message_id = id.as_deref(), code = e.code(), error = %chain, "message dropped: not retryable");
        }
    }
    response
}

/// Decodes an S3 event key: S3 sends keys form-encoded (`+` for a space, `%XX` for other bytes).
/// Bytes that do not decode to UTF-8 are kept as they came rather than guessed at.
pub fn decode_key(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| raw.to_owned())
}

/// What changed in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Change {
    Created { bucket: String, key: String, size: u64, etag: Option<String> },
    Removed { bucket: String, key: String },
}

#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
    /// `s3:TestEvent`, sent when notifications are configured.
    #[serde(rename = "Event")]
    event: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: Entity,
}

#[derive(Debug, Deserialize)]
struct Entity {
    bucket: Bucket,
    object: Object,
}

#[derive(Debug, Deserialize)]
struct Bucket {
    name: String,
}

#[derive(Debug, Deserialize)]
struct Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
}

/// An S3 notification the handler cannot read.
#[derive(Debug, thiserror::Error)]
#[error("not an S3 event notification")]
pub struct NotAnS3Event(#[source] serde_json::Error);

/// The changes in one S3 notification (a message body, or a direct invocation's payload).
/// `s3:TestEvent` and event types other than ObjectCreated/ObjectRemoved give no changes.
pub fn s3_changes(body: &str) -> Result<Vec<S3Change>, NotAnS3Event> {
    let n: Notification = serde_json::from_str(body).map_err(NotAnS3Event)?;
    if n.event.as_deref() == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    Ok(n.records
        .into_iter()
        .filter_map(|r| {
            let (bucket, key) = (r.s3.bucket.name, decode_key(&r.s3.object.key));
            if r.event_name.starts_with("ObjectCreated:") {
                Some(S3Change::Created { bucket, key, size: r.s3.object.size.unwrap_or(0), etag: r.s3.object.etag })
            } else if r.event_name.starts_with("ObjectRemoved:") {
                Some(S3Change::Removed { bucket, key })
            } else {
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_form_decoded() {
        for (raw, want) in [
            ("reports/Q1+2024.pdf", "reports/Q1 2024.pdf"),
            ("a%2Bb.txt", "a+b.txt"),
            ("caf%C3%A9/na%C3%AFve.md", "café/naïve.md"),
            ("100%25.txt", "100%.txt"),
            ("trailing%", "trailing%"),
            ("bad%zzescape", "bad%zzescape"),
            ("%E6%97%A5%E6%9C%AC.txt", "日本.txt"),
        ] {
            assert_eq!(decode_key(raw), want, "{raw}");
        }
        assert_eq!(decode_key("%FF%FE"), "%FF%FE", "bytes that are not UTF-8 stay as sent");
    }

    #[tokio::test]
    async fn only_retryable_failures_come_back_for_redelivery() {
        let mut event = SqsEvent::default();
        for id in ["ok", "throttled", "bad-input", "broken", "conflict"] {
            let mut m = SqsMessage::default();
            m.message_id = Some(id.to_owned());
            m.body = Some(id.to_owned());
            event.records.push(m);
        }
        let response = sqs_batch(event, 2, |m| async move {
            match m.body.as_deref() {
                Some("throttled") => Err(PortError::Throttled { operation: "t", retry_after: None, source: None }),
                Some("bad-input") => Err(PortError::InvalidInput { operation: "t", reason: "bad".into() }),
                Some("broken") => Err(PortError::Permanent { operation: "t", source: "boom".into() }),
                Some("conflict") => Err(PortError::Conflict { operation: "t" }),
                _ => Ok(()),
            }
        })
        .await;
        let mut ids: Vec<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        ids.sort();
        assert_eq!(ids, ["conflict", "throttled"]);
    }

    #[test]
    fn test_events_and_other_event_types_give_no_changes() {
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T08:00:00.000Z","Bucket":"b","RequestId":"r","HostId":"h"}"#;
        assert_eq!(s3_changes(test).expect("parses"), []);
        assert!(s3_changes("{not json").is_err());
    }
}
