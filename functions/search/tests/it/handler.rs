//! The search Lambda's backend on the in-memory fakes of the AWS ports, reached as API Gateway
//! reaches it: the real event JSON through `lambda_http`'s decoding into the router, with the
//! function's own background-loaded model (the same flow runs on moto in `tests/e2e`).

use quarry_core::config::Limits;
use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{BatchTracker, Embedder, VectorRecord, VectorWriter};
use quarry_core::{BatchId, CharSpan, ChunkId, Config, DocumentId, DocumentKey, Format};
use quarry_embed::EmbedOptions;
use quarry_search::{AwsBackend, AwsStarter, BackgroundEmbedder, cursor_key};
use quarry_testkit::fakes::{MemoryQueue, MemorySource, MemoryState, MemoryVectors};
use quarry_testkit::lambda::api;
use serde_json::json;

const NOTES: &[(&str, &str)] = &[
    ("notes/orchard care.md", "Prune apple trees in late winter, before the buds break."),
    ("notes/pump.txt", "Prime the centrifugal pump before starting the motor."),
];

/// The function's model, billed as a paid one would be (a token per character, 20 nanodollars
/// each), so that a search's `usage` can be checked end to end.
struct Priced(BackgroundEmbedder);

impl Embedder for Priced {
    fn model(&self) -> &quarry_core::ports::ModelInfo {
        self.0.model()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, quarry_core::PortError> {
        self.0.embed(texts).await
    }
    fn usage(&self, texts: &[String]) -> quarry_core::ports::Usage {
        let tokens = texts.iter().map(|t| t.chars().count() as u64).sum::<u64>();
        quarry_core::ports::Usage { tokens, nanodollars: tokens * 20 }
    }
}

struct Fixture {
    router: axum::Router,
    vectors: MemoryVectors,
    state: MemoryState,
    queue: MemoryQueue,
    events: quarry_testkit::fakes::MemoryEvents,
}

async fn fixture() -> Fixture {
    let embedder = BackgroundEmbedder::load(
        quarry_testkit::model_dir(),
        EmbedOptions { threads: 2, batch_size: 8, ..EmbedOptions::default() },
    );
    let vectors = MemoryVectors::new(quarry_embed::DIMENSION);
    for (key, text) in NOTES {
        let key = DocumentKey::new(*key);
        let document = DocumentId::for_key(&key);
        let vector = embedder.embed(&[(*text).to_owned()]).await.expect("embed").remove(0);
        let record = VectorRecord {
            id: ChunkId::new(&document, 0),
            document,
            vector,
            text: (*text).to_owned(),
            pages: None,
            span: CharSpan { start: 0, end: text.chars().count() },
            meta: ChunkMeta::new(key, Format::Text),
        };
        vectors.upsert(&[record]).await.expect("upsert");
    }
    let (state, queue, source) = (MemoryState::default(), MemoryQueue::default(), MemorySource::default());
    let events = quarry_testkit::fakes::MemoryEvents::default();
    source.put("reports/q1.txt", b"First quarter: the engines ran hot.", None);
    source.put("reports/chart.png", b"\x89PNG\r\n\x1a\n an image", None);
    let backend = AwsBackend {
        embedder: Priced(embedder),
        vectors: vectors.clone(),
        state: state.clone(),
        starter: AwsStarter {
            source,
            state: state.clone(),
            vectors: vectors.clone(),
            queue: queue.clone(),
            events: events.clone(),
            limits: Limits::default(),
            hosted: None,
        },
        bucket: "quarry-documents-test".into(),
        keywords: None::<quarry_api::NoKeywords>,
    };
    let secret = quarry_core::config::Secret::new("a handler-test cursor secret of 32+ characters");
    let router = quarry_api::router(backend, Config::default().server, cursor_key(Some(&secret)).expect("key"));
    Fixture { router, vectors, state, queue, events }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_documents_and_batches_through_api_gateway_events() {
    let f = fixture().await;
    let (code, r) =
        api(&f.router, "POST", "/v1/search", Some(&json!({"query": "when to prune fruit trees", "top_k": 2}))).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["results"][0]["source"]["uri"], "s3://quarry-documents-test/notes/orchard care.md", "{r}");
    // The query's embedding was billed; the same query again is answered from the query cache.
    let q = "when to prune fruit trees".len() as u64;
    assert_eq!(
        (r["usage"]["tokens"].as_u64(), r["usage"]["cost_usd"].as_f64()),
        (Some(q), Some(q as f64 * 20e-9)),
        "{r}"
    );
    let (_, again) =
        api(&f.router, "POST", "/v1/search", Some(&json!({"query": "when to prune fruit trees", "top_k": 2}))).await;
    assert_eq!(again["usage"], json!({"tokens": 0, "cost_usd": 0.0}), "cached: nothing billed");
    let (code, r) = api(&f.router, "POST", "/v1/search", Some(&json!({"query": "pump", "mode": "keyword"}))).await;
    assert_eq!((code, r["error"]["code"].as_str()), (400, Some("unsupported_mode")), "no full-text index on AWS: {r}");
    // S3 Vectors cannot list its metadata: no filter menus, said plainly. The page itself is served.
    let (code, r) = api(&f.router, "GET", "/v1/fields", None).await;
    assert_eq!((code, r), (200, json!({"fields": [], "available": false})));
    assert_eq!(api(&f.router, "GET", "/", None).await.0, 200, "the search page");
    assert_eq!(api(&f.router, "GET", "/app.js", None).await.0, 200, "its script");

    // Deleting a document removes its chunks through the pipeline's `forget`.
    let id = DocumentId::for_key(&DocumentKey::new("notes/pump.txt"));
    let (code, r) = api(&f.router, "DELETE", &format!("/v1/documents/{id}"), None).await;
    assert_eq!((code, r["removed_chunks"].as_u64()), (200, Some(1)), "{r}");
    assert_eq!(f.vectors.ids().len(), 1);

    // A dry run cannot be priced here (no extractors in this function): refused, nothing queued.
    let dry = json!({"prefix": "reports/", "dry_run": true});
    let (code, r) = api(&f.router, "POST", "/v1/batches", Some(&dry)).await;
    assert_eq!((code, r["error"]["code"].as_str()), (400, Some("dry_run_unsupported")), "{r}");
    assert!(f.queue.take().is_empty());

    // A batch over a prefix: screened and recorded up front, one job per document on the queue.
    let (code, b) = api(&f.router, "POST", "/v1/batches", Some(&json!({"prefix": "reports/"}))).await;
    assert_eq!((code, b["documents"].as_u64()), (202, Some(2)), "{b}");
    let jobs = f.queue.take();
    assert_eq!(jobs.len(), 1, "the PNG is refused before any job is made: {jobs:?}");
    let batch = BatchId::new(b["batch"].as_str().expect("a batch id"));
    assert_eq!(
        (jobs[0].key.as_str(), jobs[0].batch.as_ref(), jobs[0].size),
        ("reports/q1.txt", Some(&batch), Some(35))
    );
    let failures = f.state.failures(&batch).await.expect("failures");
    assert_eq!(failures.len(), 1);
    assert_eq!((failures[0].0.as_str(), failures[0].1.code.as_str()), ("reports/chart.png", "unsupported_type"));
    let (again, _) = api(&f.router, "POST", "/v1/batches", Some(&json!({"prefix": "reports/"}))).await;
    assert_eq!(again, 202);
    assert_eq!(f.queue.take().len(), 1, "the same request is the same batch, and its jobs are sent again");
    assert!(f.events.published().is_empty(), "a batch with a job pending has not ended");

    // Every document refused up front: the batch ends as it starts, and says so.
    let refused = json!({"keys": ["reports/chart.png", "reports/gone.txt"]});
    let (code, b) = api(&f.router, "POST", "/v1/batches", Some(&refused)).await;
    assert_eq!((code, b["documents"].as_u64()), (202, Some(2)), "{b}");
    assert!(f.queue.take().is_empty());
    let published = f.events.published();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(
        (published[0].quarry_event.as_str(), published[0].resource.as_str()),
        ("batch_failed", b["batch"].as_str().unwrap_or(""))
    );
    assert!(
        published[0].summary.contains("2 of 2 documents failed (not_found 1, unsupported_type 1)"),
        "{published:?}"
    );

    // The recent batches, newest first, and a retry of the one that failed throughout: the same
    // batch, whose documents are screened again (still refused: no job).
    let (code, list) = api(&f.router, "GET", "/v1/batches?limit=5", None).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["batches"].as_array().map(Vec::len), Some(2), "{list}");
    assert_eq!(list["batches"][0]["batch_id"], b["batch"], "{list}");
    let (code, r) =
        api(&f.router, "POST", &format!("/v1/batches/{}/retry", b["batch"].as_str().unwrap_or("")), Some(&json!({})))
            .await;
    assert_eq!((code, &r["batch"]), (202, &b["batch"]), "{r}");
    assert!(f.queue.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_granted_for_the_bucket_never_received_by_the_function() {
    let f = fixture().await;
    let (code, info) = api(&f.router, "GET", "/v1/uploads", None).await;
    assert_eq!((code, info), (200, json!({"available": true, "max_file_bytes": Limits::default().max_file_bytes})));
    let (code, grant) = api(
        &f.router,
        "POST",
        "/v1/uploads",
        Some(&json!({"name": "minutes.md", "size": 120, "content_type": "text/markdown"})),
    )
    .await;
    assert_eq!(code, 200, "{grant}");
    // The fake source's grant: on S3 a presigned URL (the contract suite PUTs through one on moto).
    assert_eq!((grant["method"].as_str(), grant["url"].as_str()), (Some("PUT"), Some("memory:///minutes.md")));
    assert_eq!(grant["document_id"], DocumentId::for_key(&DocumentKey::new("minutes.md")).as_str());
    let (code, e) = api(&f.router, "POST", "/v1/uploads", Some(&json!({"name": "chart.png", "size": 120}))).await;
    assert_eq!((code, e["error"]["code"].as_str()), (400, Some("unsupported_type")), "{e}");
    // The bytes go to the bucket, not through API Gateway and the function.
    let (code, e) = api(&f.router, "PUT", "/v1/files/minutes.md", None).await;
    assert_eq!((code, e["error"]["code"].as_str()), (404, Some("not_found")), "{e}");
}

#[tokio::test]
async fn the_embedding_cache_is_reported_and_cleared_through_the_api() {
    use quarry_core::ContentHash;
    use quarry_core::ports::{EmbeddingCache, ModelInfo};
    let f = fixture().await;
    let (a, b) = (
        ModelInfo { id: "openai/text-embedding-3-small".into(), dimension: 3, max_tokens: 8191 },
        ModelInfo { id: "local/all-MiniLM-L6-v2".into(), dimension: 3, max_tokens: 256 },
    );
    let v = vec![1.0, 0.0, 0.0];
    let entries: Vec<_> = ["x", "y", "z"].iter().map(|t| (ContentHash::of_text(t), v.clone())).collect();
    f.state.put(&a, &entries).await.expect("put");
    f.state.put(&b, &entries[..1]).await.expect("put");

    let (code, r) = api(&f.router, "GET", "/v1/cache", None).await;
    assert_eq!((code, r["entries"].as_u64()), (200, Some(4)), "{r}");
    let models: Vec<(&str, u64)> = r["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| (m["model"].as_str().unwrap_or(""), m["entries"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(models, [("local/all-MiniLM-L6-v2", 1), ("openai/text-embedding-3-small", 3)]);
    assert!(r["bytes"].as_u64().is_some_and(|b| b > 0), "{r}");

    let (code, r) = api(&f.router, "POST", "/v1/cache/clear", Some(&json!({"older_than_days": -1}))).await;
    assert_eq!((code, r["error"]["code"].as_str()), (400, Some("invalid_age")), "{r}");
    let (code, r) = api(&f.router, "POST", "/v1/cache/clear", Some(&json!({"older_than_days": 1}))).await;
    assert_eq!((code, r["removed"].as_u64()), (200, Some(0)), "nothing is a day old: {r}");
    let clear = json!({"model": "openai/text-embedding-3-small"});
    let (code, r) = api(&f.router, "POST", "/v1/cache/clear", Some(&clear)).await;
    assert_eq!((code, r["removed"].as_u64()), (200, Some(3)), "{r}");
    let (_, r) = api(&f.router, "GET", "/v1/cache", None).await;
    assert_eq!(r["entries"].as_u64(), Some(1), "the other model's entry stays: {r}");
    let (code, r) = api(&f.router, "POST", "/v1/cache/clear", Some(&json!({}))).await;
    assert_eq!((code, r["removed"].as_u64()), (200, Some(1)), "{r}");
}

/// With `QUARRY_STORE=openai`, the search Lambda answers from OpenAI's vector store (the real client
/// against the local fake): semantic only, the store's filters, and a deletion removes the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_openai_vector_store_the_search_lambda_answers_from_it() {
    use quarry_core::hosted::{HostedDocument, HostedStore, Stored};
    use quarry_core::ports::{Checkpoint, CheckpointStore};
    use quarry_testkit::openai::{FakeOpenAi, Faults};
    let fake = FakeOpenAi::start(Faults::default()).await;
    let config = fake.store_config();
    let store = quarry_openai::stores::OpenAiStore::from_config(&config).expect("client").expect("selected");
    let state = MemoryState::default();
    for (key, text) in NOTES {
        let key = DocumentKey::new(*key);
        let document = DocumentId::for_key(&key);
        let hash = quarry_core::ContentHash::of(text.as_bytes());
        let meta = ChunkMeta::new(key.clone(), Format::Text);
        let doc = HostedDocument { document: &document, content_hash: &hash, text, meta: &meta };
        let Stored::Attached { handle } = store.put(doc).await.expect("put") else { panic!("refused") };
        state.acquire(&document, &hash, std::time::Duration::from_secs(60)).await.expect("lease");
        let model = store.model().to_owned();
        let cp = Checkpoint { document, key, content_hash: hash, chunks: 1, model, handle: Some(handle) };
        state.checkpoint(&cp).await.expect("checkpoint");
    }
    let vectors = MemoryVectors::new(quarry_embed::DIMENSION);
    let embedder = BackgroundEmbedder::load(
        quarry_testkit::model_dir(),
        EmbedOptions { threads: 2, batch_size: 8, ..EmbedOptions::default() },
    );
    let backend = AwsBackend {
        embedder: Priced(embedder),
        vectors: vectors.clone(),
        state: state.clone(),
        starter: AwsStarter {
            source: MemorySource::default(),
            state: state.clone(),
            vectors,
            queue: MemoryQueue::default(),
            events: quarry_testkit::fakes::MemoryEvents::default(),
            limits: Limits::default(),
            hosted: Some(std::sync::Arc::new(store)),
        },
        bucket: "quarry-documents-test".into(),
        keywords: None::<quarry_api::NoKeywords>,
    };
    let secret = quarry_core::config::Secret::new("a handler-test cursor secret of 32+ characters");
    let router = quarry_api::router(backend, Config::default().server, cursor_key(Some(&secret)).expect("key"));

    let (code, r) = api(&router, "POST", "/v1/search", Some(&json!({"query": "prime the pump motor"}))).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["results"][0]["source"]["uri"], "s3://quarry-documents-test/notes/pump.txt", "{r}");
    assert_eq!(r["usage"], json!({"tokens": 0, "cost_usd": 0.0}), "the store embeds the query: {r}");
    let (code, r) = api(&router, "POST", "/v1/search", Some(&json!({"query": "pump", "mode": "hybrid"}))).await;
    assert_eq!((code, r["error"]["code"].as_str()), (400, Some("unsupported_mode")), "{r}");
    let filter = json!({"query": "pump", "filter": {"key": {"$startsWith": "notes/"}}});
    let (code, r) = api(&router, "POST", "/v1/search", Some(&filter)).await;
    assert_eq!(code, 400, "{r}");
    // Readiness asks the store itself (its size), not S3 Vectors.
    let mut ready = json!(null);
    for _ in 0..60 {
        ready = api(&router, "GET", "/health/ready", None).await.1;
        if ready["status"] == "ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let deps = ready["dependencies"].as_array().cloned().unwrap_or_default();
    assert!(deps.iter().any(|d| d["name"] == "vector_store" && d["status"] == "ok"), "{ready}");

    let pump = DocumentId::for_key(&DocumentKey::new("notes/pump.txt"));
    let (code, r) = api(&router, "DELETE", &format!("/v1/documents/{pump}"), None).await;
    assert_eq!(code, 200, "{r}");
    let left: Vec<String> = fake.files().into_iter().map(|f| f.text).collect();
    assert_eq!(left, [NOTES[0].1.to_owned()], "the deleted document's file left the store");
    let (_, r) = api(&router, "POST", "/v1/search", Some(&json!({"query": "prime the pump motor"}))).await;
    assert!(r["results"].as_array().is_some_and(|a| a.iter().all(|h| h["document_id"] != pump.as_str())), "{r}");
}

/// The tenant comes from what API Gateway vouches for: an IAM caller reaches every tenant, a JWT's
/// caller the tenant its claim names (the default tenant without one), and a claim that names no
/// valid tenant is refused before any route runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_callers_tenant_comes_from_its_claim() {
    let f = fixture().await;
    let key = DocumentKey::new("tenants/acme/pump.txt");
    let document = DocumentId::for_key(&key);
    let text = "Acme's pump: prime it before starting the motor, every time.";
    let record = VectorRecord {
        id: ChunkId::new(&document, 0),
        document,
        vector: BackgroundEmbedder::load(quarry_testkit::model_dir(), EmbedOptions::default())
            .embed(&[text.to_owned()])
            .await
            .expect("embed")
            .remove(0),
        text: text.to_owned(),
        pages: None,
        span: CharSpan { start: 0, end: text.chars().count() },
        meta: ChunkMeta::new(key, Format::Text),
    };
    f.vectors.upsert(&[record]).await.expect("upsert");
    let router = quarry_search::authorized(f.router.clone(), "custom:tenant");
    let search = json!({"query": "prime the pump", "top_k": 10});
    let as_jwt = |claims: serde_json::Value| {
        let mut event = quarry_testkit::lambda::apigw_request("POST", "/v1/search", Some(&search));
        event["requestContext"]["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
        event
    };
    let keys = |r: &serde_json::Value| -> Vec<String> {
        r["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|h| h["metadata"]["key"].as_str().expect("key").to_owned())
            .collect()
    };
    let iam = api(&router, "POST", "/v1/search", Some(&search)).await;
    assert!(keys(&iam.1).contains(&"tenants/acme/pump.txt".to_owned()) && keys(&iam.1).len() == 3, "{}", iam.1);
    let acme = quarry_testkit::lambda::api_event(&router, &as_jwt(json!({"sub": "u1", "custom:tenant": "acme"}))).await;
    assert_eq!(keys(&acme.1), ["tenants/acme/pump.txt"], "{}", acme.1);
    let plain = quarry_testkit::lambda::api_event(&router, &as_jwt(json!({"sub": "u2"}))).await;
    assert!(!keys(&plain.1).is_empty() && keys(&plain.1).iter().all(|k| k.starts_with("notes/")), "{}", plain.1);
    let bad = quarry_testkit::lambda::api_event(&router, &as_jwt(json!({"sub": "u3", "custom:tenant": "../b"}))).await;
    assert_eq!((bad.0, bad.1["error"]["code"].as_str()), (403, Some("invalid_tenant")), "{}", bad.1);

    let mut delete = quarry_testkit::lambda::apigw_request(
        "DELETE",
        &format!("/v1/documents/{}", DocumentId::for_key(&DocumentKey::new("notes/pump.txt"))),
        None,
    );
    delete["requestContext"]["authorizer"] = json!({"jwt": {"claims": {"custom:tenant": "acme"}, "scopes": null}});
    let (code, r) = quarry_testkit::lambda::api_event(&router, &delete).await;
    assert_eq!((code, r["error"]["code"].as_str()), (404, Some("document_not_found")), "{r}");
    assert_eq!(f.vectors.ids().len(), 3, "nothing removed");
}
