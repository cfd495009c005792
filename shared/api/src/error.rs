//! The API's one error shape, `{"error": {"code", "message"}}`, and how port failures map onto it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quarry_core::error::chain;
use quarry_core::{Classify, ErrorClass, PortError};

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A failure the caller cannot fix: logged with its whole chain, answered without details.
    pub fn internal(e: PortError) -> Self {
        tracing::error!(error = %chain(&e), code = e.code(), "request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the server log has details")
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl From<PortError> for ApiError {
    fn from(e: PortError) -> Self {
        match (&e, e.class()) {
            (PortError::NotFound { what }, _) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{what} was not found"))
            }
            (PortError::InvalidInput { reason, .. }, _) => ApiError::bad_request("invalid_request", reason.clone()),
            (_, ErrorClass::Retryable) => {
                tracing::warn!(error = %chain(&e), "backend busy");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "a backend is busy; retry shortly")
            }
            _ => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"error": {"code": self.code, "message": self.message}}));
        let mut r = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}
