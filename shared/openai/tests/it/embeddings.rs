//! The OpenAI embedder against a local server that speaks the embeddings wire format and injects
//! latency, 429s and 5xx, as the real endpoint does under load.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use quarry_core::config::Secret;
use quarry_core::ports::Embedder;
use quarry_core::{Classify, ErrorClass, PortError};
use quarry_openai::{OpenAiEmbedder, Options};
use quarry_testkit::openai::vector;
use serde_json::{Value, json};

/// What the fake answers next: a status to fail with, or a delay before answering well.
#[derive(Debug, Clone, Copy)]
enum Next {
    Fail(u16),
    Slow(Duration),
    /// 429 with `retry-after-ms`.
    WaitMs(u64),
    /// 429 for an account out of credit.
    Quota,
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Next>>,
    requests: Mutex<Vec<Value>>,
    /// When each request arrived.
    arrivals: Mutex<Vec<std::time::Instant>>,
}

async fn embeddings(
    State(fake): State<Arc<Fake>>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    fake.requests.lock().unwrap().push(body.clone());
    fake.arrivals.lock().unwrap().push(std::time::Instant::now());
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer sk-test-key-for-the-fake-server"),
        "the key goes as a bearer token"
    );
    let next = fake.script.lock().unwrap().pop_front();
    match next {
        Some(Next::Fail(429)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}})),
            )
                .into_response();
        }
        Some(Next::WaitMs(ms)) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after-ms", ms.to_string())],
                Json(json!({"error": {"message": "Rate limit reached", "type": "tokens", "param": null, "code": "rate_limit_exceeded"}})),
            )
                .into_response();
        }
        Some(Next::Quota) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}})),
            )
                .into_response();
        }
        Some(Next::Fail(401)) => {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}})),
            )
                .into_response();
        }
        Some(Next::Fail(400)) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "'$.input' is invalid", "type": "invalid_request_error", "param": null, "code": null}})),
            )
                .into_response();
        }
        Some(Next::Fail(code)) => {
            return (StatusCode::from_u16(code).unwrap(), "upstream connect error").into_response();
        }
        Some(Next::Slow(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let dims = body["dimensions"].as_u64().unwrap_or(1536) as usize;
    let inputs: Vec<String> =
        body["input"].as_array().expect("an array of inputs").iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    // Out of order on purpose: clients must order by `index`.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t, dims)}))
        .collect();
    Json(json!({"object": "list", "model": body["model"], "data": data, "usage": {"prompt_tokens": 8, "total_tokens": 8}}))
        .into_response()
}

async fn serve(script: Vec<Next>) -> (String, Arc<Fake>) {
    let fake = Arc::new(Fake { script: Mutex::new(script.into()), ..Fake::default() });
    let app = axum::Router::new().route("/v1/embeddings", post(embeddings)).with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), fake)
}

fn embedder(base: &str, tweak: impl FnOnce(&mut Options)) -> OpenAiEmbedder {
    let mut o = Options {
        api_base: Some(base.to_owned()),
        backoff: Duration::from_millis(5),
        timeout: Duration::from_millis(500),
        ..Options::default()
    };
    tweak(&mut o);
    OpenAiEmbedder::new(&Secret::new("sk-test-key-for-the-fake-server"), o).unwrap()
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("chunk number {i}")).collect()
}

#[tokio::test]
async fn vectors_come_back_in_order_unit_length_and_batched() {
    let (base, fake) = serve(Vec::new()).await;
    let e = embedder(&base, |o| o.max_inputs = 4);
    assert_eq!((e.model().id.as_str(), e.model().dimension), ("openai/text-embedding-3-small", 384));
    let input = texts(10);
    let out = e.embed(&input).await.expect("embed");
    assert_eq!(out.len(), 10);
    for (t, v) in input.iter().zip(&out) {
        let want = vector(t, 384);
        let norm = want.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(v.iter().zip(&want).all(|(a, b)| (a - b / norm).abs() < 1e-5), "the vector for {t:?}, normalised");
    }
    // Billed as OpenAI counts: cl100k tokens at the model's list price ($0.02 per million).
    let usage = e.usage(&["hello world".to_owned(), "hello world".to_owned()]);
    assert_eq!((usage.tokens, usage.nanodollars), (4, 80));
    let requests = fake.requests.lock().unwrap();
    let sizes: Vec<usize> = requests.iter().map(|r| r["input"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [4, 4, 2], "at most max_inputs per request");
    assert_eq!(
        (requests[0]["model"].as_str(), requests[0]["dimensions"].as_u64()),
        (Some("text-embedding-3-small"), Some(384))
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_backoff() {
    let (base, fake) =
        serve(vec![Next::Fail(429), Next::Fail(503), Next::Fail(500), Next::Slow(Duration::from_millis(50))]).await;
    let out = embedder(&base, |_| {}).embed(&texts(3)).await.expect("succeeds after retries");
    assert_eq!(out.len(), 3);
    assert_eq!(fake.requests.lock().unwrap().len(), 4, "three failures, then a slow success");
}

#[tokio::test]
async fn persistent_throttling_is_a_retryable_error_for_the_queue() {
    let (base, fake) = serve(vec![Next::Fail(429); 50]).await;
    let err = embedder(&base, |o| o.retries = 1).embed(&texts(1)).await.expect_err("still throttled");
    assert!(matches!(err, PortError::Throttled { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(quarry_core::error::chain(&err).contains("Rate limit reached"), "the cause is kept");
    assert_eq!(fake.requests.lock().unwrap().len(), 2, "one try and one retry, nothing more: no retry storm");
}

#[tokio::test]
async fn the_servers_retry_after_is_honoured() {
    let (base, fake) = serve(vec![Next::WaitMs(300)]).await;
    let out = embedder(&base, |_| {}).embed(&texts(2)).await.expect("succeeds after the wait");
    assert_eq!(out.len(), 2);
    let arrivals = fake.arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 2);
    let waited = arrivals[1] - arrivals[0];
    // The back-off alone would have been 5 to 8 ms.
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}, not the 300 ms asked");
}

#[tokio::test]
async fn a_bad_key_or_an_empty_account_fails_at_once_with_the_apis_words() {
    for (next, words) in [(Next::Fail(401), "Incorrect API key"), (Next::Quota, "exceeded your current quota")] {
        let (base, fake) = serve(vec![next; 5]).await;
        let err = embedder(&base, |_| {}).embed(&texts(1)).await.expect_err("refused");
        assert_eq!(err.class(), ErrorClass::Permanent, "{err:?}");
        assert!(quarry_core::error::chain(&err).contains(words), "{}", quarry_core::error::chain(&err));
        assert_eq!(fake.requests.lock().unwrap().len(), 1, "not retried: {next:?}");
    }
}

#[tokio::test]
async fn requests_are_packed_by_the_models_tokens() {
    let (base, fake) = serve(Vec::new()).await;
    let e = embedder(&base, |o| o.max_request_tokens = 20);
    let input: Vec<String> = (0..12).map(|i| "tidal energy ".repeat(1 + i % 4)).collect();
    assert_eq!(e.embed(&input).await.expect("embed").len(), 12);
    let sent: Vec<Vec<String>> = fake
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r["input"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .collect();
    assert_eq!(sent.concat(), input, "every input once, in order");
    for batch in &sent {
        let tokens: usize = batch.iter().map(|t| quarry_openai::pack::tokens(t)).sum();
        assert!(tokens <= 20, "{tokens} tokens in one request: {batch:?}");
    }
    assert!(sent.len() > 1, "the token limit split the inputs");

    // An input over the model's window is refused before anything is sent.
    let long = "word ".repeat(9_000);
    let err = e.embed(&[long]).await.expect_err("too long");
    assert!(matches!(err, PortError::InvalidInput { .. }), "{err:?}");
    assert!(err.to_string().contains("at most 8191"), "{err}");
    assert_eq!(fake.requests.lock().unwrap().len(), sent.len(), "nothing more was sent");
}

#[tokio::test]
async fn a_timeout_is_transient_and_a_bad_request_is_not_retried() {
    let (base, _) = serve(vec![Next::Slow(Duration::from_secs(2)); 3]).await;
    let err = embedder(&base, |o| o.retries = 1).embed(&texts(1)).await.expect_err("times out");
    assert!(matches!(err, PortError::Transient { .. }), "{err:?}");

    let (base, fake) = serve(vec![Next::Fail(400)]).await;
    let err = embedder(&base, |_| {}).embed(&texts(1)).await.expect_err("bad request");
    assert_eq!(err.class(), ErrorClass::Permanent, "{err:?}");
    assert_eq!(fake.requests.lock().unwrap().len(), 1, "not retried");
}

#[tokio::test]
async fn a_tokens_per_minute_limit_is_kept_before_sending() {
    let (base, fake) = serve(Vec::new()).await;
    let text = "tidal ".repeat(600);
    let t = quarry_openai::pack::tokens(&text);
    // Two requests of `t` tokens against a bucket of 120t/61 a minute: the first fits whole, the
    // second waits for about a second's refill.
    let per_minute = u32::try_from(120 * t / 61).unwrap();
    let e = embedder(&base, |o| {
        o.max_request_tokens = t;
        o.tokens_per_minute = Some(per_minute);
    });
    assert_eq!(e.embed(&[text.clone(), text]).await.expect("embed").len(), 2);
    let arrivals = fake.arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 2, "one request each");
    let gap = arrivals[1] - arrivals[0];
    assert!(gap >= Duration::from_millis(700), "the second request waited for the bucket: {gap:?}");
}
