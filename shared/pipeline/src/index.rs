//! One document's lifecycle through the ports: [`Indexer::index`] (fetch, hash, lease,
//! prepare, embed, upsert, drop the stale tail, checkpoint), [`forget`] and [`reject`]. The embed-worker
//! Lambda, the ingest Lambda, the API and the local commands all go through here.
//!
//! Every step is idempotent and keyed by deterministic ids, and the checkpoint is written last:
//! a crash anywhere leaves a lease that expires, and the retry redoes the upsert (same chunk ids)
//! and then checkpoints. Duplicate deliveries of unchanged content stop at the lease.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metrics::{counter, histogram};
use quarry_core::cache::cache_key_text;
use quarry_core::config::Budget;
use quarry_core::hosted::{HostedDocument, HostedStore, Stored};
use quarry_core::meta::ChunkMeta;
use quarry_core::metric::{self, millis, stage};
use quarry_core::ports::{
    BlobInfo, BlobSource, Checkpoint, CheckpointStore, DocumentPreparer, Embedder, EmbeddingCache, Lease, Usage,
    VectorRecord, VectorWriter,
};
use quarry_core::spend::{Reservation, SpendLedger};
use quarry_core::{BatchId, ChunkId, Classify, ContentHash, DocumentId, DocumentKey, Failure, PortError};

use crate::spend::{Exhausted, charges};

/// How indexing one document ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Indexed {
        chunks: u32,
        bytes: u64,
        /// What its embedding calls were billed (nothing for chunks found in the cache).
        usage: Usage,
    },
    /// The same content is already indexed: nothing was embedded.
    Unchanged { bytes: u64, chunks: u32, indexed_ms: i64 },
    /// The document itself is at fault (recorded with its reason; retrying will not help).
    Failed { failure: Failure, bytes: u64 },
    /// Another worker holds the document's lease; try again later.
    Busy,
    /// A budget would be passed by embedding it: nothing was sent, the document waits (pending)
    /// until the budget is raised or the day turns.
    Paused { exhausted: Exhausted, bytes: u64 },
}

/// Forgets a document: its chunks leave the vector store (and its file the hosted store, where
/// one is used), then its state goes. Returns how many chunks were removed from the vector store.
/// For a deleted file, a `DELETE /v1/documents/{id}`, a sync.
pub async fn forget<S: CheckpointStore, W: VectorWriter>(
    state: &S,
    writer: &W,
    hosted: Option<&dyn HostedStore>,
    document: &DocumentId,
) -> Result<u64, PortError> {
    let removed = writer.delete_from(document, 0).await?;
    remove_hosted(state, hosted, document).await?;
    state.forget(document).await?;
    Ok(removed)
}

/// Rejects a document: records why it cannot be indexed and removes the chunks (or the hosted
/// file) of any earlier version, so that a file replaced by one that cannot be read leaves
/// nothing stale in results.
pub async fn reject<S: CheckpointStore, W: VectorWriter>(
    state: &S,
    writer: &W,
    hosted: Option<&dyn HostedStore>,
    key: &DocumentKey,
    failure: &Failure,
) -> Result<(), PortError> {
    let document = DocumentId::for_key(key);
    writer.delete_from(&document, 0).await?;
    remove_hosted(state, hosted, &document).await?;
    state.fail(&document, key, failure).await
}

/// Removes the document's file from the hosted store, where its checkpoint names one. The
/// handle stays in the state until the caller replaces or forgets it: a crash here is retried.
async fn remove_hosted<S: CheckpointStore>(
    state: &S,
    hosted: Option<&dyn HostedStore>,
    document: &DocumentId,
) -> Result<(), PortError> {
    if let Some(store) = hosted
        && let Some(handle) = state.handle(document).await?
    {
        store.remove(&handle).await?;
    }
    Ok(())
}

/// An embedder answered with another number of vectors than it was sent texts (a bug, or a
/// malformed answer from a remote model).
#[derive(Debug, thiserror::Error)]
#[error("the embedder returned {got} vectors for {sent} texts")]
pub struct WrongCount {
    pub got: usize,
    pub sent: usize,
}

/// The ports and the preparer one indexing step needs.
#[derive(Debug)]
pub struct Indexer<'a, B, S, E, C, W, P, L> {
    pub source: &'a B,
    pub state: &'a S,
    pub embedder: &'a E,
    /// Vectors by chunk text: an edited document re-embeds only the chunks that changed.
    pub cache: &'a C,
    pub writer: &'a W,
    pub preparer: &'a P,
    /// How long a worker may hold a document before another may take it over.
    pub lease: Duration,
    /// Where embedding spend is reserved and counted, and the limits it is held to.
    pub spend: &'a L,
    pub budget: &'a Budget,
    /// A store that embeds for itself (`store.backend = "openai"`): documents go there whole,
    /// and nothing is embedded, cached or written to `writer`.
    pub hosted: Option<&'a dyn HostedStore>,
}

impl<B, S, E, C, W, P, L> Indexer<'_, B, S, E, C, W, P, L>
where
    B: BlobSource,
    S: CheckpointStore,
    E: Embedder,
    C: EmbeddingCache,
    W: VectorWriter,
    P: DocumentPreparer,
    L: SpendLedger,
{
    /// Indexes the document at `key`. Port failures (throttling, I/O) are returned for the caller
    /// to retry; a bad document is an [`Outcome::Failed`], already recorded.
    pub async fn index(&self, key: &DocumentKey) -> Result<Outcome, PortError> {
        self.index_sized(key, None, None).await
    }

    /// [`Indexer::index`] for a document whose size its job already knows (an S3 event, a
    /// listing): screened on it first, without a request, so that a file too large to take is
    /// never read into memory. Its embedding is charged to today and to `batch`.
    #[tracing::instrument(skip_all, err, fields(key = %key))]
    pub async fn index_sized(
        &self,
        key: &DocumentKey,
        size: Option<u64>,
        batch: Option<&BatchId>,
    ) -> Result<Outcome, PortError> {
        if let Some(size) = size {
            let info = BlobInfo {
                key: key.clone(),
                size,
                version: None,
                content_type: None,
                metadata: std::collections::BTreeMap::new(),
            };
            if let Err(e) = self.preparer.screen(&info) {
                let failure = Failure::from_error(&e);
                tracing::warn!(code = e.code(), "document refused");
                self.reject(key, &failure).await?;
                return Ok(Outcome::Failed { failure, bytes: size });
            }
        }
        let started = Instant::now();
        let blob = self.source.get(key).await?;
        let bytes = blob.bytes.len() as u64;
        histogram!(metric::STAGE_LATENCY, "stage" => stage::FETCH).record(millis(started));
        counter!(metric::DOCUMENT_BYTES).increment(bytes);
        let document = DocumentId::for_key(key);
        let hash = ContentHash::of(&blob.bytes);
        match self.state.acquire(&document, &hash, self.lease).await? {
            Lease::AlreadyIndexed { chunks, indexed_ms } => {
                return Ok(Outcome::Unchanged { bytes, chunks, indexed_ms });
            }
            Lease::Busy => return Ok(Outcome::Busy),
            Lease::Acquired { .. } => {}
        }
        match self.index_leased(key, &blob, document.clone(), hash, batch, started).await {
            // A failure worth retrying gives the lease back, so that the retry (a redelivery, a
            // batch) takes the document at once rather than finding it held until the lease ends:
            // found by injecting DynamoDB throttling, where every redelivery met its own lease,
            // and the message reached the DLQ with the document left `processing`. Best effort:
            // a lease that cannot be given back expires.
            Err(e) if e.class().is_retryable() => {
                if let Err(r) = self.state.release(&document).await {
                    tracing::warn!(error = %quarry_core::error::chain(&r), "the lease was not given back");
                }
                Err(e)
            }
            other => other,
        }
    }

    /// The rest of [`Indexer::index_sized`], once the document's lease is held.
    async fn index_leased(
        &self,
        key: &DocumentKey,
        blob: &quarry_core::ports::Blob,
        document: DocumentId,
        hash: ContentHash,
        batch: Option<&BatchId>,
        started: Instant,
    ) -> Result<Outcome, PortError> {
        let bytes = blob.bytes.len() as u64;
        let step = Instant::now();
        let prepared = match self.preparer.prepare_document(key, blob.info.content_type.as_deref(), &blob.bytes) {
            Ok(p) => {
                histogram!(metric::STAGE_LATENCY, "stage" => stage::PREPARE).record(millis(step));
                p
            }
            Err(e) => {
                let failure = Failure::from_error(&e);
                tracing::warn!(code = e.code(), "document cannot be indexed");
                self.reject(key, &failure).await?;
                return Ok(Outcome::Failed { failure, bytes });
            }
        };
        let meta = ChunkMeta {
            key: key.clone(),
            format: prepared.document.format,
            title: prepared.document.title.clone(),
            user: blob.info.metadata.clone(),
        };
        if let Some(store) = self.hosted {
            let outcome = self.store_hosted(store, key, document, hash, &prepared, &meta, bytes).await?;
            histogram!(metric::DOCUMENT_LATENCY).record(millis(started));
            return Ok(outcome);
        }
        let step = Instant::now();
        let (vectors, usage) = match self.vectors(&prepared.chunks, batch).await {
            Ok(Ok(v)) => v,
            Ok(Err(exhausted)) => {
                tracing::warn!(scope = %exhausted.scope.key(), "budget reached; document left pending");
                self.state.release(&document).await?;
                return Ok(Outcome::Paused { exhausted, bytes });
            }
            Err(e) => return Err(e),
        };
        histogram!(metric::STAGE_LATENCY, "stage" => stage::EMBED).record(millis(step));
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
                meta: meta.clone(),
            })
            .collect();
        let chunks = records.len() as u32;
        let step = Instant::now();
        self.writer.upsert(&records).await?;
        // A shorter new version leaves ordinals past its end: drop them before checkpointing.
        self.writer.delete_from(&document, chunks).await?;
        histogram!(metric::STAGE_LATENCY, "stage" => stage::UPSERT).record(millis(step));
        counter!(metric::CHUNKS_INDEXED).increment(u64::from(chunks));
        let step = Instant::now();
        let checkpoint = Checkpoint {
            document,
            key: key.clone(),
            content_hash: hash,
            chunks,
            model: self.embedder.model().id.clone(),
            handle: None,
        };
        self.state.checkpoint(&checkpoint).await?;
        histogram!(metric::STAGE_LATENCY, "stage" => stage::CHECKPOINT).record(millis(step));
        histogram!(metric::DOCUMENT_LATENCY).record(millis(started));
        tracing::info!(
            chunks,
            tokens = usage.tokens,
            nanodollars = usage.nanodollars,
            redactions = prepared.redactions.values().sum::<u32>(),
            "indexed"
        );
        Ok(Outcome::Indexed { chunks, bytes, usage })
    }

    /// The hosted half of [`Indexer::index_sized`]: the redacted text and metadata go to the store
    /// whole; the old version's file is removed, then the checkpoint names the new one. A failure
    /// after the store took the file removes the new file again (best effort) before it is
    /// returned for a retry; a crash there leaves a file no checkpoint names, which searches never
    /// show ([`crate::query::retrieve_hosted`] keeps only the checkpointed file's hits). Nothing is
    /// embedded here: OpenAI bills the store by size.
    #[allow(clippy::too_many_arguments)]
    async fn store_hosted(
        &self,
        store: &dyn HostedStore,
        key: &DocumentKey,
        document: DocumentId,
        hash: ContentHash,
        prepared: &quarry_core::Prepared,
        meta: &ChunkMeta,
        bytes: u64,
    ) -> Result<Outcome, PortError> {
        let old = self.state.handle(&document).await?;
        let step = Instant::now();
        let doc = HostedDocument { document: &document, content_hash: &hash, text: &prepared.document.text, meta };
        let handle = match store.put(doc).await? {
            Stored::Attached { handle } => handle,
            Stored::Refused(failure) => {
                tracing::warn!(code = failure.code, "the hosted store refused the document");
                self.reject(key, &failure).await?;
                return Ok(Outcome::Failed { failure, bytes });
            }
        };
        // What OpenAI chunks is its own: Quarry's chunk count, in the same window, stands for it.
        let chunks = prepared.chunks.len() as u32;
        let checkpoint = Checkpoint {
            document,
            key: key.clone(),
            content_hash: hash,
            chunks,
            model: store.model().to_owned(),
            handle: Some(handle.clone()),
        };
        let committed = async {
            if let Some(old) = old.filter(|o| *o != handle) {
                store.remove(&old).await?;
            }
            histogram!(metric::STAGE_LATENCY, "stage" => stage::UPSERT).record(millis(step));
            let step = Instant::now();
            self.state.checkpoint(&checkpoint).await?;
            histogram!(metric::STAGE_LATENCY, "stage" => stage::CHECKPOINT).record(millis(step));
            Ok::<_, PortError>(())
        };
        if let Err(e) = committed.await {
            if let Err(removal) = store.remove(&handle).await {
                tracing::warn!(error = %quarry_core::error::chain(&removal), "a stored file no checkpoint names is left");
            }
            return Err(e);
        }
        tracing::info!(chunks, redactions = prepared.redactions.values().sum::<u32>(), "stored in the hosted store");
        Ok(Outcome::Indexed { chunks, bytes, usage: Usage::default() })
    }

    /// One vector per chunk: from the cache where the same text was embedded by the same model,
    /// from the embedder for the rest (which are then cached), with what they were billed. The
    /// cost is reserved against the budgets before the call and settled after it; a refused
    /// reservation sends nothing.
    async fn vectors(
        &self,
        chunks: &[quarry_core::Chunk],
        batch: Option<&BatchId>,
    ) -> Result<Result<(Vec<Vec<f32>>, Usage), Exhausted>, PortError> {
        let model = self.embedder.model();
        let hashes: Vec<ContentHash> = chunks.iter().map(|c| cache_key_text(&c.text)).collect();
        let mut vectors = self.cache.get(model, &hashes).await?;
        vectors.resize(chunks.len(), None);
        // A text repeated within the document is sent once; its other chunks take its vector.
        let mut first: HashMap<&ContentHash, usize> = HashMap::new();
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        let mut missing: Vec<usize> = Vec::new();
        for (i, h) in hashes.iter().enumerate().filter(|(i, _)| vectors[*i].is_none()) {
            match first.get(h) {
                Some(&j) => repeats.push((i, j)),
                None => {
                    first.insert(h, i);
                    missing.push(i);
                }
            }
        }
        counter!(metric::EMBEDDING_CACHE, "result" => "hit").increment((chunks.len() - missing.len()) as u64);
        counter!(metric::EMBEDDING_CACHE, "result" => "miss").increment(missing.len() as u64);
        let mut billed = Usage::default();
        if !missing.is_empty() {
            let texts: Vec<String> = missing.iter().map(|&i| chunks[i].text.clone()).collect();
            let tokens: u64 = missing.iter().map(|&i| u64::from(chunks[i].tokens)).sum();
            let cost = self.embedder.usage(&texts);
            // A model that bills nothing (the local one) is neither limited nor counted.
            let charged = if cost.nanodollars > 0 { charges(self.budget, batch) } else { Vec::new() };
            if !charged.is_empty()
                && let Reservation::Refused { scope, held, limit } =
                    self.spend.reserve(&charged, cost.nanodollars).await?
            {
                return Ok(Err(Exhausted { scope, held, limit }));
            }
            let result = crate::embed_timed(self.embedder, &texts, "index").await;
            // What this document was billed: less than the price reserved when some of its
            // texts were embedded for another document in the same merged call.
            let used = result.as_ref().map_or(Usage::default(), |(_, used)| *used);
            if !charged.is_empty() {
                let scopes: Vec<_> = charged.into_iter().map(|c| c.scope).collect();
                self.spend.settle(&scopes, cost.nanodollars, used).await?;
            }
            let (fresh, _) = result?;
            billed = used;
            counter!(metric::TOKENS_EMBEDDED).increment(tokens);
            if fresh.len() != texts.len() {
                // The embedder's fault, not the document's: failed, not rejected, so the chunks
                // of its last good version stay searchable.
                let source = Box::new(WrongCount { got: fresh.len(), sent: texts.len() });
                return Err(PortError::Permanent { operation: "embed", source });
            }
            let entries: Vec<(ContentHash, Vec<f32>)> =
                missing.iter().zip(&fresh).map(|(&i, v)| (hashes[i].clone(), v.clone())).collect();
            self.cache.put(model, &entries).await?;
            for (&i, v) in missing.iter().zip(fresh) {
                vectors[i] = Some(v);
            }
            for (i, j) in repeats {
                vectors[i] = vectors[j].clone();
            }
        }
        tracing::debug!(cached = chunks.len() - missing.len(), embedded = missing.len(), "chunk vectors");
        Ok(Ok((vectors.into_iter().flatten().collect(), billed)))
    }

    /// Removes a deleted document's chunks and state ([`forget`]).
    pub async fn remove(&self, key: &DocumentKey) -> Result<u64, PortError> {
        forget(self.state, self.writer, self.hosted, &DocumentId::for_key(key)).await
    }

    /// Records that the document at `key` cannot be indexed ([`reject`]).
    pub async fn reject(&self, key: &DocumentKey, failure: &Failure) -> Result<(), PortError> {
        reject(self.state, self.writer, self.hosted, key, failure).await
    }
}
