//! Readiness that checks each dependency: the search function's backend over in-memory stores,
//! with an embedder that never answers. The hung dependency times out, is reported by name, and
//! makes the instance not ready; the others are reported ok.

use std::time::Duration;

use quarry_core::config::Limits;
use quarry_core::ports::{Embedder, ModelInfo};
use quarry_core::{Config, PortError};
use quarry_search::{AwsBackend, AwsStarter, cursor_key};
use quarry_testkit::fakes::{MemoryQueue, MemorySource, MemoryState, MemoryVectors};
use quarry_testkit::lambda::api;

/// An embedder whose calls never end (a hung model server, an API that stopped answering).
struct Hung(ModelInfo);

impl Embedder for Hung {
    fn model(&self) -> &ModelInfo {
        &self.0
    }
    async fn embed(&self, _: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        std::future::pending().await
    }
}

type Keywords = quarry_keyword::KeywordReplica<quarry_testkit::keywords::MemoryIndexFiles>;

/// The search function's backend over in-memory stores, with `embedder` and `keywords`.
fn backend<E: Embedder>(
    embedder: E,
    vectors: MemoryVectors,
    keywords: Option<Keywords>,
) -> AwsBackend<E, MemoryVectors, MemoryState, MemorySource, MemoryQueue, quarry_core::ports::NoEvents, Keywords> {
    let state = MemoryState::default();
    AwsBackend {
        embedder,
        vectors: vectors.clone(),
        state: state.clone(),
        starter: AwsStarter {
            source: MemorySource::default(),
            state,
            vectors,
            queue: MemoryQueue::default(),
            events: quarry_core::ports::NoEvents,
            limits: Limits::default(),
            hosted: None,
        },
        bucket: "b".into(),
        keywords,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_dependency_times_out_and_is_named() {
    let backend =
        backend(Hung(ModelInfo { id: "hung".into(), dimension: 4, max_tokens: 256 }), MemoryVectors::new(4), None);
    let secret = quarry_core::config::Secret::new("a health-test cursor secret of 32+ characters");
    let router = quarry_api::router(backend, Config::default().server, cursor_key(Some(&secret)).expect("key"));
    // Before the probes end, nothing is known: not ready.
    let (status, body) = api(&router, "GET", "/health/ready", None).await;
    assert_eq!(status, 503, "{body}");
    tokio::time::sleep(quarry_api::health::PROBE_TIMEOUT + Duration::from_millis(300)).await;
    let (status, body) = api(&router, "GET", "/health/ready", None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "not_ready");
    let deps = body["dependencies"].as_array().expect("dependencies");
    let status_of = |name: &str| deps.iter().find(|d| d["name"] == name).map(|d| d["status"].clone());
    assert_eq!(status_of("embedder"), Some("timeout".into()), "{body}");
    assert_eq!(status_of("state_store"), Some("ok".into()), "{body}");
    assert_eq!(status_of("vector_store"), Some("ok".into()), "{body}");
    // Liveness does not depend on anything.
    assert_eq!(api(&router, "GET", "/health/live", None).await.0, 200);
}

/// An embedder that answers at once with a fixed vector.
struct Ready(ModelInfo);

impl Embedder for Ready {
    fn model(&self) -> &ModelInfo {
        &self.0
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        Ok(texts.iter().map(|_| vec![1.0, 0.0, 0.0, 0.0]).collect())
    }
}

/// With the published keyword index, readiness reports what is searched: its generation, age and
/// size; a keyword index that cannot be read is reported but leaves semantic search ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_the_keyword_index_generation_and_age() {
    use quarry_core::keywords::ChunkChange;
    use quarry_core::ports::VectorWriter;
    let vectors = MemoryVectors::new(4);
    let files = quarry_testkit::keywords::MemoryIndexFiles::default();
    let key = quarry_core::DocumentKey::new("fresh.txt");
    let document = quarry_core::DocumentId::for_key(&key);
    vectors
        .upsert(&[quarry_core::ports::VectorRecord {
            id: quarry_core::ChunkId::new(&document, 0),
            document: document.clone(),
            vector: vec![1.0, 0.0, 0.0, 0.0],
            text: "freshly published words".into(),
            pages: None,
            span: quarry_core::CharSpan { start: 0, end: 23 },
            meta: quarry_core::meta::ChunkMeta::new(key, quarry_core::Format::Text),
        }])
        .await
        .expect("upsert");
    let indexer = quarry_keyword::KeywordIndexer::new(vectors.clone(), files.clone());
    indexer.apply(&[ChunkChange { document, chunks: 1 }]).await.expect("publish");
    let replica = quarry_keyword::KeywordReplica::new(files, Duration::ZERO);
    let backend =
        backend(Ready(ModelInfo { id: "ready".into(), dimension: 4, max_tokens: 256 }), vectors, Some(replica));
    let secret = quarry_core::config::Secret::new("a health-test cursor secret of 32+ characters");
    let router = quarry_api::router(backend, Config::default().server, cursor_key(Some(&secret)).expect("key"));
    let mut body = serde_json::Value::Null;
    for _ in 0..50 {
        let (status, b) = api(&router, "GET", "/health/ready", None).await;
        body = b;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body["status"], "ready", "{body}");
    let deps = body["dependencies"].as_array().expect("dependencies");
    let k = deps.iter().find(|d| d["name"] == "keyword_index").expect("the keyword index is reported");
    assert_eq!((k["status"].as_str(), k["required"].as_bool()), (Some("ok"), Some(false)), "{body}");
    assert_eq!(k["detail"]["generation"], 1, "{body}");
    assert_eq!(k["detail"]["chunks"], 1, "{body}");
    let age = k["detail"]["age_ms"].as_i64().expect("an age");
    assert!((0..60_000).contains(&age), "{body}");
}
