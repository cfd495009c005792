//! Indexing one document through the ports: fetch, hash, lease, extract + redact + chunk, embed,
//! upsert, drop the stale tail, checkpoint. The embed-worker Lambda and the local batch runner
//! both call [`Indexer::index`]; only the adapters differ.
//!
//! Every step is idempotent and keyed by deterministic ids, and the checkpoint is written last:
//! a crash anywhere leaves a lease that expires, and the retry redoes the upsert (same chunk ids)
//! and then checkpoints. Duplicate deliveries of unchanged content stop at the lease.

pub mod coalesce;

pub use coalesce::CoalescingEmbedder;

use std::collections::BTreeMap;
use std::time::Duration;

use quarry_core::ports::{
    BatchOutcome, BatchRequest, BatchStarted, BatchTracker, BlobSource, Checkpoint, CheckpointStore, Embedder,
    EmbeddingCache, Lease, VectorRecord, VectorWriter,
};
use quarry_core::{BatchId, ChunkId, Classify, ContentHash, DocumentId, DocumentKey, Failure, PortError};
use quarry_text::{Preparer, TokenCounter};

/// How indexing one document ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Indexed {
        chunks: u32,
        bytes: u64,
    },
    /// The same content is already indexed: nothing was embedded.
    Unchanged {
        bytes: u64,
    },
    /// The document itself is at fault (recorded with its reason; retrying will not help).
    Failed {
        failure: Failure,
        bytes: u64,
    },
    /// Another worker holds the document's lease; try again later.
    Busy,
}

/// What a batch records for one indexing result (`bytes` is the document's size, for a result
/// that failed before the document was read); `None` when another worker holds the document, which
/// stays pending.
pub fn batch_outcome(result: &Result<Outcome, PortError>, bytes: u64) -> Option<BatchOutcome> {
    Some(match result {
        Ok(Outcome::Indexed { chunks, bytes }) => BatchOutcome::Indexed { chunks: *chunks, bytes: *bytes },
        Ok(Outcome::Unchanged { bytes }) => BatchOutcome::Unchanged { bytes: *bytes },
        Ok(Outcome::Failed { failure, bytes }) => BatchOutcome::Failed { failure: failure.clone(), bytes: *bytes },
        Ok(Outcome::Busy) => return None,
        Err(e) => BatchOutcome::Failed { failure: Failure::from_error(e), bytes },
    })
}

/// Validates a batch request up front and records the batch: the documents under the prefix and
/// the listed keys that exist, with their sizes; listed keys that do not exist are reported and
/// recorded as failed (`not_found`), so that the batch's counts tell the whole story. Returns what
/// to tell the caller and the documents to index. The local server runs them in the background;
/// on AWS they become SQS jobs.
pub async fn plan_batch<B: BlobSource, T: BatchTracker>(
    source: &B,
    tracker: &T,
    request: &BatchRequest,
) -> Result<(BatchStarted, Vec<(DocumentKey, u64)>), PortError> {
    let mut items: BTreeMap<DocumentKey, u64> = BTreeMap::new();
    if let Some(prefix) = &request.prefix {
        for b in source.list(prefix).await? {
            items.insert(b.key, b.size);
        }
    }
    let mut missing = Vec::new();
    for key in &request.keys {
        match source.head(key).await {
            Ok(info) => {
                items.insert(key.clone(), info.size);
            }
            // A key that names nothing (or nothing inside a local folder) is the caller's mistake.
            Err(PortError::NotFound { .. } | PortError::InvalidInput { .. }) => missing.push(key.clone()),
            Err(e) => return Err(e),
        }
    }
    // Unique per request: the same keys asked for twice are two batches, each with its own counts.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_le_bytes()
        .to_vec();
    for k in items.keys().chain(&missing) {
        seed.extend_from_slice(k.as_str().as_bytes());
        seed.push(0);
    }
    let batch = BatchId::new(format!("b-{}", &ContentHash::of(&seed).as_str()[..12]));
    let all: Vec<(DocumentKey, u64)> =
        items.iter().map(|(k, s)| (k.clone(), *s)).chain(missing.iter().map(|k| (k.clone(), 0))).collect();
    tracker.create(&batch, &all).await?;
    for key in &missing {
        let failure = Failure { code: "not_found".into(), message: format!("{key} does not exist"), retryable: false };
        tracker.record(&batch, key, &BatchOutcome::Failed { failure, bytes: 0 }).await?;
    }
    let documents = all.len() as u64;
    Ok((BatchStarted { batch, documents, missing }, items.into_iter().collect()))
}

/// The ports and the preparer one indexing step needs.
#[derive(Debug)]
pub struct Indexer<'a, B, S, E, C, W, T: TokenCounter> {
    pub source: &'a B,
    pub state: &'a S,
    pub embedder: &'a E,
    /// Vectors by chunk text: an edited document re-embeds only the chunks that changed.
    pub cache: &'a C,
    pub writer: &'a W,
    pub preparer: &'a Preparer<T>,
    /// How long a worker may hold a document before another may take it over.
    pub lease: Duration,
}

impl<B, S, E, C, W, T> Indexer<'_, B, S, E, C, W, T>
where
    B: BlobSource,
    S: CheckpointStore,
    E: Embedder,
    C: EmbeddingCache,
    W: VectorWriter,
    T: TokenCounter,
{
    /// Indexes the document at `key`. Port failures (throttling, I/O) are returned for the caller
    /// to retry; a bad document is an [`Outcome::Failed`], already recorded.
    #[tracing::instrument(skip_all, err, fields(key = %key))]
    pub async fn index(&self, key: &DocumentKey) -> Result<Outcome, PortError> {
        let blob = self.source.get(key).await?;
        let bytes = blob.bytes.len() as u64;
        let document = DocumentId::for_key(key);
        let hash = ContentHash::of(&blob.bytes);
        match self.state.acquire(&document, &hash, self.lease).await? {
            Lease::AlreadyIndexed => return Ok(Outcome::Unchanged { bytes }),
            Lease::Busy => return Ok(Outcome::Busy),
            Lease::Acquired { .. } => {}
        }
        let prepared =
            match self.preparer.prepare_as(Some(key.as_str()), blob.info.content_type.as_deref(), &blob.bytes) {
                Ok(p) => p,
                Err(e) => {
                    let failure = Failure::from_error(&e);
                    tracing::warn!(code = e.code(), "document cannot be indexed");
                    // Sync semantics: a file replaced by one that cannot be read leaves no stale
                    // chunks of its old version in the results.
                    self.writer.delete_from(&document, 0).await?;
                    self.state.fail(&document, key, &failure).await?;
                    return Ok(Outcome::Failed { failure, bytes });
                }
            };
        let vectors = self.vectors(&prepared.chunks).await?;
        let mut metadata = BTreeMap::new();
        metadata.insert("key".to_owned(), serde_json::Value::from(key.as_str()));
        metadata.insert("format".to_owned(), serde_json::Value::from(prepared.document.format.name()));
        if let Some(t) = &prepared.document.title {
            metadata.insert("title".to_owned(), serde_json::Value::from(t.as_str()));
        }
        for (k, v) in &blob.info.metadata {
            metadata.entry(format!("user.{k}")).or_insert_with(|| serde_json::Value::from(v.as_str()));
        }
        let records: Vec<VectorRecord> = prepared
            .chunks
            .iter()
            .zip(vectors)
            .map(|(c, vector)| VectorRecord {
                id: ChunkId::new(&document, c.ordinal),
                document: document.clone(),
                vector,
                text: c.text.clone(),
                pages: c.pages,
                span: c.span,
                metadata: metadata.clone(),
            })
            .collect();
        let chunks = records.len() as u32;
        self.writer.upsert(&records).await?;
        // A shorter new version leaves ordinals past its end: drop them before checkpointing.
        self.writer.delete_from(&document, chunks).await?;
        let checkpoint = Checkpoint {
            document,
            key: key.clone(),
            content_hash: hash,
            chunks,
            model: self.embedder.model().id.clone(),
        };
        self.state.checkpoint(&checkpoint).await?;
        tracing::info!(chunks, redactions = prepared.redactions.values().sum::<u32>(), "indexed");
        Ok(Outcome::Indexed { chunks, bytes })
    }

    /// One vector per chunk: from the cache where the same text was embedded by the same model,
    /// from the embedder for the rest (which are then cached).
    async fn vectors(&self, chunks: &[quarry_core::Chunk]) -> Result<Vec<Vec<f32>>, PortError> {
        let model = self.embedder.model();
        let hashes: Vec<ContentHash> = chunks.iter().map(|c| ContentHash::of_text(&c.text)).collect();
        let mut vectors = self.cache.get(model, &hashes).await?;
        let missing: Vec<usize> = (0..chunks.len()).filter(|&i| vectors.get(i).is_none_or(Option::is_none)).collect();
        if !missing.is_empty() {
            let texts: Vec<String> = missing.iter().map(|&i| chunks[i].text.clone()).collect();
            let fresh = self.embedder.embed(&texts).await?;
            if fresh.len() != texts.len() {
                return Err(PortError::InvalidInput {
                    operation: "embed",
                    reason: format!("{} vectors for {} chunks", fresh.len(), texts.len()),
                });
            }
            let entries: Vec<(ContentHash, Vec<f32>)> =
                missing.iter().zip(&fresh).map(|(&i, v)| (hashes[i].clone(), v.clone())).collect();
            self.cache.put(model, &entries).await?;
            vectors.resize(chunks.len(), None);
            for (&i, v) in missing.iter().zip(fresh) {
                vectors[i] = Some(v);
            }
        }
        tracing::debug!(cached = chunks.len() - missing.len(), embedded = missing.len(), "chunk vectors");
        Ok(vectors.into_iter().flatten().collect())
    }

    /// Removes a deleted document's chunks and state.
    pub async fn remove(&self, key: &DocumentKey) -> Result<u64, PortError> {
        let document = DocumentId::for_key(key);
        let removed = self.writer.delete_from(&document, 0).await?;
        self.state.forget(&document).await?;
        Ok(removed)
    }
}
