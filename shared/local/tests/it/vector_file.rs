//! The file-backed vector index: its vectors in a file beside the database, its codes and ids in
//! a snapshot that an open reads instead of every row, and never a snapshot trusted for an index
//! that changed after it (a crash, another process's writes, damage).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{VectorQuery, VectorRecord, VectorSearcher, VectorWriter};
use quarry_core::{ChunkId, DocumentId, DocumentKey, Format};
use quarry_local::vector_index::Opened;
use quarry_local::{FlatIndex, SqliteStore};
use quarry_testkit::XorShift;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quarry-vector-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn doc(i: usize) -> DocumentId {
    DocumentId::for_key(&DocumentKey::new(format!("doc-{i}")))
}

fn open(dir: &Path, dim: usize, stamp: u64) -> Opened {
    FlatIndex::open_files(dim, &dir.join("v.vectors"), &dir.join("v.codes"), stamp).expect("open the files")
}

fn current(opened: Opened) -> FlatIndex {
    match opened {
        Opened::Current(index) => index,
        other => panic!("expected the snapshot to be used, got {other:?}"),
    }
}

fn empty(opened: Opened) -> FlatIndex {
    match opened {
        Opened::Empty(index) => index,
        other => panic!("expected an empty index to fill, got {other:?}"),
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    /// Upserts and removals on a file-backed index leave it equal to a map of the survivors, with
    /// exact scores (the re-rank reads the file), before and after a save and reopen.
    #[test]
    fn writes_match_a_model_through_a_reopen(ops in prop::collection::vec((0u32..40, any::<bool>(), -1.0f32..1.0), 1..150)) {
        let dir = scratch("model");
        let mut idx = empty(open(&dir, 3, 7));
        let mut model = std::collections::BTreeMap::new();
        let d = doc(0);
        for (ord, insert, x) in ops {
            let id = ChunkId::new(&d, ord);
            if insert {
                idx.upsert(id, d.clone(), &[x, 1.0, 0.5]).expect("valid");
                model.insert(ord, x);
            } else {
                prop_assert_eq!(idx.remove(&id).expect("file"), model.remove(&ord).is_some());
            }
        }
        let q = unit(&[0.3, 1.0, -0.2]);
        let check = |idx: &FlatIndex| -> Result<(), TestCaseError> {
            let hits = idx.search(&q, 100, None).expect("search");
            let mut got: Vec<u32> = hits.iter().map(|h| h.id.parts().expect("id").1).collect();
            got.sort_unstable();
            prop_assert_eq!(got, model.keys().copied().collect::<Vec<_>>());
            for h in &hits {
                let v = unit(&[model[&h.id.parts().expect("id").1], 1.0, 0.5]);
                let cos: f32 = v.iter().zip(&q).map(|(a, b)| a * b).sum();
                prop_assert!((h.score - (1.0 + cos) / 2.0).abs() < 1e-5, "an exact score");
            }
            Ok(())
        };
        check(&idx)?;
        idx.follow(7, Some(8));
        idx.save().expect("save");
        drop(idx);
        let idx = current(open(&dir, 3, 8));
        prop_assert_eq!(idx.len(), model.len());
        check(&idx)?;
    }
}

#[test]
fn recall_at_10_holds_without_an_exact_scan() {
    // 3,000 candidates: an in-memory index scans them exactly; a file-backed one ranks them by
    // int8 and re-ranks the best 100 from the file.
    let dir = scratch("recall");
    let mut r = XorShift::new(3);
    let centers: Vec<Vec<f32>> = (0..30).map(|_| (0..64).map(|_| r.unit()).collect()).collect();
    let vs: Vec<Vec<f32>> = (0..3_000).map(|i| centers[i % 30].iter().map(|c| c + r.unit() * 0.8).collect()).collect();
    let mut on_disk = empty(open(&dir, 64, 0));
    let mut in_memory = FlatIndex::new(64);
    for (i, v) in vs.iter().enumerate() {
        let d = doc(i);
        on_disk.upsert(ChunkId::new(&d, 0), d.clone(), v).expect("upsert");
        in_memory.upsert(ChunkId::new(&d, 0), d, v).expect("upsert");
    }
    assert!(on_disk.on_disk() && !in_memory.on_disk());
    let mut found = 0;
    for q in vs.iter().step_by(100) {
        let q: Vec<f32> = q.iter().map(|x| x + r.unit() * 0.5).collect();
        let want: Vec<ChunkId> = in_memory.search(&q, 10, None).expect("search").into_iter().map(|h| h.id).collect();
        let got = on_disk.search(&q, 10, None).expect("search");
        found += got.iter().filter(|h| want.contains(&h.id)).count();
    }
    assert!(found >= 294, "recall@10 {} of 300", found);
}

#[test]
fn a_change_removes_the_snapshot_so_a_crash_leaves_none_to_trust() {
    let dir = scratch("crash");
    let mut idx = empty(open(&dir, 2, 0));
    idx.upsert(ChunkId::new(&doc(1), 0), doc(1), &[1.0, 0.0]).expect("upsert");
    idx.follow(0, Some(1));
    idx.save().expect("save");
    assert!(!idx.unsaved() && dir.join("v.codes").is_file());
    drop(idx);
    let mut idx = current(open(&dir, 2, 1));
    idx.upsert(ChunkId::new(&doc(2), 0), doc(2), &[0.0, 1.0]).expect("upsert");
    assert!(!dir.join("v.codes").exists(), "the first change removes the snapshot");
    // Dropped unsaved, as by a crash: the next open starts from the rows.
    drop(idx);
    let _ = empty(open(&dir, 2, 2));
}

#[test]
fn a_snapshot_of_another_stamp_or_dimension_or_damaged_is_not_used() {
    let dir = scratch("stale");
    let mut idx = empty(open(&dir, 2, 5));
    for i in 0..50 {
        idx.upsert(ChunkId::new(&doc(i), 0), doc(i), &[1.0, i as f32]).expect("upsert");
    }
    idx.save().expect("save");
    drop(idx);
    assert_eq!(current(open(&dir, 2, 5)).len(), 50);
    let _ = empty(open(&dir, 2, 6));
    let _ = empty(open(&dir, 3, 5));
    // A write that this index failed to hold, or another process's: never saved.
    let mut idx = current(open(&dir, 2, 5));
    idx.follow(4, Some(9));
    idx.upsert(ChunkId::new(&doc(99), 0), doc(99), &[1.0, 1.0]).expect("upsert");
    idx.save().expect("save");
    assert!(!dir.join("v.codes").exists(), "an index that lost track of the stamp is not saved");
    drop(idx);
    let mut idx = empty(open(&dir, 2, 5));
    idx.upsert(ChunkId::new(&doc(1), 0), doc(1), &[1.0, 1.0]).expect("upsert");
    idx.save().expect("save");
    drop(idx);
    // Cut short, as by a full disk: a warning and a rebuild, never an error or a wrong index.
    let codes = dir.join("v.codes");
    let len = std::fs::metadata(&codes).expect("snapshot").len();
    std::fs::OpenOptions::new().write(true).open(&codes).expect("open").set_len(len - 3).expect("truncate");
    let _ = empty(open(&dir, 2, 5));
    std::fs::write(&codes, b"not a snapshot at all").expect("write");
    let _ = empty(open(&dir, 2, 5));
}

#[test]
fn a_second_opener_keeps_its_vectors_in_memory() {
    let dir = scratch("locked");
    let _held = empty(open(&dir, 2, 0));
    assert!(matches!(open(&dir, 2, 0), Opened::Locked));
}

fn record(i: usize, vector: Vec<f32>) -> VectorRecord {
    let key = DocumentKey::new(format!("doc-{i}"));
    let document = DocumentId::for_key(&key);
    VectorRecord {
        id: ChunkId::new(&document, 0),
        document,
        vector,
        text: format!("chunk {i}"),
        pages: None,
        span: quarry_core::CharSpan { start: 0, end: 7 },
        meta: ChunkMeta::new(key, Format::Text),
    }
}

async fn nearest(store: &SqliteStore, v: Vec<f32>) -> Vec<ChunkId> {
    let hits = store.search(&VectorQuery { vector: v, top_k: 3, filter: None }).await.expect("search");
    hits.into_iter().map(|h| h.id).collect()
}

#[tokio::test]
async fn a_store_reopens_from_its_snapshot_and_never_from_a_stale_one() {
    let path = scratch("store").join("state.db");
    {
        let store = SqliteStore::open(&path, 2).expect("open");
        assert!(store.vectors_on_disk() && !store.vectors_from_snapshot());
        store.upsert(&[record(1, vec![1.0, 0.0]), record(2, vec![0.0, 1.0])]).await.expect("upsert");
    }
    {
        let store = SqliteStore::open(&path, 2).expect("reopen");
        assert!(store.vectors_from_snapshot(), "closed cleanly: the snapshot is read, not the rows");
        assert_eq!(nearest(&store, vec![0.1, 1.0]).await[0], record(2, vec![]).id);
        // A second store on the same database at once, as a second process: its vectors in
        // memory, and its writes make the first's index one that must not be saved as current.
        let other = SqliteStore::open(&path, 2).expect("open beside");
        assert!(!other.vectors_on_disk());
        other.upsert(&[record(3, vec![-1.0, 0.2])]).await.expect("upsert beside");
        drop(other);
        store.delete_from(&record(1, vec![]).document, 0).await.expect("delete");
    }
    let store = SqliteStore::open(&path, 2).expect("reopen");
    assert!(!store.vectors_from_snapshot(), "the first store did not hold the other's write");
    assert_eq!(nearest(&store, vec![-1.0, 0.0]).await, [record(3, vec![]).id, record(2, vec![]).id]);
    drop(store);
    assert!(SqliteStore::open(&path, 2).expect("reopen").vectors_from_snapshot(), "rebuilt and saved");
}

#[tokio::test]
async fn a_snapshot_beside_another_database_is_not_taken_for_it() {
    let (a, b) = (scratch("swap-a").join("state.db"), scratch("swap-b").join("state.db"));
    for (path, i, v) in [(&a, 1, vec![1.0, 0.0]), (&b, 2, vec![0.0, 1.0])] {
        let store = SqliteStore::open(path, 2).expect("open");
        store.upsert(&[record(i, v)]).await.expect("upsert");
    }
    // The same history of changes, a different database: as a backup of another index restored
    // over this one.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", a.display()));
    }
    std::fs::copy(&b, &a).expect("swap the database");
    let store = SqliteStore::open(&a, 2).expect("open");
    assert!(!store.vectors_from_snapshot(), "the snapshot was saved beside the other database");
    assert_eq!(nearest(&store, vec![1.0, 0.0]).await, [record(2, vec![]).id]);
}
