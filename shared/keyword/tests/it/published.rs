//! The published keyword index (the AWS deployment's) on the in-memory fakes of its ports: the
//! writer reads chunks back from the vector store and publishes immutable files and a manifest;
//! searchers load them. The same suites run on S3 and S3 Vectors over moto in `quarry-aws`.

use quarry_core::keywords::{ChunkChange, IndexFiles, ManifestRead};
use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{KeywordQuery, KeywordSearcher, VectorRecord, VectorWriter};
use quarry_core::{CharSpan, ChunkId, DocumentId, DocumentKey, Format};
use quarry_keyword::{KeywordIndex, KeywordIndexer, KeywordReplica, Manifest};
use quarry_testkit::contract;
use quarry_testkit::fakes::MemoryVectors;
use quarry_testkit::keywords::{MemoryIndexFiles, PublishedStore};

const DIM: usize = 4;

fn record(key: &str, ordinal: u32, text: &str) -> VectorRecord {
    let key = DocumentKey::new(key);
    let document = DocumentId::for_key(&key);
    let mut meta = ChunkMeta::new(key, Format::Text);
    meta.title = Some("Notes".to_owned());
    VectorRecord {
        id: ChunkId::new(&document, ordinal),
        document,
        vector: vec![1.0, 0.0, 0.0, 0.0],
        text: text.to_owned(),
        pages: None,
        span: CharSpan { start: 0, end: text.len() },
        meta,
    }
}

fn query(text: &str, k: usize) -> KeywordQuery {
    KeywordQuery { text: text.to_owned(), top_k: k, filter: None }
}

async fn manifest(files: &MemoryIndexFiles) -> Manifest {
    match files.manifest(None).await.expect("read") {
        ManifestRead::Found { bytes, .. } => serde_json::from_slice(&bytes).expect("a manifest"),
        other => panic!("no manifest: {other:?}"),
    }
}

#[tokio::test]
async fn memory_index_files_keep_the_contract() {
    contract::index_files(&MemoryIndexFiles::default()).await;
}

#[tokio::test]
async fn the_keyword_searcher_contract_holds_on_the_published_index() {
    let store = PublishedStore::new(MemoryVectors::new(DIM), MemoryIndexFiles::default());
    contract::keyword_store(&store, DIM).await;
}

/// The same chunks score exactly as in the embedded default's index: one engine, one analysis.
#[tokio::test]
async fn published_scores_equal_the_embedded_index() {
    let texts = [
        "Salmon and sardines are oily fish rich in omega-3 fatty acids.",
        "Walnuts and flaxseed also provide plant omega-3, and fish oil capsules are common.",
        "Sodium raises blood pressure in salt-sensitive people.",
        "Fish, fish and more fish: a diet of fish.",
    ];
    let store = PublishedStore::new(MemoryVectors::new(DIM), MemoryIndexFiles::default());
    let local = KeywordIndex::in_memory();
    for (i, text) in texts.iter().enumerate() {
        let mut r = record(&format!("doc-{i}.txt"), 0, text);
        if i % 2 == 1 {
            // A title given as user metadata (a JSONL record's `title` field) weighs the same.
            r.meta.title = None;
            r.meta.user.insert("title".to_owned(), format!("Fish notes {i}"));
        }
        local.upsert(&r.id, &r.document, r.meta.search_title(), text).expect("local");
        store.upsert(std::slice::from_ref(&r)).await.expect("publish");
        store.delete_from(&r.document, 1).await.expect("count");
    }
    for q in ["fish omega-3", "salt pressure", "notes fish", "walnuts", "fish notes 3"] {
        let published = store.keyword_search(&query(q, 10)).await.expect("published");
        let terms = quarry_keyword::query_terms(q);
        let ranked = local.search(&terms, 10, None, None).expect("local");
        assert_eq!(published.len(), ranked.hits.len(), "{q}");
        for (p, l) in published.iter().zip(&ranked.hits) {
            assert_eq!(p.id, l.chunk, "{q}");
            let expected = (l.score / ranked.ceiling).clamp(0.0, 1.0);
            assert!((p.score - expected).abs() < 1e-6, "{q}: {} against {expected}", p.score);
        }
    }
}

#[tokio::test]
async fn replaced_and_deleted_documents_never_come_back_and_a_searcher_fetches_only_new_files() {
    let vectors = MemoryVectors::new(DIM);
    let files = MemoryIndexFiles::default();
    let writer = KeywordIndexer::new(vectors.clone(), files.clone());
    let reader = KeywordReplica::new(files.clone(), std::time::Duration::ZERO);
    let a = record("a.txt", 0, "the zebra grazes on the savanna");
    let b = record("b.txt", 0, "a lighthouse keeper's diary");
    vectors.upsert(&[a.clone(), b.clone()]).await.expect("upsert");
    let change = |r: &VectorRecord, chunks| ChunkChange { document: r.document.clone(), chunks };
    writer.apply(&[change(&a, 1), change(&b, 1)]).await.expect("publish");
    assert_eq!(reader.keyword_search(&query("zebra", 5)).await.expect("search").len(), 1);
    let loaded = files.gets();

    // Replaced: the old words never come back, whatever order the changes arrive in.
    let a2 = record("a.txt", 0, "the giraffe browses acacia");
    vectors.upsert(std::slice::from_ref(&a2)).await.expect("replace");
    writer.apply(&[change(&a2, 1), change(&a, 1)]).await.expect("publish");
    assert!(reader.keyword_search(&query("zebra", 5)).await.expect("search").is_empty(), "old text gone");
    assert_eq!(reader.keyword_search(&query("giraffe", 5)).await.expect("search")[0].id, a2.id);
    assert!(files.gets() > loaded, "the new segment was fetched");
    assert!(
        files.gets() - loaded < manifest(&files).await.files.len() as u64,
        "only files the searcher lacked were fetched"
    );

    // Deleted: gone, and a change delivered again changes nothing.
    vectors.delete_from(&b.document, 0).await.expect("delete");
    for _ in 0..3 {
        writer.apply(&[change(&b, 0)]).await.expect("publish");
    }
    assert!(reader.keyword_search(&query("lighthouse", 5)).await.expect("search").is_empty());
    let m = manifest(&files).await;
    assert_eq!(m.chunks, 1, "one live chunk: {m:?}");
    for stored in m.files.values() {
        assert!(files.files().contains(&stored.object), "{} is stored", stored.object);
    }
}

#[tokio::test]
async fn two_writers_racing_publish_one_manifest_and_lose_nothing() {
    let vectors = MemoryVectors::new(DIM);
    let files = MemoryIndexFiles::default();
    let first = KeywordIndexer::new(vectors.clone(), files.clone());
    let second = KeywordIndexer::new(vectors.clone(), files.clone());
    let mut changes = (Vec::new(), Vec::new());
    for i in 0..20 {
        let r = record(&format!("race-{i}.txt"), 0, &format!("word{i} shared"));
        vectors.upsert(std::slice::from_ref(&r)).await.expect("upsert");
        let c = ChunkChange { document: r.document.clone(), chunks: 1 };
        if i % 2 == 0 { changes.0.push(c) } else { changes.1.push(c) }
    }
    for round in 0..5 {
        let (a, b) = (&changes.0[round * 2..round * 2 + 2], &changes.1[round * 2..round * 2 + 2]);
        let (x, y) = tokio::join!(first.apply(a), second.apply(b));
        x.expect("the first writer publishes, retrying if it lost");
        y.expect("the second writer publishes, retrying if it lost");
    }
    let reader = KeywordReplica::new(files.clone(), std::time::Duration::ZERO);
    let hits = reader.keyword_search(&query("shared", 100)).await.expect("search");
    assert_eq!(hits.len(), 20, "every document of both writers is searchable");
    assert_eq!(manifest(&files).await.generation, files.publishes(), "one manifest per publish, in sequence");
    assert!(files.conflicts() > 0, "the writers did race (a publish was refused and retried)");
}

#[tokio::test]
async fn the_merge_policy_keeps_the_segment_count_bounded() {
    let vectors = MemoryVectors::new(DIM);
    let files = MemoryIndexFiles::default();
    let writer = KeywordIndexer::new(vectors.clone(), files.clone());
    let mut most = 0;
    for i in 0..40 {
        let r = record(&format!("m-{i}.txt"), 0, &format!("entry number {i}"));
        vectors.upsert(std::slice::from_ref(&r)).await.expect("upsert");
        let m = writer.apply(&[ChunkChange { document: r.document.clone(), chunks: 1 }]).await.expect("publish");
        most = most.max(m.segments);
    }
    let m = manifest(&files).await;
    assert_eq!(m.chunks, 40);
    assert!(most <= 10, "40 publishes, at most {most} segments at once");
    assert!(!m.retired.is_empty(), "merged-away files are retired, not leaked");
}

/// A search that comes while the first load is under way (a readiness probe started it) waits for
/// it rather than answering from an empty index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_during_the_first_load_waits_for_it() {
    let vectors = MemoryVectors::new(DIM);
    let files = MemoryIndexFiles::default();
    let r = record("first.txt", 0, "an albatross glides for hours");
    vectors.upsert(std::slice::from_ref(&r)).await.expect("upsert");
    KeywordIndexer::new(vectors, files.clone())
        .apply(&[ChunkChange { document: r.document.clone(), chunks: 1 }])
        .await
        .expect("publish");
    // The manifest answers slowly, as S3 may at a cold start.
    files.delay_manifest(std::time::Duration::from_millis(200));
    let replica = std::sync::Arc::new(KeywordReplica::new(files, std::time::Duration::from_secs(60)));
    let probe = {
        let replica = std::sync::Arc::clone(&replica);
        tokio::spawn(async move { replica.current().await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let hits = replica.keyword_search(&query("albatross", 5)).await.expect("search");
    assert_eq!(hits.len(), 1, "the search waited for the load under way");
    assert_eq!(probe.await.expect("probe").expect("load").generation, 1);
}

/// Uploads no manifest names (a writer killed before publishing) are strays once older than the
/// grace period; the files a manifest names or retires, and young uploads, never are. The census
/// lists what searchers search: each document's live chunk ordinals.
#[tokio::test]
async fn stray_files_and_the_census_of_a_published_index() {
    use quarry_core::census::VectorCensus;

    let vectors = MemoryVectors::new(DIM);
    let files = MemoryIndexFiles::default();
    vectors
        .upsert(&[record("a.txt", 0, "apples"), record("a.txt", 1, "pears"), record("b.txt", 0, "plums")])
        .await
        .expect("upsert");
    let indexer = KeywordIndexer::new(vectors.clone(), files.clone());
    let changes = |key: &str, chunks| ChunkChange { document: DocumentId::for_key(&DocumentKey::new(key)), chunks };
    indexer.apply(&[changes("a.txt", 2), changes("b.txt", 1)]).await.expect("publish");
    files.put("files/000000000009-dead/killed.idx", b"left behind").await.expect("put");
    assert!(quarry_keyword::stray_files(&files).await.expect("strays").is_empty(), "a young upload is not a stray");

    files.backdate(std::time::Duration::from_secs(3_600));
    assert_eq!(quarry_keyword::stray_files(&files).await.expect("strays"), ["files/000000000009-dead/killed.idx"]);
    // b.txt's only chunk goes: its segment's files are kept (an alive bitset marks it deleted).
    indexer.apply(&[changes("b.txt", 0)]).await.expect("publish");
    let named = manifest(&files).await;
    let strays = quarry_keyword::stray_files(&files).await.expect("strays");
    assert_eq!(strays, ["files/000000000009-dead/killed.idx"], "named and retired files are not strays: {named:?}");

    let replica = KeywordReplica::new(files.clone(), std::time::Duration::ZERO);
    let census = replica.stored().await.expect("census");
    let a = DocumentId::for_key(&DocumentKey::new("a.txt"));
    assert_eq!(census.len(), 1, "b.txt is gone: {census:?}");
    assert_eq!((&census[0].document, census[0].ordinals.as_slice()), (&a, &[0, 1][..]));
}

/// Index files whose next `get` of an object whose name contains `fail` is throttled, once.
#[derive(Debug, Clone)]
struct Flaky {
    inner: MemoryIndexFiles,
    fail: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl IndexFiles for Flaky {
    async fn manifest(&self, known: Option<&str>) -> Result<ManifestRead, quarry_core::PortError> {
        self.inner.manifest(known).await
    }
    async fn publish(&self, bytes: &[u8], replaces: Option<&str>) -> Result<String, quarry_core::PortError> {
        self.inner.publish(bytes, replaces).await
    }
    async fn get(&self, name: &str) -> Result<Vec<u8>, quarry_core::PortError> {
        let failing = {
            let mut fail = self.fail.lock().expect("lock");
            fail.as_deref().is_some_and(|f| name.contains(f)) && fail.take().is_some()
        };
        if failing {
            return Err(quarry_core::PortError::Throttled { operation: "get", retry_after: None, source: None });
        }
        self.inner.get(name).await
    }
    async fn put(&self, name: &str, bytes: &[u8]) -> Result<(), quarry_core::PortError> {
        self.inner.put(name, bytes).await
    }
    async fn delete(&self, names: &[String]) -> Result<(), quarry_core::PortError> {
        self.inner.delete(names).await
    }
    async fn list(&self) -> Result<Vec<(String, i64)>, quarry_core::PortError> {
        self.inner.list().await
    }
}

/// Files are fetched many at once; one that fails leaves the searched copy as it was (the others
/// that arrived are not searched), and the next refresh loads the whole new generation.
#[tokio::test]
async fn a_file_that_fails_to_arrive_leaves_the_copy_searched_and_the_next_refresh_loads_it_all() {
    let vectors = MemoryVectors::new(DIM);
    let files = MemoryIndexFiles::default();
    let writer = KeywordIndexer::new(vectors.clone(), files.clone());
    let flaky = Flaky { inner: files.clone(), fail: std::sync::Arc::default() };
    let reader = KeywordReplica::new(flaky.clone(), std::time::Duration::ZERO);
    let a = record("a.txt", 0, "the zebra grazes on the savanna");
    vectors.upsert(std::slice::from_ref(&a)).await.expect("upsert");
    let change = |r: &VectorRecord| ChunkChange { document: r.document.clone(), chunks: 1 };
    writer.apply(&[change(&a)]).await.expect("publish");
    assert_eq!(reader.keyword_search(&query("zebra", 5)).await.expect("search").len(), 1);

    let b = record("b.txt", 0, "a lighthouse keeper's diary");
    vectors.upsert(std::slice::from_ref(&b)).await.expect("upsert");
    writer.apply(&[change(&b)]).await.expect("publish");
    let new = manifest(&files).await;
    let searched = reader.manifest().await;
    let unseen: Vec<&String> =
        new.files.values().map(|s| &s.object).filter(|o| !searched.files.values().any(|s| &s.object == *o)).collect();
    assert!(unseen.len() > 1, "the new generation brings several files: {unseen:?}");
    *flaky.fail.lock().expect("lock") = Some(unseen[unseen.len() / 2].clone());

    // The refresh fails; the search answers from the copy it had.
    assert!(reader.keyword_search(&query("lighthouse", 5)).await.expect("search").is_empty());
    assert_eq!(reader.manifest().await.generation, searched.generation);

    // The next one loads it all.
    assert!(flaky.fail.lock().expect("lock").is_none(), "the failure was met");
    assert_eq!(reader.keyword_search(&query("lighthouse", 5)).await.expect("search")[0].id, b.id);
    assert_eq!(reader.keyword_search(&query("zebra", 5)).await.expect("search")[0].id, a.id);
    assert_eq!(reader.manifest().await.generation, new.generation);
}
