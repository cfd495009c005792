//! The wire formats of the receivers, and delivery with retries: Slack's incoming webhooks (one
//! message for a group), PagerDuty's Events API v2 (one event per notification) and email.
//! 429 and 5xx are retried with doubling back-off, or after `Retry-After` when the receiver
//! says how long; any other 4xx is final.

use std::time::Duration;

use quarry_core::config::Secret;
use quarry_core::ports::{Email, Mailer};
use quarry_core::{Classify, ErrorClass, PortError};
use serde_json::{Value, json};

use crate::notification::{Notification, Severity, State};

/// Lines listed in a grouped message; the rest are counted.
const LISTED: usize = 20;
/// Longest `Retry-After` honoured: a receiver asking for more is treated as failing now.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A receiver ready to send: its secrets read.
#[derive(Debug, Clone)]
pub enum Receiver {
    Slack { webhook: Secret, send_resolved: bool },
    PagerDuty { url: String, routing_key: Secret },
    Email { from: String, to: Vec<String>, send_resolved: bool },
}

/// A delivery that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{receiver} refused the message with HTTP {status}")]
    Refused { receiver: &'static str, status: u16 },
    #[error("{receiver} still failed after {attempts} attempts (last: HTTP {status:?})")]
    Exhausted {
        receiver: &'static str,
        attempts: u32,
        status: Option<u16>,
        #[source]
        source: Option<reqwest::Error>,
    },
    #[error("email could not be sent")]
    Mail(#[source] PortError),
}

impl Classify for DeliveryError {
    fn class(&self) -> ErrorClass {
        match self {
            DeliveryError::Refused { .. } => ErrorClass::Permanent,
            DeliveryError::Exhausted { .. } => ErrorClass::Retryable,
            DeliveryError::Mail(e) => e.class(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            DeliveryError::Refused { .. } => "receiver_refused",
            DeliveryError::Exhausted { .. } => "receiver_unavailable",
            DeliveryError::Mail(e) => e.code(),
        }
    }
}

impl Receiver {
    pub fn kind(&self) -> &'static str {
        match self {
            Receiver::Slack { .. } => "slack",
            Receiver::PagerDuty { .. } => "pagerduty",
            Receiver::Email { .. } => "email",
        }
    }

    /// Whether notifications are collected and sent as one message per group.
    pub fn grouped(&self) -> bool {
        !matches!(self, Receiver::PagerDuty { .. })
    }

    /// Whether this receiver hears about `n` at all.
    pub fn wants(&self, n: &Notification) -> bool {
        match self {
            Receiver::Slack { send_resolved, .. } | Receiver::Email { send_resolved, .. } => {
                n.state == State::Alarm || *send_resolved
            }
            // PagerDuty has no event for "not enough data"; ALARM triggers and OK resolves.
            Receiver::PagerDuty { .. } => n.state != State::InsufficientData,
        }
    }
}

/// Slack's message for one or many notifications.
pub fn slack_message(notes: &[(Notification, Severity)]) -> Value {
    let line =
        |(n, s): &(Notification, Severity)| format!("*{}* `{}` ({}) {}", n.state.name(), n.name, s.name(), n.summary);
    let text = if let [one] = notes {
        let (n, _) = one;
        format!("{}\n{}", line(one), n.reason)
    } else {
        let firing = notes.iter().filter(|(n, _)| n.state == State::Alarm).count();
        let mut t = format!("*{} notifications* ({firing} firing, {} other)\n", notes.len(), notes.len() - firing);
        for n in notes.iter().take(LISTED) {
            t.push_str(&format!("• {}\n", line(n)));
        }
        if notes.len() > LISTED {
            t.push_str(&format!("… and {} more", notes.len() - LISTED));
        }
        t
    };
    json!({"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]})
}

/// PagerDuty's event for one notification.
pub fn pagerduty_event(routing_key: &str, n: &Notification, severity: Severity) -> Value {
    let action = if n.state == State::Ok { "resolve" } else { "trigger" };
    let summary: String = n.summary.chars().take(1024).collect();
    json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": n.dedup_key(),
        "payload": {
            "summary": summary,
            "source": n.resource,
            "severity": severity.name(),
            "component": "quarry",
            "class": n.name,
            "custom_details": {"reason": n.reason, "labels": n.labels, "state_changed_at": n.at},
        },
        "client": "Quarry alert-router",
    })
}

/// An email for one or many notifications.
pub fn email(from: &str, to: &[String], notes: &[(Notification, Severity)]) -> Email {
    let subject = match notes {
        [(n, _)] => format!("[{}] {}", n.state.name(), n.name),
        _ => format!("[Quarry] {} notifications", notes.len()),
    };
    let body = notes
        .iter()
        .map(|(n, s)| {
            format!("{} {} ({})\n{}\n{}\nat {}\n", n.state.name(), n.name, s.name(), n.summary, n.reason, n.at)
        })
        .collect::<Vec<_>>()
        .join("\n");
    Email { from: from.to_owned(), to: to.to_vec(), subject, body }
}

/// Retries and back-off.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
}

/// POSTs `body` until it is accepted, refused, or the attempts run out.
pub async fn post(
    http: &reqwest::Client,
    receiver: &'static str,
    url: &str,
    body: &Value,
    retry: Retry,
) -> Result<(), DeliveryError> {
    let mut last = None;
    let mut wait = retry.backoff;
    for attempt in 1..=retry.attempts.max(1) {
        let (status, after, error) = match http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let status = r.status().as_u16();
                if status != 429 && !r.status().is_server_error() {
                    return Err(DeliveryError::Refused { receiver, status });
                }
                let after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .map(Duration::from_secs_f64);
                (Some(status), after, None)
            }
            Err(e) => (None, None, Some(e)),
        };
        tracing::warn!(receiver, attempt, status, "delivery failed; retrying");
        last = Some((status, error));
        if attempt == retry.attempts.max(1) {
            break;
        }
        let pause = after.unwrap_or(wait);
        if pause > MAX_RETRY_AFTER {
            break;
        }
        tokio::time::sleep(pause).await;
        wait = wait.saturating_mul(2);
    }
    let (status, source) = last.unwrap_or((None, None));
    Err(DeliveryError::Exhausted { receiver, attempts: retry.attempts, status, source })
}

/// Sends `notes` (one, or a group) to `receiver`.
pub async fn deliver<M: Mailer>(
    http: &reqwest::Client,
    mailer: Option<&M>,
    receiver: &Receiver,
    notes: &[(Notification, Severity)],
    retry: Retry,
) -> Result<(), DeliveryError> {
    match receiver {
        Receiver::Slack { webhook, .. } => post(http, "slack", webhook.expose(), &slack_message(notes), retry).await,
        Receiver::PagerDuty { url, routing_key } => {
            for (n, s) in notes {
                post(http, "pagerduty", url, &pagerduty_event(routing_key.expose(), n, *s), retry).await?;
            }
            Ok(())
        }
        Receiver::Email { from, to, .. } => {
            let Some(mailer) = mailer else {
                return Err(DeliveryError::Mail(PortError::Permanent {
                    operation: "alerts.email",
                    source: "this deployment has no mailer".into(),
                }));
            };
            mailer.send(&email(from, to, notes)).await.map_err(DeliveryError::Mail)
        }
    }
}
