//! The local recorder: every recording goes both to the Prometheus exporter (`/metrics`, names
//! prefixed `quarry_`, latencies as histograms with fixed buckets) and to a [`Window`]
//! (`/metrics.json`, the local alert rules).

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::{FanoutBuilder, Layer, PrefixLayer};
use quarry_core::metric::{CATALOGUE, Kind, Unit};

use crate::window::{Window, WindowRecorder};

/// Upper bounds of the latency buckets, in milliseconds: search answers in milliseconds, a large
/// document indexes in seconds. 50 ms and 2 s are the product's targets (search p95, one
/// document's processing p95), so that a quantile read from the buckets can say whether each is met.
pub const LATENCY_BUCKETS_MS: &[f64] =
    &[1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0];

/// Intervals of the window: 30 of 10 s, five minutes.
pub const INTERVAL: Duration = Duration::from_secs(10);
pub const INTERVALS: usize = 30;

/// Installing the global recorder failed: one is installed already.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The facade's error only hands the refused recorder back: there is no cause to keep.
    #[error("a metrics recorder is installed already")]
    AlreadyInstalled,
    #[error("invalid histogram buckets")]
    Buckets(#[source] metrics_exporter_prometheus::BuildError),
}

/// The readers of the local recorder.
#[derive(Debug, Clone)]
pub struct LocalMetrics {
    prometheus: PrometheusHandle,
    window: Arc<Window>,
}

impl LocalMetrics {
    /// The process's recorder, installed by the first call (before anything records, for the
    /// metrics to count from the start); later calls return the same one.
    pub fn global() -> Result<Self, InstallError> {
        static INSTALLED: std::sync::OnceLock<LocalMetrics> = std::sync::OnceLock::new();
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = INSTALLED.get() {
            return Ok(m.clone());
        }
        let (recorder, metrics) = Self::build(INTERVAL, INTERVALS)?;
        metrics::set_global_recorder(recorder).map_err(|_| InstallError::AlreadyInstalled)?;
        crate::describe();
        Ok(INSTALLED.get_or_init(|| metrics).clone())
    }

    /// The recorder without installing it, for a test's local recorder or a benchmark.
    pub fn build(interval: Duration, intervals: usize) -> Result<(metrics_util::layers::Fanout, Self), InstallError> {
        let mut builder = PrometheusBuilder::new();
        for d in CATALOGUE.iter().filter(|d| d.kind == Kind::Histogram && d.unit == Unit::Milliseconds) {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(format!("quarry_{}", d.name)), LATENCY_BUCKETS_MS)
                .map_err(InstallError::Buckets)?;
        }
        let prometheus = builder.build_recorder();
        let handle = prometheus.handle();
        let window = Arc::new(Window::new(interval, intervals));
        let fanout = FanoutBuilder::default()
            .add_recorder(PrefixLayer::new("quarry").layer(prometheus))
            .add_recorder(WindowRecorder(Arc::clone(&window)))
            .build();
        Ok((fanout, LocalMetrics { prometheus: handle, window }))
    }

    /// `/metrics`: Prometheus text exposition.
    pub fn prometheus(&self) -> String {
        self.prometheus.render()
    }

    /// `/metrics.json`: the windowed snapshot.
    pub fn snapshot(&self) -> serde_json::Value {
        self.window.snapshot()
    }

    pub fn window(&self) -> &Arc<Window> {
        &self.window
    }

    /// Closes the window's intervals on time and keeps the exporter's histograms drained; `also`
    /// runs after each tick (the alert rules).
    pub fn spawn_ticker(&self, also: impl Fn(&Window) + Send + 'static) -> tokio::task::JoinHandle<()> {
        let prometheus = self.prometheus.clone();
        self.window.spawn_ticker(move |w| {
            prometheus.run_upkeep();
            also(w);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_exporters_see_every_recording() {
        let (recorder, m) = LocalMetrics::build(INTERVAL, INTERVALS).expect("build");
        metrics::with_local_recorder(&recorder, || {
            crate::describe();
            metrics::counter!(quarry_core::metric::DOCUMENTS, "outcome" => "indexed").increment(2);
            metrics::histogram!(quarry_core::metric::SEARCH_LATENCY, "mode" => "hybrid").record(7.0);
        });
        let text = m.prometheus();
        assert!(text.contains("quarry_documents{outcome=\"indexed\"} 2"), "{text}");
        assert!(text.contains("quarry_search_latency_bucket{mode=\"hybrid\",le=\"10\"} 1"), "{text}");
        assert!(text.contains("# HELP quarry_documents Documents processed"), "{text}");
        m.window().tick();
        assert_eq!(m.window().sum(quarry_core::metric::DOCUMENTS, &[]), 2);
        assert_eq!(m.snapshot()["metrics"].as_array().map(Vec::len), Some(2));
    }
}
