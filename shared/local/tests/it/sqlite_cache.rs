//! The local embedding cache's own rules beyond the contract: a TTL from last use, a size cap kept
//! by evicting the least recently used, sizes that stay exact through replacements and clearing,
//! and a cache written before encodings existed still read.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use quarry_core::ContentHash;
use quarry_core::cache::{CacheAdmin, CacheFilter, CachePolicy, Encoding};
use quarry_core::ports::{EmbeddingCache, ModelInfo};
use quarry_local::SqliteStore;

const DAY_MS: i64 = 86_400_000;

fn scratch_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("quarry-sqlite-cache-{name}-{}", std::process::id())).join("state.db")
}

fn scratch(name: &str) -> PathBuf {
    let path = scratch_path(name);
    let dir = path.parent().expect("a folder");
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch dir");
    path
}

fn model() -> ModelInfo {
    ModelInfo { id: "test/model".into(), dimension: 384, max_tokens: 256 }
}

fn unit(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; 384];
    v[i % 384] = 1.0;
    v
}

/// A store whose clock the test moves.
fn store(name: &str, policy: CachePolicy) -> (SqliteStore, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(1_800_000_000_000));
    let clock = Arc::clone(&now);
    let store = SqliteStore::open(&scratch(name), 384)
        .expect("open")
        .with_clock(move || clock.load(Ordering::SeqCst))
        .with_cache_policy(policy);
    (store, now)
}

async fn bytes(store: &SqliteStore) -> u64 {
    store.cache_stats().await.expect("stats").iter().map(|s| s.bytes).sum()
}

/// The size the triggers keep (what the cap is checked against) and the size the rows add up
/// to, read from the file itself.
fn kept_and_counted(name: &str) -> (i64, i64) {
    let conn = rusqlite::Connection::open(scratch_path(name)).expect("open");
    let kept = conn.query_row("SELECT bytes FROM embedding_cache_size", [], |r| r.get(0)).expect("kept");
    let counted = conn
        .query_row(
            "SELECT COALESCE(SUM(length(model) + length(content_hash) + length(vector) + 16), 0) FROM embedding_cache",
            [],
            |r| r.get(0),
        )
        .expect("counted");
    (kept, counted)
}

#[tokio::test]
async fn an_entry_unused_for_longer_than_the_ttl_is_gone_and_a_used_one_stays() {
    let (store, now) = store("ttl", CachePolicy { ttl_days: 2, ..CachePolicy::default() });
    let (old, used) = (ContentHash::of_text("old"), ContentHash::of_text("used"));
    store.put(&model(), &[(old.clone(), unit(0)), (used.clone(), unit(1))]).await.expect("put");
    now.fetch_add(DAY_MS + 1, Ordering::SeqCst);
    assert!(store.get(&model(), std::slice::from_ref(&used)).await.expect("get")[0].is_some(), "a day old: fresh");
    now.fetch_add(DAY_MS + 1, Ordering::SeqCst);
    let got = store.get(&model(), &[old, used.clone()]).await.expect("get");
    assert!(got[0].is_none(), "two days unused: expired");
    assert!(got[1].is_some(), "used a day ago: its TTL started again then");
    // An estimate's look is not a use: it does not move the TTL.
    let peeked = ContentHash::of_text("peeked");
    store.put(&model(), &[(peeked.clone(), unit(3))]).await.expect("put");
    now.fetch_add(DAY_MS + 1, Ordering::SeqCst);
    assert!(store.peek(&model(), std::slice::from_ref(&peeked)).await.expect("peek")[0].is_some());
    now.fetch_add(DAY_MS + 1, Ordering::SeqCst);
    assert!(store.get(&model(), std::slice::from_ref(&peeked)).await.expect("get")[0].is_none(), "peeked, not used");
    assert!(store.get(&model(), std::slice::from_ref(&used)).await.expect("get")[0].is_none(), "unused two days");
    // The next write drops what has expired.
    store.put(&model(), &[(ContentHash::of_text("new"), unit(2))]).await.expect("put");
    let stats = store.cache_stats().await.expect("stats");
    assert_eq!(stats.iter().map(|s| s.entries).sum::<u64>(), 1, "only the new entry is left: {stats:?}");
}

#[tokio::test]
async fn past_the_cap_the_least_recently_used_go_first() {
    // 1 MiB of f32 vectors (1,536 bytes each, with their keys about 1,630): about 640 entries.
    let policy = CachePolicy { encoding: Encoding::F32, ttl_days: 0, max_mb: 1 };
    let (store, now) = store("lru", policy);
    let hash = |i: usize| ContentHash::of_text(&format!("text {i}"));
    for round in 0..10 {
        let entries: Vec<_> = (round * 100..(round + 1) * 100).map(|i| (hash(i), unit(i))).collect();
        store.put(&model(), &entries).await.expect("put");
        now.fetch_add(1_000, Ordering::SeqCst);
        if round == 4 {
            // Entry 0 is read: it becomes recent, and outlives the entries written after it.
            assert!(store.get(&model(), &[hash(0)]).await.expect("get")[0].is_some());
            now.fetch_add(1_000, Ordering::SeqCst);
        }
    }
    let total = bytes(&store).await;
    assert!(total <= 1024 * 1024, "under the cap: {total}");
    let (kept, counted) = kept_and_counted("lru");
    assert_eq!((kept, counted), (total as i64, total as i64), "after evictions too");
    assert!(total >= 1024 * 1024 * 8 / 10, "and not emptied: {total}");
    let got = store.get(&model(), &[hash(0), hash(1), hash(350), hash(999)]).await.expect("get");
    let kept: Vec<bool> = got.iter().map(Option::is_some).collect();
    assert_eq!(kept, [true, false, false, true], "recently used and newest kept, the oldest unused evicted");
}

#[tokio::test]
async fn sizes_follow_replacements_and_clearing_and_compact_encodings_are_smaller() {
    let (f32s, _) = store("size-f32", CachePolicy { encoding: Encoding::F32, ..CachePolicy::default() });
    let (int8s, _) = store("size-int8", CachePolicy { encoding: Encoding::Int8, ..CachePolicy::default() });
    let entries: Vec<_> = (0..50).map(|i| (ContentHash::of_text(&format!("t{i}")), unit(i))).collect();
    f32s.put(&model(), &entries).await.expect("put");
    int8s.put(&model(), &entries).await.expect("put");
    let (big, small) = (bytes(&f32s).await, bytes(&int8s).await);
    assert!(small * 3 < big, "int8 about a quarter of f32 with the keys: {small} vs {big}");
    // Writing the same entries again replaces them: the size does not grow.
    int8s.put(&model(), &entries).await.expect("put");
    assert_eq!(bytes(&int8s).await, small);
    let (kept, counted) = kept_and_counted("size-int8");
    assert_eq!((kept, counted), (small as i64, small as i64), "the triggers' size is the rows' size");
    // Replaced once more: the kept total still equals the rows.
    f32s.put(&model(), &entries[..10]).await.expect("put");
    let (kept, counted) = kept_and_counted("size-f32");
    assert_eq!(kept, counted);
    assert_eq!(int8s.clear_cache(&CacheFilter::default()).await.expect("clear"), 50);
    assert_eq!(bytes(&int8s).await, 0);
    assert_eq!(kept_and_counted("size-int8"), (0, 0));
    assert!(int8s.cache_stats().await.expect("stats").is_empty());
}

#[tokio::test]
async fn a_cache_written_before_encodings_is_read_and_counted_after_the_upgrade() {
    let path = scratch("legacy");
    drop(SqliteStore::open(&path, 384).expect("create"));
    {
        // Back to schema version 8, with an untagged f32 vector, as an earlier release left it.
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch(
            "DROP TRIGGER embedding_cache_added; DROP TRIGGER embedding_cache_removed;
             DROP TRIGGER embedding_cache_replaced; DROP TABLE embedding_cache_size;
             DROP INDEX embedding_cache_by_use; ALTER TABLE embedding_cache DROP COLUMN used_ms;
             ALTER TABLE documents DROP COLUMN handle; DROP TRIGGER batch_items_added;
             DROP TRIGGER batch_items_moved; DROP TRIGGER batch_items_removed; DROP TABLE batch_counts;
             DROP TRIGGER chunks_added; DROP TRIGGER chunks_changed; DROP TRIGGER chunks_removed;
             DROP TABLE counters; DROP TABLE document_metadata; PRAGMA user_version = 8;",
        )
        .expect("downgrade");
        let blob: Vec<u8> = unit(5).iter().flat_map(|x| x.to_le_bytes()).collect();
        conn.execute(
            "INSERT INTO embedding_cache VALUES ('test/model', 384, ?1, ?2)",
            rusqlite::params![ContentHash::of_text("legacy").as_str(), blob],
        )
        .expect("insert");
    }
    // The upgrade: the entry counts as used now (not expired by the TTL), and is sized.
    let store = SqliteStore::open(&path, 384).expect("upgrade");
    let got = store.get(&model(), &[ContentHash::of_text("legacy")]).await.expect("get");
    assert_eq!(got, vec![Some(unit(5))]);
    let stats = store.cache_stats().await.expect("stats");
    assert_eq!((stats.len(), stats[0].entries), (1, 1), "{stats:?}");
    assert_eq!(bytes(&store).await, (10 + 64 + 1536 + 16) as u64);
    assert_eq!(kept_and_counted("legacy"), (10 + 64 + 1536 + 16, 10 + 64 + 1536 + 16), "sized by the migration");
}
