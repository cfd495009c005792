//! The ports the pipeline is written against. Each is narrow and named for one role, so that an
//! adapter implements only what its backend does (S3 is a blob source, not a state store) and a
//! handler asks only for what it uses.
//!
//! Every method is an idempotent operation keyed by deterministic ids, so that at-least-once
//! delivery (SQS, S3 events, a resumed local batch) never indexes a document twice. None of them
//! spans two stores: a document's checkpoint is written only after its vectors are, which is what
//! makes a crash between the two safe (the retry redoes the upsert, then checkpoints).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{
    BatchCounters, BatchId, CharSpan, ChunkId, ContentHash, DocumentId, DocumentKey, DocumentStatus, Failure,
    PageRange, Prepared,
};
use crate::error::{Classify, PortError};
use crate::meta::ChunkMeta;

/// What a source says about a blob without reading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    pub key: DocumentKey,
    pub size: u64,
    /// ETag on S3, a modification stamp locally; a cheap "may have changed" signal. The content
    /// hash decides.
    pub version: Option<String>,
    pub content_type: Option<String>,
    /// User metadata (S3 object metadata or a sidecar file), filterable at search time.
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub info: BlobInfo,
    pub bytes: Vec<u8>,
}

/// Reads documents from where users put them: an S3 bucket or a local folder.
pub trait BlobSource: Send + Sync {
    fn head(&self, key: &DocumentKey) -> impl Future<Output = Result<BlobInfo, PortError>> + Send;
    fn get(&self, key: &DocumentKey) -> impl Future<Output = Result<Blob, PortError>> + Send;
    /// Every blob under `prefix` ("" for all), in key order.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<BlobInfo>, PortError>> + Send;
    /// Up to `n` bytes from the blob's start, for screening by magic number before work is
    /// queued; empty where reading them costs a request per object (S3), so that a batch over a
    /// prefix screens by name and size alone there and extraction finds out the rest.
    fn peek(&self, key: &DocumentKey, n: usize) -> impl Future<Output = Result<Vec<u8>, PortError>> + Send {
        let _ = (key, n);
        std::future::ready(Ok(Vec::new()))
    }
}

/// Bytes to chunks: extraction, redaction and chunking (`quarry_text::Preparer`), behind a port so
/// that the pipeline, and the search Lambda that shares it, carry no parser.
pub trait DocumentPreparer: Send + Sync {
    /// Always the document's fault ([`crate::ErrorClass::BadInput`]): it is recorded, not retried.
    type Error: std::error::Error + Classify + Send + Sync + 'static;
    /// The screening rule ([`crate::format::screen`]) with this preparer's limits, on what the
    /// source says before a byte is read: a file refused here is never downloaded.
    fn screen(&self, info: &BlobInfo) -> Result<(), Self::Error>;
    /// `content_type` is what the source declares, consulted when the bytes and key do not tell.
    fn prepare_document(
        &self,
        key: &DocumentKey,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Result<Prepared, Self::Error>;
}

/// What a worker is asked to do with one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    Index,
    Delete,
}

/// A small pointer message: the key, never the document's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexJob {
    pub action: JobAction,
    pub key: DocumentKey,
    pub version: Option<String>,
    pub batch: Option<BatchId>,
    /// The document's size in bytes where the sender knew it (an S3 event, a batch's listing): what
    /// a batch counts as done when the document fails before it is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl IndexJob {
    /// A job that indexes `key`, as part of `batch` where it belongs to one.
    pub fn index(key: DocumentKey, batch: Option<BatchId>, size: Option<u64>) -> Self {
        IndexJob { action: JobAction::Index, key, version: None, batch, size }
    }
}

/// Fans jobs out to workers (SQS on AWS, a bounded channel locally).
pub trait JobQueue: Send + Sync {
    fn enqueue(&self, jobs: &[IndexJob]) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// The outcome of trying to take a document for processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This worker holds the document until `expires_in` elapses.
    Acquired { attempt: u32, expires_in: Duration },
    /// The same content is already indexed: nothing to do (duplicate delivery, unchanged file).
    /// With its chunks and when it was checkpointed (milliseconds since the Unix epoch), so that a
    /// batch tells its own earlier work (a run killed after the checkpoint, before the batch's
    /// record) from a document indexed before the batch began.
    AlreadyIndexed { chunks: u32, indexed_ms: i64 },
    /// Another worker holds an unexpired lease; retry later.
    Busy,
}

/// What the checkpoint records once a document's vectors are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub document: DocumentId,
    pub key: DocumentKey,
    pub content_hash: ContentHash,
    pub chunks: u32,
    pub model: String,
    /// Where a store that embeds for itself keeps the document ([`crate::hosted::HostedStore`]):
    /// what is removed when the document is replaced or deleted. `None` in a vector store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
}

/// Per-document state with leases, so that concurrent or duplicate deliveries process a document
/// once (a DynamoDB conditional write on AWS, a SQLite row locally).
pub trait CheckpointStore: Send + Sync {
    fn acquire(
        &self,
        document: &DocumentId,
        content_hash: &ContentHash,
        lease: Duration,
    ) -> impl Future<Output = Result<Lease, PortError>> + Send;
    /// Marks the document indexed. Call only after its vectors are durably written.
    fn checkpoint(&self, checkpoint: &Checkpoint) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Records that the document at `key` cannot be indexed, releasing its lease. The key is kept
    /// so that a sync can forget a document that only ever failed once its file is gone.
    fn fail(
        &self,
        document: &DocumentId,
        key: &DocumentKey,
        failure: &Failure,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn forget(&self, document: &DocumentId) -> impl Future<Output = Result<(), PortError>> + Send;
    /// The handle of the document's last checkpoint, kept through later leases and failures
    /// until it is forgotten or checkpointed again.
    fn handle(&self, document: &DocumentId) -> impl Future<Output = Result<Option<String>, PortError>> + Send;
    /// Gives a lease back without an outcome (a budget ran out before the document was embedded):
    /// the document is pending again, for whoever takes it next, at once rather than at the
    /// lease's expiry. A document that is not `processing` is left as it is.
    fn release(&self, document: &DocumentId) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// A batch's clock, in milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTiming {
    pub created_ms: i64,
    /// `None` until the first outcome is recorded.
    pub updated_ms: Option<i64>,
}

/// Tracks batches with counters that many workers update at once.
///
/// Recording is idempotent per (batch, document): the same outcome twice counts once, and a new
/// outcome for a document (a retry that succeeds) moves it from one counter to the other, so that
/// `total = pending + done + failed + skipped` always holds.
pub trait BatchTracker: Send + Sync {
    /// Starts a batch over validated documents with their sizes in bytes. Creating the same batch
    /// again adds documents it lacks and leaves recorded outcomes alone.
    fn create(
        &self,
        batch: &BatchId,
        items: &[(DocumentKey, u64)],
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn counters(&self, batch: &BatchId) -> impl Future<Output = Result<BatchCounters, PortError>> + Send;
    /// When the batch was created and last recorded an outcome: what its rate and ETA follow from.
    fn timing(&self, batch: &BatchId) -> impl Future<Output = Result<BatchTiming, PortError>> + Send;
    fn record(
        &self,
        batch: &BatchId,
        document: &DocumentKey,
        outcome: &BatchOutcome,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// The documents that failed, with why, in key order.
    fn failures(&self, batch: &BatchId) -> impl Future<Output = Result<Vec<(DocumentKey, Failure)>, PortError>> + Send;
    /// The documents paused (a budget ran out), with why, in key order: what resuming runs again.
    fn paused(&self, batch: &BatchId) -> impl Future<Output = Result<Vec<(DocumentKey, String)>, PortError>> + Send;
    /// The `limit` most recently created batches, newest first, with when each was created.
    fn recent(&self, limit: usize) -> impl Future<Output = Result<Vec<(BatchId, i64)>, PortError>> + Send;
}

/// How one document of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum BatchOutcome {
    Indexed {
        chunks: u32,
        bytes: u64,
    },
    Unchanged {
        bytes: u64,
    },
    Failed {
        failure: Failure,
        bytes: u64,
    },
    /// Not embedded because a budget ran out: still pending (never failed), with why
    /// (`budget_exhausted`), until the batch is resumed.
    Paused {
        reason: String,
    },
}

/// The embedding model's identity: vectors from different models never mix in one index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub id: String,
    pub dimension: usize,
    /// Longest input in model tokens, special tokens included.
    pub max_tokens: usize,
}

/// What embedding some texts is billed: the provider's tokens, and their price in billionths of
/// a dollar. A model that runs here (the local one) bills nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub tokens: u64,
    pub nanodollars: u64,
}

impl Usage {
    pub fn add(&mut self, other: Usage) {
        self.tokens += other.tokens;
        self.nanodollars += other.nanodollars;
    }

    pub fn dollars(&self) -> f64 {
        self.nanodollars as f64 / 1e9
    }
}

/// Turns text into unit-length vectors.
pub trait Embedder: Send + Sync {
    fn model(&self) -> &ModelInfo;
    fn embed(&self, texts: &[String]) -> impl Future<Output = Result<Vec<Vec<f32>>, PortError>> + Send;
    /// What embedding `texts` is billed, counted as the provider counts; nothing by default.
    fn usage(&self, texts: &[String]) -> Usage {
        let _ = texts;
        Usage::default()
    }
    /// Embeds `texts` and says what this caller was billed for them: `usage(texts)`, unless the
    /// embedder shares calls between callers and a text was already being embedded for another
    /// (then only the first caller pays for it, as the provider bills it once).
    fn embed_billed(&self, texts: &[String]) -> impl Future<Output = Result<(Vec<Vec<f32>>, Usage), PortError>> + Send {
        async move {
            let vectors = self.embed(texts).await?;
            Ok((vectors, self.usage(texts)))
        }
    }
}

/// One of two embedders, chosen at start-up (the local model or the OpenAI API): handlers stay
/// generic over one `Embedder` type whichever the configuration picks.
#[derive(Debug, Clone)]
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

impl<A: Embedder, B: Embedder> Embedder for Either<A, B> {
    fn model(&self) -> &ModelInfo {
        match self {
            Either::Left(a) => a.model(),
            Either::Right(b) => b.model(),
        }
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        match self {
            Either::Left(a) => a.embed(texts).await,
            Either::Right(b) => b.embed(texts).await,
        }
    }

    fn usage(&self, texts: &[String]) -> Usage {
        match self {
            Either::Left(a) => a.usage(texts),
            Either::Right(b) => b.usage(texts),
        }
    }
}

/// Vectors already computed, by model and content: a document edited in one place re-embeds only
/// the chunks whose text changed (SQLite locally, DynamoDB with a TTL on AWS).
pub trait EmbeddingCache: Send + Sync {
    /// One entry per hash, in order; `None` where nothing is cached.
    fn get(
        &self,
        model: &ModelInfo,
        texts: &[ContentHash],
    ) -> impl Future<Output = Result<Vec<Option<Vec<f32>>>, PortError>> + Send;
    fn put(
        &self,
        model: &ModelInfo,
        entries: &[(ContentHash, Vec<f32>)],
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// As `get`, without counting as a use where a store keeps uses (its TTL and eviction order
    /// stay as they were): what an estimate looks with.
    fn peek(
        &self,
        model: &ModelInfo,
        texts: &[ContentHash],
    ) -> impl Future<Output = Result<Vec<Option<Vec<f32>>>, PortError>> + Send {
        self.get(model, texts)
    }
}

/// A chunk's vector with what search needs to show and filter it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    pub id: ChunkId,
    pub document: DocumentId,
    pub vector: Vec<f32>,
    pub text: String,
    pub pages: Option<PageRange>,
    /// Where the chunk's text sits in the document's (redacted) text, in characters.
    pub span: CharSpan,
    /// The document's key, format and title, and the user's metadata: stored with the vector and
    /// filtered on in their flat form ([`crate::meta`]).
    pub meta: ChunkMeta,
}

/// Writes vectors. Upserts by chunk id; removal by document keeps ordinals below `keep` so that a
/// shorter new version drops exactly its stale tail.
pub trait VectorWriter: Send + Sync {
    fn upsert(&self, records: &[VectorRecord]) -> impl Future<Output = Result<(), PortError>> + Send;
    fn delete_from(&self, document: &DocumentId, keep: u32) -> impl Future<Output = Result<u64, PortError>> + Send;
}

/// A nearest-neighbour query. The filter is applied inside the search (translated to the
/// backend's own), never to its results, so that `top_k` stays full when a filter is selective.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorQuery {
    pub vector: Vec<f32>,
    pub top_k: usize,
    pub filter: Option<crate::Filter>,
}

/// One hit, scored as a similarity in [0, 1] whatever the backend's distance, with what was
/// stored beside its vector (S3 Vectors returns it with the query; no second read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorHit {
    pub id: ChunkId,
    pub document: DocumentId,
    pub score: f32,
    pub text: String,
    pub pages: Option<PageRange>,
    pub span: CharSpan,
    pub meta: ChunkMeta,
}

/// Searches vectors. Separate from the writer, so that a role that only searches needs no write
/// permission (the search Lambda writes only to remove chunks: a `DELETE /v1/documents/{id}`, and
/// a document a batch refuses at screening).
pub trait VectorSearcher: Send + Sync {
    fn search(&self, query: &VectorQuery) -> impl Future<Output = Result<Vec<VectorHit>, PortError>> + Send;
}

/// A keyword (full-text) query: words, not a query language; the adapter quotes every word.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordQuery {
    pub text: String,
    pub top_k: usize,
    pub filter: Option<crate::Filter>,
}

/// Ranks chunks by BM25 over their text and their document's title. Hits are scored in [0, 1]
/// over the most the query's words could score (BM25 has no absolute scale), so that a score reads
/// the same across queries: a chunk that says everything the query asks, often, nears 1; one that
/// says one of its words once scores low, whatever else matched. Backends without full-text search
/// (S3 Vectors) do not implement it, and search there is semantic only.
pub trait KeywordSearcher: Send + Sync {
    fn keyword_search(&self, query: &KeywordQuery) -> impl Future<Output = Result<Vec<VectorHit>, PortError>> + Send;
}

/// What is known about one document: the API's `GET /v1/documents/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DocumentRecord {
    pub id: DocumentId,
    /// Unknown for a document that failed before it was ever indexed under its key.
    pub key: Option<DocumentKey>,
    pub content_hash: Option<ContentHash>,
    pub model: Option<String>,
    #[serde(flatten)]
    pub status: DocumentStatus,
    /// Milliseconds since the Unix epoch.
    pub updated_ms: i64,
    /// Where a hosted store keeps the document ([`Checkpoint::handle`]): what its search results
    /// are checked against. Not part of the API's answer.
    #[serde(skip)]
    pub handle: Option<String>,
}

/// Reads document state. Apart from [`CheckpointStore`]: the search side reads, never leases.
pub trait DocumentReader: Send + Sync {
    fn document(&self, id: &DocumentId) -> impl Future<Output = Result<Option<DocumentRecord>, PortError>> + Send;
}

/// One filterable metadata field as the index holds it: how many indexed documents carry it, and
/// its commonest values (most documents first, then by value), for a search page's filters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldSummary {
    /// As filters name it: `format`, `title`, `user.<name>` ([`crate::meta`]).
    pub name: String,
    pub documents: u64,
    pub values: Vec<ValueCount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ValueCount {
    /// A string, a number or a boolean, as stored.
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub value: serde_json::Value,
    pub documents: u64,
}

/// The filterable fields of the indexed documents, summarised ([`crate::meta::summarise`]). `key`
/// is left out (every document has its own), and so is a field where most documents have a value
/// no other shares, such as a title, once it has more values than a menu shows.
pub trait FieldCatalog: Send + Sync {
    /// At most `values` values per field, over the documents `within` accepts (a tenant's).
    fn fields(
        &self,
        values: usize,
        within: Option<&crate::Filter>,
    ) -> impl Future<Output = Result<Vec<FieldSummary>, PortError>> + Send;
}

/// What to index as one tracked batch: a key prefix, a list of keys, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchRequest {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub keys: Vec<DocumentKey>,
}

/// A batch accepted for work: its id, and the requested keys that do not exist (reported up
/// front, and recorded in the batch as failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchStarted {
    pub batch: BatchId,
    pub documents: u64,
    pub missing: Vec<DocumentKey>,
}

/// What indexing a request would send and cost, worked out before anything is spent
/// (`quarry_pipeline::estimate`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estimate {
    pub documents: u64,
    /// Already indexed with this content: nothing to do.
    pub unchanged: u64,
    /// Documents that would fail (missing, unreadable, refused): nothing sent for them.
    pub failing: u64,
    /// Requested keys that name nothing (among the failing).
    pub missing: Vec<DocumentKey>,
    /// Chunks of the documents that would be indexed.
    pub chunks: u64,
    /// Of those, found in the embedding cache or earlier in the same request.
    pub cached: u64,
    /// What the chunks left would be billed.
    pub usage: Usage,
    /// The model that would embed them.
    pub model: String,
}

/// Starts batches: locally a background task, on AWS the same jobs sent to SQS.
pub trait BatchStarter: Send + Sync {
    fn start(&self, request: &BatchRequest) -> impl Future<Output = Result<BatchStarted, PortError>> + Send;
    /// What `request` would cost, without queueing, embedding or writing anything (a dry run).
    /// `None`: this deployment cannot tell before the documents are read by the workers.
    fn estimate(&self, request: &BatchRequest) -> impl Future<Output = Result<Option<Estimate>, PortError>> + Send;
    /// Runs `keys` of an existing batch again, under that batch (a resume after a budget was
    /// raised, a retry of its failures): its counters follow the documents, and it ends when they
    /// do. Returns how many jobs were queued.
    fn resume(&self, batch: &BatchId, keys: &[DocumentKey]) -> impl Future<Output = Result<u64, PortError>> + Send;
}

/// Where to send a file added over the API (the search page's drop zone), once its name, size and
/// type have passed the same screening as ingest: the bytes go to `url` with `method` and `headers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadGrant {
    pub key: DocumentKey,
    /// The document's id: `GET /v1/documents/{id}` says when it is indexed, or why it failed.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub document_id: DocumentId,
    pub method: String,
    /// The API's own `/v1/files/{key}` locally (relative: send the API's credentials); a presigned
    /// S3 URL on AWS (absolute: send nothing but `headers`).
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Seconds the URL stays valid; `None`: it does not expire.
    pub expires_in_s: Option<u64>,
}

/// Hands out places to upload files to: the local API itself, or presigned S3 PUTs.
pub trait UploadGranter: Send + Sync {
    /// The origin (`https://host[:port]`) the grants' URLs point at, where it is not the API's
    /// own: a page's Content-Security-Policy lets it connect there and nowhere else.
    fn origin(&self) -> Option<String> {
        None
    }
    /// Refuses (`Conflict`) a key that already names a file, where the target can tell: a page
    /// never silently replaces a document.
    fn grant(
        &self,
        key: &DocumentKey,
        size: u64,
        content_type: Option<&str>,
    ) -> impl Future<Output = Result<UploadGrant, PortError>> + Send;
}

/// Takes an upload's bytes where the API itself receives them (locally): written where the source
/// reads them, whole or not at all, and never over an existing file (`Conflict`).
pub trait BlobWriter: Send + Sync {
    fn put_new(&self, key: &DocumentKey, bytes: &[u8]) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// The alert router's memory, shared by every invocation: claims that make a notification go out
/// once whatever SNS redelivers or how many invocations run at once, and the members of a group
/// waiting for its next message. DynamoDB on AWS, SQLite locally; every write is conditional or
/// idempotent, and everything expires.
pub trait AlertLedger: Send + Sync {
    /// Takes `key` for `ttl` unless someone holds it: true if this caller now holds it. An
    /// expired claim can be taken again.
    fn claim(&self, key: &str, ttl: Duration) -> impl Future<Output = Result<bool, PortError>> + Send;
    /// Gives `key` up (a send failed: a redelivery may try again).
    fn release(&self, key: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Adds a member to `group` (the same `id` twice is one member).
    fn append(
        &self,
        group: &str,
        id: &str,
        payload: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Takes every member of `group`, oldest first: each is returned to one caller only.
    fn drain(&self, group: &str) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;
    /// Whether `group` has members waiting.
    fn waiting(&self, group: &str) -> impl Future<Output = Result<bool, PortError>> + Send;
}

/// One email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// Sends email (SESv2 on AWS).
pub trait Mailer: Send + Sync {
    fn send(&self, email: &Email) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Publishes Quarry's own events (SNS on AWS; the local router in `quarry serve`). Delivery is
/// at least once: the same [`crate::event::Event::occurrence`] may be published twice, and the
/// router sends it once.
pub trait EventPublisher: Send + Sync {
    fn publish(&self, event: &crate::event::Event) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// Publishes nothing: where no topic or route is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventPublisher for NoEvents {
    async fn publish(&self, _: &crate::event::Event) -> Result<(), PortError> {
        Ok(())
    }
}
