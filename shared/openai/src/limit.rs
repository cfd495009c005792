//! What an embedder may send at once and per minute: a cap on requests in flight, and, where the
//! account's limits are configured, requests-per-minute and tokens-per-minute buckets (governor's
//! GCRA), waited on before a request is sent rather than discovered by 429s.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::Options;

#[derive(Debug)]
pub(crate) struct Limits {
    in_flight: Semaphore,
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<(DefaultDirectRateLimiter, u32)>,
}

fn per_minute(n: u32) -> Option<(DefaultDirectRateLimiter, u32)> {
    let n = NonZeroU32::new(n)?;
    Some((RateLimiter::direct(Quota::per_minute(n)), n.get()))
}

impl Limits {
    pub(crate) fn new(options: &Options) -> Self {
        Limits {
            in_flight: Semaphore::new(options.concurrency.max(1)),
            requests: options.requests_per_minute.and_then(per_minute).map(|(l, _)| l),
            tokens: options.tokens_per_minute.and_then(per_minute),
        }
    }

    /// No request may hold more tokens than a minute allows: it could never be admitted.
    pub(crate) fn request_tokens(&self, max: usize) -> usize {
        self.tokens.as_ref().map_or(max, |(_, per_minute)| max.min(*per_minute as usize))
    }

    /// Waits until a request of `tokens` may go: a slot, then room in both buckets.
    pub(crate) async fn admit(&self, tokens: usize) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed, so this only fails if it were; then send unlimited.
        let permit = self.in_flight.acquire().await.ok();
        if let Some(requests) = &self.requests {
            requests.until_ready().await;
        }
        if let Some((bucket, per_minute)) = &self.tokens {
            let n = u32::try_from(tokens).unwrap_or(u32::MAX).clamp(1, *per_minute);
            if let Some(n) = NonZeroU32::new(n) {
                // `n` is at most the bucket's size, so it always fits eventually.
                let _ = bucket.until_n_ready(n).await;
            }
        }
        permit
    }
}
