//! The audit log: one entry per request that reads documents or changes anything (searches,
//! deletes, batches, cache clears, uploads), refused ones included: who, when, the route, the
//! status, the latency, and what the handler adds (mode, filter, results, batch).
//!
//! Nothing a document or a query holds is written: a query is kept as its length and a SHA-256
//! prefix (the same query twice has the same one), and a filter as its shape, fields and operators
//! with every value replaced by its type, since filter values are as personal as queries. A caller
//! is the fingerprint of the API key it presented, or the principal the deployment vouches for
//! ([`Caller`], IAM on AWS), never a secret.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use sha2::Digest;

use crate::{App, Backend};

/// Who the deployment says is calling, where it knows: the search function's IAM principal (a
/// request extension set before the router), or a keys file's key id (a response extension the
/// guard sets).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// What a handler adds to its request's entry, as a response extension.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Detail {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_chars: Option<usize>,
    /// The first 16 hex digits of the query's SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_sha256: Option<String>,
    /// The filter's shape ([`shape`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// Documents a batch took, or a delete removed chunks of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents: Option<u64>,
}

impl Detail {
    /// A search's detail: the query by length and hash, the filter by shape.
    pub fn search(mode: &'static str, query: &str, filter: Option<&Value>, results: usize) -> Detail {
        Detail {
            mode: Some(mode),
            query_chars: Some(query.chars().count()),
            query_sha256: Some(fingerprint(query)),
            filter: filter.map(shape),
            results: Some(results),
            ..Detail::default()
        }
    }
}

/// One request, as the audit log keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub who: String,
    pub method: String,
    /// The route's template (`/v1/documents/{id}`), and the path as asked.
    pub route: String,
    pub path: String,
    pub status: u16,
    pub latency_ms: f64,
    /// The tenant the request acted for (`*`: every tenant); empty for a request refused before
    /// its credentials were read.
    pub tenant: String,
    #[serde(flatten)]
    pub detail: Detail,
}

/// The first 16 hex digits of `text`'s SHA-256.
pub fn fingerprint(text: &str) -> String {
    let mut hex = sha256_hex(text);
    hex.truncate(16);
    hex
}

/// `text`'s SHA-256 in lowercase hex: what the keys file stores of a key.
pub(crate) fn sha256_hex(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A filter's fields and operators, every value replaced by its JSON type.
pub fn shape(filter: &Value) -> Value {
    match filter {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::String(_) => Value::from("<string>"),
        Value::Number(_) => Value::from("<number>"),
        Value::Bool(_) => Value::from("<bool>"),
        Value::Null => Value::Null,
    }
}

/// Where entries go: the deployment's [`Backend::audit`].
pub(crate) async fn record<B: Backend>(
    State(app): State<std::sync::Arc<App<B>>>,
    request: Request,
    next: Next,
) -> Response {
    // Reads of a single document, batches and fields are not audited: they return no document text.
    if request.method() == axum::http::Method::GET {
        return next.run(request).await;
    }
    let started = std::time::Instant::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| path.clone(), |m| m.as_str().to_owned());
    let reach = request.extensions().get::<quarry_core::tenant::Reach>().cloned();
    let who = match (request.extensions().get::<Caller>(), &app.limits.api_key) {
        (Some(Caller(c)), _) => c.clone(),
        (None, Some(_)) => {
            crate::bearer(&request).map_or_else(|| "no key".to_owned(), |k| format!("key:{}", fingerprint(k)))
        }
        (None, None) => "anonymous".to_owned(),
    };
    let response = next.run(request).await;
    // A key from the keys file is known by its id once the guard has looked it up.
    let who = response.extensions().get::<Caller>().map_or(who, |Caller(c)| c.clone());
    let reach = reach.or_else(|| response.extensions().get::<quarry_core::tenant::Reach>().cloned());
    let entry = Entry {
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        who,
        method,
        route,
        path,
        status: response.status().as_u16(),
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
        tenant: reach.map(|r| r.name().to_owned()).unwrap_or_default(),
        detail: response.extensions().get::<Detail>().cloned().unwrap_or_default(),
    };
    app.backend.audit(&entry);
    response
}

/// The default sink: one `quarry::audit` event with the entry's fields (a JSON log line in
/// Lambda, which CloudWatch Logs keeps and Logs Insights queries).
pub fn to_log(e: &Entry) {
    let detail = serde_json::to_string(&e.detail).unwrap_or_default();
    tracing::info!(
        target: "quarry::audit",
        who = %e.who,
        method = %e.method,
        route = %e.route,
        path = %e.path,
        status = e.status,
        latency_ms = e.latency_ms,
        tenant = %e.tenant,
        detail = %detail,
        "audit"
    );
}
