//! In-memory adapters of the ports, for driving the Lambda handlers with real event JSON without
//! moto (`functions/*/tests`), beside the moto end-to-end tests that stay. Each passes the same
//! contract suite as the SQLite and AWS adapters (`tests/fakes.rs` in this crate), so a handler
//! test on them says something about the handler, not about a stand-in that behaves otherwise.
//!
//! Clones share their contents (an `Arc` inside), as two handles on one DynamoDB table do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use quarry_core::ports::{
    BatchOutcome, BatchTiming, BatchTracker, Blob, BlobInfo, BlobSource, Checkpoint, CheckpointStore, DocumentReader,
    DocumentRecord, EmbeddingCache, EventPublisher, IndexJob, JobQueue, Lease, ModelInfo, UploadGrant, UploadGranter,
    VectorHit, VectorQuery, VectorRecord, VectorSearcher, VectorWriter,
};
use quarry_core::{
    BatchCounters, BatchId, ChunkId, ContentHash, DocumentId, DocumentKey, DocumentStatus, Failure, PortError,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Two-dimensional unit vectors from a text's length, for stores that need vectors and tests that
/// need no meaning (model `lengths`): no model to load, the same every time.
#[derive(Debug, Clone)]
pub struct LengthEmbedder(pub ModelInfo);

impl Default for LengthEmbedder {
    fn default() -> Self {
        LengthEmbedder(ModelInfo { id: "lengths".into(), dimension: 2, max_tokens: 512 })
    }
}

impl quarry_core::ports::Embedder for LengthEmbedder {
    fn model(&self) -> &ModelInfo {
        &self.0
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        Ok(texts
            .iter()
            .map(|t| (t.len() % 7) as f32)
            .map(|x| vec![1.0 / (1.0 + x * x).sqrt(), x / (1.0 + x * x).sqrt()])
            .collect())
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A bucket in memory.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    blobs: Arc<Mutex<BTreeMap<DocumentKey, Blob>>>,
}

impl MemorySource {
    pub fn put(&self, key: &str, bytes: &[u8], content_type: Option<&str>) {
        let key = DocumentKey::new(key);
        let info = BlobInfo {
            key: key.clone(),
            size: bytes.len() as u64,
            version: Some(ContentHash::of(bytes).as_str()[..12].to_owned()),
            content_type: content_type.map(str::to_owned),
            metadata: BTreeMap::new(),
        };
        lock(&self.blobs).insert(key, Blob { info, bytes: bytes.to_vec() });
    }

    pub fn delete(&self, key: &str) {
        lock(&self.blobs).remove(&DocumentKey::new(key));
    }
}

impl BlobSource for MemorySource {
    async fn head(&self, key: &DocumentKey) -> Result<BlobInfo, PortError> {
        self.get(key).await.map(|b| b.info)
    }

    async fn get(&self, key: &DocumentKey) -> Result<Blob, PortError> {
        lock(&self.blobs).get(key).cloned().ok_or_else(|| PortError::NotFound { what: format!("object {key}") })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, PortError> {
        Ok(lock(&self.blobs)
            .values()
            .filter(|b| b.info.key.as_str().starts_with(prefix))
            .map(|b| b.info.clone())
            .collect())
    }
}

impl UploadGranter for MemorySource {
    /// A `memory:` URL: nothing can be sent there, but the grant's checks and shape are the real ones.
    async fn grant(&self, key: &DocumentKey, _: u64, content_type: Option<&str>) -> Result<UploadGrant, PortError> {
        if lock(&self.blobs).contains_key(key) {
            return Err(PortError::Conflict { operation: "memory.grant" });
        }
        Ok(UploadGrant {
            key: key.clone(),
            document_id: quarry_core::DocumentId::for_key(key),
            method: "PUT".to_owned(),
            url: format!("memory:///{}", key.as_str()),
            headers: content_type.map(|c| ("content-type".to_owned(), c.to_owned())).into_iter().collect(),
            expires_in_s: None,
        })
    }
}

/// A queue in memory: what was sent, until [`MemoryQueue::take`].
#[derive(Debug, Clone, Default)]
pub struct MemoryQueue {
    jobs: Arc<Mutex<Vec<IndexJob>>>,
}

impl MemoryQueue {
    pub fn take(&self) -> Vec<IndexJob> {
        std::mem::take(&mut *lock(&self.jobs))
    }
}

impl JobQueue for MemoryQueue {
    async fn enqueue(&self, jobs: &[IndexJob]) -> Result<(), PortError> {
        lock(&self.jobs).extend_from_slice(jobs);
        Ok(())
    }
}

/// Events in memory: what was published, in order.
#[derive(Debug, Clone, Default)]
pub struct MemoryEvents {
    events: Arc<Mutex<Vec<quarry_core::event::Event>>>,
}

impl MemoryEvents {
    pub fn published(&self) -> Vec<quarry_core::event::Event> {
        lock(&self.events).clone()
    }
}

impl EventPublisher for MemoryEvents {
    async fn publish(&self, event: &quarry_core::event::Event) -> Result<(), PortError> {
        lock(&self.events).push(event.clone());
        Ok(())
    }
}

/// A vector store in memory: exact cosine search, filters applied before ranking.
#[derive(Debug, Clone)]
pub struct MemoryVectors {
    dimension: usize,
    records: Arc<Mutex<BTreeMap<ChunkId, VectorRecord>>>,
}

impl MemoryVectors {
    pub fn new(dimension: usize) -> Self {
        MemoryVectors { dimension, records: Arc::default() }
    }

    /// Chunk ids stored, in order.
    pub fn ids(&self) -> Vec<ChunkId> {
        lock(&self.records).keys().cloned().collect()
    }
}

impl VectorWriter for MemoryVectors {
    async fn upsert(&self, records: &[VectorRecord]) -> Result<(), PortError> {
        if let Some(r) = records.iter().find(|r| r.vector.len() != self.dimension) {
            return Err(PortError::InvalidInput {
                operation: "vectors.upsert",
                reason: format!("{} has {} dimensions, not {}", r.id, r.vector.len(), self.dimension),
            });
        }
        let mut all = lock(&self.records);
        for r in records {
            all.insert(r.id.clone(), r.clone());
        }
        Ok(())
    }

    async fn delete_from(&self, document: &DocumentId, keep: u32) -> Result<u64, PortError> {
        let mut all = lock(&self.records);
        let before = all.len();
        all.retain(|id, r| &r.document != document || id.parts().is_some_and(|(_, ordinal)| ordinal < keep));
        Ok((before - all.len()) as u64)
    }
}

impl quarry_core::keywords::ChunkReader for MemoryVectors {
    async fn chunks(&self, document: &DocumentId, count: u32) -> Result<Vec<VectorHit>, PortError> {
        let all = lock(&self.records);
        Ok((0..count)
            .filter_map(|ordinal| all.get(&ChunkId::new(document, ordinal)))
            .map(|r| VectorHit {
                id: r.id.clone(),
                document: r.document.clone(),
                score: 0.0,
                text: r.text.clone(),
                pages: r.pages,
                span: r.span,
                meta: r.meta.clone(),
            })
            .collect())
    }
}

impl quarry_core::census::VectorCensus for MemoryVectors {
    async fn stored(&self) -> Result<Vec<quarry_core::census::StoredChunks>, PortError> {
        let ids = lock(&self.records).keys().filter_map(ChunkId::parts).collect();
        Ok(quarry_core::census::StoredChunks::group(ids))
    }
}

impl VectorSearcher for MemoryVectors {
    async fn search(&self, query: &VectorQuery) -> Result<Vec<VectorHit>, PortError> {
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        let q = norm(&query.vector);
        let mut hits: Vec<VectorHit> = lock(&self.records)
            .values()
            .filter(|r| query.filter.as_ref().is_none_or(|f| f.matches(&r.meta.to_metadata())))
            .map(|r| {
                let cos = r.vector.iter().zip(&query.vector).map(|(a, b)| a * b).sum::<f32>() / (norm(&r.vector) * q);
                VectorHit {
                    id: r.id.clone(),
                    document: r.document.clone(),
                    score: ((cos + 1.0) / 2.0).clamp(0.0, 1.0),
                    text: r.text.clone(),
                    pages: r.pages,
                    span: r.span,
                    meta: r.meta.clone(),
                }
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        hits.truncate(query.top_k);
        Ok(hits)
    }
}

#[derive(Debug, Clone)]
struct Doc {
    key: Option<DocumentKey>,
    hash: Option<ContentHash>,
    status: &'static str,
    attempts: u32,
    lease_until: Option<Instant>,
    chunks: u32,
    model: Option<String>,
    failure: Option<Failure>,
    updated_ms: i64,
    handle: Option<String>,
}

#[derive(Debug, Default)]
struct Batch {
    created_ms: i64,
    updated_ms: Option<i64>,
    /// key -> (bytes, outcome: None while pending)
    items: BTreeMap<DocumentKey, (u64, Option<BatchOutcome>)>,
}

#[derive(Debug, Default)]
struct State {
    documents: HashMap<DocumentId, Doc>,
    batches: HashMap<BatchId, Batch>,
    /// Vectors with when they were last used (ms).
    cache: HashMap<(String, usize, ContentHash), (Vec<f32>, i64)>,
    spend: HashMap<quarry_core::spend::SpendScope, quarry_core::spend::Spent>,
}

/// Document state, batches and the embedding cache in memory: one table, as DynamoDB is on AWS.
#[derive(Debug, Clone, Default)]
pub struct MemoryState {
    state: Arc<Mutex<State>>,
}

impl CheckpointStore for MemoryState {
    async fn acquire(&self, document: &DocumentId, hash: &ContentHash, lease: Duration) -> Result<Lease, PortError> {
        let mut s = lock(&self.state);
        let now = Instant::now();
        let attempt = match s.documents.get(document) {
            Some(d) if d.status == "indexed" && d.hash.as_ref() == Some(hash) => {
                return Ok(Lease::AlreadyIndexed { chunks: d.chunks, indexed_ms: d.updated_ms });
            }
            Some(d) if d.status == "processing" && d.lease_until.is_some_and(|u| u > now) => return Ok(Lease::Busy),
            // Attempts count per content: a new version starts again at 1.
            Some(d) if d.hash.as_ref() == Some(hash) => d.attempts + 1,
            _ => 1,
        };
        let previous = s.documents.get(document).cloned();
        s.documents.insert(
            document.clone(),
            Doc {
                key: previous.as_ref().and_then(|d| d.key.clone()),
                hash: Some(hash.clone()),
                status: "processing",
                attempts: attempt,
                lease_until: Some(now + lease),
                chunks: 0,
                handle: previous.as_ref().and_then(|d| d.handle.clone()),
                model: previous.and_then(|d| d.model),
                failure: None,
                updated_ms: now_ms(),
            },
        );
        Ok(Lease::Acquired { attempt, expires_in: lease })
    }

    async fn checkpoint(&self, c: &Checkpoint) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        let attempts = s.documents.get(&c.document).map_or(1, |d| d.attempts);
        s.documents.insert(
            c.document.clone(),
            Doc {
                key: Some(c.key.clone()),
                hash: Some(c.content_hash.clone()),
                status: "indexed",
                attempts,
                lease_until: None,
                chunks: c.chunks,
                model: Some(c.model.clone()),
                failure: None,
                updated_ms: now_ms(),
                handle: c.handle.clone(),
            },
        );
        Ok(())
    }

    async fn fail(&self, document: &DocumentId, key: &DocumentKey, failure: &Failure) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        let previous = s.documents.get(document).cloned();
        s.documents.insert(
            document.clone(),
            Doc {
                key: Some(key.clone()),
                hash: previous.as_ref().and_then(|d| d.hash.clone()),
                status: "failed",
                attempts: previous.as_ref().map_or(0, |d| d.attempts),
                lease_until: None,
                chunks: 0,
                handle: previous.as_ref().and_then(|d| d.handle.clone()),
                model: previous.and_then(|d| d.model),
                failure: Some(failure.clone()),
                updated_ms: now_ms(),
            },
        );
        Ok(())
    }

    async fn forget(&self, document: &DocumentId) -> Result<(), PortError> {
        lock(&self.state).documents.remove(document);
        Ok(())
    }

    async fn handle(&self, document: &DocumentId) -> Result<Option<String>, PortError> {
        Ok(lock(&self.state).documents.get(document).and_then(|d| d.handle.clone()))
    }

    async fn release(&self, document: &DocumentId) -> Result<(), PortError> {
        if let Some(d) = lock(&self.state).documents.get_mut(document).filter(|d| d.status == "processing") {
            d.status = "pending";
            d.lease_until = None;
        }
        Ok(())
    }
}

fn record_of(id: &DocumentId, d: &Doc) -> DocumentRecord {
    DocumentRecord {
        id: id.clone(),
        key: d.key.clone(),
        content_hash: d.hash.clone(),
        model: d.model.clone(),
        status: match d.status {
            "indexed" => DocumentStatus::Indexed { chunks: d.chunks },
            "failed" => DocumentStatus::Failed {
                failure: d.failure.clone().unwrap_or_else(|| Failure {
                    code: String::new(),
                    message: String::new(),
                    retryable: false,
                }),
            },
            "pending" => DocumentStatus::Pending,
            _ => DocumentStatus::Processing { attempt: d.attempts },
        },
        updated_ms: d.updated_ms,
        handle: d.handle.clone(),
    }
}

impl DocumentReader for MemoryState {
    async fn document(&self, id: &DocumentId) -> Result<Option<DocumentRecord>, PortError> {
        Ok(lock(&self.state).documents.get(id).map(|d| record_of(id, d)))
    }
}

impl quarry_core::census::StateCensus for MemoryState {
    async fn documents(&self) -> Result<Vec<DocumentRecord>, PortError> {
        Ok(lock(&self.state).documents.iter().map(|(id, d)| record_of(id, d)).collect())
    }
}

impl BatchTracker for MemoryState {
    async fn create(&self, batch: &BatchId, items: &[(DocumentKey, u64)]) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        let b = s.batches.entry(batch.clone()).or_insert_with(|| Batch { created_ms: now_ms(), ..Batch::default() });
        for (key, bytes) in items {
            b.items.entry(key.clone()).or_insert((*bytes, None));
        }
        Ok(())
    }

    async fn counters(&self, batch: &BatchId) -> Result<BatchCounters, PortError> {
        let s = lock(&self.state);
        let b = s.batches.get(batch).ok_or_else(|| PortError::NotFound { what: format!("batch {batch}") })?;
        let mut c = BatchCounters::default();
        for (bytes, outcome) in b.items.values() {
            c.total += 1;
            c.bytes_total += bytes;
            match outcome {
                None => c.pending += 1,
                Some(BatchOutcome::Indexed { .. }) => c.done += 1,
                Some(BatchOutcome::Unchanged { .. }) => c.skipped += 1,
                Some(BatchOutcome::Failed { .. }) => c.failed += 1,
                Some(BatchOutcome::Paused { .. }) => {
                    c.pending += 1;
                    c.paused += 1;
                }
            }
            if outcome.as_ref().is_some_and(|o| !matches!(o, BatchOutcome::Paused { .. })) {
                c.bytes_done += bytes;
            }
        }
        Ok(c)
    }

    async fn timing(&self, batch: &BatchId) -> Result<BatchTiming, PortError> {
        let s = lock(&self.state);
        let b = s.batches.get(batch).ok_or_else(|| PortError::NotFound { what: format!("batch {batch}") })?;
        Ok(BatchTiming { created_ms: b.created_ms, updated_ms: b.updated_ms })
    }

    async fn record(&self, batch: &BatchId, document: &DocumentKey, outcome: &BatchOutcome) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        let b = s.batches.get_mut(batch).ok_or_else(|| PortError::NotFound { what: format!("batch {batch}") })?;
        let item = b.items.get_mut(document).ok_or_else(|| PortError::InvalidInput {
            operation: "batches.record",
            reason: format!("{document} is not in batch {batch}"),
        })?;
        item.1 = Some(outcome.clone());
        b.updated_ms = Some(now_ms().max(b.created_ms));
        Ok(())
    }

    async fn failures(&self, batch: &BatchId) -> Result<Vec<(DocumentKey, Failure)>, PortError> {
        let s = lock(&self.state);
        let b = s.batches.get(batch).ok_or_else(|| PortError::NotFound { what: format!("batch {batch}") })?;
        Ok(b.items
            .iter()
            .filter_map(|(k, (_, o))| match o {
                Some(BatchOutcome::Failed { failure, .. }) => Some((k.clone(), failure.clone())),
                _ => None,
            })
            .collect())
    }

    async fn paused(&self, batch: &BatchId) -> Result<Vec<(DocumentKey, String)>, PortError> {
        let s = lock(&self.state);
        let b = s.batches.get(batch).ok_or_else(|| PortError::NotFound { what: format!("batch {batch}") })?;
        Ok(b.items
            .iter()
            .filter_map(|(k, (_, o))| match o {
                Some(BatchOutcome::Paused { reason }) => Some((k.clone(), reason.clone())),
                _ => None,
            })
            .collect())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<(BatchId, i64)>, PortError> {
        let s = lock(&self.state);
        let mut all: Vec<(BatchId, i64)> = s.batches.iter().map(|(id, b)| (id.clone(), b.created_ms)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.as_str().cmp(b.0.as_str())));
        all.truncate(limit);
        Ok(all)
    }
}

impl quarry_core::spend::SpendLedger for MemoryState {
    async fn reserve(
        &self,
        charges: &[quarry_core::spend::Charge],
        nanodollars: u64,
    ) -> Result<quarry_core::spend::Reservation, PortError> {
        let mut s = lock(&self.state);
        for c in charges {
            let held = s.spend.get(&c.scope).map_or(0, quarry_core::spend::Spent::held);
            if let Some(limit) = c.limit.filter(|&l| held + nanodollars > l) {
                return Ok(quarry_core::spend::Reservation::Refused { scope: c.scope.clone(), held, limit });
            }
        }
        for c in charges {
            s.spend.entry(c.scope.clone()).or_default().reserved_nanodollars += nanodollars;
        }
        Ok(quarry_core::spend::Reservation::Granted)
    }

    async fn settle(
        &self,
        scopes: &[quarry_core::spend::SpendScope],
        reserved: u64,
        used: quarry_core::ports::Usage,
    ) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        for scope in scopes {
            let e = s.spend.entry(scope.clone()).or_default();
            e.reserved_nanodollars = e.reserved_nanodollars.saturating_sub(reserved);
            e.used.add(used);
        }
        Ok(())
    }

    async fn spent(&self, scope: &quarry_core::spend::SpendScope) -> Result<quarry_core::spend::Spent, PortError> {
        Ok(lock(&self.state).spend.get(scope).copied().unwrap_or_default())
    }
}

impl EmbeddingCache for MemoryState {
    async fn get(&self, model: &ModelInfo, texts: &[ContentHash]) -> Result<Vec<Option<Vec<f32>>>, PortError> {
        let mut s = lock(&self.state);
        let now = now_ms();
        Ok(texts
            .iter()
            .map(|h| {
                s.cache.get_mut(&(model.id.clone(), model.dimension, h.clone())).map(|(v, used)| {
                    *used = now;
                    v.clone()
                })
            })
            .collect())
    }

    async fn put(&self, model: &ModelInfo, entries: &[(ContentHash, Vec<f32>)]) -> Result<(), PortError> {
        let mut s = lock(&self.state);
        for (h, v) in entries {
            s.cache.insert((model.id.clone(), model.dimension, h.clone()), (v.clone(), now_ms()));
        }
        Ok(())
    }
}

impl quarry_core::cache::CacheAdmin for MemoryState {
    async fn cache_stats(&self) -> Result<Vec<quarry_core::cache::CacheStats>, PortError> {
        let s = lock(&self.state);
        let mut by: BTreeMap<(String, usize), quarry_core::cache::CacheStats> = BTreeMap::new();
        for ((model, dimension, hash), (v, used)) in &s.cache {
            let e = by.entry((model.clone(), *dimension)).or_insert_with(|| quarry_core::cache::CacheStats {
                model: model.clone(),
                dimension: *dimension,
                entries: 0,
                bytes: 0,
                oldest_ms: *used,
                newest_ms: *used,
            });
            e.entries += 1;
            e.bytes += (model.len() + hash.as_str().len() + v.len() * 4 + 16) as u64;
            e.oldest_ms = e.oldest_ms.min(*used);
            e.newest_ms = e.newest_ms.max(*used);
        }
        Ok(by.into_values().collect())
    }

    async fn clear_cache(&self, filter: &quarry_core::cache::CacheFilter) -> Result<u64, PortError> {
        let mut s = lock(&self.state);
        let before = s.cache.len();
        s.cache.retain(|(model, _, _), (_, used)| !filter.matches(model, *used));
        Ok((before - s.cache.len()) as u64)
    }
}
