//! Quarry's HTTP API as one axum [`Router`], generic over the ports: `quarry serve` runs it on the
//! local adapters, and the search Lambda runs the same router under `lambda_http` on the AWS ones.
//! HTTP only: ranking, highlights and a document's removal are the pipeline's
//! ([`quarry_pipeline`]); nothing here knows about folders, sockets or processes.
//!
//! Every error is JSON, `{"error": {"code", "message"}}`, with a stable code: 400 for bad input,
//! 401 without the API key, 403 for a key without the route's scope or outside its tenant, 404 for
//! what does not exist (another tenant's documents and batches included), 413 for an oversized
//! body, 429 for a key over its rate, 503 when the server is at its concurrency cap or a backend
//! is throttled, 500 (details only in the log) for the rest.
//!
//! Tenants ([`quarry_core::tenant`]): every `/v1` handler acts within the request's [`Reach`],
//! which the guard sets from the credentials alone.

pub mod audit;
mod batches;
mod cache;
pub mod cursor;
mod documents;
mod error;
mod fields;
pub mod health;
pub mod keys;
pub mod openapi;
pub mod page;
mod search;
pub mod snapshot;
mod uploads;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use quarry_core::PortError;
use quarry_core::config::Limits;
use quarry_core::config::Server;
use quarry_core::ports::{
    BatchStarter, BatchTracker, BlobWriter, CheckpointStore, DocumentReader, Embedder, FieldCatalog, KeywordQuery,
    KeywordSearcher, UploadGrant, UploadGranter, VectorSearcher, VectorWriter,
};
use quarry_core::tenant::Reach;
use tokio::sync::Semaphore;

pub use cursor::CursorKey;
pub use error::ApiError;
pub use fields::FieldsResponse;
pub use health::{Dependency, MetricsExport, metrics_routes};
use quarry_pipeline::query::QueryCache;

pub use batches::{BatchDocuments, BatchFailure, BatchList, BatchSummary, BatchView};
pub use openapi::{ApiDoc, ErrorBody, ErrorDetail, openapi_json};
pub use search::{SNAPSHOT_DEPTH, SearchRequest, SearchResponse, SearchResult, SearchUsage, Source};
pub use uploads::{UploadReceived, UploadRequest, UploadsInfo};

/// Deepest result a page sequence may reach (offset + page size).
pub const MAX_DEPTH: usize = 1_000;
/// Largest page.
pub const MAX_TOP_K: u32 = 100;
/// Most keys in one `POST /v1/batches`.
pub const MAX_BATCH_KEYS: usize = 10_000;

/// The adapters behind the API. One implementation per deployment (embedded, AWS); the handlers
/// are written once against it.
pub trait Backend: Send + Sync + 'static {
    type Embedder: Embedder;
    type Searcher: VectorSearcher;
    type Documents: DocumentReader;
    type Writer: VectorWriter;
    type State: CheckpointStore;
    /// Batches, and what their embedding spent.
    type Batches: BatchTracker + quarry_core::spend::SpendLedger;
    type Starter: BatchStarter;
    type Keywords: KeywordSearcher;
    type Fields: FieldCatalog;
    type Uploads: UploadGranter;
    type Inbox: BlobWriter;
    type Cache: quarry_core::cache::CacheAdmin;

    fn embedder(&self) -> &Self::Embedder;
    /// Full-text search, where the backend has it (the in-memory BM25 index locally; not S3
    /// Vectors): it makes `keyword` and `hybrid` modes available, and `hybrid` the default.
    fn keywords(&self) -> Option<&Self::Keywords>;
    fn searcher(&self) -> &Self::Searcher;
    /// The indexed documents' filterable fields, where the store can list them (SQLite locally;
    /// not S3 Vectors): `GET /v1/fields`.
    fn fields(&self) -> Option<&Self::Fields>;
    fn documents(&self) -> &Self::Documents;
    fn writer(&self) -> &Self::Writer;
    fn state(&self) -> &Self::State;
    fn batches(&self) -> &Self::Batches;
    fn starter(&self) -> &Self::Starter;
    /// Where files added over the API go (`POST /v1/uploads`); `None` where nothing takes them
    /// (a JSONL file served locally).
    fn uploads(&self) -> Option<&Self::Uploads>;
    /// The API receiving upload bytes itself (`PUT /v1/files/{name}`, locally); `None` where
    /// the grant points elsewhere (a presigned S3 URL).
    fn inbox(&self) -> Option<&Self::Inbox>;
    /// The embedding cache, to report on and clear (`/v1/cache`).
    fn cache(&self) -> &Self::Cache;
    /// What files this deployment accepts: the limits ingest screens with.
    fn file_limits(&self) -> &Limits;

    /// Where a document's key points, for `source.uri` (`s3://bucket/key`, a file path).
    fn uri(&self, key: &str) -> String;
    /// What readiness depends on: each store, the embedder, the queue, with a check that answers
    /// when it works ([`health`] runs them, with a timeout, and caches the results).
    fn dependencies(&self) -> Vec<Dependency<'_>>;
    /// Start-up work (an initial sync) is over.
    fn started(&self) -> bool;
    /// Keeps one audit entry ([`audit`]): by default a `quarry::audit` log event.
    fn audit(&self, entry: &audit::Entry) {
        audit::to_log(entry);
    }
    /// The store that embeds for itself, where the configuration picks one
    /// (`store.backend = "openai"`): searches go there (semantic only) and deletions remove its
    /// files; `searcher()` and `keywords()` are then unused.
    fn hosted(&self) -> Option<&dyn quarry_core::hosted::HostedStore> {
        None
    }
}

/// The `Keywords` of a backend without full-text search (S3 Vectors): it has no values, so
/// `keywords()` can only be `None`, and search there is semantic.
#[derive(Debug, Clone, Copy)]
pub enum NoKeywords {}

impl KeywordSearcher for NoKeywords {
    async fn keyword_search(&self, _: &KeywordQuery) -> Result<Vec<quarry_core::ports::VectorHit>, PortError> {
        match *self {}
    }
}

/// The `Fields` of a backend that cannot list its metadata (S3 Vectors): `fields()` can only be
/// `None`, and `GET /v1/fields` answers an empty list.
#[derive(Debug, Clone, Copy)]
pub enum NoFields {}

impl FieldCatalog for NoFields {
    async fn fields(
        &self,
        _: usize,
        _: Option<&quarry_core::Filter>,
    ) -> Result<Vec<quarry_core::ports::FieldSummary>, PortError> {
        match *self {}
    }
}

/// The `Uploads` of a backend that takes no files over the API.
#[derive(Debug, Clone, Copy)]
pub enum NoUploads {}

impl UploadGranter for NoUploads {
    async fn grant(&self, _: &quarry_core::DocumentKey, _: u64, _: Option<&str>) -> Result<UploadGrant, PortError> {
        match *self {}
    }
}

impl BlobWriter for NoUploads {
    async fn put_new(&self, _: &quarry_core::DocumentKey, _: &[u8]) -> Result<(), PortError> {
        match *self {}
    }
}

struct App<B> {
    backend: B,
    limits: Server,
    /// The keys file's keys, where one is configured (an error: every request is refused).
    keys: Option<Result<keys::Keys, keys::KeysError>>,
    cursor_key: CursorKey,
    slots: Arc<Semaphore>,
    queries: QueryCache,
    snapshots: snapshot::Snapshots,
    health: health::Cache,
}

/// Query vectors kept (LRU) and for how long.
pub const QUERY_CACHE_ENTRIES: usize = 4_096;
pub const QUERY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(3_600);

/// The API over `backend`. `limits` sets the body, query and concurrency caps and, when it holds
/// an API key, requires it as a bearer token on every `/v1` route (health probes stay open, as
/// load balancers and Lambda extensions call them without credentials).
pub fn router<B: Backend>(backend: B, limits: Server, cursor_key: CursorKey) -> Router {
    let slots = Arc::new(Semaphore::new(limits.max_concurrency as usize));
    let body_limit = usize::try_from(limits.max_body_bytes).unwrap_or(usize::MAX);
    let file_limit = usize::try_from(backend.file_limits().max_file_bytes).unwrap_or(usize::MAX);
    let upload_origin = backend.uploads().and_then(UploadGranter::origin);
    let queries = QueryCache::new(QUERY_CACHE_ENTRIES, QUERY_CACHE_TTL);
    let spec = openapi::openapi_json_with(limits.max_query_chars, backend.file_limits().max_file_bytes);
    let mut seed = [0u8; 8];
    // Ids only need to differ from a previous process's; a clock is enough when there is no randomness.
    if getrandom::fill(&mut seed).is_err() {
        seed = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
            as u64)
            .to_le_bytes();
    }
    let snapshots =
        snapshot::Snapshots::new(snapshot::SNAPSHOTS, snapshot::HITS, snapshot::SNAPSHOT_TTL, u64::from_le_bytes(seed));
    // Checked at start-up by the caller (`keys::Keys::load`); a file that fails here fails closed.
    let keys = limits.keys_file.as_deref().map(|path| {
        keys::Keys::load(path).inspect_err(|e| {
            tracing::error!(error = %quarry_core::error::chain(e), "the keys file cannot be read: every request is refused");
        })
    });
    let app = Arc::new(App {
        backend,
        limits,
        keys,
        cursor_key,
        slots,
        queries,
        snapshots,
        health: health::Cache::default(),
    });
    health::warm(&app);
    let v1 = Router::new()
        .route("/v1/search", post(search::search::<B>))
        .route("/v1/documents/{id}", get(documents::get_document::<B>).delete(documents::delete_document::<B>))
        .route("/v1/batches", post(batches::start_batch::<B>).get(batches::list_batches::<B>))
        .route("/v1/batches/{id}", get(batches::get_batch::<B>))
        .route("/v1/batches/{id}/retry", post(batches::retry_batch::<B>))
        .route("/v1/fields", get(fields::list_fields::<B>))
        .route("/v1/cache", get(cache::stats::<B>))
        .route("/v1/cache/clear", post(cache::clear::<B>))
        .route("/v1/uploads", get(uploads::info::<B>).post(uploads::grant::<B>))
        .layer(DefaultBodyLimit::max(body_limit))
        // A file's body is as large as the files ingest takes, not the 64 KiB of a JSON request.
        .merge(
            Router::new()
                .route("/v1/files/{name}", put(uploads::put_file::<B>))
                .layer(DefaultBodyLimit::max(file_limit)),
        )
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard::<B>))
        // Outside the guard: refused requests are audited too.
        .layer(middleware::from_fn_with_state(Arc::clone(&app), audit::record::<B>));
    Router::new()
        .route("/health/live", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/health/ready", get(health::ready::<B>))
        .route("/health/startup", get(health::startup::<B>))
        .route("/openapi.json", get(move || std::future::ready(Json(spec.clone()))))
        .merge(page::routes(upload_origin.as_deref()))
        .merge(v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(app)
}

/// Authentication (and, for a key from the keys file, its scope and rate), then a concurrency slot:
/// an unauthenticated caller cannot use up slots. Every admitted request leaves with a [`Reach`]:
/// one the deployment set before the router (a JWT's tenant on AWS) stands, or else its key's.
async fn guard<B: Backend>(State(app): State<Arc<App<B>>>, mut request: Request, next: Next) -> Response {
    let (caller, reach) = match authenticate(&app, &request) {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let reach = request.extensions().get::<Reach>().cloned().unwrap_or(reach);
    request.extensions_mut().insert(reach.clone());
    let mut response = admitted(&app, request, next).await;
    if let Some(c) = caller {
        response.extensions_mut().insert(c);
    }
    response.extensions_mut().insert(reach);
    response
}

/// Who the request's bearer token says it is (for the audit log) and whose documents it reaches,
/// or the response refusing it. The server's one API key, and a server without keys, reach every
/// tenant.
#[allow(clippy::result_large_err)]
fn authenticate<B: Backend>(app: &App<B>, request: &Request) -> Result<(Option<audit::Caller>, Reach), Response> {
    if app.limits.api_key.is_none() && app.keys.is_none() {
        return Ok((None, Reach::All));
    }
    let presented = bearer(request).unwrap_or("");
    let unauthorized = || {
        let mut r =
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required").into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    };
    if let Some(key) = &app.limits.api_key
        && constant_time_eq(presented.as_bytes(), key.expose().as_bytes())
    {
        return Ok((None, Reach::All));
    }
    let Some(Ok(keys)) = &app.keys else { return Err(unauthorized()) };
    let scope = keys::Scope::of(request.method(), request.uri().path());
    let caller = |id: &str| audit::Caller(format!("key:{id}"));
    let refused = match keys.admit(presented, scope) {
        Ok(key) => return Ok((Some(caller(&key.id)), key.reach.clone())),
        Err(keys::Denied::Unknown) => return Err(unauthorized()),
        Err(keys::Denied::Scope { id }) => {
            let message = format!("this key does not have the {} scope this route needs", scope.name());
            let mut r = ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response();
            r.extensions_mut().insert(caller(&id));
            r
        }
        Err(keys::Denied::Limited { id, wait }) => {
            let mut r =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "this key is over its request rate")
                    .into_response();
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r.extensions_mut().insert(caller(&id));
            r
        }
    };
    Err(refused)
}

/// The request's `Authorization: Bearer` token.
fn bearer(request: &Request) -> Option<&str> {
    request.headers().get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

/// A concurrency slot, then the route.
async fn admitted<B: Backend>(app: &App<B>, request: Request, next: Next) -> Response {
    let Ok(_slot) = Arc::clone(&app.slots).try_acquire_owned() else {
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("the server is at its limit of {} requests at once; retry shortly", app.limits.max_concurrency),
        )
        .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    next.run(request).await
}

/// Compares without an early exit, so that response time does not reveal how much of a guessed
/// key was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &y) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ y;
    }
    diff == 0
}

/// A whole number, written as JSON writes it: `3` or `3.0` (JSON Schema's `integer` allows both,
/// so clients generated from the description may send either).
fn whole_number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::Deserialize;
    let n = serde_json::Number::deserialize(d)?;
    let whole = n
        .as_u64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 2f64.powi(53)).map(|f| f as u64));
    whole
        .and_then(|w| T::try_from(w).ok())
        .ok_or_else(|| serde::de::Error::custom(format!("expected a whole number in range, got {n}")))
}

/// A request's JSON body as `T`. Only an object: serde would also read a struct from an array of
/// its fields, which no client means and the API's description does not allow.
fn body<T: serde::de::DeserializeOwned>(
    payload: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<T, ApiError> {
    let Json(value) = payload.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", "the request body is too large")
        } else {
            ApiError::bad_request("invalid_request", r.body_text())
        }
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request("invalid_request", "the request body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("Failed to deserialize the JSON body into the target type: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn the_openapi_description_covers_every_route_and_error() {
        let spec = super::openapi_json();
        let paths = spec["paths"].as_object().expect("paths");
        for (path, method) in [
            ("/v1/search", "post"),
            ("/v1/documents/{id}", "get"),
            ("/v1/documents/{id}", "delete"),
            ("/v1/batches", "post"),
            ("/v1/batches/{id}", "get"),
            ("/v1/batches", "get"),
            ("/v1/batches/{id}/retry", "post"),
            ("/v1/fields", "get"),
            ("/v1/uploads", "get"),
            ("/v1/uploads", "post"),
            ("/v1/files/{name}", "put"),
        ] {
            assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing");
        }
        let schemas = spec["components"]["schemas"].as_object().expect("schemas");
        for name in
            ["SearchRequest", "SearchResponse", "SearchResult", "Highlight", "BatchView", "ErrorBody", "DocumentRecord"]
        {
            assert!(schemas.contains_key(name), "{name} missing from {:?}", schemas.keys().collect::<Vec<_>>());
        }
        let request = &schemas["SearchRequest"]["properties"];
        for field in ["query", "top_k", "filter", "cursor", "mode", "min_score", "semantic_highlights"] {
            assert!(request.get(field).is_some(), "SearchRequest.{field} missing: {request}");
        }
        assert!(paths["/v1/search"]["post"]["responses"].get("400").is_some());
    }

    #[test]
    fn key_comparison() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdeX", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdef0", b"0123456789abcdef"), "a longer guess is wrong");
        assert!(!constant_time_eq(b"", b"0123456789abcdef"));
    }
}
