//! Quarry's alert routing core, shared by the `alert-router` Lambda (CloudWatch alarms and
//! Quarry's events from SNS, ledger in DynamoDB, email through SESv2) and `quarry serve` (its own
//! metrics' rules, ledger in SQLite): rules pick receivers ([`rules`]), receivers speak their wire
//! formats with retries ([`receivers`]), and the [`AlertRouter`] makes each notification go out
//! once per receiver, grouped where the receiver is a chat or a mailbox.
//!
//! Once: PagerDuty events are claimed in the ledger per notification and receiver before they
//! are sent, and the claim is given back when the send fails, so that SNS's redelivery of the
//! same message, or three invocations at once, send one event. Grouped receivers take
//! notifications as members of a group (a member's id is the notification's, so a redelivery
//! joins once), and one leader at a time sends the group: it waits `group_wait`, takes every
//! member, sends one message, and goes on every `group_interval` while members keep coming.
//! Members of a failed send go back into the group for the next leader.

pub mod notification;
pub mod receivers;
pub mod rules;

use std::collections::BTreeMap;
use std::time::Duration;

use quarry_core::ports::{AlertLedger, Mailer};
use quarry_core::{Classify, PortError};
use sha2::{Digest, Sha256};

pub use notification::{Notification, Severity, State, parse};
pub use receivers::{DeliveryError, Receiver, Retry};
pub use rules::{Routes, RoutesError};

/// How long a notification's claims and a group's members are kept: longer than SNS and Lambda
/// retry a message.
pub const REMEMBER: Duration = Duration::from_secs(86_400);

/// A short hex digest of `parts`, for ids and keys.
pub(crate) fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// What stopped a notification from reaching every receiver.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("the alert ledger failed")]
    Ledger(#[from] PortError),
    #[error("receiver {receiver:?} was not reached")]
    Delivery {
        receiver: String,
        #[source]
        source: DeliveryError,
    },
}

impl Classify for RouteError {
    fn class(&self) -> quarry_core::ErrorClass {
        match self {
            RouteError::Ledger(e) => e.class(),
            RouteError::Delivery { source, .. } => source.class(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            RouteError::Ledger(e) => e.code(),
            RouteError::Delivery { source, .. } => source.code(),
        }
    }
}

/// The router over a ledger and, where email is configured, a mailer.
#[derive(Debug)]
pub struct AlertRouter<L, M> {
    routes: Routes,
    receivers: BTreeMap<String, Receiver>,
    ledger: L,
    mailer: Option<M>,
    http: reqwest::Client,
}

impl<L: AlertLedger, M: Mailer> AlertRouter<L, M> {
    /// Reads the receivers' secrets. `http` should carry a timeout (a hung receiver must not hold
    /// an invocation to its end).
    pub fn new(routes: Routes, ledger: L, mailer: Option<M>, http: reqwest::Client) -> Result<Self, RoutesError> {
        let mut receivers = BTreeMap::new();
        for (name, config) in &routes.receivers {
            let r = match config {
                rules::ReceiverConfig::Slack { webhook_url, send_resolved } => {
                    Receiver::Slack { webhook: rules::secret(name, webhook_url)?, send_resolved: *send_resolved }
                }
                rules::ReceiverConfig::Pagerduty { routing_key, url } => Receiver::PagerDuty {
                    url: url.clone().unwrap_or_else(|| rules::PAGERDUTY_URL.to_owned()),
                    routing_key: rules::secret(name, routing_key)?,
                },
                rules::ReceiverConfig::Email { from, to, send_resolved } => {
                    Receiver::Email { from: from.clone(), to: to.clone(), send_resolved: *send_resolved }
                }
            };
            receivers.insert(name.clone(), r);
        }
        Ok(AlertRouter { routes, receivers, ledger, mailer, http })
    }

    fn retry(&self) -> Retry {
        Retry { attempts: self.routes.attempts, backoff: Duration::from_millis(self.routes.backoff_ms) }
    }

    /// Routes one notification to every receiver its rules name. Returns the first failure after
    /// trying them all: the caller lets it come back (SNS redelivers; the ledger keeps what was
    /// sent from going twice).
    #[tracing::instrument(skip_all, err, fields(alarm = %n.name, state = n.state.name()))]
    pub async fn route(&self, n: &Notification) -> Result<(), RouteError> {
        // Noted first: a state change is remembered for reminders even if a receiver fails now.
        if self.routes.repeat_interval().is_some() && !n.event {
            let noted = Firing { n: n.clone(), since_ms: now_ms() };
            let member = serde_json::to_string(&noted).unwrap_or_default();
            self.ledger.append(FIRING, &n.id(), &member, REMEMBER_FIRING).await?;
        }
        self.deliver(n).await
    }

    /// Sends again each alarm that has been firing for another `repeat_interval` (Alertmanager's
    /// semantics): CloudWatch notifies on state changes only, so a schedule calls this (every five
    /// minutes on AWS; every metrics tick in `quarry serve`). The n-th reminder of an alarm is one
    /// notification (its occurrence says which), so ticks that overlap send it once. Returns how
    /// many reminders went out.
    pub async fn remind(&self) -> Result<usize, RouteError> {
        let Some(repeat) = self.routes.repeat_interval() else { return Ok(0) };
        // One tick at a time: a drain gives each member to one caller, so two ticks at once would
        // share an alarm's state changes between them, and the one that got its ALARM but not
        // its later OK would remind of a resolved alarm. A tick that finds another running has
        // nothing to add.
        if !self.ledger.claim(REMINDING, REMINDING_FOR).await? {
            return Ok(0);
        }
        let result = self.remind_all(repeat).await;
        self.ledger.release(REMINDING).await?;
        result
    }

    async fn remind_all(&self, repeat: Duration) -> Result<usize, RouteError> {
        let members = self.ledger.drain(FIRING).await?;
        let mut latest: BTreeMap<String, Firing> = BTreeMap::new();
        for f in members.iter().filter_map(|m| serde_json::from_str::<Firing>(m).ok()) {
            let key = f.n.dedup_key();
            if latest.get(&key).is_none_or(|seen| seen.n.at < f.n.at) {
                latest.insert(key, f);
            }
        }
        let (now, every) = (now_ms(), repeat.as_millis().max(1) as u64);
        let (mut sent, mut first_error) = (0, None);
        for f in latest.into_values() {
            // Resolved, or no data: forgotten.
            if f.n.state != State::Alarm {
                continue;
            }
            let nth = now.saturating_sub(f.since_ms) / every;
            if nth >= 1 {
                let mut again = f.n.clone();
                again.occurrence = format!("{}#repeat-{nth}", f.n.occurrence);
                again.summary = format!("still firing: {}", f.n.summary);
                again.labels.insert("repeat".to_owned(), nth.to_string());
                match self.deliver(&again).await {
                    Ok(()) => sent += 1,
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            // Back for the next tick (a failed reminder is tried again then).
            let member = serde_json::to_string(&f).unwrap_or_default();
            self.ledger.append(FIRING, &f.n.id(), &member, REMEMBER_FIRING).await?;
        }
        first_error.map_or(Ok(sent), Err)
    }

    /// Sends `n` to every receiver its rules name.
    async fn deliver(&self, n: &Notification) -> Result<(), RouteError> {
        let mut first_error = None;
        for (name, severity) in self.routes.matching(n) {
            let Some(receiver) = self.receivers.get(&name) else { continue };
            if !receiver.wants(n) {
                continue;
            }
            let result = if receiver.grouped() {
                self.join(&name, receiver, n, severity).await
            } else {
                self.once(&name, receiver, n, severity).await
            };
            if let Err(e) = result {
                tracing::warn!(receiver = %name, code = e.code(), "notification not delivered");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One event for one notification, claimed first.
    async fn once(
        &self,
        name: &str,
        receiver: &Receiver,
        n: &Notification,
        severity: Severity,
    ) -> Result<(), RouteError> {
        let key = format!("sent#{name}#{}", n.id());
        if !self.ledger.claim(&key, REMEMBER).await? {
            count(receiver, "duplicate", 1);
            return Ok(());
        }
        let note = [(n.clone(), severity)];
        match receivers::deliver(&self.http, self.mailer.as_ref(), receiver, &note, self.retry()).await {
            Ok(()) => {
                count(receiver, "sent", 1);
                Ok(())
            }
            Err(source) => {
                count(receiver, "failed", 1);
                self.ledger.release(&key).await?;
                Err(RouteError::Delivery { receiver: name.to_owned(), source })
            }
        }
    }

    /// Joins `n` to the receiver's group, then leads the group if no one else does.
    async fn join(
        &self,
        name: &str,
        receiver: &Receiver,
        n: &Notification,
        severity: Severity,
    ) -> Result<(), RouteError> {
        let seen = format!("seen#{name}#{}", n.id());
        if self.ledger.claim(&seen, REMEMBER).await? {
            let member = serde_json::to_string(&(n, severity)).unwrap_or_default();
            self.ledger.append(&group(name), &n.id(), &member, REMEMBER).await?;
        } else {
            count(receiver, "duplicate", 1);
        }
        self.lead(name, receiver).await
    }

    /// Sends the group's members while there are any, as its one leader.
    async fn lead(&self, name: &str, receiver: &Receiver) -> Result<(), RouteError> {
        let (group, lead) = (group(name), format!("lead#{name}"));
        // A leader that died frees the group when its claim expires.
        let hold = self.routes.group_wait() + self.routes.group_interval() + Duration::from_secs(900);
        let mut pause = self.routes.group_wait();
        loop {
            if !self.ledger.claim(&lead, hold).await? {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            let members = self.ledger.drain(&group).await?;
            let notes: Vec<(Notification, Severity)> =
                members.iter().filter_map(|m| serde_json::from_str(m).ok()).collect();
            if !notes.is_empty() {
                self.pace(name).await?;
                if let Err(source) =
                    receivers::deliver(&self.http, self.mailer.as_ref(), receiver, &notes, self.retry()).await
                {
                    count(receiver, "failed", notes.len() as u64);
                    // Back into the group, for the next leader (this one's redelivery, or another).
                    for (m, (n, _)) in members.iter().zip(&notes) {
                        self.ledger.append(&group, &n.id(), m, REMEMBER).await?;
                    }
                    self.ledger.release(&lead).await?;
                    return Err(RouteError::Delivery { receiver: name.to_owned(), source });
                }
                count(receiver, "sent", notes.len() as u64);
            }
            self.ledger.release(&lead).await?;
            // Members that came during the send: lead again after group_interval (unless another
            // invocation took the lead in between, and will send them).
            if !self.ledger.waiting(&group).await? {
                return Ok(());
            }
            pause = self.routes.group_interval();
        }
    }

    /// At most one message a second per receiver, across every invocation: a send takes the
    /// receiver's current second in the ledger, or waits for the next free one.
    async fn pace(&self, name: &str) -> Result<(), RouteError> {
        loop {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            if self.ledger.claim(&format!("pace#{name}#{}", now.as_secs()), Duration::from_secs(120)).await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(1_000 - u64::from(now.subsec_millis()))).await;
        }
    }
}

/// The ledger group of alarms' latest state changes, read by [`AlertRouter::remind`].
const FIRING: &str = "firing";

/// The claim a reminder tick holds while it runs, and for how long at most (a tick that dies
/// holding it delays reminders by this much).
const REMINDING: &str = "reminding";
const REMINDING_FOR: Duration = Duration::from_secs(60);

/// How long a firing alarm is remembered without a tick taking it (a tick puts it back).
const REMEMBER_FIRING: Duration = Duration::from_secs(7 * 86_400);

/// A state change, and when the router first saw it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Firing {
    n: Notification,
    since_ms: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn group(receiver: &str) -> String {
    format!("group#{receiver}")
}

fn count(receiver: &Receiver, result: &'static str, n: u64) {
    metrics::counter!(quarry_core::metric::ALERTS, "receiver" => receiver.kind(), "delivery" => result).increment(n);
}
