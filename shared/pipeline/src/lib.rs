//! Quarry's pipeline, in two halves over the ports, shared by the Lambda functions, the HTTP API
//! and the `quarry` commands, none of which holds a copy:
//!
//! - **The indexing half**: one document's lifecycle ([`Indexer::index`], [`forget`], [`reject`]),
//!   batches planned up front behind one screening rule and one batch-id rule ([`Planner`],
//!   [`batch_id`]), and the one job runner ([`Runner`]) with merged embedding calls
//!   ([`CoalescingEmbedder`]).
//! - **The query half** ([`query`]): modes, retrieval, fusion, feedback and highlights.
//!
//! It depends on the core alone: extraction comes in through the [`DocumentPreparer`] port, so
//! that the search Lambda, which shares the query half, carries no parser.
//!
//! [`DocumentPreparer`]: quarry_core::ports::DocumentPreparer

pub mod batch;
pub mod coalesce;
pub mod estimate;
pub mod feed;
pub mod index;
pub mod query;
pub mod runner;
pub mod spend;
pub mod usage;
pub mod verify;

pub use batch::{Plan, Planner, batch_id, report_end, resume_keys, retry_request};
pub use coalesce::CoalescingEmbedder;
pub use feed::Feeding;
pub use index::{Indexer, Outcome, forget, reject};
pub use query::{Mode, retrieve, retrieve_hosted};
pub use runner::{Retries, Runner, index_jobs};

use std::time::Instant;

use quarry_core::PortError;
use quarry_core::metric::{self, millis};
use quarry_core::ports::Embedder;

/// One embedder call, counted and timed under `purpose` (`index` or `query`): every call the
/// pipeline makes goes through here, whichever adapter answers it.
pub(crate) async fn embed_timed<E: Embedder>(
    embedder: &E,
    texts: &[String],
    purpose: &'static str,
) -> Result<(Vec<Vec<f32>>, quarry_core::ports::Usage), PortError> {
    let started = Instant::now();
    let result = embedder.embed_billed(texts).await;
    let status = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!(metric::EMBEDDING_CALLS, "purpose" => purpose, "status" => status).increment(1);
    metrics::histogram!(metric::EMBEDDING_LATENCY, "purpose" => purpose).record(millis(started));
    result
}

/// Counts a failure under its class and code.
pub fn count_error<E: quarry_core::Classify>(e: &E) {
    let class = match e.class() {
        quarry_core::ErrorClass::Retryable => "retryable",
        quarry_core::ErrorClass::Permanent => "permanent",
        quarry_core::ErrorClass::BadInput => "bad_input",
    };
    metrics::counter!(metric::ERRORS, "class" => class, "code" => e.code()).increment(1);
}

#[cfg(test)]
pub(crate) mod testing {
    //! What the code under test recorded, through a thread-local recorder.

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    pub(crate) struct Recorded {
        snapshotter: Snapshotter,
        /// Snapshots drain the recorder: what each one took is kept here, as (series, counter
        /// increment, histogram values).
        taken: std::cell::RefCell<Vec<(metrics::Key, u64, usize)>>,
        _guard: metrics::LocalRecorderGuard<'static>,
    }

    impl Default for Recorded {
        fn default() -> Self {
            // Leaked: a test's recorder must outlive the guard that installs it on the thread.
            let recorder: &'static DebuggingRecorder = Box::leak(Box::new(DebuggingRecorder::new()));
            Recorded {
                snapshotter: recorder.snapshotter(),
                taken: std::cell::RefCell::default(),
                _guard: metrics::set_default_local_recorder(recorder),
            }
        }
    }

    impl Recorded {
        /// The counter `name` summed over the series that carry every pair of `labels`.
        pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
            self.values(name, labels).iter().map(|v| v.0).sum()
        }

        /// How many values the histogram `name` received on series carrying `labels`.
        pub(crate) fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
            self.values(name, labels).iter().map(|v| v.1).sum()
        }

        fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(u64, usize)> {
            let mut taken = self.taken.borrow_mut();
            taken.extend(self.snapshotter.snapshot().into_vec().into_iter().map(|(k, .., v)| match v {
                DebugValue::Counter(c) => (k.key().clone(), c, 0),
                DebugValue::Histogram(h) => (k.key().clone(), 0, h.len()),
                DebugValue::Gauge(_) => (k.key().clone(), 0, 0),
            }));
            taken
                .iter()
                .filter(|(key, ..)| {
                    key.name() == name
                        && labels.iter().all(|(lk, lv)| key.labels().any(|l| l.key() == *lk && l.value() == *lv))
                })
                .map(|(_, c, h)| (*c, *h))
                .collect()
        }
    }
}
