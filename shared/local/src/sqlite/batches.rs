//! Batches: counters derived from one row per (batch, document), never stored, so that a
//! duplicate or retried outcome cannot count twice ([`BatchTracker`]).

use quarry_core::ports::{BatchOutcome, BatchTiming, BatchTracker};
use quarry_core::{BatchCounters, BatchId, DocumentKey, Failure, PortError};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db_error};

/// A paused item keeps its reason where a failure keeps its code.
fn paused_as_failure(reason: &str) -> Failure {
    Failure { code: reason.to_owned(), message: String::new(), retryable: true }
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
            .prepare_cached("SELECT outcome, n, bytes FROM batch_counts WHERE batch_id = ?1")
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
                "paused" => {
                    c.pending += n;
                    c.paused += n;
                }
                "failed" => c.failed += n,
                "unchanged" => c.skipped += n,
                _ => c.done += n,
            }
            if outcome != "pending" && outcome != "paused" {
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
            BatchOutcome::Paused { reason } => ("paused", None, Some(&paused_as_failure(reason))),
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

    async fn paused(&self, batch: &BatchId) -> Result<Vec<(DocumentKey, String)>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT key, failure_code FROM batch_items WHERE batch_id = ?1 AND outcome = 'paused' ORDER BY key",
            )
            .map_err(db_error("batches.paused"))?;
        let rows = stmt
            .query_map([batch.as_str()], |r| {
                Ok((DocumentKey::new(r.get::<_, String>(0)?), r.get::<_, Option<String>>(1)?.unwrap_or_default()))
            })
            .map_err(db_error("batches.paused"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error("batches.paused"))
    }

    async fn recent(&self, limit: usize) -> Result<Vec<(BatchId, i64)>, PortError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT id, created_ms FROM batches ORDER BY created_ms DESC, id LIMIT ?1")
            .map_err(db_error("batches.recent"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map([limit], |r| Ok((BatchId::new(r.get::<_, String>(0)?), r.get::<_, i64>(1)?)))
            .map_err(db_error("batches.recent"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_error("batches.recent"))
    }
}
