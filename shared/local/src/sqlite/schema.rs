//! The database's schema, as the migrations that built it: `PRAGMA user_version` records how many
//! have run, and a database newer than this build is refused rather than misread.

use rusqlite::Connection;

use super::StoreError;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
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
    -- Counters are derived from these rows (their sums kept by triggers since migration 11): a duplicate or retried outcome cannot
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
    // The alert router's ledger (quarry_core::ports::AlertLedger): claims and group members,
    // each with its expiry.
    r"
    CREATE TABLE alert_claims (
        key TEXT PRIMARY KEY,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE alert_members (
        grp TEXT NOT NULL,
        id TEXT NOT NULL,
        payload TEXT NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (grp, id)
    );
",
    // Embedding spend per scope (quarry_core::spend): a UTC day, a batch. `reserved` is what
    // requests in flight hold; a reservation checks used + reserved against the limit.
    // A batch's paused documents are its items with outcome 'paused' (pending, with a reason).
    r"
    CREATE TABLE spend (
        scope TEXT PRIMARY KEY,
        tokens INTEGER NOT NULL DEFAULT 0,
        nanodollars INTEGER NOT NULL DEFAULT 0,
        reserved INTEGER NOT NULL DEFAULT 0,
        updated_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
",
    // The embedding cache, managed (quarry_core::cache): when each vector was last used (for the
    // TTL and least-recently-used eviction; existing entries count as used now), and its size
    // kept by triggers, so that a cap is checked without scanning a gigabyte.
    r"
    ALTER TABLE embedding_cache ADD COLUMN used_ms INTEGER NOT NULL DEFAULT 0;
    UPDATE embedding_cache SET used_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);
    CREATE INDEX embedding_cache_by_use ON embedding_cache (used_ms);
    CREATE TABLE embedding_cache_size (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        entries INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    INSERT INTO embedding_cache_size
        SELECT 0, COUNT(*), COALESCE(SUM(length(model) + length(content_hash) + length(vector) + 16), 0)
        FROM embedding_cache;
    CREATE TRIGGER embedding_cache_added AFTER INSERT ON embedding_cache BEGIN
        UPDATE embedding_cache_size SET entries = entries + 1,
            bytes = bytes + length(NEW.model) + length(NEW.content_hash) + length(NEW.vector) + 16;
    END;
    CREATE TRIGGER embedding_cache_removed AFTER DELETE ON embedding_cache BEGIN
        UPDATE embedding_cache_size SET entries = entries - 1,
            bytes = bytes - (length(OLD.model) + length(OLD.content_hash) + length(OLD.vector) + 16);
    END;
    CREATE TRIGGER embedding_cache_replaced AFTER UPDATE OF vector ON embedding_cache BEGIN
        UPDATE embedding_cache_size SET bytes = bytes - length(OLD.vector) + length(NEW.vector);
    END;
",
    // Where a hosted store (OpenAI's vector stores) keeps each document: its file, to remove.
    r"
    ALTER TABLE documents ADD COLUMN handle TEXT;
",
    // A batch's counters, kept by triggers in the same transaction as the outcome they count (so
    // still never counted twice): the runner reads them after every document, and counting the
    // batch's rows each time made a run quadratic (3,633 unchanged documents: 5.2 s; 600: 0.1 s).
    r"
    CREATE TABLE batch_counts (
        batch_id TEXT NOT NULL,
        outcome TEXT NOT NULL,
        n INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        PRIMARY KEY (batch_id, outcome)
    ) WITHOUT ROWID;
    INSERT INTO batch_counts SELECT batch_id, outcome, COUNT(*), SUM(bytes) FROM batch_items GROUP BY batch_id, outcome;
    CREATE TRIGGER batch_items_added AFTER INSERT ON batch_items BEGIN
        INSERT INTO batch_counts (batch_id, outcome, n, bytes) VALUES (NEW.batch_id, NEW.outcome, 1, NEW.bytes)
            ON CONFLICT (batch_id, outcome) DO UPDATE SET n = n + 1, bytes = bytes + excluded.bytes;
    END;
    CREATE TRIGGER batch_items_moved AFTER UPDATE OF outcome, bytes ON batch_items BEGIN
        UPDATE batch_counts SET n = n - 1, bytes = bytes - OLD.bytes
            WHERE batch_id = OLD.batch_id AND outcome = OLD.outcome;
        INSERT INTO batch_counts (batch_id, outcome, n, bytes) VALUES (NEW.batch_id, NEW.outcome, 1, NEW.bytes)
            ON CONFLICT (batch_id, outcome) DO UPDATE SET n = n + 1, bytes = bytes + excluded.bytes;
    END;
    CREATE TRIGGER batch_items_removed AFTER DELETE ON batch_items BEGIN
        UPDATE batch_counts SET n = n - 1, bytes = bytes - OLD.bytes
            WHERE batch_id = OLD.batch_id AND outcome = OLD.outcome;
    END;
",
    // Keyword search moved to a tantivy index beside the database (quarry-keyword), persisted.
    // Every change to `chunks` counts here, in its own transaction, and the index's commits carry
    // the count they hold: an index behind it (a crash, another build) is rebuilt, never trusted.
    r"
    CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO counters VALUES ('chunks', 0);
    CREATE TRIGGER chunks_added AFTER INSERT ON chunks BEGIN
        UPDATE counters SET value = value + 1 WHERE name = 'chunks';
    END;
    CREATE TRIGGER chunks_changed AFTER UPDATE ON chunks BEGIN
        UPDATE counters SET value = value + 1 WHERE name = 'chunks';
    END;
    CREATE TRIGGER chunks_removed AFTER DELETE ON chunks BEGIN
        UPDATE counters SET value = value + 1 WHERE name = 'chunks';
    END;
",
    // Each document's metadata (its first chunk's), for filters, in a table of its own: an open
    // read it from the chunks, a scan of every row, text and vectors (1.0 s of SQLite at a million
    // chunks, `--bench scale`). Written with chunk 0, in the same transaction. And the stamp of
    // derived indexes made unique to the database (below).
    r"
    CREATE TABLE document_metadata (
        document_id TEXT PRIMARY KEY,
        metadata TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO document_metadata (document_id, metadata)
        SELECT document_id, metadata FROM chunks WHERE ordinal = 0;
    -- The count of chunk changes moves on by a random 48-bit amount, once: two databases' counts
    -- then never meet, so a vector snapshot or keyword index beside a database restored from a
    -- backup, or swapped for another, is never taken for that one's. The keyword index is rebuilt
    -- once after this upgrade.
    UPDATE counters SET value = value + (random() & 281474976710655) WHERE name = 'chunks';
",
];

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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
