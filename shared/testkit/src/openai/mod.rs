//! A local server that speaks OpenAI's embeddings wire format, for tests that run Quarry's real
//! OpenAI client (and the `quarry` binary) against it: latency on every call, and a share of calls
//! failing transiently (429 with `Retry-After`, 500, 503), chosen by a seeded sequence so that a run
//! can be repeated. It counts what a real account would be billed: the cl100k tokens of every
//! request it answered successfully, and nothing for the ones it failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The key the fake expects; anything else is a 401, as the real endpoint answers.
pub const KEY: &str = "sk-test-key-for-the-fake-server";

/// How the fake misbehaves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Waited before answering every call.
    pub latency: Duration,
    /// Percent of calls that fail transiently (0 to 100).
    pub fail_percent: u64,
    pub seed: u64,
    /// Percent of calls answered 200 with a body cut short (0 to 100).
    pub malformed_percent: u64,
    /// Looks at a file batch that find it still in progress.
    pub processing_polls: u32,
}

mod stores;

/// A file the fake holds.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    pub name: String,
    pub text: String,
    /// Its attributes in the store it is attached to; `None` if it is in none.
    pub attributes: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Default)]
struct Counts {
    calls: AtomicU64,
    failed: AtomicU64,
    billed_tokens: AtomicU64,
    inputs: AtomicU64,
}

/// A running fake; it stops with the test's runtime.
#[derive(Debug, Clone)]
pub struct FakeOpenAi {
    /// The base URL to configure (`…/v1`).
    pub url: String,
    counts: Arc<Counts>,
    world: Arc<std::sync::Mutex<stores::World>>,
}

impl FakeOpenAi {
    /// Starts the fake on a free loopback port. Call inside a tokio runtime.
    pub async fn start(faults: Faults) -> FakeOpenAi {
        let counts = Arc::new(Counts::default());
        let world = Arc::default();
        let app = axum::Router::new()
            .route("/v1/embeddings", axum::routing::post(embeddings))
            .with_state((Arc::clone(&counts), faults))
            .merge(stores::routes(Arc::clone(&counts), faults, Arc::clone(&world)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake OpenAI server");
        let url = format!("http://{}/v1", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeOpenAi { url, counts, world }
    }

    /// A configuration whose store is an OpenAI vector store on this fake (`QUARRY_STORE=openai`,
    /// its URL and key), retrying as often as a test with injected faults needs.
    pub fn store_config(&self) -> quarry_core::Config {
        let mut config = quarry_core::Config::default();
        config.store.backend = quarry_core::config::StoreBackend::Openai;
        config.embedder.openai_api_key = Some(quarry_core::config::Secret::new(KEY));
        config.embedder.openai_base_url = Some(self.url.clone());
        config.embedder.openai_max_retries = 10;
        config
    }

    /// Every uploaded file not deleted, by name then text.
    pub fn files(&self) -> Vec<StoredFile> {
        stores::files(&self.world)
    }

    /// Tokens of the requests answered successfully: what the account was billed.
    pub fn billed_tokens(&self) -> u64 {
        self.counts.billed_tokens.load(Ordering::SeqCst)
    }

    /// Inputs embedded successfully (a text sent twice counts twice).
    pub fn embedded_inputs(&self) -> u64 {
        self.counts.inputs.load(Ordering::SeqCst)
    }

    pub fn calls(&self) -> u64 {
        self.counts.calls.load(Ordering::SeqCst)
    }

    pub fn failed_calls(&self) -> u64 {
        self.counts.failed.load(Ordering::SeqCst)
    }
}

/// One step of SplitMix64: the n-th call's fate, from the seed, whatever the order of arrival.
fn roll(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What every route does first: the latency, the key check, and the seeded share of transient
/// failures. `Some` is the answer to send instead of the route's own.
async fn gate(counts: &Counts, faults: &Faults, headers: &axum::http::HeaderMap) -> Option<Response> {
    let n = counts.calls.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(faults.latency).await;
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {KEY}")) {
        let error = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}});
        return Some((StatusCode::UNAUTHORIZED, Json(error)).into_response());
    }
    let r = roll(faults.seed, n);
    if r % 100 < faults.fail_percent {
        counts.failed.fetch_add(1, Ordering::SeqCst);
        return Some(match (r >> 8) % 3 {
            0 => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after-ms", "5")],
                Json(json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
            )
                .into_response(),
            1 => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": {"message": "The server had an error", "type": "server_error"}}))).into_response(),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response(),
        });
    }
    if (r >> 16) % 100 < faults.malformed_percent {
        return Some(
            (StatusCode::OK, [("content-type", "application/json")], "{\"object\": \"list\", \"data\": [")
                .into_response(),
        );
    }
    None
}

async fn embeddings(
    State((counts, faults)): State<(Arc<Counts>, Faults)>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = gate(&counts, &faults, &headers).await {
        return refused;
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let dims = body["dimensions"].as_u64().unwrap_or(1536) as usize;
    let bpe = tiktoken_rs::cl100k_base_singleton();
    let tokens: u64 = inputs.iter().map(|t| bpe.encode_ordinary(t).len() as u64).sum();
    counts.billed_tokens.fetch_add(tokens, Ordering::SeqCst);
    counts.inputs.fetch_add(inputs.len() as u64, Ordering::SeqCst);
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t, dims)}))
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

/// A vector that depends only on the text, so results can be checked; not unit length, so the
/// client's normalisation is exercised.
pub fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    (0..dimensions)
        .map(|i| {
            for b in text.bytes().chain([i as u8]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            ((h >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}
