//! Quarry's own events: what the system says about itself beside the CloudWatch alarms (a batch
//! that ended with failures; a budget reached), published on the alarm topic for the alert router.
//! This is the wire format: the router reads exactly this JSON from an SNS message's body.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How urgent, by PagerDuty's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// The kinds of event, as `quarry_event` names them.
pub mod kind {
    /// A batch ended (nothing pending) with at least one document failed.
    pub const BATCH_FAILED: &str = "batch_failed";
    /// Spending reached a budget.
    pub const BUDGET_REACHED: &str = "budget_reached";
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its kind ([`kind`]).
    pub quarry_event: String,
    /// What it is about (a batch's id): with the kind, one PagerDuty incident.
    pub resource: String,
    pub severity: Severity,
    /// One line for a human; counts and codes, never document text.
    pub summary: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When, in RFC 3339.
    pub at: String,
    /// What makes two publications one event: publishers that see the same thing (two workers
    /// finishing a batch's last documents at once, a redelivered job) publish the same
    /// occurrence, and the router sends it once.
    pub occurrence: String,
}
