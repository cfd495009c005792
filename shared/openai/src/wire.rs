//! The embeddings endpoint's wire format (`POST {base}/embeddings`), and how its failures are read.
//!
//! Written over reqwest rather than through async-openai: async-openai's errors carry neither the
//! response's `Retry-After` nor its headers, so a client built on it can only guess how long a
//! throttled account must wait, and guessing short is how retry storms start. The format is three
//! small JSON shapes; every OpenAI-compatible server speaks it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize)]
pub(crate) struct Request<'a> {
    pub model: &'a str,
    pub input: &'a [String],
    pub dimensions: u32,
    pub encoding_format: &'static str,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Response {
    pub data: Vec<Item>,
    pub usage: Usage,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Item {
    pub index: usize,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Usage {
    pub prompt_tokens: u64,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ApiErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ApiErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// A non-2xx answer: its status, and the API's own words where the body has them (a proxy's HTML
/// error page has none).
#[derive(Debug, thiserror::Error)]
#[error("OpenAI answered {status}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `insufficient_quota`, `invalid_api_key`, `rate_limit_exceeded`, ...
    pub code: Option<String>,
    /// How long the server asked us to wait (`Retry-After`, or OpenAI's `retry-after-ms`).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn read(status: u16, headers: &reqwest::header::HeaderMap, body: &[u8]) -> Self {
        let detail = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error);
        let message = match &detail {
            Some(d) if !d.message.is_empty() => d.message.clone(),
            _ => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_owned(),
        };
        let code = detail.and_then(|d| d.code.or(d.kind));
        ApiError { status, message, code, retry_after: retry_after(headers) }
    }

    /// 429 is throttling, except for an account out of credit: no wait fixes that.
    pub fn throttled(&self) -> bool {
        self.status == 429 && self.code.as_deref() != Some("insufficient_quota")
    }

    /// 5xx: the server's trouble, worth another go. A 4xx (a bad key, a bad request) is not.
    pub fn transient(&self) -> bool {
        self.status >= 500
    }
}

/// How every OpenAI client reaches the API: one HTTP client with the request timeout, the base
/// URL (the API's own, a proxy's, or the tests' fake), and the key as a header marked sensitive, so
/// it is never logged.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    pub http: reqwest::Client,
    base: String,
    auth: reqwest::header::HeaderValue,
}

impl Connection {
    pub(crate) fn new(
        api_key: &quarry_core::config::Secret,
        timeout: Duration,
        api_base: Option<&str>,
    ) -> Result<Self, crate::OpenAiError> {
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", api_key.expose()))
            .map_err(|_| crate::OpenAiError::BadKey)?;
        auth.set_sensitive(true);
        let http = reqwest::Client::builder().timeout(timeout).build().map_err(crate::OpenAiError::Client)?;
        let base = api_base.unwrap_or("https://api.openai.com/v1").trim_end_matches('/').to_owned();
        Ok(Connection { http, base, auth })
    }

    /// The URL of `path` (`embeddings`, `vector_stores/…`) under the base.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    /// Sends `request` with the key and reads the whole answer: its headers and body when it is a
    /// success, the API's error otherwise. Every OpenAI call goes through here.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), crate::OpenAiError> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(crate::OpenAiError::Http)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(crate::OpenAiError::Http)?;
        if !status.is_success() {
            return Err(ApiError::read(status.as_u16(), &headers, &bytes).into());
        }
        Ok((headers, bytes.to_vec()))
    }
}

/// Longest wait a server's `Retry-After` is taken at: beyond it, the job is better handed back to
/// the queue than held in a worker.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// `retry-after-ms` (OpenAI's, milliseconds) or `Retry-After` (seconds; the HTTP-date form is not
/// used by OpenAI and is ignored), capped at [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
    };
    let wait = number("retry-after-ms").map(|ms| ms / 1000.0).or_else(|| number("retry-after"))?;
    Some(Duration::from_secs_f64(wait).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> reqwest::header::HeaderMap {
        pairs.iter().map(|(k, v)| (reqwest::header::HeaderName::from_static(k), v.parse().expect("value"))).collect()
    }

    #[test]
    fn retry_after_in_either_header_capped() {
        assert_eq!(retry_after(&headers(&[("retry-after", "2")])), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "3600")])), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])), None);
        assert_eq!(retry_after(&headers(&[])), None);
    }

    #[test]
    fn errors_read_from_json_or_not() {
        let quota = br#"{"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}}"#;
        let e = ApiError::read(429, &headers(&[]), quota);
        assert!(!e.throttled() && !e.transient(), "no wait fixes an empty account");
        let e = ApiError::read(
            429,
            &headers(&[("retry-after", "1")]),
            br#"{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}"#,
        );
        assert!(e.throttled() && e.retry_after == Some(Duration::from_secs(1)));
        let e = ApiError::read(502, &headers(&[]), b"<html>Bad gateway</html>");
        assert!(e.transient() && e.message.contains("Bad gateway"), "{e}");
        let e = ApiError::read(401, &headers(&[]), br#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}"#);
        assert!(!e.throttled() && !e.transient() && e.code.as_deref() == Some("invalid_api_key"));
    }
}
