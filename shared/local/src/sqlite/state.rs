//! Documents: leases, checkpoints and failures ([`CheckpointStore`]), and what the API reads of
//! one document ([`DocumentReader`]).

use std::time::Duration;

use quarry_core::census::{StateCensus, StoredChunks, VectorCensus};
use quarry_core::ports::{Checkpoint, CheckpointStore, DocumentReader, DocumentRecord, Lease};
use quarry_core::{ContentHash, DocumentId, DocumentKey, DocumentStatus, Failure, PortError};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, db_error};

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
        type Row = (String, Option<String>, i64, Option<i64>, Option<u32>, i64);
        let row: Option<Row> = tx
            .query_row(
                "SELECT status, content_hash, attempts, lease_until_ms, chunks, updated_ms FROM documents WHERE id = ?1",
                [document.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()
            .map_err(db_error("documents.acquire"))?;
        let attempts = match &row {
            Some((status, hash, _, _, chunks, at))
                if status == "indexed" && hash.as_deref() == Some(content_hash.as_str()) =>
            {
                return Ok(Lease::AlreadyIndexed { chunks: chunks.unwrap_or(0), indexed_ms: *at });
            }
            Some((status, _, _, Some(until), _, _)) if status == "processing" && *until > now => {
                return Ok(Lease::Busy);
            }
            // Attempts count per content: a new version starts again at 1.
            Some((_, hash, attempts, _, _, _)) if hash.as_deref() == Some(content_hash.as_str()) => attempts + 1,
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

    async fn release(&self, document: &DocumentId) -> Result<(), PortError> {
        let now = (self.clock)();
        self.conn()
            .execute(
                "UPDATE documents SET status = 'pending', lease_until_ms = NULL, updated_ms = ?2
                 WHERE id = ?1 AND status = 'processing'",
                params![document.as_str(), now],
            )
            .map_err(db_error("documents.release"))?;
        Ok(())
    }

    async fn checkpoint(&self, c: &Checkpoint) -> Result<(), PortError> {
        let now = (self.clock)();
        self.conn()
            .execute(
                "INSERT INTO documents (id, key, content_hash, status, chunks, model, updated_ms, handle)
                 VALUES (?1, ?2, ?3, 'indexed', ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET key = ?2, content_hash = ?3, status = 'indexed', chunks = ?4,
                     model = ?5, lease_until_ms = NULL, failure_code = NULL, failure_message = NULL,
                     failure_retryable = NULL, updated_ms = ?6, handle = ?7",
                params![c.document.as_str(), c.key.as_str(), c.content_hash.as_str(), c.chunks, c.model, now, c.handle],
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

    async fn handle(&self, document: &DocumentId) -> Result<Option<String>, PortError> {
        let handle: Option<Option<String>> = self
            .conn()
            .query_row("SELECT handle FROM documents WHERE id = ?1", [document.as_str()], |r| r.get(0))
            .optional()
            .map_err(db_error("documents.handle"))?;
        Ok(handle.flatten())
    }
}

/// The columns [`record`] reads, in its order.
const RECORD: &str = "id, key, content_hash, model, status, attempts, chunks, failure_code, failure_message,
    failure_retryable, updated_ms, handle";

/// One `documents` row, selected as [`RECORD`]; `None` for an id that is not a document id.
fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<DocumentRecord>> {
    let Some(id) = DocumentId::parse(&r.get::<_, String>(0)?) else { return Ok(None) };
    let chunks = r.get::<_, Option<u32>>(6)?;
    let status = match r.get::<_, String>(4)?.as_str() {
        "indexed" => DocumentStatus::Indexed { chunks: chunks.unwrap_or(0) },
        "failed" => DocumentStatus::Failed {
            failure: Failure {
                code: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                message: r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                retryable: r.get::<_, Option<bool>>(9)?.unwrap_or(false),
            },
        },
        "pending" => DocumentStatus::Pending,
        _ => DocumentStatus::Processing { attempt: r.get(5)? },
    };
    Ok(Some(DocumentRecord {
        id,
        key: r.get::<_, Option<String>>(1)?.map(DocumentKey::new),
        content_hash: r.get::<_, Option<String>>(2)?.map(ContentHash::from_stored),
        model: r.get(3)?,
        status,
        updated_ms: r.get(10)?,
        handle: r.get(11)?,
    }))
}

impl DocumentReader for SqliteStore {
    async fn document(&self, id: &DocumentId) -> Result<Option<DocumentRecord>, PortError> {
        let row = self
            .conn()
            .query_row(&format!("SELECT {RECORD} FROM documents WHERE id = ?1"), [id.as_str()], record)
            .optional()
            .map_err(db_error("documents.get"))?;
        Ok(row.flatten())
    }
}

impl StateCensus for SqliteStore {
    async fn documents(&self) -> Result<Vec<DocumentRecord>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {RECORD} FROM documents ORDER BY id"))
            .map_err(db_error("documents.census"))?;
        let rows = stmt.query_map([], record).map_err(db_error("documents.census"))?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(row.map_err(db_error("documents.census"))?);
        }
        Ok(out)
    }
}

impl VectorCensus for SqliteStore {
    async fn stored(&self) -> Result<Vec<StoredChunks>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT document_id, ordinal FROM chunks ORDER BY document_id, ordinal")
            .map_err(db_error("chunks.census"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
            .map_err(db_error("chunks.census"))?;
        let mut ids = Vec::new();
        for row in rows {
            let (document, ordinal) = row.map_err(db_error("chunks.census"))?;
            ids.extend(DocumentId::parse(&document).map(|d| (d, ordinal)));
        }
        Ok(StoredChunks::group(ids))
    }
}
