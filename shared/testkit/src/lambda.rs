//! Calling the HTTP API as API Gateway (HTTP API, payload 2.0) does: the request goes through the
//! event JSON and `lambda_http`'s decoding into the router, as in the search Lambda.

use serde_json::Value;
use tower::ServiceExt;

/// API Gateway's (HTTP API, payload 2.0) event for `method path` with an optional JSON body.
pub fn apigw_event(method: &str, path: &str, body: Option<&Value>) -> String {
    let body_text = body.map(Value::to_string).unwrap_or_default();
    crate::event_fixture(
        "apigw-v2-http.json",
        &[
            ("METHOD", method),
            ("PATH", path),
            ("LENGTH", &body_text.len().to_string()),
            ("BODY", &if body.is_some() { Value::from(body_text).to_string() } else { "null".into() }),
        ],
    )
}

/// `method path` with an optional JSON body; returns the status and the JSON body (`Null` if none).
/// [`apigw_event`] as JSON: an event for a function's own binary (`crate::runtime::invoke`).
#[allow(clippy::expect_used)]
pub fn apigw_request(method: &str, path: &str, body: Option<&Value>) -> Value {
    serde_json::from_str(&apigw_event(method, path, body)).expect("an API Gateway v2 event")
}

pub async fn api(router: &axum::Router, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    api_event(router, &apigw_request(method, path, body)).await
}

/// [`api`] for an event of the caller's making ([`apigw_request`], then changed: another
/// authorizer, say).
#[allow(clippy::expect_used)]
pub async fn api_event(router: &axum::Router, event: &Value) -> (u16, Value) {
    let request = lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event");
    let (parts, body) = request.into_parts();
    let request = axum::http::Request::from_parts(parts, axum::body::Body::from(body.to_vec()));
    let response = router.clone().oneshot(request).await.expect("router");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 24).await.expect("body");
    let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    (status, json)
}
