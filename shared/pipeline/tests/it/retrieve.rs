//! `retrieve` awaits the query's embedding only where the mode needs it, and in hybrid mode runs
//! the keyword lists while the embedding is still being computed (the latency that buys is in
//! docs/PERFORMANCE.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{KeywordQuery, KeywordSearcher, VectorHit, VectorRecord, VectorWriter};
use quarry_core::{CharSpan, ChunkId, DocumentId, DocumentKey, Format, PortError};
use quarry_pipeline::query::Fusion;
use quarry_pipeline::{Mode, retrieve};
use quarry_testkit::fakes::MemoryVectors;
use tokio::sync::Notify;

fn record(key: &str, text: &str, vector: Vec<f32>) -> VectorRecord {
    let key = DocumentKey::new(key);
    let document = DocumentId::for_key(&key);
    VectorRecord {
        id: ChunkId::new(&document, 0),
        document,
        vector,
        text: text.to_owned(),
        pages: None,
        span: CharSpan { start: 0, end: text.chars().count() },
        meta: ChunkMeta::new(key, Format::Text),
    }
}

/// Keyword hits from a fixed list; each call counted and announced. With `wait_for`, a search
/// answers only once that has been notified (the embedding has started).
struct Words {
    hits: Vec<VectorHit>,
    calls: AtomicUsize,
    called: Arc<Notify>,
    wait_for: Option<Arc<Notify>>,
}

impl KeywordSearcher for Words {
    async fn keyword_search(&self, _: &KeywordQuery) -> Result<Vec<VectorHit>, PortError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.called.notify_one();
        if let Some(started) = &self.wait_for {
            started.notified().await;
            // The feedback search, if any, goes on at once.
            started.notify_one();
        }
        Ok(self.hits.clone())
    }
}

async fn fixture() -> (MemoryVectors, Words) {
    let vectors = MemoryVectors::new(2);
    let records = [
        record("a.txt", "otters hold hands while they sleep", vec![1.0, 0.0]),
        record("b.txt", "otters and beavers build in rivers", vec![0.6, 0.8]),
    ];
    vectors.upsert(&records).await.expect("upsert");
    let hits = records
        .iter()
        .map(|r| VectorHit {
            id: r.id.clone(),
            document: r.document.clone(),
            score: 0.5,
            text: r.text.clone(),
            pages: None,
            span: r.span,
            meta: r.meta.clone(),
        })
        .collect();
    (vectors, Words { hits, calls: AtomicUsize::new(0), called: Arc::new(Notify::new()), wait_for: None })
}

fn no_vector() -> impl Future<Output = Result<Vec<f32>, PortError>> {
    std::future::ready(Err(PortError::InvalidInput { operation: "embed", reason: "not to be asked".into() }))
}

#[tokio::test]
async fn keyword_mode_never_asks_for_the_vector_and_semantic_mode_passes_its_error_on() {
    let (vectors, words) = fixture().await;
    let hits = retrieve(&vectors, Some(&words), Mode::Keyword, "otters", no_vector(), 10, None, Fusion::DEFAULT)
        .await
        .expect("keyword mode does not embed");
    assert_eq!(hits.len(), 2);
    let err = retrieve(&vectors, Some(&words), Mode::Semantic, "otters", no_vector(), 10, None, Fusion::DEFAULT)
        .await
        .expect_err("semantic mode needs the vector");
    assert!(matches!(err, PortError::InvalidInput { operation: "embed", .. }), "{err:?}");
}

#[tokio::test]
async fn hybrid_runs_the_keyword_lists_while_the_query_is_embedded() {
    let (vectors, mut words) = fixture().await;
    let called = Arc::clone(&words.called);
    let started = Arc::new(Notify::new());
    words.wait_for = Some(Arc::clone(&started));
    // Each side waits for the other: the "embedding", once started, finishes only after a keyword
    // search has begun, and that search answers only after the embedding has started. Running
    // the two one after the other, in either order, never finishes.
    let vector = async move {
        started.notify_one();
        called.notified().await;
        Ok(vec![1.0, 0.0])
    };
    let hits = tokio::time::timeout(
        Duration::from_secs(10),
        retrieve(&vectors, Some(&words), Mode::Hybrid, "otters", vector, 10, None, Fusion::DEFAULT),
    )
    .await
    .expect("the keyword lists did not run while the vector was pending")
    .expect("hybrid");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].meta.key.as_str(), "a.txt", "the nearer vector and an equal keyword score rank first");
    assert!(words.calls.load(Ordering::SeqCst) >= 1);
}
