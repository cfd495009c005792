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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_dependency_times_out_and_is_named() {
    let state = MemoryState::default();
    let vectors = MemoryVectors::new(4);
    let backend = AwsBackend {
        embedder: Hung(ModelInfo { id: "hung".into(), dimension: 4, max_tokens: 256 }),
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
        keywords: None::<quarry_api::NoKeywords>,
    };
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
