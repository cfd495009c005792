//! The SQLite store: the port contract suites, and what only a file-backed store must do
//! (survive a reopen, refuse a schema from the future).

use std::path::PathBuf;
use std::time::Duration;

use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{
    Checkpoint, CheckpointStore, KeywordQuery, KeywordSearcher, Lease, VectorQuery, VectorRecord, VectorSearcher,
    VectorWriter,
};
use quarry_core::{ChunkId, ContentHash, DocumentId, DocumentKey, Format};
use quarry_local::{SqliteStore, StoreError};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quarry-sqlite-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join("state.db")
}

#[tokio::test]
async fn checkpoint_store_contract() {
    let store = SqliteStore::open(&scratch("checkpoint"), 8).expect("open");
    quarry_testkit::contract::checkpoint_store(&store).await;
}

#[tokio::test]
async fn vector_store_contract() {
    let store = SqliteStore::open(&scratch("vectors"), 8).expect("open");
    quarry_testkit::contract::vector_store(&store, 8).await;
}

#[tokio::test]
async fn census_contracts() {
    let store = SqliteStore::open(&scratch("census"), 8).expect("open");
    quarry_testkit::contract::state_census(&store).await;
    quarry_testkit::contract::vector_census(&store, 8).await;
}

#[tokio::test]
async fn field_catalog_contract() {
    let store = SqliteStore::open(&scratch("fields"), 8).expect("open");
    quarry_testkit::contract::field_catalog(&store, 8).await;
}

#[tokio::test]
async fn keyword_store_contract() {
    let store = SqliteStore::open(&scratch("keywords"), 8).expect("open");
    quarry_testkit::contract::keyword_store(&store, 8).await;
}

#[tokio::test]
async fn batch_tracker_contract() {
    let store = SqliteStore::open(&scratch("batches"), 8).expect("open");
    quarry_testkit::contract::batch_tracker(&store).await;
}

#[tokio::test]
async fn spend_ledger_contract() {
    let store = SqliteStore::open(&scratch("spend"), 8).expect("open");
    quarry_testkit::contract::spend_ledger(&store).await;
}

#[tokio::test]
async fn alert_ledger_contract() {
    let store = SqliteStore::open(&scratch("alerts"), 8).expect("open");
    quarry_testkit::contract::alert_ledger(&store).await;
}

#[tokio::test]
async fn embedding_cache_contract_in_every_encoding() {
    use quarry_core::cache::{CachePolicy, Encoding};
    for encoding in [Encoding::F32, Encoding::F16, Encoding::Int8] {
        let policy = CachePolicy { encoding, ..CachePolicy::default() };
        let store =
            SqliteStore::open(&scratch(&format!("cache-{encoding:?}")), 8).expect("open").with_cache_policy(policy);
        quarry_testkit::contract::embedding_cache(&store).await;
        quarry_testkit::contract::cache_admin(&store).await;
    }
}

#[tokio::test]
async fn state_and_vectors_survive_a_reopen() {
    let path = scratch("reopen");
    let key = DocumentKey::new("notes/a.md");
    let id = DocumentId::for_key(&key);
    let hash = ContentHash::of(b"content");
    {
        let store = SqliteStore::open(&path, 4).expect("open");
        store.acquire(&id, &hash, Duration::from_secs(60)).await.expect("acquire");
        let rec = VectorRecord {
            id: ChunkId::new(&id, 0),
            document: id.clone(),
            vector: vec![0.1, 0.9, 0.0, 0.0],
            text: "stored text".into(),
            pages: None,
            span: quarry_core::CharSpan { start: 0, end: 11 },
            // No title of its own: the user's `title` field is the one keyword search weighs.
            meta: ChunkMeta {
                title: None,
                user: [("title".to_owned(), "Ledger".to_owned())].into(),
                ..ChunkMeta::new(key.clone(), Format::Text)
            },
        };
        store.upsert(&[rec]).await.expect("upsert");
        let cp = Checkpoint {
            document: id.clone(),
            key: key.clone(),
            content_hash: hash.clone(),
            chunks: 1,
            model: "m".into(),
            handle: None,
        };
        store.checkpoint(&cp).await.expect("checkpoint");
    }
    let store = SqliteStore::open(&path, 4).expect("reopen");
    assert!(matches!(
        store.acquire(&id, &hash, Duration::from_secs(60)).await.expect("acquire"),
        Lease::AlreadyIndexed { .. }
    ));
    let hits =
        store.search(&VectorQuery { vector: vec![0.1, 0.9, 0.0, 0.0], top_k: 5, filter: None }).await.expect("search");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, ChunkId::new(&id, 0));
    assert_eq!(store.chunk_ids(&id).expect("list"), vec![ChunkId::new(&id, 0)]);
    // The keyword index persisted beside the database, and follows writes made after it.
    let words = |text: &str| KeywordQuery { text: text.into(), top_k: 5, filter: None };
    let hits = store.keyword_search(&words("texts")).await.expect("keyword search");
    assert_eq!(hits.iter().map(|h| &h.id).collect::<Vec<_>>(), [&ChunkId::new(&id, 0)]);
    let hits = store.keyword_search(&words("ledger")).await.expect("keyword search");
    assert_eq!(hits.len(), 1, "the string title is indexed");
    store.delete_from(&id, 0).await.expect("delete");
    assert!(store.keyword_search(&words("stored")).await.expect("keyword search").is_empty());
}

#[tokio::test]
async fn the_keyword_index_persists_and_one_left_behind_is_rebuilt() {
    let path = scratch("keywords-persist");
    let key = DocumentKey::new("notes/k.md");
    let id = DocumentId::for_key(&key);
    let rec = |text: &str| VectorRecord {
        id: ChunkId::new(&id, 0),
        document: id.clone(),
        vector: vec![1.0, 0.0, 0.0, 0.0],
        text: text.into(),
        pages: None,
        span: quarry_core::CharSpan { start: 0, end: text.len() },
        meta: ChunkMeta::new(key.clone(), Format::Text),
    };
    let words = |text: &str| KeywordQuery { text: text.into(), top_k: 5, filter: None };
    {
        let store = SqliteStore::open(&path, 4).expect("open");
        assert!(store.keywords_current(), "a new store's empty index is current");
        store.upsert(&[rec("alpha words")]).await.expect("upsert");
        // Closed cleanly: the index is committed with what it holds.
    }
    {
        let store = SqliteStore::open(&path, 4).expect("reopen");
        assert!(store.keywords_current(), "a committed index is trusted as it is");
        assert_eq!(store.keyword_search(&words("alpha")).await.expect("search").len(), 1);
        store.upsert(&[rec("beta words")]).await.expect("replace");
        // A crash: nothing is committed or closed (tantivy's writer lock stays held, as by a
        // process that has not exited yet, so the next open also meets a busy index).
        std::mem::forget(store);
    }
    let store = SqliteStore::open(&path, 4).expect("reopen after a crash");
    assert!(!store.keywords_current(), "an index behind the chunks is not trusted");
    assert!(store.keyword_search(&words("alpha")).await.expect("search").is_empty(), "the old text never returns");
    assert_eq!(store.keyword_search(&words("beta")).await.expect("search").len(), 1);
    assert!(store.keywords_current(), "rebuilt (in memory, the one on disk being busy)");
}

#[test]
fn a_schema_from_a_newer_build_is_refused() {
    let path = scratch("future");
    drop(SqliteStore::open(&path, 4).expect("open"));
    set_schema_version(&path, 99);
    let err = SqliteStore::open(&path, 4).expect_err("newer schema");
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

/// Sets the schema version to 99 through the sqlite3 file header (user_version lives at byte 60,
/// big-endian), so the test needs no second SQLite binding.
fn set_schema_version(path: &std::path::Path, version: u32) {
    let mut bytes = std::fs::read(path).expect("read db");
    bytes[60..64].copy_from_slice(&version.to_be_bytes());
    std::fs::write(path, bytes).expect("write db");
}

/// Batches recorded before the counters were kept by triggers (schema 10) count the same after
/// the upgrade, and keep counting.
#[tokio::test]
async fn batch_counters_survive_the_upgrade_that_keeps_them() {
    use quarry_core::BatchId;
    use quarry_core::ports::{BatchOutcome, BatchTracker};
    let path = scratch("batch-counts");
    let batch = BatchId::new("b-upgrade");
    let (a, b, c) = (DocumentKey::new("a.txt"), DocumentKey::new("b.txt"), DocumentKey::new("c.txt"));
    {
        let store = SqliteStore::open(&path, 4).expect("create");
        store.create(&batch, &[(a.clone(), 10), (b.clone(), 20), (c.clone(), 30)]).await.expect("create batch");
        store.record(&batch, &a, &BatchOutcome::Indexed { chunks: 1, bytes: 10 }).await.expect("record");
    }
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "DROP TRIGGER batch_items_added; DROP TRIGGER batch_items_moved; DROP TRIGGER batch_items_removed;
             DROP TABLE batch_counts; DROP TRIGGER chunks_added; DROP TRIGGER chunks_changed;
             DROP TRIGGER chunks_removed; DROP TABLE counters; DROP TABLE document_metadata;
             PRAGMA user_version = 10;
             UPDATE batch_items SET outcome = 'unchanged' WHERE key = 'b.txt';",
        )
        .expect("back to schema 10, with an outcome recorded there");
    }
    let store = SqliteStore::open(&path, 4).expect("upgrade");
    let got = store.counters(&batch).await.expect("counters");
    assert_eq!((got.total, got.done, got.skipped, got.pending, got.bytes_total), (3, 1, 1, 1, 60), "{got:?}");
    store.record(&batch, &c, &BatchOutcome::Indexed { chunks: 2, bytes: 30 }).await.expect("record");
    store.record(&batch, &c, &BatchOutcome::Indexed { chunks: 2, bytes: 30 }).await.expect("twice");
    let got = store.counters(&batch).await.expect("counters");
    assert_eq!((got.total, got.done, got.skipped, got.pending), (3, 2, 1, 0), "counted once: {got:?}");
}

/// Every stored chunk comes back whole, vector included, by document and ordinal.
#[tokio::test]
async fn records_give_back_every_chunk_as_written() {
    let store = SqliteStore::open(&scratch("records"), 4).expect("open");
    let key = DocumentKey::new("export/a.md");
    let document = DocumentId::for_key(&key);
    let mut meta = ChunkMeta::new(key, Format::Markdown);
    meta.title = Some("Export".into());
    meta.user.insert("team".into(), "ops".into());
    let written: Vec<VectorRecord> = (0..3u32)
        .map(|o| VectorRecord {
            id: ChunkId::new(&document, o),
            document: document.clone(),
            vector: vec![o as f32, 0.5, -0.25, 1.0],
            text: format!("chunk {o}"),
            pages: (o == 1).then_some(quarry_core::PageRange { first: 2, last: 3 }),
            span: quarry_core::CharSpan { start: 10 * o as usize, end: 10 * o as usize + 7 },
            meta: meta.clone(),
        })
        .rev()
        .collect();
    store.upsert(&written).await.expect("upsert");
    let mut expected = written.clone();
    expected.reverse();
    assert_eq!(store.records().expect("records"), expected);
}

/// A damaged database file (a torn copy, a disk fault) is refused with a message that names the
/// fix, whether its header or its whole content is gone; the index is never half-opened.
#[test]
fn a_damaged_database_is_refused_with_the_fix_named() {
    use std::io::{Seek, SeekFrom, Write};
    for (name, damage) in [("header", 0u64), ("garbage", 1)] {
        let db = scratch(&format!("damaged-{name}"));
        {
            let store = SqliteStore::open(&db, 8).expect("open");
            drop(store);
        }
        let mut f = std::fs::OpenOptions::new().write(true).open(&db).expect("the file");
        if damage == 0 {
            f.seek(SeekFrom::Start(100)).expect("seek");
            f.write_all(b"garbage where the schema's first page was").expect("write");
        } else {
            f.set_len(0).expect("truncate");
            f.write_all(&[0x5a; 4096]).expect("write");
        }
        drop(f);
        let _ = std::fs::remove_file(db.with_extension("db-wal"));
        let err = SqliteStore::open(&db, 8).map(|_| ()).expect_err("a damaged file is refused");
        let message = err.to_string();
        assert!(matches!(err, quarry_local::StoreError::Corrupt { .. }), "{name}: {err:?}");
        assert!(message.contains("quarry ingest") && message.contains("backup"), "{name}: {message}");
    }
}

/// Documents' metadata moved to a table of its own (read at open for filters, rather than scanning
/// every chunk): a database from before is filled from its chunks on upgrade, and the table follows
/// writes and deletions from then on.
#[tokio::test]
async fn document_metadata_is_filled_on_upgrade_and_follows_writes() {
    use quarry_core::Filter;
    use quarry_core::ports::FieldCatalog;
    let path = scratch("document-metadata");
    let record = |name: &str, format: Format, vector: Vec<f32>| {
        let key = DocumentKey::new(name);
        let document = DocumentId::for_key(&key);
        VectorRecord {
            id: ChunkId::new(&document, 0),
            document,
            vector,
            text: format!("text of {name}"),
            pages: None,
            span: quarry_core::CharSpan { start: 0, end: 8 },
            meta: ChunkMeta::new(key, format),
        }
    };
    let (a, b) = (
        record("a.md", Format::Markdown, vec![1.0, 0.0, 0.0, 0.0]),
        record("b.txt", Format::Text, vec![0.9, 0.1, 0.0, 0.0]),
    );
    {
        let store = SqliteStore::open(&path, 4).expect("create");
        store.upsert(&[a.clone(), b.clone()]).await.expect("upsert");
    }
    let version = {
        let conn = rusqlite::Connection::open(&path).expect("open");
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
        conn.execute_batch(&format!("DROP TABLE document_metadata; PRAGMA user_version = {};", version - 1))
            .expect("back to the schema before the table");
        version
    };
    let markdown = Filter::parse(&serde_json::json!({"format": "markdown"})).expect("filter");
    let query = VectorQuery { vector: vec![1.0, 0.0, 0.0, 0.0], top_k: 5, filter: Some(markdown) };
    {
        let store = SqliteStore::open(&path, 4).expect("upgrade");
        let hits = store.search(&query).await.expect("search");
        assert_eq!(
            hits.iter().map(|h| &h.id).collect::<Vec<_>>(),
            [&a.id],
            "the filter knows the documents from before"
        );
        store.delete_from(&a.document, 0).await.expect("delete");
    }
    let conn = rusqlite::Connection::open(&path).expect("open");
    let now: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
    assert_eq!(now, version);
    drop(conn);
    let store = SqliteStore::open(&path, 4).expect("reopen");
    assert!(store.search(&query).await.expect("search").is_empty());
    let fields = store.fields(10, None).await.expect("fields");
    let formats = fields.iter().find(|f| f.name == "format").expect("a format field");
    assert_eq!(formats.documents, 1, "the deleted document's metadata left with it: {formats:?}");
}
