//! The alert-router handler: each SNS record (CloudWatch sends one per invocation) is read into a
//! notification and routed by quarry-alerts. A message that is no notification is logged and
//! dropped: retrying cannot make it one. A delivery that still fails after its retries fails the
//! invocation, so that Lambda retries it and then hands it to the function's DLQ; the ledger
//! keeps what did go out from going twice.
//!
//! The function is also invoked on a schedule (EventBridge, every five minutes): then it sends
//! reminders of the alarms still firing ([`AlertRouter::remind`]).

use aws_lambda_events::event::sns::SnsEvent;
use quarry_alerts::{AlertRouter, RouteError};
use quarry_core::Classify;
use quarry_core::ports::{AlertLedger, Mailer};

/// What invokes the function: SNS, or the schedule.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum Input {
    Sns(SnsEvent),
    Scheduled(Scheduled),
}

/// EventBridge's scheduled event (the fields that say so).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Scheduled {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
}

#[derive(Debug)]
pub struct Handler<L, M> {
    pub router: AlertRouter<L, M>,
}

impl<L: AlertLedger, M: Mailer> Handler<L, M> {
    pub fn new(router: AlertRouter<L, M>) -> Self {
        Handler { router }
    }

    /// Routes an SNS delivery, or sends the reminders a scheduled tick is for.
    pub async fn invoke(&self, input: Input) -> Result<(), RouteError> {
        match input {
            Input::Sns(event) => self.handle(event).await,
            Input::Scheduled(tick) => {
                let sent = self.router.remind().await?;
                tracing::info!(source = %tick.source, detail_type = %tick.detail_type, sent, "reminders");
                Ok(())
            }
        }
    }

    pub async fn handle(&self, event: SnsEvent) -> Result<(), RouteError> {
        let mut first_error = None;
        for record in event.records {
            let n = match quarry_alerts::parse(&record.sns.message) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(message_id = %record.sns.message_id, error = %e, "not a notification; dropped");
                    continue;
                }
            };
            if let Err(e) = self.router.route(&n).await {
                tracing::error!(code = e.code(), error = %quarry_core::error::chain(&e), "routing failed; the invocation will be retried");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
