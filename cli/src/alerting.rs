//! `quarry serve` can page too: every tick of the metrics window, the rules the CloudWatch alarms
//! hold on AWS (error rates, p95s) are evaluated on this process's own metrics, and each change of
//! state (firing, or back to normal) is routed by the same routing core as the alert-router
//! Lambda, with its ledger in the index's SQLite database; so are Quarry's own events (a batch that
//! ended with failures), as they are published. Email needs SES: locally an email
//! receiver fails, and says why.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quarry_alerts::{AlertRouter, Notification, Routes, State};
use quarry_core::PortError;
use quarry_core::event::Event;
use quarry_core::metric;
use quarry_core::ports::{AlertLedger, Email, Mailer};
use quarry_telemetry::window::Window;

use crate::engine::Local;

/// The thresholds of template.yaml's defaults.
pub const ERROR_RATE_PERCENT: f64 = 5.0;
pub const DOCUMENT_P95_MS: f64 = 2_000.0;
pub const SEARCH_P95_MS: f64 = 500.0;
/// Fewer samples than this in the window say nothing either way.
pub const MIN_SAMPLES: u64 = 3;

/// The index's SQLite store as the router's ledger.
pub struct Ledger(pub Arc<Local>);

impl AlertLedger for Ledger {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, PortError> {
        self.0.store.claim(key, ttl).await
    }
    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.0.store.release(key).await
    }
    async fn append(&self, group: &str, id: &str, payload: &str, ttl: Duration) -> Result<(), PortError> {
        self.0.store.append(group, id, payload, ttl).await
    }
    async fn drain(&self, group: &str) -> Result<Vec<String>, PortError> {
        self.0.store.drain(group).await
    }
    async fn waiting(&self, group: &str) -> Result<bool, PortError> {
        self.0.store.waiting(group).await
    }
}

/// No SES here.
pub struct NoMailer;

impl Mailer for NoMailer {
    async fn send(&self, _: &Email) -> Result<(), PortError> {
        Err(PortError::Permanent {
            operation: "alerts.email",
            source: "email needs SES: use Slack or PagerDuty locally".into(),
        })
    }
}

/// One rule's reading of the window: whether it fires, and what it saw.
fn readings(w: &Window) -> Vec<(&'static str, bool, String)> {
    let docs = |o: &str| w.sum(metric::DOCUMENTS, &[("outcome", o)]);
    let (failed, processed) = (docs("failed"), docs("failed") + docs("indexed") + docs("unchanged"));
    let requests = |s: &str| w.sum(metric::SEARCH_REQUESTS, &[("status", s)]);
    let (errors, searches) =
        (requests("server_error"), requests("ok") + requests("client_error") + requests("server_error"));
    let rate = |part: u64, all: u64| if all == 0 { 0.0 } else { 100.0 * part as f64 / all as f64 };
    let p95 = |name: &str| {
        let n = w.count(name, &[]) as u64;
        (n >= MIN_SAMPLES).then(|| w.quantile(name, &[], 0.95)).flatten()
    };
    let minutes = w.window().as_secs() / 60;
    let mut out = vec![
        (
            "ingest-error-rate",
            processed >= MIN_SAMPLES && rate(failed, processed) > ERROR_RATE_PERCENT,
            format!(
                "{failed} of {processed} documents failed in the last {minutes} minutes ({:.1} %)",
                rate(failed, processed)
            ),
        ),
        (
            "search-error-rate",
            searches >= MIN_SAMPLES && rate(errors, searches) > ERROR_RATE_PERCENT,
            format!("{errors} of {searches} searches failed on the server in the last {minutes} minutes"),
        ),
    ];
    for (rule, name, limit) in [
        ("document-latency-p95", metric::DOCUMENT_LATENCY, DOCUMENT_P95_MS),
        ("search-latency-p95", metric::SEARCH_LATENCY, SEARCH_P95_MS),
    ] {
        let seen = p95(name);
        let shown = seen.map_or_else(|| "too few samples".to_owned(), |p| format!("{p:.0} ms"));
        out.push((rule, seen.is_some_and(|p| p > limit), format!("{name} p95 {shown} (limit {limit} ms)")));
    }
    out
}

/// The rules' states, and the router their changes go to.
pub struct Rules {
    firing: Mutex<BTreeMap<&'static str, bool>>,
    router: Arc<AlertRouter<Ledger, NoMailer>>,
}

impl Rules {
    /// The router over the index's ledger; `events` (Quarry's own) are routed as they come.
    pub fn new(
        routes: Routes,
        local: Arc<Local>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let router = Arc::new(AlertRouter::new(routes, Ledger(local), None, http)?);
        let events_router = Arc::clone(&router);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let n = Notification::from(event);
                if let Err(e) = events_router.route(&n).await {
                    tracing::warn!(event = %n.name, error = %anyhow::Error::from(e), "event not delivered");
                }
            }
        });
        Ok(Rules { firing: Mutex::default(), router })
    }

    /// Reads the window and routes each rule that changed state, and sends the reminders of
    /// rules still firing (in the background).
    pub fn evaluate(&self, w: &Window) {
        let router = Arc::clone(&self.router);
        tokio::spawn(async move {
            if let Err(e) = router.remind().await {
                tracing::warn!(error = %anyhow::Error::from(e), "reminders not delivered");
            }
        });
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
        let mut firing = self.firing.lock().unwrap_or_else(PoisonError::into_inner);
        for (rule, fires, reason) in readings(w) {
            let before = firing.insert(rule, fires).unwrap_or(false);
            if before == fires {
                continue;
            }
            let state = if fires { State::Alarm } else { State::Ok };
            let n = Notification {
                name: format!("quarry-local-{rule}"),
                resource: "quarry serve".to_owned(),
                state,
                severity: None,
                summary: format!("{} quarry-local-{rule}", state.name()),
                reason,
                labels: BTreeMap::new(),
                at: now.to_string(),
                occurrence: now.to_string(),
                event: false,
            };
            let router = Arc::clone(&self.router);
            tokio::spawn(async move {
                if let Err(e) = router.route(&n).await {
                    tracing::warn!(rule = %n.name, error = %anyhow::Error::from(e), "alert not delivered");
                }
            });
        }
    }
}
