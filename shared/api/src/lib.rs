//! Quarry's HTTP API as one axum [`Router`], generic over the ports: `quarry serve` runs it on the
//! embedded adapters, and the search Lambda will run the same router under `lambda_http` on the
//! AWS ones. Nothing here knows about folders, sockets or processes.
//!
//! Every error is JSON, `{"error": {"code", "message"}}`, with a stable code: 400 for bad input,
//! 401 without the API key, 404 for what does not exist, 413 for an oversized body, 503 when the
//! server is at its concurrency cap or a backend is throttled, 500 (details only in the log) for
//! the rest.

pub mod cursor;
mod error;
pub mod highlight;
pub mod query_cache;
pub mod snapshot;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use quarry_core::config::Server;
use quarry_core::ports::{
    BatchRequest, BatchStarter, BatchTracker, CheckpointStore, DocumentReader, Embedder, KeywordQuery, KeywordSearcher,
    VectorHit, VectorQuery, VectorSearcher, VectorWriter,
};
use quarry_core::{BatchId, DocumentId, Filter, PortError};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

pub use cursor::CursorKey;
pub use error::ApiError;
pub use query_cache::QueryCache;

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
    type Batches: BatchTracker;
    type Starter: BatchStarter;
    type Keywords: KeywordSearcher;

    fn embedder(&self) -> &Self::Embedder;
    /// Full-text search, where the backend has it (SQLite FTS5 locally; not S3 Vectors): it makes
    /// `keyword` and `hybrid` modes available, and `hybrid` the default.
    fn keywords(&self) -> Option<&Self::Keywords>;
    fn searcher(&self) -> &Self::Searcher;
    fn documents(&self) -> &Self::Documents;
    fn writer(&self) -> &Self::Writer;
    fn state(&self) -> &Self::State;
    fn batches(&self) -> &Self::Batches;
    fn starter(&self) -> &Self::Starter;

    /// Where a document's key points, for `source.uri` (`s3://bucket/key`, a file path).
    fn uri(&self, key: &str) -> String;
    /// Readiness: can the stores be reached right now?
    fn ready(&self) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Start-up work (an initial sync) is over.
    fn started(&self) -> bool;
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

struct App<B> {
    backend: B,
    limits: Server,
    cursor_key: CursorKey,
    slots: Arc<Semaphore>,
    queries: QueryCache,
    snapshots: snapshot::Snapshots,
    searches: std::sync::atomic::AtomicU64,
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
    let queries = QueryCache::new(QUERY_CACHE_ENTRIES, QUERY_CACHE_TTL);
    let spec = openapi_json();
    let mut seed = [0u8; 8];
    // Ids only need to differ from a previous process's; a clock is enough when there is no randomness.
    if getrandom::fill(&mut seed).is_err() {
        seed = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos()
            as u64)
            .to_le_bytes();
    }
    let snapshots = snapshot::Snapshots::new(snapshot::SNAPSHOTS, snapshot::SNAPSHOT_TTL, u64::from_le_bytes(seed));
    let app = Arc::new(App { backend, limits, cursor_key, slots, queries, snapshots, searches: Default::default() });
    let v1 = Router::new()
        .route("/v1/search", post(search::<B>))
        .route("/v1/documents/{id}", get(get_document::<B>).delete(delete_document::<B>))
        .route("/v1/batches", post(start_batch::<B>))
        .route("/v1/batches/{id}", get(get_batch::<B>))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard::<B>))
        .layer(DefaultBodyLimit::max(body_limit));
    Router::new()
        .route("/health/live", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/health/ready", get(ready::<B>))
        .route("/health/startup", get(startup::<B>))
        .route("/metrics", get(metrics::<B>))
        .route("/openapi.json", get(move || std::future::ready(Json(spec.clone()))))
        .merge(v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .with_state(app)
}

/// Authentication, then a concurrency slot: an unauthenticated caller cannot use up slots.
async fn guard<B: Backend>(State(app): State<Arc<App<B>>>, request: Request, next: Next) -> Response {
    if let Some(key) = &app.limits.api_key {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !constant_time_eq(presented.as_bytes(), key.expose().as_bytes()) {
            let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required")
                .into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
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

fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(t)| t).map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", "the request body is too large")
        } else {
            ApiError::bad_request("invalid_request", r.body_text())
        }
    })
}

// ------------------------------------------------------------------ search

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default = "default_top_k")]
    pub top_k: u32,
    /// Metadata filter (see docs/API.md), e.g. `{"format": {"$in": ["pdf", "docx"]}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// `semantic`, `keyword` or `hybrid`; hybrid where the backend has full-text search.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// Results scoring below this (0 to 1) are left out, before pagination.
    #[serde(default)]
    pub min_score: Option<f32>,
    /// Also highlight, by meaning, results that share no word with the query: their sentences are
    /// embedded (tens of milliseconds a page), so it is asked for, not done by default.
    #[serde(default)]
    pub semantic_highlights: bool,
}

fn default_top_k() -> u32 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(utoipa::ToSchema)]
pub enum Mode {
    Semantic,
    Keyword,
    Hybrid,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Semantic => "semantic",
            Mode::Keyword => "keyword",
            Mode::Hybrid => "hybrid",
        }
    }

    /// Whether the query's embedding is needed.
    pub fn needs_vector(self) -> bool {
        self != Mode::Keyword
    }
}

/// Ranked chunks for one query in one mode: the semantic list, the keyword list, or, for hybrid,
/// both fused with a third: the keyword query expanded by pseudo-relevance feedback ([`expand`])
/// (each at least [`HYBRID_DEPTH`] deep; the fused list is not cut to `depth`). `vector` is the
/// query's embedding, which every mode but keyword needs. The one place a mode becomes port
/// calls: the API, `quarry search` and `quarry eval` all rank through it.
pub async fn retrieve<S: VectorSearcher, K: KeywordSearcher>(
    searcher: &S,
    keywords: Option<&K>,
    mode: Mode,
    text: &str,
    vector: Option<Vec<f32>>,
    depth: usize,
    filter: Option<Filter>,
) -> Result<Vec<VectorHit>, PortError> {
    let missing = |what: &str| PortError::InvalidInput {
        operation: "search",
        reason: format!("{} mode needs {what}", mode.name()),
    };
    let keyword = |n: usize| KeywordQuery { text: text.to_owned(), top_k: n, filter: filter.clone() };
    match mode {
        Mode::Keyword => keywords.ok_or_else(|| missing("a full-text index"))?.keyword_search(&keyword(depth)).await,
        Mode::Semantic => {
            let vector = vector.ok_or_else(|| missing("the query vector"))?;
            searcher.search(&VectorQuery { vector, top_k: depth, filter }).await
        }
        Mode::Hybrid => {
            let kw = keywords.ok_or_else(|| missing("a full-text index"))?;
            let n = depth.max(HYBRID_DEPTH);
            let vq = VectorQuery {
                vector: vector.ok_or_else(|| missing("the query vector"))?,
                top_k: n,
                filter: filter.clone(),
            };
            let kq = keyword(n);
            let (semantic, words) = tokio::join!(searcher.search(&vq), kw.keyword_search(&kq));
            let (semantic, words) = (semantic?, words?);
            // Pseudo-relevance feedback: the words that weigh most in the best keyword hits,
            // added to the query, make a third list. It finds documents that say it in other
            // words, which lifts recall and, fused, the top ten (docs/RELEVANCE.md).
            let feedback: Vec<&VectorHit> = words.iter().take(FEEDBACK_HITS).collect();
            let expanded = expand(text, &feedback, FEEDBACK_TERMS);
            let third = if expanded == text {
                Vec::new()
            } else {
                kw.keyword_search(&KeywordQuery { text: expanded, top_k: n, filter: filter.clone() }).await?
            };
            let lists = if third.is_empty() { vec![semantic, words] } else { vec![semantic, words, third] };
            Ok(fuse(lists, RRF_K))
        }
    }
}

/// Keyword hits that feed the expansion of a hybrid query, and words added from them.
pub const FEEDBACK_HITS: usize = 10;
pub const FEEDBACK_TERMS: usize = 5;

/// The query plus the `n` words that weigh most in the feedback hits: a relevance model (RM1):
/// each word's frequency in a hit, over the hit's length, summed over hits weighted 1/rank. Only
/// words in at least two hits count (one hit's jargon is noise), never stopwords, numbers, words
/// of one or two letters, or the query's own words (by stem).
pub fn expand(query: &str, hits: &[&VectorHit], n: usize) -> String {
    use quarry_core::lexicon;
    use std::collections::{HashMap, HashSet};
    let own: HashSet<String> = lexicon::words(query).map(|w| lexicon::stem(&w).to_owned()).collect();
    // stem -> (weight, a surface form, hits it occurs in)
    let mut terms: HashMap<String, (f64, String, usize)> = HashMap::new();
    for (rank, h) in hits.iter().enumerate() {
        let words: Vec<String> = lexicon::words(&h.text)
            .filter(|w| !lexicon::is_stopword(w) && w.chars().count() > 2 && !w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        let len = words.len().max(1) as f64;
        let weight = 1.0 / (rank as f64 + 1.0);
        let mut seen = HashSet::new();
        for w in words {
            let stem = lexicon::stem(&w).to_owned();
            if own.contains(&stem) {
                continue;
            }
            let first = seen.insert(stem.clone());
            let e = terms.entry(stem).or_insert_with(|| (0.0, w, 0));
            e.0 += weight / len;
            e.2 += usize::from(first);
        }
    }
    let mut ranked: Vec<(f64, String)> =
        terms.into_values().filter(|(_, _, hits)| *hits >= 2).map(|(w, word, _)| (w, word)).collect();
    // Heaviest first; ties by the word, so that the same hits always give the same query.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = query.to_owned();
    for (_, w) in ranked.into_iter().take(n) {
        out.push(' ');
        out.push_str(&w);
    }
    out
}

/// The reciprocal rank fusion constant (Cormack et al.; what the peer and Anserini use).
pub const RRF_K: f32 = 60.0;
/// How deep each list goes into a hybrid fusion, at least.
pub const HYBRID_DEPTH: usize = 100;
/// How deep a first page ranks and keeps for the pages after it: stable page sequences to here.
/// As deep as hybrid ranks anyway, so a first page costs no more than it did.
pub const SNAPSHOT_DEPTH: usize = 100;

/// Reciprocal rank fusion of ranked lists of chunks: a chunk's score is the sum of 1/(k + rank)
/// over the lists it is in, divided by the most it could get (first in every list), so that it
/// lies in [0, 1]. Ties go to the smaller chunk id, so that pages are stable.
pub fn fuse(lists: Vec<Vec<VectorHit>>, k: f32) -> Vec<VectorHit> {
    let best = lists.len() as f32 / (k + 1.0);
    let mut fused: std::collections::HashMap<String, (VectorHit, f32)> = std::collections::HashMap::new();
    for list in lists {
        for (rank, hit) in list.into_iter().enumerate() {
            let add = 1.0 / (k + rank as f32 + 1.0);
            fused.entry(hit.id.as_str().to_owned()).or_insert_with(|| (hit, 0.0)).1 += add;
        }
    }
    let mut out: Vec<VectorHit> = fused
        .into_values()
        .map(|(mut h, s)| {
            h.score = (s / best).clamp(0.0, 1.0);
            h
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.as_str().cmp(b.id.as_str())));
    out
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResponse {
    pub results: Vec<SearchResult>,
    pub next_cursor: Option<String>,
    pub took_ms: f64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResult {
    pub document_id: String,
    pub chunk_id: String,
    pub score: f32,
    pub text: String,
    /// The sentences of `text` that best answer the query, as character offsets into `text`.
    pub highlights: Vec<highlight::Highlight>,
    pub source: Source,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Source {
    pub uri: String,
    pub page: Option<u32>,
    /// Character offsets of `text` in the document's text.
    pub start: usize,
    pub end: usize,
}

#[utoipa::path(post, path = "/v1/search", request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn search<B: Backend>(
    State(app): State<Arc<App<B>>>,
    payload: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let started = Instant::now();
    app.searches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let req = body(payload)?;
    let query = req.query.trim();
    if query.is_empty() {
        return Err(ApiError::bad_request("empty_query", "query must contain some text"));
    }
    let chars = query.chars().count();
    if chars > app.limits.max_query_chars as usize {
        return Err(ApiError::bad_request(
            "query_too_long",
            format!("query has {chars} characters; the limit is {}", app.limits.max_query_chars),
        ));
    }
    if !(1..=MAX_TOP_K).contains(&req.top_k) {
        return Err(ApiError::bad_request("invalid_top_k", format!("top_k must be 1 to {MAX_TOP_K}")));
    }
    // `null` and `{}` mean no filter.
    let filter = match &req.filter {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(m)) if m.is_empty() => None,
        Some(f) => Some(Filter::parse(f).map_err(|e| ApiError::bad_request(e.code, e.to_string()))?),
    };
    let keywords = app.backend.keywords();
    let mode = req.mode.unwrap_or(if keywords.is_some() { Mode::Hybrid } else { Mode::Semantic });
    if mode != Mode::Semantic && keywords.is_none() {
        return Err(ApiError::bad_request("unsupported_mode", "this deployment has no full-text index: use semantic"));
    }
    let min_score = req.min_score.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_score) {
        return Err(ApiError::bad_request("invalid_min_score", "min_score must be between 0 and 1"));
    }
    let top_k = req.top_k as usize;
    let bound =
        format!("{mode:?}|{min_score}|{}", req.filter.as_ref().map(serde_json::Value::to_string).unwrap_or_default());
    let fingerprint = cursor::fingerprint(query, req.top_k, &bound);
    let (offset, snapshot) = match &req.cursor {
        Some(c) => app.cursor_key.open(c, &fingerprint)?,
        None => (0, 0),
    };
    if offset + top_k > MAX_DEPTH {
        return Err(ApiError::bad_request("too_deep", format!("results stop at depth {MAX_DEPTH}")));
    }
    let frozen = if snapshot == 0 { None } else { app.snapshots.get(snapshot) };
    if snapshot != 0 && frozen.is_none() {
        tracing::info!("the page sequence's snapshot has expired: ranking this page live");
    }
    let (page, more, next_snapshot) = match frozen {
        // Inside the snapshot: the sequence stays as its first page ranked it.
        Some(f) if f.hits.len() >= offset + top_k || !f.truncated => {
            let page: Vec<VectorHit> = f.hits.iter().skip(offset).take(top_k).cloned().collect();
            let within = f.hits.len() > offset + top_k;
            (page, within || f.truncated, if within { snapshot } else { 0 })
        }
        _ => {
            // A first page ranks deep enough for the pages after it and keeps that ranking; a page
            // past a snapshot (or whose snapshot is gone) is ranked live at its offset.
            let first = req.cursor.is_none();
            let depth = if first { SNAPSHOT_DEPTH.max(top_k).min(MAX_DEPTH) + 1 } else { offset + top_k + 1 };
            let vector = if mode.needs_vector() { Some(embed_query(&app, query).await?) } else { None };
            let hits = retrieve(app.backend.searcher(), keywords, mode, query, vector, depth, filter).await?;
            let mut hits: Vec<VectorHit> = hits.into_iter().filter(|h| h.score >= min_score).take(depth).collect();
            let more = hits.len() > offset + top_k;
            if first && more {
                let truncated = hits.len() == depth;
                hits.truncate(depth - 1);
                let page = hits[..top_k].to_vec();
                let id = app.snapshots.put(hits, truncated);
                (page, true, id)
            } else {
                (hits.into_iter().skip(offset).take(top_k).collect(), more, 0)
            }
        }
    };
    // The query's vector is in the cache by now (or was never needed: keyword mode).
    let query_vector =
        if mode.needs_vector() && req.semantic_highlights { Some(embed_query(&app, query).await?) } else { None };
    let marks = highlight_hits(app.backend.embedder(), query, query_vector.as_deref(), &page).await?;
    let results = page
        .into_iter()
        .zip(marks)
        .map(|(h, marks)| {
            let key = h.metadata.get("key").and_then(|v| v.as_str()).unwrap_or_default();
            SearchResult {
                document_id: h.document.as_str().to_owned(),
                chunk_id: h.id.as_str().to_owned(),
                score: h.score,
                source: Source {
                    uri: app.backend.uri(key),
                    page: h.pages.map(|p| p.first),
                    start: h.span.start,
                    end: h.span.end,
                },
                highlights: marks,
                text: h.text,
                metadata: h.metadata.into_iter().collect(),
            }
        })
        .collect();
    let next_cursor = more.then(|| app.cursor_key.seal(offset + top_k, next_snapshot, &fingerprint));
    Ok(Json(SearchResponse { results, next_cursor, took_ms: started.elapsed().as_secs_f64() * 1e3 }))
}

/// The highlights of a page of hits: sentences by query words and, for hits that share no word
/// with the query, the sentence nearest it in meaning, from one embedding call for all of them
/// (`query_vector` is the query's own; without one, words alone decide).
pub async fn highlight_hits<E: Embedder>(
    embedder: &E,
    query: &str,
    query_vector: Option<&[f32]>,
    hits: &[VectorHit],
) -> Result<Vec<Vec<highlight::Highlight>>, PortError> {
    let mut marks: Vec<Vec<highlight::Highlight>> =
        hits.iter().map(|h| highlight::highlights(query, &h.text)).collect();
    let Some(q) = query_vector else { return Ok(marks) };
    let mut owners = Vec::new();
    let mut texts = Vec::new();
    let mut spans = Vec::new();
    for (i, h) in hits.iter().enumerate() {
        if !marks[i].is_empty() {
            continue;
        }
        for (span, sentence) in highlight::semantic_candidates(&h.text) {
            owners.push(i);
            spans.push(span);
            texts.push(sentence);
        }
    }
    if texts.is_empty() {
        return Ok(marks);
    }
    let vectors = embedder.embed(&texts).await?;
    for (i, mark) in marks.iter_mut().enumerate() {
        let mine: Vec<(highlight::Highlight, Vec<f32>)> = owners
            .iter()
            .zip(spans.iter().zip(&vectors))
            .filter(|(o, _)| **o == i)
            .map(|(_, (s, v))| (*s, v.clone()))
            .collect();
        if let Some(best) = highlight::most_similar(q, &mine) {
            mark.push(best);
        }
    }
    Ok(marks)
}

async fn embed_query<B: Backend>(app: &App<B>, query: &str) -> Result<Vec<f32>, ApiError> {
    let model = &app.backend.embedder().model().id;
    if let Some(v) = app.queries.get(model, query) {
        return Ok(v);
    }
    let v = app.backend.embedder().embed(&[query.to_owned()]).await?.pop().ok_or_else(|| {
        ApiError::internal(PortError::InvalidInput { operation: "embed", reason: "no vector for the query".into() })
    })?;
    app.queries.put(model, query, v.clone());
    Ok(v)
}

/// Prometheus text: searches served and the query cache's hits and misses.
async fn metrics<B: Backend>(State(app): State<Arc<App<B>>>) -> Response {
    let body = format!(
        "# TYPE quarry_searches_total counter\nquarry_searches_total {}\n\
         # TYPE quarry_query_cache_hits_total counter\nquarry_query_cache_hits_total {}\n\
         # TYPE quarry_query_cache_misses_total counter\nquarry_query_cache_misses_total {}\n",
        app.searches.load(std::sync::atomic::Ordering::Relaxed),
        app.queries.hits(),
        app.queries.misses()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

// ------------------------------------------------------------------ documents

fn document_id(raw: &str) -> Result<DocumentId, ApiError> {
    DocumentId::parse(raw).ok_or_else(|| {
        ApiError::bad_request("invalid_document_id", "a document id is the 32 hex characters search results return")
    })
}

#[utoipa::path(get, path = "/v1/documents/{id}", params(("id" = String, Path, description = "a result's document_id")),
    responses((status = 200, body = quarry_core::ports::DocumentRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_document<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = document_id(&id)?;
    match app.backend.documents().document(&id).await? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "document_not_found", format!("no document {}", id.as_str()))),
    }
}

/// Removes a document from the index (its chunks and state). The source file or object is not
/// touched: deleting that is what keeps a document out for good, as the next sync re-indexes it.
#[utoipa::path(delete, path = "/v1/documents/{id}", params(("id" = String, Path, description = "a result's document_id")),
    responses((status = 200, body = Object, description = "{document_id, removed_chunks}"), (status = 404, body = ErrorBody)))]
async fn delete_document<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = document_id(&id)?;
    let known = app.backend.documents().document(&id).await?.is_some();
    let removed = app.backend.writer().delete_from(&id, 0).await?;
    app.backend.state().forget(&id).await?;
    if !known && removed == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "document_not_found", format!("no document {}", id.as_str())));
    }
    Ok(Json(serde_json::json!({"document_id": id.as_str(), "removed_chunks": removed})).into_response())
}

// ------------------------------------------------------------------ batches

#[utoipa::path(post, path = "/v1/batches", request_body = quarry_core::ports::BatchRequest,
    responses((status = 202, body = quarry_core::ports::BatchStarted), (status = 400, body = ErrorBody)))]
async fn start_batch<B: Backend>(
    State(app): State<Arc<App<B>>>,
    payload: Result<Json<BatchRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = body(payload)?;
    if req.prefix.is_none() && req.keys.is_empty() {
        return Err(ApiError::bad_request("empty_batch", "give a prefix, a list of keys, or both"));
    }
    if req.keys.len() > MAX_BATCH_KEYS {
        return Err(ApiError::bad_request(
            "too_many_keys",
            format!("{} keys; one batch takes up to {MAX_BATCH_KEYS}", req.keys.len()),
        ));
    }
    if req.keys.iter().any(|k| k.as_str().trim().is_empty()) {
        return Err(ApiError::bad_request("invalid_key", "keys must not be empty"));
    }
    let started = app.backend.starter().start(&req).await?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchView {
    pub batch_id: String,
    /// `running` while documents are pending, then `done`.
    pub status: String,
    pub documents: BatchDocuments,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub created_ms: i64,
    pub updated_ms: Option<i64>,
    /// Bytes per second so far, and the time left at that rate: bytes, not documents, because
    /// one large PDF can outweigh a thousand notes.
    pub rate_bytes_per_s: Option<f64>,
    pub eta_s: Option<f64>,
    pub failures: Vec<BatchFailure>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchDocuments {
    pub total: u64,
    pub pending: u64,
    pub indexed: u64,
    pub unchanged: u64,
    pub failed: u64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchFailure {
    pub key: String,
    pub code: String,
    pub message: String,
    pub retryable: bool,
}

#[utoipa::path(get, path = "/v1/batches/{id}", params(("id" = String, Path)),
    responses((status = 200, body = BatchView), (status = 404, body = ErrorBody)))]
async fn get_batch<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Path(id): Path<String>,
) -> Result<Json<BatchView>, ApiError> {
    let id = BatchId::new(id);
    let tracker = app.backend.batches();
    let c = tracker.counters(&id).await?;
    let t = tracker.timing(&id).await?;
    let failures = tracker.failures(&id).await?;
    let elapsed_s = t.updated_ms.map(|u| (u - t.created_ms).max(1) as f64 / 1e3);
    let rate = elapsed_s.filter(|_| c.bytes_done > 0).map(|s| c.bytes_done as f64 / s);
    let eta = rate.map(|r| (c.bytes_total - c.bytes_done) as f64 / r);
    Ok(Json(BatchView {
        batch_id: id.as_str().to_owned(),
        status: if c.pending > 0 { "running" } else { "done" }.to_owned(),
        documents: BatchDocuments {
            total: c.total,
            pending: c.pending,
            indexed: c.done,
            unchanged: c.skipped,
            failed: c.failed,
        },
        bytes_total: c.bytes_total,
        bytes_done: c.bytes_done,
        created_ms: t.created_ms,
        updated_ms: t.updated_ms,
        rate_bytes_per_s: rate,
        eta_s: eta,
        failures: failures
            .into_iter()
            .map(|(k, f)| BatchFailure {
                key: k.as_str().to_owned(),
                code: f.code,
                message: f.message,
                retryable: f.retryable,
            })
            .collect(),
    }))
}

// ------------------------------------------------------------------ description

/// The error shape every failure has.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `query_too_long`, `filter_unknown_operator`, ...
    pub code: String,
    pub message: String,
}

/// The OpenAPI description, generated from the handlers and types above.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Quarry", description = "Semantic, keyword and hybrid search over a bucket or a folder"),
    paths(search, get_document, delete_document, start_batch, get_batch),
    components(schemas(
        SearchRequest,
        SearchResponse,
        SearchResult,
        Source,
        Mode,
        highlight::Highlight,
        BatchView,
        BatchDocuments,
        BatchFailure,
        ErrorBody,
        ErrorDetail
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON (what `GET /openapi.json` serves).
pub fn openapi_json() -> serde_json::Value {
    serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or(serde_json::Value::Null)
}

// ------------------------------------------------------------------ health

async fn ready<B: Backend>(State(app): State<Arc<App<B>>>) -> Result<Json<serde_json::Value>, ApiError> {
    app.backend.ready().await.map_err(|e| {
        tracing::warn!(error = %quarry_core::error::chain(&e), "not ready");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "a backing store cannot be reached")
    })?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

async fn startup<B: Backend>(State(app): State<Arc<App<B>>>) -> Result<Json<serde_json::Value>, ApiError> {
    if app.backend.started() {
        Ok(Json(serde_json::json!({"status": "started"})))
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "starting", "start-up work is still running"))
    }
}

#[cfg(test)]
mod tests {
    use quarry_core::{CharSpan, ChunkId, DocumentId, DocumentKey};

    use super::{VectorHit, constant_time_eq, fuse};

    fn hit(doc: &str, ordinal: u32) -> VectorHit {
        let document = DocumentId::for_key(&DocumentKey::new(doc));
        VectorHit {
            id: ChunkId::new(&document, ordinal),
            document,
            score: 0.5,
            text: String::new(),
            pages: None,
            span: CharSpan { start: 0, end: 0 },
            metadata: Default::default(),
        }
    }

    #[test]
    fn feedback_expands_the_query_with_words_its_best_hits_share() {
        let with = |doc: &str, text: &str| VectorHit { text: text.to_owned(), ..hit(doc, 0) };
        let hits = [
            with("a", "Statins lower cholesterol. Cholesterol in the arteries causes plaque."),
            with("b", "High cholesterol and arterial plaque: statins and diet."),
            with("c", "Plaque builds up when LDL cholesterol is high; 2019 data."),
            with("d", "A unique word appears once: zebrafish."),
        ];
        let refs: Vec<&VectorHit> = hits.iter().collect();
        let out = super::expand("statin therapy", &refs, 2);
        assert_eq!(out, "statin therapy cholesterol plaque", "shared, heavy words; not the query's own (statins)");
        assert_eq!(super::expand("statin", &refs[3..], 5), "statin", "one hit's words are not evidence");
        assert_eq!(super::expand("x", &[], 5), "x");
    }

    #[test]
    fn reciprocal_rank_fusion() {
        let (a, b, c, d) = (hit("a", 0), hit("b", 0), hit("c", 0), hit("d", 0));
        let fused = fuse(vec![vec![a.clone(), b.clone(), c.clone()], vec![b.clone(), d.clone(), a.clone()]], 60.0);
        let order: Vec<&ChunkId> = fused.iter().map(|h| &h.id).collect();
        // b: 1/62 + 1/61; a: 1/61 + 1/63; then c (1/63) and d (1/62): d before c.
        assert_eq!(order, [&b.id, &a.id, &d.id, &c.id]);
        let best = 2.0 / 61.0;
        assert!((fused[0].score - (1.0 / 62.0 + 1.0 / 61.0) / best).abs() < 1e-6);
        assert!(fused.iter().all(|h| (0.0..=1.0).contains(&h.score)));
        // First in every list scores exactly 1.
        let top = fuse(vec![vec![a.clone()], vec![a.clone()]], 60.0);
        assert!((top[0].score - 1.0).abs() < 1e-6);
        // Equal scores: ordered by chunk id, whatever the input order.
        let tie1 = fuse(vec![vec![c.clone()], vec![d.clone()]], 60.0);
        let tie2 = fuse(vec![vec![d.clone()], vec![c.clone()]], 60.0);
        assert_eq!(tie1.iter().map(|h| &h.id).collect::<Vec<_>>(), tie2.iter().map(|h| &h.id).collect::<Vec<_>>());
        assert!(fuse(vec![vec![], vec![]], 60.0).is_empty());
    }

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
