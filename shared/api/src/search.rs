//! `POST /v1/search`: validation, sealed cursors and snapshots for stable pages, then the
//! pipeline's query half ([`quarry_pipeline::query`]) for ranking and highlights.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use quarry_core::Filter;
use quarry_core::metric;
use quarry_core::ports::VectorHit;
use quarry_core::tenant::Reach;
use quarry_pipeline::query::{self, Fusion, HYBRID_DEPTH, Highlight, Mode, highlight_hits, retrieve};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::openapi::ErrorBody;
use crate::{App, Backend, MAX_DEPTH, MAX_TOP_K, body, cursor};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default = "default_top_k", deserialize_with = "crate::whole_number")]
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

/// How deep a first page ranks and keeps for the pages after it: stable page sequences to here.
/// As deep as hybrid ranks anyway, so a first page costs no more than it did.
pub const SNAPSHOT_DEPTH: usize = HYBRID_DEPTH;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResponse {
    pub results: Vec<SearchResult>,
    pub next_cursor: Option<String>,
    pub took_ms: f64,
    pub usage: SearchUsage,
}

/// What this search's embedding calls were billed: the query's (none when its vector was cached,
/// or in keyword mode) and semantic highlights'. The local model bills nothing.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchUsage {
    pub tokens: u64,
    pub cost_usd: f64,
}

impl From<quarry_core::ports::Usage> for SearchUsage {
    fn from(u: quarry_core::ports::Usage) -> Self {
        SearchUsage { tokens: u.tokens, cost_usd: u.dollars() }
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchResult {
    pub document_id: String,
    pub chunk_id: String,
    pub score: f32,
    pub text: String,
    /// The sentences of `text` that best answer the query, as character offsets into `text`.
    pub highlights: Vec<Highlight>,
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
pub(crate) async fn search<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    payload: Result<Json<serde_json::Value>, JsonRejection>,
) -> axum::response::Response {
    let started = Instant::now();
    let mut mode = None;
    let mut stages = Stages::default();
    let result = answer(&app, &reach, payload, &mut mode, &mut stages, started).await;
    let label = mode.map_or("none", Mode::name);
    let status = match &result {
        Ok(_) => "ok",
        Err(e) if e.status().is_client_error() => "client_error",
        Err(_) => "server_error",
    };
    metrics::counter!(metric::SEARCH_REQUESTS, "mode" => label, "status" => status).increment(1);
    if result.is_ok() {
        metrics::histogram!(metric::SEARCH_LATENCY, "mode" => label).record(metric::millis(started));
    }
    let timing = stages.header(started);
    let mut response = match result {
        Ok(body) => ([(HeaderName::from_static("server-timing"), timing)], body).into_response(),
        Err(e) => e.into_response(),
    };
    if let Some(detail) = stages.audit.take() {
        response.extensions_mut().insert(detail);
    }
    response
}

/// A snapshot's sequence continued by a deeper ranking: the ranking's results the snapshot does
/// not hold, in their order, after it. Every result of either comes once.
fn extended(snapshot: &[VectorHit], ranked: Vec<VectorHit>) -> Vec<VectorHit> {
    let held: std::collections::HashSet<&quarry_core::ChunkId> = snapshot.iter().map(|h| &h.id).collect();
    let rest: Vec<VectorHit> = ranked.into_iter().filter(|h| !held.contains(&h.id)).collect();
    snapshot.iter().cloned().chain(rest).collect()
}

/// Where a search's time went, sent as a `Server-Timing` header (W3C): browsers' developer tools
/// show it, and the search benchmark splits the HTTP path's latency with it. Durations only, no
/// query text.
#[derive(Debug, Default)]
struct Stages {
    /// Ranking: the query's embedding, the vector and keyword lists, fusion and payloads.
    retrieve: Option<Duration>,
    highlight: Option<Duration>,
    /// What the audit log keeps of this search, once its request is read.
    audit: Option<crate::audit::Detail>,
}

impl Stages {
    fn header(&self, started: Instant) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut parts = Vec::new();
        if let Some(d) = self.retrieve {
            parts.push(format!("retrieve;dur={:.3}", ms(d)));
        }
        if let Some(d) = self.highlight {
            parts.push(format!("highlight;dur={:.3}", ms(d)));
        }
        parts.push(format!("total;dur={:.3}", ms(started.elapsed())));
        parts.join(", ")
    }
}

/// The search itself; `chosen` is set to the mode once it is known, for the metrics.
async fn answer<B: Backend>(
    app: &App<B>,
    reach: &Reach,
    payload: Result<Json<serde_json::Value>, JsonRejection>,
    chosen: &mut Option<Mode>,
    stages: &mut Stages,
    started: Instant,
) -> Result<Json<SearchResponse>, ApiError> {
    let req: SearchRequest = body(payload)?;
    // Every embedding call of this request goes through it, for `usage`.
    let embedder = quarry_pipeline::usage::Metered::new(app.backend.embedder());
    let query = req.query.trim();
    stages.audit = Some(crate::audit::Detail::search("none", query, req.filter.as_ref(), 0));
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
    // Inside both lists, whatever the request asked: no filter reaches past the caller's tenant.
    let filter = reach.narrow(filter);
    let keywords = app.backend.keywords();
    let mode = req.mode.unwrap_or(if keywords.is_some() { Mode::Hybrid } else { Mode::Semantic });
    *chosen = Some(mode);
    if mode != Mode::Semantic && keywords.is_none() {
        return Err(ApiError::bad_request("unsupported_mode", "this deployment has no full-text index: use semantic"));
    }
    let min_score = req.min_score.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&min_score) {
        return Err(ApiError::bad_request("invalid_min_score", "min_score must be between 0 and 1"));
    }
    let top_k = req.top_k as usize;
    // The tenant too: a cursor (and the snapshot it points at) opens for its own tenant alone.
    let bound = format!(
        "{mode:?}|{min_score}|{}|{}",
        req.filter.as_ref().map(serde_json::Value::to_string).unwrap_or_default(),
        reach.name()
    );
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
            // At its end, a truncated snapshot's cursor keeps its id: the next page extends it.
            (page, within || f.truncated, if within || f.truncated { snapshot } else { 0 })
        }
        frozen => {
            // A first page ranks deep enough for the pages after it and keeps that ranking. A page
            // past its snapshot ranks live as deep again and extends the snapshot with what it did
            // not hold, so no result comes twice nor is skipped where the two rankings meet (a
            // deeper hybrid ranking moves results across that line). A page whose snapshot is
            // gone is ranked live at its offset.
            let first = req.cursor.is_none();
            let depth = match &frozen {
                _ if first => SNAPSHOT_DEPTH.max(top_k).min(MAX_DEPTH) + 1,
                Some(f) => (offset + top_k).max(f.hits.len()) + SNAPSHOT_DEPTH + 1,
                None => offset + top_k + 1,
            };
            let ranking = Instant::now();
            let hits = match app.backend.hosted() {
                Some(store) => {
                    query::retrieve_hosted(store, app.backend.documents(), mode, query, depth, filter).await?
                }
                None => {
                    // Embedded only where the mode needs it, while the keyword lists run.
                    let vector = query::embed_query(&embedder, &app.queries, query);
                    retrieve(app.backend.searcher(), keywords, mode, query, vector, depth, filter, Fusion::DEFAULT)
                        .await?
                }
            };
            stages.retrieve = Some(ranking.elapsed());
            let mut hits: Vec<VectorHit> = hits.into_iter().filter(|h| h.score >= min_score).take(depth).collect();
            let truncated = hits.len() == depth;
            if let Some(f) = frozen {
                let sequence = extended(&f.hits, hits);
                let page: Vec<VectorHit> = sequence.iter().skip(offset).take(top_k).cloned().collect();
                let more = sequence.len() > offset + top_k;
                (page, more, if more { app.snapshots.extend(snapshot, sequence, truncated) } else { 0 })
            } else if first && hits.len() > top_k {
                hits.truncate(depth - 1);
                let page = hits[..top_k].to_vec();
                let id = app.snapshots.put(hits, truncated);
                (page, true, id)
            } else {
                let more = hits.len() > offset + top_k;
                (hits.into_iter().skip(offset).take(top_k).collect(), more, 0)
            }
        }
    };
    // The query's vector is in the cache by now (or was never needed: keyword mode).
    let query_vector = if mode.needs_vector() && req.semantic_highlights {
        Some(query::embed_query(&embedder, &app.queries, query).await?)
    } else {
        None
    };
    let marking = Instant::now();
    let marks = highlight_hits(&embedder, query, query_vector.as_deref(), &page).await?;
    stages.highlight = Some(marking.elapsed());
    let results = page
        .into_iter()
        .zip(marks)
        .map(|(h, marks)| {
            let uri = app.backend.uri(h.meta.key.as_str());
            SearchResult {
                document_id: h.document.as_str().to_owned(),
                chunk_id: h.id.as_str().to_owned(),
                score: h.score,
                source: Source { uri, page: h.pages.map(|p| p.first), start: h.span.start, end: h.span.end },
                highlights: marks,
                text: h.text,
                metadata: h.meta.to_metadata().into_iter().collect(),
            }
        })
        .collect::<Vec<SearchResult>>();
    stages.audit = Some(crate::audit::Detail::search(mode.name(), query, req.filter.as_ref(), results.len()));
    let next_cursor = more.then(|| app.cursor_key.seal(offset + top_k, next_snapshot, &fingerprint));
    let used = embedder.used();
    let usage = SearchUsage::from(used);
    Ok(Json(SearchResponse { results, next_cursor, took_ms: started.elapsed().as_secs_f64() * 1e3, usage }))
}

#[cfg(test)]
mod tests {
    use quarry_core::{CharSpan, ChunkId, DocumentId, DocumentKey};

    use super::*;

    fn hit(n: u32) -> VectorHit {
        let key = DocumentKey::new(format!("doc-{n}"));
        let document = DocumentId::for_key(&key);
        VectorHit {
            id: ChunkId::new(&document, 0),
            document,
            score: 1.0 / (1.0 + n as f32),
            text: String::new(),
            pages: None,
            span: CharSpan { start: 0, end: 0 },
            meta: quarry_core::meta::ChunkMeta::new(key, quarry_core::Format::Text),
        }
    }

    #[test]
    fn a_deeper_ranking_extends_a_snapshot_without_repeating_or_losing_a_result() {
        let snapshot: Vec<VectorHit> = [0, 1, 2, 3].into_iter().map(hit).collect();
        // Deeper, the ranking moved 5 above 3 and 2 below 6: what the snapshot held stays put.
        let ranked: Vec<VectorHit> = [0, 1, 5, 3, 4, 6, 2, 7].into_iter().map(hit).collect();
        let ids = |v: &[VectorHit]| v.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
        let want: Vec<VectorHit> = [0, 1, 2, 3, 5, 4, 6, 7].into_iter().map(hit).collect();
        assert_eq!(ids(&extended(&snapshot, ranked)), ids(&want));
    }
}
