//! Retrying an OpenAI call, the one rule for every endpoint Quarry calls (embeddings, files, vector
//! stores): a 429 that is throttling (not an empty account), a 5xx, a timeout or a dropped
//! connection is sent again after the wait the server asked for (`Retry-After`) or else an
//! exponential back-off with jitter, up to `retries` more times; then the port sees `Throttled` or
//! `Transient`, for the queue to hand back. Anything else (a bad key, a bad request, no quota left,
//! a body that is not the endpoint's) is permanent at once.

use std::future::Future;
use std::time::Duration;

use quarry_core::PortError;

use crate::OpenAiError;

/// How long to wait before sending again, if the failure is worth another go: `Some(None)` when
/// the server did not say.
fn wait(e: &OpenAiError) -> Option<Option<Duration>> {
    match e {
        OpenAiError::Api(a) if a.throttled() || a.transient() => Some(a.retry_after),
        OpenAiError::Http(r) if r.is_timeout() || r.is_connect() || r.is_request() || r.is_body() => Some(None),
        _ => None,
    }
}

/// `base * 2^(attempt-1)`, plus up to half of it again as jitter (from the clock: no RNG).
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    let base = base.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// Throttled and transient failures are the queue's to retry; the rest are permanent.
pub(crate) fn classify(operation: &'static str, e: OpenAiError) -> PortError {
    match &e {
        OpenAiError::Api(a) if a.throttled() => {
            PortError::Throttled { operation, retry_after: a.retry_after, source: Some(Box::new(e)) }
        }
        _ if wait(&e).is_some() => PortError::Transient { operation, source: Box::new(e) },
        _ => PortError::Permanent { operation, source: Box::new(e) },
    }
}

/// Runs `call` until it succeeds, fails for good, or has been retried `retries` times.
pub(crate) async fn retrying<T, F, Fut>(
    operation: &'static str,
    retries: u32,
    base: Duration,
    mut call: F,
) -> Result<T, PortError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OpenAiError>>,
{
    let mut attempt = 0;
    loop {
        let error = match call().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(asked) = wait(&error).filter(|_| attempt < retries) else {
            return Err(classify(operation, error));
        };
        attempt += 1;
        let delay = asked.unwrap_or_else(|| backoff(base, attempt));
        tracing::warn!(operation, attempt, delay_ms = delay.as_millis() as u64, error = %error, "OpenAI call failed; retrying");
        tokio::time::sleep(delay).await;
    }
}
