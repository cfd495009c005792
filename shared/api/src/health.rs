//! Probes and metrics: `/health/live`, `/health/ready`, `/health/startup`, `/metrics`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::{ApiError, App, Backend};

pub(crate) async fn ready<B: Backend>(State(app): State<Arc<App<B>>>) -> Result<Json<serde_json::Value>, ApiError> {
    app.backend.ready().await.map_err(|e| {
        tracing::warn!(error = %quarry_core::error::chain(&e), "not ready");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "a backing store cannot be reached")
    })?;
    Ok(Json(serde_json::json!({"status": "ready"})))
}

pub(crate) async fn startup<B: Backend>(State(app): State<Arc<App<B>>>) -> Result<Json<serde_json::Value>, ApiError> {
    if app.backend.started() {
        Ok(Json(serde_json::json!({"status": "started"})))
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "starting", "start-up work is still running"))
    }
}

/// Prometheus text: searches served and the query cache's hits and misses.
pub(crate) async fn metrics<B: Backend>(State(app): State<Arc<App<B>>>) -> Response {
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
