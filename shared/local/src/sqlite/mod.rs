//! State and vectors in one SQLite file (WAL): per-document leases and checkpoints, batches with
//! per-document outcomes, and chunks with their vectors, from which the in-memory [`FlatIndex`] is
//! rebuilt at open. Beside it (`state.keywords/`), the chunks' keyword index, kept in step by
//! every write and trusted at open only when it holds what the database holds.
//!
//! Each port call is its own short transaction, as a DynamoDB conditional write or an S3 Vectors
//! upsert would be: nothing spans the vectors and the checkpoint, so the embedded default behaves
//! like the AWS deployment it is the reference for. The calls are quick local I/O and run on the
//! caller's thread.

use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use quarry_core::meta::Metadata;
use quarry_core::{ChunkId, DocumentId, DocumentKey, PortError};
use rusqlite::{Connection, OptionalExtension};

mod alerts;
mod batches;
mod cache;
mod filters;
mod schema;
mod spend;
mod state;
mod vectors;

use crate::vector_index::{FlatIndex, IndexError, Opened};
use quarry_keyword::KeywordIndex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot migrate the state database to schema version {version}")]
    Migrate {
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the state database has schema version {found}, newer than this build knows ({known})")]
    TooNew { found: usize, known: usize },
    #[error("a stored vector is corrupt")]
    Vector(#[source] IndexError),
    #[error("chunk {chunk} has a corrupt document id {document:?}")]
    CorruptId { chunk: String, document: String },
    #[error("cannot read the stored vectors")]
    Load(#[source] rusqlite::Error),
    #[error("cannot open the keyword index")]
    Keywords(#[source] quarry_keyword::KeywordError),
    #[error(
        "the state database {} is damaged: restore it from a backup, or delete the folder it is in and \
         run `quarry ingest` again, which rebuilds the index from the files",
        path.display()
    )]
    Corrupt {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// SQLite's own verdict that the file is not a sound database: `SQLITE_CORRUPT` or
    /// `SQLITE_NOTADB`, at whatever step of opening it came.
    fn damaged(self, path: &Path) -> StoreError {
        let damaged = |e: &rusqlite::Error| {
            matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
            )
        };
        match self {
            StoreError::Open { source, .. } | StoreError::Migrate { source, .. } | StoreError::Load(source)
                if damaged(&source) =>
            {
                StoreError::Corrupt { path: path.to_owned(), source }
            }
            other => other,
        }
    }
}

impl quarry_core::Classify for StoreError {
    fn class(&self) -> quarry_core::ErrorClass {
        quarry_core::ErrorClass::Permanent
    }
    fn code(&self) -> &'static str {
        "state_unavailable"
    }
}

/// A write that found no room on the disk. Transient, and never the document's fault: a run stops at
/// it (a failure recorded for the document, if any write still fits, is retryable), and the same run
/// started again once there is room resumes where it stopped (cli/tests/it/faults.rs fills a real
/// disk mid-batch).
#[derive(Debug, thiserror::Error)]
#[error(
    "the disk that holds the index is full: free space (or move the index with --state), then run again; \
     what was indexed before is kept"
)]
pub struct DiskFull(#[source] rusqlite::Error);

/// A write that waited out the busy timeout behind another connection's write lock.
#[derive(Debug, thiserror::Error)]
#[error(
    "another program holds the index's write lock (another quarry on the same index, a backup, an sqlite3 \
     shell): run again once it lets go"
)]
pub struct Locked(#[source] rusqlite::Error);

fn db_error(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> PortError {
    move |e| match e.sqlite_error_code() {
        // Another process holds the write lock past the busy timeout: try again later.
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            PortError::Transient { operation, source: Box::new(Locked(e)) }
        }
        // SQLITE_FULL: the transaction rolled back whole, so trying again once there is room is safe.
        Some(rusqlite::ErrorCode::DiskFull) => PortError::Transient { operation, source: Box::new(DiskFull(e)) },
        _ => PortError::Permanent { operation, source: Box::new(e) },
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// What search results show of a chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkDetails {
    pub text: String,
    pub page_first: Option<u32>,
    pub page_last: Option<u32>,
    pub metadata: std::collections::BTreeMap<String, serde_json::Value>,
}

/// The keyword index, and whether it holds every stored chunk (then writes keep it so).
#[derive(Debug)]
struct Keywords {
    index: KeywordIndex,
    live: bool,
}

/// The embedded default's state store and vector store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    index: RwLock<FlatIndex>,
    /// The vector index was read from its snapshot at open, not from the rows.
    from_snapshot: bool,
    /// Each document's metadata (the same on all its chunks), for filters: a filter is decided
    /// once per document, inside the index scan.
    metadata: RwLock<rustc_hash::FxHashMap<DocumentId, Metadata>>,
    /// Filters' answers over the documents and their metadata, kept until the next write.
    filters: filters::Filters,
    /// On disk beside the database, kept current by every write once live; rebuilt from the
    /// chunks on first keyword search (or [`SqliteStore::warm_keywords`]) when it was found behind.
    keywords: RwLock<Keywords>,
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
    /// How the embedding cache stores vectors, and how long and how large it may keep them.
    cache: quarry_core::cache::CachePolicy,
}

/// Each document's metadata, for filters.
fn read_metadata(conn: &Connection) -> Result<rustc_hash::FxHashMap<DocumentId, Metadata>, StoreError> {
    let mut metadata = rustc_hash::FxHashMap::default();
    let mut stmt = conn.prepare("SELECT document_id, metadata FROM document_metadata").map_err(StoreError::Load)?;
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(StoreError::Load)?;
    for row in rows {
        let (doc, json) = row.map_err(StoreError::Load)?;
        if let (Some(doc), Ok(m)) = (DocumentId::parse(&doc), serde_json::from_str::<Metadata>(&json)) {
            metadata.insert(doc, m);
        }
    }
    Ok(metadata)
}

/// The vector index for the database at `path`: its vectors in `<db>.vectors` and loaded from
/// the snapshot `<db>.codes` when that was saved at `stamp` (`true`); otherwise empty, to fill
/// from the rows. In memory when another process holds the file, or it cannot be opened.
fn open_index(path: &Path, dim: usize, stamp: u64) -> (FlatIndex, bool) {
    match FlatIndex::open_files(dim, &path.with_extension("vectors"), &path.with_extension("codes"), stamp) {
        Ok(Opened::Current(index)) => (index, true),
        Ok(Opened::Empty(index)) => (index, false),
        Ok(Opened::Locked) => {
            tracing::info!("another process holds the vectors' file; this one keeps its vectors in memory");
            (FlatIndex::new(dim), false)
        }
        Err(e) => {
            tracing::warn!(error = %quarry_core::error::chain(&e), "cannot open the vectors' file; keeping the vectors in memory");
            (FlatIndex::new(dim), false)
        }
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Err(e) = self.save_vectors() {
            tracing::warn!(error = %quarry_core::error::chain(&e), "cannot save the vector snapshot; the next open reads the rows again");
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` for vectors of `dim` dimensions, migrates
    /// it, and loads the stored vectors into the index.
    pub fn open(path: &Path, dim: usize) -> Result<Self, StoreError> {
        SqliteStore::open_sound(path, dim).map_err(|e| e.damaged(path))
    }

    fn open_sound(path: &Path, dim: usize) -> Result<Self, StoreError> {
        let open = |source| StoreError::Open { path: path.to_owned(), source };
        let mut conn = Connection::open(path).map_err(open)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open)?;
        schema::migrate(&mut conn)?;
        let stamp = vectors::chunk_stamp(&conn).map_err(StoreError::Load)?;
        // The vector snapshot and the documents' metadata at once, on two threads: at a million
        // chunks each took about half of a sequential open (`--bench scale`).
        let (((mut index, current), vectors_ms), (metadata, metadata_ms)) = std::thread::scope(|scope| {
            let vectors = scope.spawn(|| {
                let started = std::time::Instant::now();
                (open_index(path, dim, stamp), started.elapsed().as_millis() as u64)
            });
            let started = std::time::Instant::now();
            let metadata = read_metadata(&conn).map(|m| (m, started.elapsed().as_millis() as u64));
            match vectors.join() {
                Ok(vectors) => metadata.map(|m| (vectors, m)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })?;
        if !current {
            let started = std::time::Instant::now();
            let mut stmt = conn.prepare("SELECT id, document_id, vector FROM chunks").map_err(StoreError::Load)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Vec<u8>>(2)?)))
                .map_err(StoreError::Load)?;
            for row in rows {
                let (id, doc, blob) = row.map_err(StoreError::Load)?;
                let doc = DocumentId::parse(&doc)
                    .ok_or_else(|| StoreError::CorruptId { chunk: id.clone(), document: doc.clone() })?;
                let id = ChunkId::from_stored(id);
                index.upsert(id, doc, &from_blob(&blob)).map_err(StoreError::Vector)?;
            }
            if let Err(e) = index.save() {
                tracing::warn!(error = %quarry_core::error::chain(&e), "cannot save the vector snapshot; the next open reads the rows again");
            }
            tracing::info!(chunks = index.len(), ms = started.elapsed().as_millis() as u64, "vector index rebuilt");
        }
        let keywords = KeywordIndex::open(&path.with_extension("keywords")).map_err(StoreError::Keywords)?;
        let live =
            keywords.stamp().map_err(StoreError::Keywords)? == Some(stamp) || (index.is_empty() && keywords.is_empty());
        tracing::info!(
            chunks = index.len(),
            vectors_from_snapshot = current,
            vectors_ms,
            metadata_ms,
            keywords_current = live,
            "state database opened"
        );
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            index: RwLock::new(index),
            from_snapshot: current,
            metadata: RwLock::new(metadata),
            filters: filters::Filters::default(),
            keywords: RwLock::new(Keywords { index: keywords, live }),
            clock: Box::new(now_ms),
            cache: quarry_core::cache::CachePolicy::default(),
        })
    }

    /// Saves the vector snapshot if the index changed since the last one, so that the next open
    /// reads it rather than every row. Also done when the store is dropped.
    pub fn save_vectors(&self) -> Result<(), PortError> {
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        index.save().map_err(|e| PortError::Permanent { operation: "vectors.save", source: Box::new(e) })
    }

    /// Whether the open read the vector index from its snapshot rather than from every row.
    pub fn vectors_from_snapshot(&self) -> bool {
        self.from_snapshot
    }

    /// Whether the vectors are in the file beside the database (else in memory: another process
    /// held that file at open).
    pub fn vectors_on_disk(&self) -> bool {
        self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner).on_disk()
    }

    /// The embedding cache's encoding, TTL and cap (`[cache]`); the defaults otherwise.
    #[must_use]
    pub fn with_cache_policy(mut self, policy: quarry_core::cache::CachePolicy) -> Self {
        self.cache = policy;
        self
    }

    /// Replaces the clock (milliseconds since the epoch): tests use it to expire leases.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // The connection holds no half-done state between calls (each is one transaction).
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Expires every lease. Call only when no other writer can be running (the embedded default
    /// holds an exclusive lock on its state folder): leases left then belong to a killed run, and
    /// waiting for them to expire would leave their documents behind.
    pub fn release_leases(&self) -> Result<usize, PortError> {
        let n = self
            .conn()
            .execute("UPDATE documents SET lease_until_ms = 0 WHERE status = 'processing'", [])
            .map_err(db_error("documents.release"))?;
        Ok(n)
    }

    /// Readiness: the database answers a query.
    pub fn ping(&self) -> Result<(), PortError> {
        self.conn().query_row("SELECT 1", [], |_| Ok(())).map_err(db_error("ping"))
    }

    /// Keys of every document the state knows by key (indexed, failed, or left processing or
    /// pending by an interrupted run): what a sync compares with the folder, so that a file
    /// deleted while its document was unfinished still leaves the index.
    pub fn indexed_keys(&self) -> Result<Vec<DocumentKey>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT key FROM documents WHERE key IS NOT NULL ORDER BY key")
            .map_err(db_error("documents.list"))?;
        let keys = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_error("documents.list"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error("documents.list"))?;
        Ok(keys.into_iter().map(DocumentKey::new).collect())
    }

    /// The models the indexed documents were embedded (or stored) with, in name order.
    pub fn indexed_models(&self) -> Result<Vec<String>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT DISTINCT model FROM documents WHERE status = 'indexed' AND model IS NOT NULL ORDER BY model",
            )
            .map_err(db_error("documents.models"))?;
        let models = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_error("documents.models"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error("documents.models"))?;
        Ok(models)
    }

    /// Text, page range and metadata of stored chunks, for showing search results.
    pub fn chunk_details(&self, id: &ChunkId) -> Result<Option<ChunkDetails>, PortError> {
        let conn = self.conn();
        conn.query_row("SELECT text, page_first, page_last, metadata FROM chunks WHERE id = ?1", [id.as_str()], |r| {
            Ok(ChunkDetails {
                text: r.get(0)?,
                page_first: r.get(1)?,
                page_last: r.get(2)?,
                metadata: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
            })
        })
        .optional()
        .map_err(db_error("chunks.get"))
    }

    /// Chunks stored for a document, in ordinal order.
    pub fn chunk_ids(&self, document: &DocumentId) -> Result<Vec<ChunkId>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id FROM chunks WHERE document_id = ?1 ORDER BY ordinal")
            .map_err(db_error("chunks.list"))?;
        let ids = stmt
            .query_map([document.as_str()], |r| r.get::<_, String>(0))
            .map_err(db_error("chunks.list"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error("chunks.list"))?;
        Ok(ids.into_iter().map(ChunkId::from_stored).collect())
    }
}
