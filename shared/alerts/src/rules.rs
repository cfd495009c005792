//! The routing configuration: receivers, and the rules that send a notification to them. JSON,
//! from `QUARRY_ALERT_ROUTES` in the Lambda or a file for `quarry serve --alerts`.
//!
//! ```json
//! {"group_wait_seconds": 10, "group_interval_seconds": 60, "repeat_interval_seconds": 14400,
//!  "receivers": {"pager": {"type": "pagerduty", "routing_key": "env:QUARRY_PAGERDUTY_KEY"},
//!                "chat": {"type": "slack", "webhook_url": "env:QUARRY_SLACK_WEBHOOK"},
//!                "mail": {"type": "email", "from": "alerts@example.com", "to": ["oncall@example.com"]}},
//!  "routes": [{"alarm": "*-dlq", "severity": "critical", "receivers": ["pager", "chat"]},
//!             {"receivers": ["chat"]}]}
//! ```
//!
//! Secrets (`routing_key`, `webhook_url`) are written `env:NAME` and read from that variable,
//! which the template fills from Secrets Manager; they are kept as [`Secret`] and never logged.

use std::collections::BTreeMap;
use std::time::Duration;

use quarry_core::config::Secret;
use serde::Deserialize;

use crate::notification::{Notification, Severity};

/// PagerDuty's Events API v2.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Routes {
    /// How long the first notification of a group waits for others to join it.
    #[serde(default = "default_wait")]
    pub group_wait_seconds: f64,
    /// Least time between two messages of one group (at least 1 s: Slack takes one a second).
    #[serde(default = "default_interval")]
    pub group_interval_seconds: f64,
    /// How long an alarm that is still firing waits before it is sent again (Alertmanager's
    /// `repeat_interval`); 0 never repeats. CloudWatch notifies on changes only, so reminders
    /// come from a schedule ([`crate::AlertRouter::remind`]).
    #[serde(default = "default_repeat")]
    pub repeat_interval_seconds: f64,
    /// Attempts per delivery, and the first back-off (doubling; `Retry-After` wins when sent).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    pub receivers: BTreeMap<String, ReceiverConfig>,
    pub routes: Vec<Route>,
}

fn default_wait() -> f64 {
    10.0
}
fn default_interval() -> f64 {
    60.0
}
fn default_repeat() -> f64 {
    4.0 * 3600.0
}
fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> u64 {
    500
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ReceiverConfig {
    /// Grouped, paced to one message a second.
    Slack {
        webhook_url: String,
        #[serde(default = "yes")]
        send_resolved: bool,
    },
    /// One event per notification: `trigger` on ALARM, `resolve` on OK, one dedup key per alarm.
    Pagerduty {
        routing_key: String,
        #[serde(default)]
        url: Option<String>,
    },
    /// Grouped, through SESv2.
    Email {
        from: String,
        to: Vec<String>,
        #[serde(default)]
        send_resolved: bool,
    },
}

/// One rule: a notification matching every condition given goes to `receivers`; the first rule
/// that matches decides, unless it says `continue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The alarm or event name, with `*` matching any run of characters.
    #[serde(default)]
    pub alarm: Option<String>,
    /// Notifications of these severities only.
    #[serde(default)]
    pub severities: Vec<Severity>,
    /// Labels the notification must carry with these values.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The severity given to an alarm routed here (events carry their own).
    #[serde(default)]
    pub severity: Option<Severity>,
    pub receivers: Vec<String>,
    #[serde(default, rename = "continue")]
    pub and_continue: bool,
}

/// A routing configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("the alert routes are not valid JSON")]
    Json(#[source] serde_json::Error),
    #[error("route {route} names receiver {receiver:?}, which is not defined")]
    UnknownReceiver { route: usize, receiver: String },
    #[error("receiver {receiver:?} reads {variable}, which is not set")]
    MissingSecret { receiver: String, variable: String },
    #[error("group_interval_seconds must be at least 1, and group_wait_seconds and repeat_interval_seconds at least 0")]
    Intervals,
    #[error("the alert routes file {path} cannot be read")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `*` matches any run of characters; nothing else is special. Hand-written: a glob crate for
/// one wildcard would be most of this crate's dependencies.
pub fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) || name.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// A secret written `env:NAME` (read from the environment) or given as it is.
pub fn secret(receiver: &str, value: &str) -> Result<Secret, RoutesError> {
    match value.strip_prefix("env:") {
        Some(var) => std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)
            .ok_or_else(|| RoutesError::MissingSecret { receiver: receiver.to_owned(), variable: var.to_owned() }),
        None => Ok(Secret::new(value)),
    }
}

impl Routes {
    /// The routes from `alerts.routes`: JSON itself, or the path of a JSON file.
    pub fn load(spec: &str) -> Result<Self, RoutesError> {
        if spec.trim_start().starts_with('{') {
            return Self::from_json(spec);
        }
        let text =
            std::fs::read_to_string(spec).map_err(|source| RoutesError::Read { path: spec.to_owned(), source })?;
        Self::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Self, RoutesError> {
        let routes: Routes = serde_json::from_str(text).map_err(RoutesError::Json)?;
        if routes.group_interval_seconds.is_nan()
            || routes.group_interval_seconds < 1.0
            || routes.group_wait_seconds.is_nan()
            || routes.group_wait_seconds < 0.0
            || routes.repeat_interval_seconds.is_nan()
            || routes.repeat_interval_seconds < 0.0
        {
            return Err(RoutesError::Intervals);
        }
        for (i, r) in routes.routes.iter().enumerate() {
            if let Some(name) = r.receivers.iter().find(|n| !routes.receivers.contains_key(*n)) {
                return Err(RoutesError::UnknownReceiver { route: i, receiver: name.clone() });
            }
        }
        Ok(routes)
    }

    pub fn group_wait(&self) -> Duration {
        Duration::from_secs_f64(self.group_wait_seconds)
    }

    pub fn group_interval(&self) -> Duration {
        Duration::from_secs_f64(self.group_interval_seconds)
    }

    /// `None`: never repeat.
    pub fn repeat_interval(&self) -> Option<Duration> {
        (self.repeat_interval_seconds > 0.0).then(|| Duration::from_secs_f64(self.repeat_interval_seconds))
    }

    /// The receivers `n` goes to, each with the severity it goes with (the event's, else the
    /// matching route's, else `warning`).
    pub fn matching(&self, n: &Notification) -> Vec<(String, Severity)> {
        let mut out: Vec<(String, Severity)> = Vec::new();
        for r in &self.routes {
            let severity = n.severity.or(r.severity).unwrap_or(Severity::Warning);
            let name_ok = r.alarm.as_deref().is_none_or(|p| glob(p, &n.name));
            let severity_ok = r.severities.is_empty() || r.severities.contains(&severity);
            let labels_ok = r.labels.iter().all(|(k, v)| n.labels.get(k) == Some(v));
            if !(name_ok && severity_ok && labels_ok) {
                continue;
            }
            for receiver in &r.receivers {
                if !out.iter().any(|(x, _)| x == receiver) {
                    out.push((receiver.clone(), severity));
                }
            }
            if !r.and_continue {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::State;

    fn note(name: &str, severity: Option<Severity>) -> Notification {
        Notification {
            name: name.into(),
            resource: "r".into(),
            state: State::Alarm,
            severity,
            summary: String::new(),
            reason: String::new(),
            labels: BTreeMap::from([("team".to_owned(), "search".to_owned())]),
            at: "t".into(),
            occurrence: "t".into(),
            event: false,
        }
    }

    #[test]
    fn globs() {
        assert!(glob("*-dlq", "quarry-prod-jobs-dlq"));
        assert!(glob("quarry-*-search-*", "quarry-prod-search-latency-p95"));
        assert!(!glob("*-dlq", "quarry-prod-jobs-queue-age"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
        assert!(glob("*", "") && glob("a*a", "aa") && !glob("a*a", "a"));
    }

    #[test]
    fn first_match_decides_unless_it_continues() {
        let routes = Routes::from_json(
            r#"{"receivers": {"pager": {"type": "pagerduty", "routing_key": "k"},
                              "chat": {"type": "slack", "webhook_url": "http://x"},
                              "mail": {"type": "email", "from": "a@x", "to": ["b@x"]}},
                "routes": [{"alarm": "*-dlq", "severity": "critical", "receivers": ["pager"], "continue": true},
                           {"labels": {"team": "search"}, "receivers": ["chat"]},
                           {"receivers": ["mail"]}]}"#,
        )
        .expect("routes");
        let got = routes.matching(&note("quarry-prod-jobs-dlq", None));
        assert_eq!(got, [("pager".to_owned(), Severity::Critical), ("chat".to_owned(), Severity::Warning)]);
        let got = routes.matching(&note("batch_failed", Some(Severity::Info)));
        assert_eq!(got, [("chat".to_owned(), Severity::Info)]);
        let bad = Routes::from_json(r#"{"receivers": {}, "routes": [{"receivers": ["nobody"]}]}"#);
        assert!(matches!(bad, Err(RoutesError::UnknownReceiver { .. })));
        let fast = Routes::from_json(r#"{"group_interval_seconds": 0.1, "receivers": {}, "routes": []}"#);
        assert!(matches!(fast, Err(RoutesError::Intervals)));
        assert!(matches!(secret("chat", "env:QUARRY_TEST_UNSET_SECRET"), Err(RoutesError::MissingSecret { .. })));
    }
}
