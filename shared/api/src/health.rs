//! Probes and metrics: `/health/live`, `/health/ready`, `/health/startup`, `/metrics`, `/metrics.json`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quarry_core::{Classify, PortError};
use serde::Serialize;

use crate::{ApiError, App, Backend};

/// One thing readiness depends on.
pub struct Dependency<'a> {
    /// `state_store`, `vector_store`, `embedder`, `job_queue`, ...
    pub name: &'static str,
    /// A required dependency that fails makes the instance not ready (503); an optional one is
    /// reported only.
    pub required: bool,
    /// Answers when the dependency works, with what it reports of itself (shown as `detail`).
    pub check: Pin<Box<dyn Future<Output = Result<Option<serde_json::Value>, PortError>> + Send + 'a>>,
}

impl<'a> Dependency<'a> {
    pub fn required(name: &'static str, check: impl Future<Output = Result<(), PortError>> + Send + 'a) -> Self {
        Dependency { name, required: true, check: Box::pin(async { check.await.map(|()| None) }) }
    }

    /// A dependency whose failure is reported but leaves the instance ready, with facts about
    /// itself (the keyword index's age and size).
    pub fn optional(
        name: &'static str,
        check: impl Future<Output = Result<serde_json::Value, PortError>> + Send + 'a,
    ) -> Self {
        Dependency { name, required: false, check: Box::pin(async { check.await.map(Some) }) }
    }
}

impl std::fmt::Debug for Dependency<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dependency").field("name", &self.name).field("required", &self.required).finish_non_exhaustive()
    }
}

/// A check that has not answered in this long has failed (a hung store, an unreachable API).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Results younger than this are served as they are: probes run at most this often.
pub const FRESH: Duration = Duration::from_secs(5);
/// How long a request waits for a refresh in progress before answering from what is known.
pub const WAIT: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Serialize)]
struct Checked {
    name: &'static str,
    required: bool,
    /// `ok`, `failed` or `timeout`.
    status: &'static str,
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
struct Report {
    at: Instant,
    checked: Vec<Checked>,
}

/// The last probe results, and whether a refresh is running. Requests never wait on a probe
/// longer than [`WAIT`]: a dependency that hangs costs the refresh its [`PROBE_TIMEOUT`], in the
/// background, and every request meanwhile answers from the cache.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    last: std::sync::Mutex<Option<Report>>,
    running: std::sync::atomic::AtomicBool,
    done: tokio::sync::Notify,
}

async fn probe(d: Dependency<'_>) -> Checked {
    let started = Instant::now();
    let (status, code, detail) = match tokio::time::timeout(PROBE_TIMEOUT, d.check).await {
        Ok(Ok(detail)) => ("ok", None, detail),
        Ok(Err(e)) => {
            tracing::warn!(dependency = d.name, code = e.code(), error = %quarry_core::error::chain(&e), "dependency check failed");
            ("failed", Some(e.code()), None)
        }
        Err(_) => {
            tracing::warn!(dependency = d.name, "dependency check timed out");
            ("timeout", None, None)
        }
    };
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    Checked { name: d.name, required: d.required, status, latency_ms, code, detail }
}

fn last<B>(app: &App<B>) -> Option<Report> {
    app.health.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Starts the first probes as the router is built (when a runtime is there to run them), so that
/// the first readiness check finds results.
pub(crate) fn warm<B: Backend>(app: &Arc<App<B>>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        let _ = refresh(app);
    }
}

/// Runs the probes in the background unless they are running already; true if this call
/// started them.
fn refresh<B: Backend>(app: &Arc<App<B>>) -> bool {
    let start = !app.health.running.swap(true, Ordering::AcqRel);
    if start {
        let app = Arc::clone(app);
        tokio::spawn(async move {
            let checked = futures::future::join_all(app.backend.dependencies().into_iter().map(probe)).await;
            *app.health.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(Report { at: Instant::now(), checked });
            app.health.running.store(false, Ordering::Release);
            app.health.done.notify_waiters();
        });
    }
    start
}

/// The probe results, refreshed when older than [`FRESH`].
async fn report<B: Backend>(app: &Arc<App<B>>) -> Option<Report> {
    if let Some(r) = last(app).filter(|r| r.at.elapsed() < FRESH) {
        return Some(r);
    }
    let done = app.health.done.notified();
    let known = last(app);
    // One request per refresh waits a little for fresh results; the others answer from what is
    // known (a refresh held up by a hung dependency takes up to PROBE_TIMEOUT).
    if refresh(app) || known.is_none() {
        let _ = tokio::time::timeout(WAIT, done).await;
        return last(app);
    }
    known
}

/// `/health/ready`: each dependency with its status and latency; 503 when a required one fails,
/// or before the first probes have answered.
pub(crate) async fn ready<B: Backend>(State(app): State<Arc<App<B>>>) -> Response {
    let report = report(&app).await;
    let (ready, body) = match &report {
        Some(r) => {
            let ready = r.checked.iter().all(|c| !c.required || c.status == "ok");
            let age = r.at.elapsed().as_secs_f64() * 1e3;
            (ready, serde_json::json!({"dependencies": r.checked, "checked_ms_ago": age}))
        }
        None => (false, serde_json::json!({"dependencies": [], "checked_ms_ago": null})),
    };
    let mut body = body;
    if ready {
        body["status"] = "ready".into();
        (StatusCode::OK, Json(body)).into_response()
    } else {
        body["status"] = "not_ready".into();
        body["error"] =
            serde_json::json!({"code": "not_ready", "message": "a required dependency is failing or not yet checked"});
        let mut r = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        r.headers_mut().insert(header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        r
    }
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
