//! Batches: what to index, decided up front. Every entry point that makes work for many documents
//! (`quarry ingest`, `POST /v1/batches` locally and on AWS) plans it here: the documents are
//! listed, each is screened by the one rule ([`quarry_core::format::screen`]), refused ones are
//! rejected with their reason before any work is queued, and the batch is recorded under an id
//! that follows from its content ([`batch_id`]).

use std::collections::BTreeMap;

use quarry_core::config::Limits;
use quarry_core::event::{Event, Severity, kind};
use quarry_core::format::{HEAD_BYTES, screen};
use quarry_core::ports::{
    BatchOutcome, BatchRequest, BatchStarted, BatchTracker, BlobInfo, BlobSource, CheckpointStore, EventPublisher,
    IndexJob, VectorWriter,
};
use quarry_core::{BatchCounters, BatchId, ContentHash, DocumentKey, Failure, PortError};

use crate::index::reject;

/// The one batch-id rule: a hash of what the batch holds, every key with its version and size,
/// under its tenant ([`quarry_core::tenant::batch_id`]: the tenant its keys and prefix share). The
/// same request over the same content is the same batch (a killed `quarry ingest` resumes its
/// batch; a `POST /v1/batches` sent twice counts once); any change to the content is a new batch.
pub fn batch_id<'a>(
    prefix: Option<&'a str>,
    items: impl IntoIterator<Item = (&'a DocumentKey, Option<&'a str>, u64)>,
) -> BatchId {
    let mut sorted: Vec<_> = items.into_iter().collect();
    sorted.sort();
    let tenant = quarry_core::tenant::common(prefix.into_iter().chain(sorted.iter().map(|(k, _, _)| k.as_str())));
    let mut seed = Vec::new();
    for (key, version, size) in sorted {
        seed.extend_from_slice(key.as_str().as_bytes());
        seed.push(0);
        seed.extend_from_slice(version.unwrap_or("").as_bytes());
        seed.push(0);
        seed.extend_from_slice(&size.to_le_bytes());
    }
    quarry_core::tenant::batch_id(tenant, &ContentHash::of(&seed).as_str()[..12])
}

/// What retrying a batch means wherever it is asked for (the API, the page): a batch over the
/// documents that failed, whose files may have been fixed since. `None`: nothing failed. Its id
/// follows from those documents, as any batch's: the original batch when every document failed.
pub async fn retry_request<T: BatchTracker>(tracker: &T, batch: &BatchId) -> Result<Option<BatchRequest>, PortError> {
    let failed = tracker.failures(batch).await?;
    Ok((!failed.is_empty()).then(|| BatchRequest { prefix: None, keys: failed.into_iter().map(|(k, _)| k).collect() }))
}

/// What resuming a batch runs again, wherever it is asked for (`quarry retry`, the API): the
/// documents a budget paused, then those that failed, under the batch's own id.
pub async fn resume_keys<T: BatchTracker>(tracker: &T, batch: &BatchId) -> Result<Vec<DocumentKey>, PortError> {
    let mut keys: Vec<DocumentKey> = tracker.paused(batch).await?.into_iter().map(|(k, _)| k).collect();
    keys.extend(tracker.failures(batch).await?.into_iter().map(|(k, _)| k));
    Ok(keys)
}

/// The documents a request names: those under its prefix and its keys that exist, by key, and
/// the keys that name nothing (or nothing inside a local folder: the caller's mistake either way).
pub async fn resolve<B: BlobSource>(
    source: &B,
    request: &BatchRequest,
) -> Result<(BTreeMap<DocumentKey, BlobInfo>, Vec<DocumentKey>), PortError> {
    let mut items: BTreeMap<DocumentKey, BlobInfo> = BTreeMap::new();
    if let Some(prefix) = &request.prefix {
        for b in source.list(prefix).await? {
            items.insert(b.key.clone(), b);
        }
    }
    let mut missing = Vec::new();
    for key in &request.keys {
        match source.head(key).await {
            Ok(info) => {
                items.insert(key.clone(), info);
            }
            Err(PortError::NotFound { .. } | PortError::InvalidInput { .. }) => missing.push(key.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok((items, missing))
}

/// A batch recorded and ready for work.
#[derive(Debug, Clone)]
pub struct Plan {
    /// What to tell the caller.
    pub started: BatchStarted,
    /// One job per document that passed screening, carrying the batch and the document's size.
    pub jobs: Vec<IndexJob>,
    /// Documents refused up front, with why: already rejected and recorded as failed.
    pub refused: Vec<(DocumentKey, Failure)>,
    /// Everything the source listed, refused or not: what a sync keeps.
    pub listed: Vec<BlobInfo>,
}

/// The ports planning a batch needs: the source to list and screen, the tracker to record the
/// batch in, the two stores a refused document is rejected from, and where a batch that ends at
/// once (every document refused) says so.
#[derive(Debug)]
pub struct Planner<'a, B, T, S, W, V> {
    pub source: &'a B,
    pub tracker: &'a T,
    pub state: &'a S,
    pub writer: &'a W,
    pub events: &'a V,
    pub limits: &'a Limits,
    /// Where documents are stored when the store embeds for itself: a refused document's earlier
    /// version leaves it too.
    pub hosted: Option<&'a dyn quarry_core::hosted::HostedStore>,
}

impl<B: BlobSource, T: BatchTracker, S: CheckpointStore, W: VectorWriter, V: EventPublisher>
    Planner<'_, B, T, S, W, V>
{
    /// Validates a request and records its batch: the documents under the prefix and the listed
    /// keys that exist, with their sizes. Listed keys that do not exist are reported and recorded
    /// as failed (`not_found`); documents that fail screening are rejected and recorded as failed;
    /// `not_documents` (a JSONL file's lines that hold no record) are recorded as failed. So the
    /// batch's counts tell the whole story before the first document is read.
    pub async fn plan(
        &self,
        request: &BatchRequest,
        not_documents: &[(DocumentKey, u64, Failure)],
    ) -> Result<Plan, PortError> {
        let (items, missing) = resolve(self.source, request).await?;
        let batch = batch_id(
            request.prefix.as_deref(),
            items
                .values()
                .map(|b| (&b.key, b.version.as_deref(), b.size))
                .chain(missing.iter().map(|k| (k, None, 0)))
                .chain(not_documents.iter().map(|(k, s, _)| (k, None, *s))),
        );

        let (mut jobs, mut refused) = (Vec::new(), Vec::new());
        for b in items.values() {
            let head = match self.source.peek(&b.key, HEAD_BYTES).await {
                Ok(head) => head,
                // Gone since the listing, or unreadable: screened by name and size alone; the job
                // finds it gone (and forgets it) or unreadable (and rejects it with the reason).
                Err(PortError::NotFound { .. } | PortError::InvalidInput { .. }) => Vec::new(),
                Err(e) => return Err(e),
            };
            match screen(self.limits, &b.key, b.size, b.content_type.as_deref(), &head) {
                Ok(()) => jobs.push(IndexJob {
                    version: b.version.clone(),
                    ..IndexJob::index(b.key.clone(), Some(batch.clone()), Some(b.size))
                }),
                Err(e) => refused.push((b.key.clone(), b.size, Failure::from_error(&e))),
            }
        }
        let not_found = |k: &DocumentKey| Failure {
            code: "not_found".into(),
            message: format!("{k} does not exist"),
            retryable: false,
        };
        let failed: Vec<(DocumentKey, u64, Failure)> = refused
            .iter()
            .cloned()
            .chain(missing.iter().map(|k| (k.clone(), 0, not_found(k))))
            .chain(not_documents.iter().cloned())
            .collect();
        let all: Vec<(DocumentKey, u64)> = jobs
            .iter()
            .map(|j| (j.key.clone(), j.size.unwrap_or(0)))
            .chain(failed.iter().map(|(k, s, _)| (k.clone(), *s)))
            .collect();
        self.tracker.create(&batch, &all).await?;
        for (key, _, failure) in &refused {
            reject(self.state, self.writer, self.hosted, key, failure).await?;
        }
        for (key, bytes, failure) in &failed {
            self.tracker.record(&batch, key, &BatchOutcome::Failed { failure: failure.clone(), bytes: *bytes }).await?;
        }
        if jobs.is_empty() {
            report_end(self.tracker, self.events, &batch).await?;
        }
        let documents = all.len() as u64;
        Ok(Plan {
            started: BatchStarted { batch, documents, missing },
            jobs,
            refused: refused.into_iter().map(|(k, _, f)| (k, f)).collect(),
            listed: items.into_values().collect(),
        })
    }
}

/// Says so when `batch` has ended with failures: nothing pending, at least one document failed.
/// Called after every outcome is recorded, so whoever records the last one reports the end;
/// workers that finish the last documents at once see the same counters and publish the same
/// occurrence (the counts), which the router sends once. A retry that changes the counts ends the
/// batch anew. Returns whether it published.
pub async fn report_end<T: BatchTracker, V: EventPublisher>(
    tracker: &T,
    events: &V,
    batch: &BatchId,
) -> Result<bool, PortError> {
    let c = tracker.counters(batch).await?;
    if c.pending > 0 || c.failed == 0 {
        return Ok(false);
    }
    let mut codes: BTreeMap<String, u64> = BTreeMap::new();
    for (_, failure) in tracker.failures(batch).await? {
        *codes.entry(failure.code).or_default() += 1;
    }
    events.publish(&batch_failed(batch, &c, &codes)).await?;
    Ok(true)
}

/// The `batch_failed` event: counts and failure codes, never a document's key or text.
fn batch_failed(batch: &BatchId, c: &BatchCounters, codes: &BTreeMap<String, u64>) -> Event {
    let by_code: Vec<String> = codes.iter().map(|(code, n)| format!("{code} {n}")).collect();
    let mut labels = BTreeMap::from([
        ("batch".to_owned(), batch.as_str().to_owned()),
        ("total".to_owned(), c.total.to_string()),
        ("failed".to_owned(), c.failed.to_string()),
        ("indexed".to_owned(), c.done.to_string()),
        ("unchanged".to_owned(), c.skipped.to_string()),
    ]);
    labels.extend(codes.iter().map(|(code, n)| (format!("code.{code}"), n.to_string())));
    Event {
        quarry_event: kind::BATCH_FAILED.to_owned(),
        resource: batch.as_str().to_owned(),
        severity: Severity::Warning,
        summary: format!("batch {batch}: {} of {} documents failed ({})", c.failed, c.total, by_code.join(", ")),
        reason: format!("GET /v1/batches/{batch} lists the failures; `quarry retry {batch}` locally"),
        labels,
        at: jiff::Timestamp::now().to_string(),
        occurrence: format!("{}/{}/{}/{}", c.total, c.done, c.failed, c.skipped),
    }
}
