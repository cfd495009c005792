//! State and vectors in one SQLite file (WAL): per-document leases and checkpoints, batches with
//! per-document outcomes, and chunks with their vectors, from which the in-memory [`FlatIndex`] is
//! rebuilt at open.
//!
//! Each port call is its own short transaction, as a DynamoDB conditional write or an S3 Vectors
//! upsert would be: nothing spans the vectors and the checkpoint, so the embedded default behaves
//! like the AWS deployment it is the reference for. The calls are quick local I/O and run on the
//! caller's thread.

use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use quarry_core::ports::{
    BatchOutcome, BatchTiming, BatchTracker, Checkpoint, CheckpointStore, DocumentReader, DocumentRecord,
    EmbeddingCache, KeywordQuery, KeywordSearcher, Lease, ModelInfo, VectorHit, VectorQuery, VectorRecord,
    VectorSearcher, VectorWriter,
};
use quarry_core::{
    BatchCounters, BatchId, CharSpan, ChunkId, ContentHash, DocumentId, DocumentKey, DocumentStatus, Failure, Filter,
    PageRange, PortError,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::keyword_index::{self, KeywordIndex};
use crate::vector_index::{FlatIndex, IndexError};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r"
    CREATE TABLE documents (
        id TEXT PRIMARY KEY,
        key TEXT,
        content_hash TEXT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_until_ms INTEGER,
        chunks INTEGER,
        model TEXT,
        failure_code TEXT,
        failure_message TEXT,
        failure_retryable INTEGER,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE chunks (
        id TEXT PRIMARY KEY,
        document_id TEXT NOT NULL,
        ordinal INTEGER NOT NULL,
        text TEXT NOT NULL,
        page_first INTEGER,
        page_last INTEGER,
        metadata TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE INDEX chunks_by_document ON chunks (document_id, ordinal);
",
    r"
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        created_ms INTEGER NOT NULL
    );
    -- Counters are derived from these rows, never stored: a duplicate or retried outcome cannot
    -- be counted twice.
    CREATE TABLE batch_items (
        batch_id TEXT NOT NULL REFERENCES batches (id),
        key TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        outcome TEXT NOT NULL DEFAULT 'pending',
        chunks INTEGER,
        failure_code TEXT,
        failure_message TEXT,
        failure_retryable INTEGER,
        updated_ms INTEGER,
        PRIMARY KEY (batch_id, key)
    );
",
    r"
    CREATE TABLE embedding_cache (
        model TEXT NOT NULL,
        dimension INTEGER NOT NULL,
        content_hash TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (model, dimension, content_hash)
    ) WITHOUT ROWID;
",
    // Where each chunk sits in its document, for the API's `source.start`/`source.end`.
    r"
    ALTER TABLE chunks ADD COLUMN char_start INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE chunks ADD COLUMN char_end INTEGER NOT NULL DEFAULT 0;
",
    // Full text for keyword and hybrid search: one row per chunk, keyed by the chunk's rowid
    // (kept stable by upserting in place), with the document title as its own column so that
    // BM25 can weigh it apart from the body.
    r#"
    CREATE VIRTUAL TABLE chunks_fts USING fts5(title, body, tokenize = 'porter unicode61 remove_diacritics 2');
    INSERT INTO chunks_fts (rowid, title, body)
        SELECT rowid, COALESCE(json_extract(metadata, '$.title'), json_extract(metadata, '$."user.title"'), ''), text
        FROM chunks;
"#,
    // Keyword search moved to an in-memory index built from `chunks` (keyword_index.rs): FTS5
    // scored every matching row and could not stop early.
    r"
    DROP TABLE chunks_fts;
",
];

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
}

impl quarry_core::Classify for StoreError {
    fn class(&self) -> quarry_core::ErrorClass {
        quarry_core::ErrorClass::Permanent
    }
    fn code(&self) -> &'static str {
        "state_unavailable"
    }
}

fn db_error(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> PortError {
    move |e| match e.sqlite_error_code() {
        // Another process holds the write lock past the busy timeout: try again later.
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            PortError::Transient { operation, source: Box::new(e) }
        }
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

type Metadata = std::collections::BTreeMap<String, serde_json::Value>;

/// The embedded default's state store and vector store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    index: RwLock<FlatIndex>,
    /// Each document's metadata (the same on all its chunks), for filters: a filter is decided
    /// once per document, inside the index scan.
    metadata: RwLock<rustc_hash::FxHashMap<DocumentId, Metadata>>,
    /// Built from the chunks on first keyword search (or [`SqliteStore::warm_keywords`]), then kept
    /// current by every write: semantic-only use never pays for it.
    keywords: RwLock<Option<KeywordIndex>>,
    clock: Box<dyn Fn() -> i64 + Send + Sync>,
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
        let open = |source| StoreError::Open { path: path.to_owned(), source };
        let mut conn = Connection::open(path).map_err(open)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open)?;
        migrate(&mut conn)?;
        let mut index = FlatIndex::new(dim);
        {
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
        }
        let mut metadata = rustc_hash::FxHashMap::default();
        {
            let mut stmt =
                conn.prepare("SELECT document_id, metadata FROM chunks WHERE ordinal = 0").map_err(StoreError::Load)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(StoreError::Load)?;
            for row in rows {
                let (doc, json) = row.map_err(StoreError::Load)?;
                if let (Some(doc), Ok(m)) = (DocumentId::parse(&doc), serde_json::from_str::<Metadata>(&json)) {
                    metadata.insert(doc, m);
                }
            }
        }
        tracing::info!(chunks = index.len(), "state database opened");
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            index: RwLock::new(index),
            metadata: RwLock::new(metadata),
            keywords: RwLock::new(None),
            clock: Box::new(now_ms),
        })
    }

    /// Replaces the clock (milliseconds since the epoch): tests use it to expire leases.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Builds the keyword index now, if it is not built yet: a server calls this at start so that
    /// its first keyword query is not the one that pays for it.
    pub fn warm_keywords(&self) -> Result<(), PortError> {
        drop(self.keyword_index()?);
        Ok(())
    }

    /// The keyword index, built from the stored chunks the first time it is asked for.
    fn keyword_index(&self) -> Result<std::sync::RwLockReadGuard<'_, Option<KeywordIndex>>, PortError> {
        let read = || self.keywords.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        {
            let built = read();
            if built.is_some() {
                return Ok(built);
            }
        }
        {
            // Writers update the index only once it exists, after their commit; building under
            // the write lock from committed rows, and upserts being idempotent, means no write
            // is missed or applied twice to a different result.
            let mut slot = self.keywords.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(self.build_keywords()?);
            }
        }
        Ok(read())
    }

    /// A keyword index of every stored chunk.
    fn build_keywords(&self) -> Result<KeywordIndex, PortError> {
        let started = std::time::Instant::now();
        let mut index = KeywordIndex::new();
        // Titles are document metadata, already in memory: one definition, in `title`.
        let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT rowid, document_id, text FROM chunks").map_err(db_error("chunks.keyword_index"))?;
        let mut rows = stmt.query([]).map_err(db_error("chunks.keyword_index"))?;
        while let Some(r) = rows.next().map_err(db_error("chunks.keyword_index"))? {
            let doc: String = r.get(1).map_err(db_error("chunks.keyword_index"))?;
            let Some(document) = DocumentId::parse(&doc) else { continue };
            let text: String = r.get(2).map_err(db_error("chunks.keyword_index"))?;
            let title = metadata.get(&document).map_or("", title);
            index.upsert(r.get(0).map_err(db_error("chunks.keyword_index"))?, &document, title, &text);
        }
        tracing::info!(chunks = index.len(), ms = started.elapsed().as_millis() as u64, "keyword index built");
        Ok(index)
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

    /// Batches, newest first, with when they started (milliseconds since the epoch).
    pub fn batches(&self) -> Result<Vec<(BatchId, i64)>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, created_ms FROM batches ORDER BY created_ms DESC, id")
            .map_err(db_error("batches.list"))?;
        let rows = stmt
            .query_map([], |r| Ok((BatchId::new(r.get::<_, String>(0)?), r.get::<_, i64>(1)?)))
            .map_err(db_error("batches.list"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error("batches.list"))
    }

    /// Readiness: the database answers a query.
    pub fn ping(&self) -> Result<(), PortError> {
        self.conn().query_row("SELECT 1", [], |_| Ok(())).map_err(db_error("ping"))
    }

    /// Keys of the documents indexed or failed: what a sync compares with the folder.
    pub fn indexed_keys(&self) -> Result<Vec<DocumentKey>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT key FROM documents WHERE status IN ('indexed', 'failed') AND key IS NOT NULL ORDER BY key",
            )
            .map_err(db_error("documents.list"))?;
        let keys = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_error("documents.list"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error("documents.list"))?;
        Ok(keys.into_iter().map(DocumentKey::new).collect())
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

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map_err(|source| StoreError::Migrate { version: 0, source })? as usize;
    if version > MIGRATIONS.len() {
        return Err(StoreError::TooNew { found: version, known: MIGRATIONS.len() });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let v = i + 1;
        let tx = conn.transaction().map_err(|source| StoreError::Migrate { version: v, source })?;
        tx.execute_batch(sql).map_err(|source| StoreError::Migrate { version: v, source })?;
        tx.pragma_update(None, "user_version", v as i64)
            .map_err(|source| StoreError::Migrate { version: v, source })?;
        tx.commit().map_err(|source| StoreError::Migrate { version: v, source })?;
    }
    Ok(())
}

impl CheckpointStore for SqliteStore {
    async fn acquire(
        &self,
        document: &DocumentId,
        content_hash: &ContentHash,
        lease: Duration,
    ) -> Result<Lease, PortError> {
        let now = (self.clock)();
        let mut conn = self.conn();
        let tx =
            conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error("documents.acquire"))?;
        let row: Option<(String, Option<String>, i64, Option<i64>)> = tx
            .query_row(
                "SELECT status, content_hash, attempts, lease_until_ms FROM documents WHERE id = ?1",
                [document.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(db_error("documents.acquire"))?;
        let attempts = match &row {
            Some((status, hash, _, _)) if status == "indexed" && hash.as_deref() == Some(content_hash.as_str()) => {
                return Ok(Lease::AlreadyIndexed);
            }
            Some((status, _, _, Some(until))) if status == "processing" && *until > now => return Ok(Lease::Busy),
            // Attempts count per content: a new version starts again at 1.
            Some((_, hash, attempts, _)) if hash.as_deref() == Some(content_hash.as_str()) => attempts + 1,
            _ => 1,
        };
        let until = now + lease.as_millis() as i64;
        tx.execute(
            "INSERT INTO documents (id, content_hash, status, attempts, lease_until_ms, updated_ms)
             VALUES (?1, ?2, 'processing', ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET content_hash = ?2, status = 'processing', attempts = ?3,
                 lease_until_ms = ?4, updated_ms = ?5",
            params![document.as_str(), content_hash.as_str(), attempts, until, now],
        )
        .map_err(db_error("documents.acquire"))?;
        tx.commit().map_err(db_error("documents.acquire"))?;
        Ok(Lease::Acquired { attempt: attempts as u32, expires_in: lease })
    }

    async fn checkpoint(&self, c: &Checkpoint) -> Result<(), PortError> {
        let now = (self.clock)();
        self.conn()
            .execute(
                "INSERT INTO documents (id, key, content_hash, status, chunks, model, updated_ms)
                 VALUES (?1, ?2, ?3, 'indexed', ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET key = ?2, content_hash = ?3, status = 'indexed', chunks = ?4,
                     model = ?5, lease_until_ms = NULL, failure_code = NULL, failure_message = NULL,
                     failure_retryable = NULL, updated_ms = ?6",
                params![c.document.as_str(), c.key.as_str(), c.content_hash.as_str(), c.chunks, c.model, now],
            )
            .map_err(db_error("documents.checkpoint"))?;
        Ok(())
    }

    async fn fail(&self, document: &DocumentId, key: &DocumentKey, failure: &Failure) -> Result<(), PortError> {
        let now = (self.clock)();
        self.conn()
            .execute(
                "INSERT INTO documents (id, key, status, failure_code, failure_message, failure_retryable, updated_ms)
                 VALUES (?1, ?6, 'failed', ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET key = ?6, status = 'failed', lease_until_ms = NULL, failure_code = ?2,
                     failure_message = ?3, failure_retryable = ?4, updated_ms = ?5",
                params![document.as_str(), failure.code, failure.message, failure.retryable, now, key.as_str()],
            )
            .map_err(db_error("documents.fail"))?;
        Ok(())
    }

    async fn forget(&self, document: &DocumentId) -> Result<(), PortError> {
        self.conn()
            .execute("DELETE FROM documents WHERE id = ?1", [document.as_str()])
            .map_err(db_error("documents.forget"))?;
        Ok(())
    }
}

impl DocumentReader for SqliteStore {
    async fn document(&self, id: &DocumentId) -> Result<Option<DocumentRecord>, PortError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT key, content_hash, model, status, attempts, chunks, failure_code, failure_message,
                        failure_retryable, updated_ms
                 FROM documents WHERE id = ?1",
                [id.as_str()],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, u32>(4)?,
                        r.get::<_, Option<u32>>(5)?,
                        (r.get::<_, Option<String>>(6)?, r.get::<_, Option<String>>(7)?, r.get::<_, Option<bool>>(8)?),
                        r.get::<_, i64>(9)?,
                    ))
                },
            )
            .optional()
            .map_err(db_error("documents.get"))?;
        let Some((key, hash, model, status, attempts, chunks, (code, message, retryable), updated_ms)) = row else {
            return Ok(None);
        };
        let status = match status.as_str() {
            "indexed" => DocumentStatus::Indexed { chunks: chunks.unwrap_or(0) },
            "failed" => DocumentStatus::Failed {
                failure: Failure {
                    code: code.unwrap_or_default(),
                    message: message.unwrap_or_default(),
                    retryable: retryable.unwrap_or(false),
                },
            },
            _ => DocumentStatus::Processing { attempt: attempts },
        };
        Ok(Some(DocumentRecord {
            id: id.clone(),
            key: key.map(DocumentKey::new),
            content_hash: hash.map(ContentHash::from_stored),
            model,
            status,
            updated_ms,
        }))
    }
}

impl VectorWriter for SqliteStore {
    async fn upsert(&self, records: &[VectorRecord]) -> Result<(), PortError> {
        let dim = self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner).dim();
        for r in records {
            if r.vector.len() != dim {
                return Err(PortError::InvalidInput {
                    operation: "chunks.upsert",
                    reason: format!("vector of {} dimensions for an index of {dim}", r.vector.len()),
                });
            }
        }
        let mut rowids = Vec::with_capacity(records.len());
        {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_error("chunks.upsert"))?;
            {
                // In place (not INSERT OR REPLACE), so that the rowid the full-text row is keyed
                // by survives an update.
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO chunks
                             (id, document_id, ordinal, text, page_first, page_last, metadata, vector, char_start, char_end)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (id) DO UPDATE SET document_id = ?2, ordinal = ?3, text = ?4, page_first = ?5,
                             page_last = ?6, metadata = ?7, vector = ?8, char_start = ?9, char_end = ?10
                         RETURNING rowid",
                    )
                    .map_err(db_error("chunks.upsert"))?;
                for r in records {
                    let ordinal = r.id.parts().map_or(0, |(_, o)| o);
                    let metadata = serde_json::to_string(&r.metadata).map_err(|e| PortError::InvalidInput {
                        operation: "chunks.upsert",
                        reason: format!("metadata is not serialisable: {e}"),
                    })?;
                    let rowid: i64 = stmt
                        .query_row(
                            params![
                                r.id.as_str(),
                                r.document.as_str(),
                                ordinal,
                                r.text,
                                r.pages.map(|p| p.first),
                                r.pages.map(|p| p.last),
                                metadata,
                                to_blob(&r.vector),
                                r.span.start as i64,
                                r.span.end as i64,
                            ],
                            |row| row.get(0),
                        )
                        .map_err(db_error("chunks.upsert"))?;
                    rowids.push(rowid);
                }
            }
            tx.commit().map_err(db_error("chunks.upsert"))?;
        }
        // The database is the truth; the index follows once the write is durable.
        {
            let mut metadata = self.metadata.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for r in records {
                metadata.insert(r.document.clone(), r.metadata.clone());
            }
        }
        if let Some(keywords) = self.keywords.write().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            for (r, &rowid) in records.iter().zip(&rowids) {
                keywords.upsert(rowid, &r.document, title(&r.metadata), &r.text);
            }
        }
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in records {
            index
                .upsert(r.id.clone(), r.document.clone(), &r.vector)
                .map_err(|e| PortError::InvalidInput { operation: "chunks.upsert", reason: e.to_string() })?;
        }
        Ok(())
    }

    async fn delete_from(&self, document: &DocumentId, keep: u32) -> Result<u64, PortError> {
        let gone: Vec<i64> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached("DELETE FROM chunks WHERE document_id = ?1 AND ordinal >= ?2 RETURNING rowid")
                .map_err(db_error("chunks.delete"))?;
            stmt.query_map(params![document.as_str(), keep], |r| r.get(0))
                .map_err(db_error("chunks.delete"))?
                .collect::<Result<_, _>>()
                .map_err(db_error("chunks.delete"))?
        };
        let n = gone.len();
        if let Some(keywords) = self.keywords.write().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
            for rowid in gone {
                keywords.remove(rowid);
            }
        }
        self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove_document_from(document, keep);
        if keep == 0 {
            self.metadata.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(document);
        }
        Ok(n as u64)
    }
}

impl VectorSearcher for SqliteStore {
    async fn search(&self, query: &VectorQuery) -> Result<Vec<VectorHit>, PortError> {
        let hits = {
            let index = self.index.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let accept = accepts(&metadata, query.filter.as_ref());
            let filter = accept.as_ref().map(|f| f as &dyn Fn(&DocumentId) -> bool);
            index
                .search(&query.vector, query.top_k, filter)
                .map_err(|e| PortError::InvalidInput { operation: "chunks.search", reason: e.to_string() })?
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {PAYLOAD} FROM chunks WHERE id = ?1"))
            .map_err(db_error("chunks.search"))?;
        let mut out = Vec::with_capacity(hits.len());
        for h in hits {
            // A chunk deleted between the index read and this one is simply not a result.
            let row =
                stmt.query_row([h.id.as_str()], |r| payload(r, 0)).optional().map_err(db_error("chunks.search"))?;
            let Some(p) = row else { continue };
            out.push(p.into_hit(h.id, h.document, h.score)?);
        }
        Ok(out)
    }
}

/// The documents `filter` accepts, judged by their metadata; `None` when there is no filter.
fn accepts<'a>(
    metadata: &'a rustc_hash::FxHashMap<DocumentId, Metadata>,
    filter: Option<&'a Filter>,
) -> Option<impl Fn(&DocumentId) -> bool + 'a> {
    filter.map(|f| move |d: &DocumentId| metadata.get(d).is_some_and(|m| f.matches(m)))
}

/// A document's title for keyword search: the first of `title` and `user.title` that is a string.
fn title(metadata: &Metadata) -> &str {
    ["title", "user.title"].iter().find_map(|k| metadata.get(*k).and_then(|v| v.as_str())).unwrap_or("")
}

/// The columns a hit carries, in the order [`payload`] reads them.
const PAYLOAD: &str = "text, page_first, page_last, char_start, char_end, metadata";

struct Payload {
    text: String,
    pages: Option<PageRange>,
    span: CharSpan,
    metadata: String,
}

fn payload(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Payload> {
    let (first, last): (Option<u32>, Option<u32>) = (r.get(at + 1)?, r.get(at + 2)?);
    Ok(Payload {
        text: r.get(at)?,
        pages: first.zip(last).map(|(first, last)| PageRange { first, last }),
        span: CharSpan { start: r.get::<_, i64>(at + 3)? as usize, end: r.get::<_, i64>(at + 4)? as usize },
        metadata: r.get(at + 5)?,
    })
}

impl Payload {
    fn into_hit(self, id: ChunkId, document: DocumentId, score: f32) -> Result<VectorHit, PortError> {
        Ok(VectorHit {
            id,
            document,
            score,
            text: self.text,
            pages: self.pages,
            span: self.span,
            metadata: serde_json::from_str(&self.metadata)
                .map_err(|e| PortError::Permanent { operation: "chunks.search", source: Box::new(e) })?,
        })
    }
}

impl KeywordSearcher for SqliteStore {
    async fn keyword_search(&self, query: &KeywordQuery) -> Result<Vec<VectorHit>, PortError> {
        let terms = keyword_index::query_terms(&query.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let ranked = {
            let keywords = self.keyword_index()?;
            let Some(keywords) = keywords.as_ref() else { return Ok(Vec::new()) };
            let metadata = self.metadata.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let accept = accepts(&metadata, query.filter.as_ref());
            let filter = accept.as_ref().map(|f| f as &dyn Fn(&DocumentId) -> bool);
            keywords.search(&terms, query.top_k, filter)
        };
        let conn = self.conn();
        let mut row_of = conn
            .prepare_cached(&format!("SELECT id, {PAYLOAD} FROM chunks WHERE rowid = ?1"))
            .map_err(db_error("chunks.keyword"))?;
        let mut out: Vec<VectorHit> = Vec::with_capacity(ranked.len());
        for h in ranked {
            // A chunk deleted between the index read and this one is simply not a result.
            let row = row_of
                .query_row([h.rowid], |r| Ok((r.get::<_, String>(0)?, payload(r, 1)?)))
                .optional()
                .map_err(db_error("chunks.keyword"))?;
            let Some((id, p)) = row else { continue };
            out.push(p.into_hit(ChunkId::from_stored(id), h.document, h.score)?);
        }
        // BM25 has no absolute scale: scores relative to the best hit, in [0, 1].
        let best = out.first().map_or(1.0, |h| h.score).max(f32::MIN_POSITIVE);
        for h in &mut out {
            h.score = (h.score / best).clamp(0.0, 1.0);
        }
        Ok(out)
    }
}

impl BatchTracker for SqliteStore {
    async fn create(&self, batch: &BatchId, items: &[(DocumentKey, u64)]) -> Result<(), PortError> {
        let now = (self.clock)();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("batches.create"))?;
        tx.execute("INSERT OR IGNORE INTO batches (id, created_ms) VALUES (?1, ?2)", params![batch.as_str(), now])
            .map_err(db_error("batches.create"))?;
        {
            let mut stmt = tx
                .prepare_cached("INSERT OR IGNORE INTO batch_items (batch_id, key, bytes) VALUES (?1, ?2, ?3)")
                .map_err(db_error("batches.create"))?;
            for (key, bytes) in items {
                stmt.execute(params![batch.as_str(), key.as_str(), *bytes as i64])
                    .map_err(db_error("batches.create"))?;
            }
        }
        tx.commit().map_err(db_error("batches.create"))
    }

    async fn counters(&self, batch: &BatchId) -> Result<BatchCounters, PortError> {
        let conn = self.conn();
        let exists: bool = conn
            .query_row("SELECT EXISTS (SELECT 1 FROM batches WHERE id = ?1)", [batch.as_str()], |r| r.get(0))
            .map_err(db_error("batches.counters"))?;
        if !exists {
            return Err(PortError::NotFound { what: format!("batch {batch}") });
        }
        let mut stmt = conn
            .prepare_cached(
                "SELECT outcome, COUNT(*), SUM(bytes) FROM batch_items WHERE batch_id = ?1 GROUP BY outcome",
            )
            .map_err(db_error("batches.counters"))?;
        let rows = stmt
            .query_map([batch.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
            .map_err(db_error("batches.counters"))?;
        let mut c = BatchCounters::default();
        for row in rows {
            let (outcome, n, bytes) = row.map_err(db_error("batches.counters"))?;
            let (n, bytes) = (n as u64, bytes as u64);
            c.total += n;
            c.bytes_total += bytes;
            match outcome.as_str() {
                "pending" => c.pending += n,
                "failed" => c.failed += n,
                "unchanged" => c.skipped += n,
                _ => c.done += n,
            }
            if outcome != "pending" {
                c.bytes_done += bytes;
            }
        }
        Ok(c)
    }

    async fn timing(&self, batch: &BatchId) -> Result<BatchTiming, PortError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT created_ms, (SELECT MAX(updated_ms) FROM batch_items WHERE batch_id = ?1) FROM batches WHERE id = ?1",
            [batch.as_str()],
            |r| Ok(BatchTiming { created_ms: r.get(0)?, updated_ms: r.get(1)? }),
        )
        .optional()
        .map_err(db_error("batches.timing"))?
        .ok_or_else(|| PortError::NotFound { what: format!("batch {batch}") })
    }

    async fn record(&self, batch: &BatchId, document: &DocumentKey, outcome: &BatchOutcome) -> Result<(), PortError> {
        let now = (self.clock)();
        let (name, chunks, failure) = match outcome {
            BatchOutcome::Indexed { chunks, .. } => ("indexed", Some(*chunks), None),
            BatchOutcome::Unchanged { .. } => ("unchanged", None, None),
            BatchOutcome::Failed { failure, .. } => ("failed", None, Some(failure)),
        };
        let n = self
            .conn()
            .execute(
                "UPDATE batch_items SET outcome = ?3, chunks = ?4, failure_code = ?5, failure_message = ?6,
                     failure_retryable = ?7, updated_ms = ?8
                 WHERE batch_id = ?1 AND key = ?2",
                params![
                    batch.as_str(),
                    document.as_str(),
                    name,
                    chunks,
                    failure.map(|f| f.code.as_str()),
                    failure.map(|f| f.message.as_str()),
                    failure.map(|f| f.retryable),
                    now
                ],
            )
            .map_err(db_error("batches.record"))?;
        if n == 0 {
            return Err(PortError::NotFound { what: format!("document {document} in batch {batch}") });
        }
        Ok(())
    }

    async fn failures(&self, batch: &BatchId) -> Result<Vec<(DocumentKey, Failure)>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, failure_code, failure_message, failure_retryable FROM batch_items
                 WHERE batch_id = ?1 AND outcome = 'failed' ORDER BY key",
            )
            .map_err(db_error("batches.failures"))?;
        let rows = stmt
            .query_map([batch.as_str()], |r| {
                Ok((
                    DocumentKey::new(r.get::<_, String>(0)?),
                    Failure {
                        code: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        message: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        retryable: r.get::<_, Option<bool>>(3)?.unwrap_or(false),
                    },
                ))
            })
            .map_err(db_error("batches.failures"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error("batches.failures"))
    }
}

impl EmbeddingCache for SqliteStore {
    async fn get(&self, model: &ModelInfo, texts: &[ContentHash]) -> Result<Vec<Option<Vec<f32>>>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT vector FROM embedding_cache WHERE model = ?1 AND dimension = ?2 AND content_hash = ?3",
            )
            .map_err(db_error("cache.get"))?;
        texts
            .iter()
            .map(|h| {
                stmt.query_row(params![model.id, model.dimension as i64, h.as_str()], |r| r.get::<_, Vec<u8>>(0))
                    .optional()
                    .map(|b| b.map(|b| from_blob(&b)).filter(|v| v.len() == model.dimension))
                    .map_err(db_error("cache.get"))
            })
            .collect()
    }

    async fn put(&self, model: &ModelInfo, entries: &[(ContentHash, Vec<f32>)]) -> Result<(), PortError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("cache.put"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO embedding_cache (model, dimension, content_hash, vector) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(db_error("cache.put"))?;
            for (h, v) in entries {
                stmt.execute(params![model.id, model.dimension as i64, h.as_str(), to_blob(v)])
                    .map_err(db_error("cache.put"))?;
            }
        }
        tx.commit().map_err(db_error("cache.put"))
    }
}
