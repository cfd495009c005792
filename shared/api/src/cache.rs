//! `GET /v1/cache` and `POST /v1/cache/clear`: the embedding cache's entries and size per model,
//! and clearing it by model or by age. The same in both deployments: SQLite locally, DynamoDB on
//! AWS (where both read the whole table: an administrator's call, docs/AWS.md). The cache is
//! shared by every tenant (a text embeds the same whoever sent it), so only a caller who reaches
//! every tenant may read or clear it.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::{Extension, Json};
use quarry_core::cache::{CacheAdmin, CacheFilter, CacheStats};
use quarry_core::tenant::Reach;
use serde::{Deserialize, Serialize};

use crate::openapi::ErrorBody;
use crate::{ApiError, App, Backend, body};

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CacheView {
    /// Per model and dimension.
    pub models: Vec<CacheStats>,
    pub entries: u64,
    /// Stored keys and vectors.
    pub bytes: u64,
}

/// Which cached vectors to remove: all (`{}`), one model's, those unused (locally; unwritten on
/// AWS) for some days, or both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearCache {
    #[serde(default)]
    pub model: Option<String>,
    /// Days, at least 0.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub older_than_days: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CacheCleared {
    pub removed: u64,
}

#[utoipa::path(get, path = "/v1/cache", responses((status = 200, body = CacheView)))]
pub(crate) async fn stats<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
) -> Result<Json<CacheView>, ApiError> {
    every_tenant(&reach)?;
    let models = app.backend.cache().cache_stats().await?;
    let (entries, bytes) = models.iter().fold((0, 0), |(e, b), s| (e + s.entries, b + s.bytes));
    Ok(Json(CacheView { models, entries, bytes }))
}

#[utoipa::path(post, path = "/v1/cache/clear", request_body = ClearCache,
    responses((status = 200, body = CacheCleared), (status = 400, body = ErrorBody)))]
pub(crate) async fn clear<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    payload: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<CacheCleared>, ApiError> {
    every_tenant(&reach)?;
    let req: ClearCache = body(payload)?;
    let unused_since_ms = match req.older_than_days {
        None => None,
        Some(d) if d.is_finite() && d >= 0.0 => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            Some(now.as_millis() as i64 - (d * 86_400_000.0) as i64)
        }
        Some(_) => {
            return Err(ApiError::bad_request("invalid_age", "older_than_days must be a number of days, 0 or more"));
        }
    };
    let removed = app.backend.cache().clear_cache(&CacheFilter { model: req.model, unused_since_ms }).await?;
    Ok(Json(CacheCleared { removed }))
}

fn every_tenant(reach: &Reach) -> Result<(), ApiError> {
    match reach {
        Reach::All => Ok(()),
        Reach::Tenant(t) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "every_tenant_only",
            format!("the embedding cache is shared by every tenant: a key of tenant {t} cannot use it"),
        )),
    }
}
