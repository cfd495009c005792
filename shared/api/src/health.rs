//! Probes and metrics: `/health/live`, `/health/ready`, `/health/startup`, `/metrics`, `/metrics.json`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

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

/// Where `/metrics` and `/metrics.json` read from: the local recorder (`quarry serve`). The
/// Lambda functions have none: their metrics leave as EMF in the logs.
pub trait MetricsExport: Send + Sync + 'static {
    /// Prometheus text exposition.
    fn prometheus(&self) -> String;
    /// The windowed JSON snapshot.
    fn snapshot(&self) -> serde_json::Value;
}

/// `/metrics` and `/metrics.json` over `export`, to merge into the API's router.
pub fn metrics_routes(export: Arc<dyn MetricsExport>) -> axum::Router {
    let json = Arc::clone(&export);
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let text = export.prometheus();
                std::future::ready(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
            }),
        )
        .route("/metrics.json", axum::routing::get(move || std::future::ready(Json(json.snapshot()))))
}
