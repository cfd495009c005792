//! `POST /v1/batches`, `GET /v1/batches` and `GET /v1/batches/{id}`: start a batch through the
//! backend's starter, list the recent ones, and read one's counts, rate, ETA and failures;
//! `POST /v1/batches/{id}/retry` starts a batch over its failed documents, or resumes one that a
//! budget paused.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use quarry_core::BatchId;
use quarry_core::ports::{BatchRequest, BatchStarter, BatchTracker};
use quarry_core::tenant::Reach;
use serde::{Deserialize, Serialize};

use crate::openapi::ErrorBody;
use crate::{ApiError, App, Backend, MAX_BATCH_KEYS, body};

/// `POST /v1/batches`'s body: what to index, and whether only to price it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StartBatch {
    #[serde(flatten)]
    pub request: BatchRequest,
    /// Only say what the batch would send and cost (200, a `BatchEstimate`): nothing is queued,
    /// embedded or written. On AWS, 400 `dry_run_unsupported` (the estimate needs the documents
    /// read and chunked, which only the embed-workers do): use `quarry ingest --estimate` on a copy.
    #[serde(default)]
    pub dry_run: bool,
}

/// What a batch would send and cost: documents read and chunked as indexing would, chunks already
/// in the embedding cache (or repeated within the batch) left out, the rest priced.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchEstimate {
    /// Always `true`: nothing was queued, embedded or written.
    pub dry_run: bool,
    pub documents: u64,
    /// Already indexed with the same content: nothing would be sent.
    pub unchanged: u64,
    /// Missing, unreadable or refused: nothing would be sent.
    pub failing: u64,
    /// Requested keys that name nothing (among `failing`).
    pub missing: Vec<String>,
    pub chunks: u64,
    /// Chunks found in the embedding cache or earlier in the batch.
    pub cached: u64,
    /// Chunks that would be sent to the embedder.
    pub to_embed: u64,
    /// What they would be billed (nothing with the local model).
    pub usage: crate::search::SearchUsage,
    pub model: String,
}

#[utoipa::path(post, path = "/v1/batches", request_body = StartBatch,
    responses((status = 202, body = quarry_core::ports::BatchStarted), (status = 200, body = BatchEstimate),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn start_batch<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    payload: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let StartBatch { request: req, dry_run } = body::<StartBatch>(payload)?;
    if req.prefix.is_none() && req.keys.is_empty() {
        return Err(ApiError::bad_request("empty_batch", "give a prefix, a list of keys, or both"));
    }
    let outside = |what: String| {
        ApiError::new(StatusCode::FORBIDDEN, "outside_tenant", format!("{what} is outside tenant {}", reach.name()))
    };
    if let Some(p) = req.prefix.as_deref().filter(|p| !reach.covers_prefix(p)) {
        return Err(outside(format!("prefix {p:?}")));
    }
    if let Some(k) = req.keys.iter().find(|k| !reach.sees(k)) {
        return Err(outside(format!("key {:?}", k.as_str())));
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
    if dry_run {
        let Some(e) = app.backend.starter().estimate(&req).await? else {
            return Err(ApiError::bad_request(
                "dry_run_unsupported",
                "this deployment prices a batch only once its documents are read; estimate a copy with `quarry ingest --estimate`",
            ));
        };
        return Ok(Json(BatchEstimate {
            dry_run: true,
            documents: e.documents,
            unchanged: e.unchanged,
            failing: e.failing,
            missing: e.missing.iter().map(|k| k.as_str().to_owned()).collect(),
            chunks: e.chunks,
            cached: e.cached,
            to_embed: e.chunks - e.cached,
            usage: crate::search::SearchUsage::from(e.usage),
            model: e.model,
        })
        .into_response());
    }
    let started = app.backend.starter().start(&req).await?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchView {
    pub batch_id: String,
    /// `running` while documents are pending, `paused` when a budget holds some of them back
    /// (`reason`), then `done`.
    pub status: String,
    /// Why the batch is paused (`budget_exhausted`); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
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
    /// What the batch's embedding was billed so far (nothing with the local model).
    pub usage: crate::search::SearchUsage,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchDocuments {
    pub total: u64,
    pub pending: u64,
    /// Of the pending, those a budget paused: resumed by `POST /v1/batches/{id}/retry`.
    pub paused: u64,
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
pub(crate) async fn get_batch<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    Path(id): Path<String>,
) -> Result<Json<BatchView>, ApiError> {
    let id = own_batch(&reach, id)?;
    let tracker = app.backend.batches();
    let c = tracker.counters(&id).await?;
    let t = tracker.timing(&id).await?;
    let failures = tracker.failures(&id).await?;
    let used =
        quarry_core::spend::SpendLedger::spent(tracker, &quarry_core::spend::SpendScope::Batch(id.clone())).await?.used;
    let elapsed_s = t.updated_ms.map(|u| (u - t.created_ms).max(1) as f64 / 1e3);
    let rate = elapsed_s.filter(|_| c.bytes_done > 0).map(|s| c.bytes_done as f64 / s);
    let eta = rate.map(|r| (c.bytes_total - c.bytes_done) as f64 / r);
    Ok(Json(BatchView {
        batch_id: id.as_str().to_owned(),
        status: if c.paused > 0 {
            "paused"
        } else if c.pending > 0 {
            "running"
        } else {
            "done"
        }
        .to_owned(),
        reason: (c.paused > 0).then(|| quarry_pipeline::runner::BUDGET_EXHAUSTED.to_owned()),
        documents: BatchDocuments {
            total: c.total,
            pending: c.pending,
            paused: c.paused,
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
        usage: crate::search::SearchUsage::from(used),
    }))
}

/// The batch id, if the caller's tenant owns the batch: another tenant's batch is answered as
/// no batch at all, as the tracker answers an unknown one.
fn own_batch(reach: &Reach, id: String) -> Result<BatchId, ApiError> {
    let id = BatchId::new(id);
    if reach.sees_batch(&id) {
        Ok(id)
    } else {
        Err(quarry_core::PortError::NotFound { what: format!("batch {id}") }.into())
    }
}

/// Most batches `GET /v1/batches` lists.
pub const MAX_LISTED: usize = 100;
/// How many of the most recent batches a tenant's listing looks through for its own.
pub const TENANT_SCAN: usize = 1_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// Batches to list, 1 to 100 [default: 20].
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
}

/// The recent batches, newest first; `GET /v1/batches/{id}` has each one's progress.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchList {
    pub batches: Vec<BatchSummary>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchSummary {
    pub batch_id: String,
    pub created_ms: i64,
}

#[utoipa::path(get, path = "/v1/batches", params(ListParams),
    responses((status = 200, body = BatchList), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_batches<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<BatchList>, ApiError> {
    let bad = || ApiError::bad_request("invalid_limit", format!("limit must be a number from 1 to {MAX_LISTED}"));
    let Ok(Query(params)) = params else { return Err(bad()) };
    let limit = params.limit.unwrap_or(20);
    if !(1..=MAX_LISTED).contains(&limit) {
        return Err(bad());
    }
    // A tenant's batches are found among the most recent of every tenant's, as the id tells whose
    // each is: looking this far back bounds the work of a listing.
    let scan = if reach == Reach::All { limit } else { limit.max(TENANT_SCAN) };
    let recent = app.backend.batches().recent(scan).await?;
    Ok(Json(BatchList {
        batches: recent
            .into_iter()
            .filter(|(id, _)| reach.sees_batch(id))
            .take(limit)
            .map(|(id, created_ms)| BatchSummary { batch_id: id.as_str().to_owned(), created_ms })
            .collect(),
    }))
}

/// `POST /v1/batches/{id}/retry` takes an empty object.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {}

#[utoipa::path(post, path = "/v1/batches/{id}/retry", params(("id" = String, Path)), request_body = RetryRequest,
    responses((status = 202, body = quarry_core::ports::BatchStarted), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn retry_batch<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    Path(id): Path<String>,
    payload: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    // A JSON body (`{}`), as every POST here takes: a cross-site form cannot send one.
    body::<RetryRequest>(payload)?;
    let id = own_batch(&reach, id)?;
    // An unknown batch is a 404, not "nothing failed".
    let counters = app.backend.batches().counters(&id).await?;
    // Paused by a budget: the batch resumes under its own id, its failures with it.
    if counters.paused > 0 {
        let keys = quarry_pipeline::resume_keys(app.backend.batches(), &id).await?;
        app.backend.starter().resume(&id, &keys).await?;
        let started = quarry_core::ports::BatchStarted { batch: id, documents: keys.len() as u64, missing: Vec::new() };
        return Ok((StatusCode::ACCEPTED, Json(started)).into_response());
    }
    let Some(request) = quarry_pipeline::retry_request(app.backend.batches(), &id).await? else {
        // The request is well formed; the batch's state is what refuses it.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "nothing_to_retry",
            format!("no document of batch {id} failed"),
        ));
    };
    if request.keys.len() > MAX_BATCH_KEYS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_keys",
            format!(
                "{} documents of batch {id} failed; one batch takes up to {MAX_BATCH_KEYS}: retry with `quarry retry` or in parts",
                request.keys.len()
            ),
        ));
    }
    let started = app.backend.starter().start(&request).await?;
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}
