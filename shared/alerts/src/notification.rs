//! What arrives on the alarm topic, read into one shape: a CloudWatch alarm's state change (the
//! JSON AWS documents for SNS, read leniently: `AlarmDescription` is often null and the trigger
//! has two forms) or one of Quarry's own events (budget reached, a batch finished with failures).

use std::collections::BTreeMap;

use quarry_core::event::Event;
use serde::{Deserialize, Serialize};

/// An alarm's state, or an event's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Firing.
    Alarm,
    /// Back to normal: resolves what the alarm opened.
    Ok,
    /// Not enough data to say.
    InsufficientData,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Alarm => "ALARM",
            State::Ok => "OK",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

pub use quarry_core::event::Severity;

/// One notification, whatever sent it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The alarm's name, or the event's kind (`budget_reached`, `batch_failed`).
    pub name: String,
    /// What it is about: the alarm's ARN, the batch's id. With `name`, the PagerDuty dedup key.
    pub resource: String,
    pub state: State,
    /// Set by the event; for an alarm, by the route that matches it.
    pub severity: Option<Severity>,
    pub summary: String,
    /// Why (the alarm's reason): may quote metric values, never document text.
    pub reason: String,
    pub labels: BTreeMap<String, String>,
    /// When the state changed.
    pub at: String,
    /// With the name, resource and state, what makes it one notification however often it is
    /// delivered: an alarm's state-change time, an event's own occurrence.
    #[serde(default)]
    pub occurrence: String,
    /// One of Quarry's own events: it fires once and nothing resolves it, so it is never repeated.
    #[serde(default)]
    pub event: bool,
}

impl Notification {
    /// The notification's identity: the same state change delivered twice has the same one.
    pub fn id(&self) -> String {
        crate::digest(&[&self.name, &self.resource, self.state.name(), &self.occurrence])
    }

    /// PagerDuty's `dedup_key`: one per alarm and resource, so that OK resolves what ALARM opened.
    pub fn dedup_key(&self) -> String {
        format!("quarry-{}", crate::digest(&[&self.name, &self.resource]))
    }
}

/// A message on the topic that is neither an alarm nor a Quarry event.
#[derive(Debug, thiserror::Error)]
#[error("not a CloudWatch alarm or a Quarry event")]
pub struct NotANotification(#[source] serde_json::Error);

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Alarm {
    alarm_name: String,
    #[serde(default)]
    alarm_description: Option<String>,
    #[serde(default)]
    alarm_arn: Option<String>,
    new_state_value: State,
    #[serde(default)]
    new_state_reason: Option<String>,
    #[serde(default)]
    state_change_time: Option<String>,
    #[serde(default)]
    old_state_value: Option<State>,
    #[serde(default)]
    trigger: Option<Trigger>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Trigger {
    #[serde(default)]
    metric_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// Reads one SNS message body (`Records[].Sns.Message`).
pub fn parse(message: &str) -> Result<Notification, NotANotification> {
    if let Ok(e) = serde_json::from_str::<Event>(message) {
        return Ok(Notification::from(e));
    }
    let a: Alarm = serde_json::from_str(message).map_err(NotANotification)?;
    let mut labels = BTreeMap::new();
    let trigger = a.trigger.unwrap_or_default();
    if let Some(m) = trigger.metric_name {
        labels.insert("metric".to_owned(), m);
    }
    if let Some(n) = trigger.namespace {
        labels.insert("namespace".to_owned(), n);
    }
    if let Some(old) = a.old_state_value {
        labels.insert("previous".to_owned(), old.name().to_owned());
    }
    let summary = match &a.alarm_description {
        Some(d) if !d.is_empty() => format!("{} {}: {d}", a.new_state_value.name(), a.alarm_name),
        _ => format!("{} {}", a.new_state_value.name(), a.alarm_name),
    };
    let at = a.state_change_time.unwrap_or_default();
    Ok(Notification {
        resource: a.alarm_arn.unwrap_or_else(|| a.alarm_name.clone()),
        name: a.alarm_name,
        state: a.new_state_value,
        severity: None,
        summary,
        reason: a.new_state_reason.unwrap_or_default(),
        labels,
        occurrence: at.clone(),
        at,
        event: false,
    })
}

/// An event fires: it has no resolving state of its own.
impl From<Event> for Notification {
    fn from(e: Event) -> Self {
        Notification {
            name: e.quarry_event,
            resource: e.resource,
            state: State::Alarm,
            severity: Some(e.severity),
            summary: e.summary,
            reason: e.reason,
            labels: e.labels,
            at: e.at,
            occurrence: e.occurrence,
            event: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_in_both_trigger_forms_and_quarry_events() {
        let single = r#"{"AlarmName":"quarry-prod-jobs-dlq","AlarmDescription":null,"AWSAccountId":"123456789012",
            "AlarmConfigurationUpdatedTimestamp":"2026-11-28T15:38:30.249+0000","NewStateValue":"ALARM",
            "NewStateReason":"Threshold Crossed: 1 datapoint [1.0] was greater than the threshold (0.0).",
            "StateChangeTime":"2026-11-28T15:39:16.518+0000","Region":"US East (N. Virginia)",
            "AlarmArn":"arn:aws:cloudwatch:us-east-1:123456789012:alarm:quarry-prod-jobs-dlq","OldStateValue":"OK",
            "OKActions":[],"AlarmActions":["arn:aws:sns:us-east-1:123456789012:quarry-prod-alarms"],"InsufficientDataActions":[],
            "Trigger":{"MetricName":"ApproximateNumberOfMessagesVisible","Namespace":"AWS/SQS","StatisticType":"Statistic",
            "Statistic":"MAXIMUM","Unit":null,"Dimensions":[{"value":"quarry-prod-jobs-dlq","name":"QueueName"}],"Period":60,
            "EvaluationPeriods":1,"ComparisonOperator":"GreaterThanThreshold","Threshold":0.0,"TreatMissingData":"notBreaching",
            "EvaluateLowSampleCountPercentile":""}}"#;
        let n = parse(single).expect("alarm");
        assert_eq!((n.name.as_str(), n.state, n.severity), ("quarry-prod-jobs-dlq", State::Alarm, None));
        assert_eq!(n.labels["namespace"], "AWS/SQS");
        assert!(n.resource.starts_with("arn:aws:cloudwatch"));
        let math = r#"{"AlarmName":"quarry-prod-ingest-error-rate","AlarmDescription":"More than 5% failed.","NewStateValue":"OK",
            "NewStateReason":"Threshold Crossed","StateChangeTime":"2026-11-28T16:00:00.000+0000","OldStateValue":"ALARM",
            "AlarmArn":"arn:aws:cloudwatch:us-east-1:123456789012:alarm:quarry-prod-ingest-error-rate",
            "Trigger":{"Period":300,"EvaluationPeriods":1,"ComparisonOperator":"GreaterThanThreshold","Threshold":5.0,
            "Metrics":[{"Expression":"100 * FILL(failed, 0)","Id":"e1","Label":"rate","ReturnData":true}]}}"#;
        let ok = parse(math).expect("metric-math alarm");
        assert_eq!(ok.state, State::Ok);
        assert_eq!(ok.summary, "OK quarry-prod-ingest-error-rate: More than 5% failed.");
        let fired =
            Notification { state: State::Alarm, at: "earlier".into(), occurrence: "earlier".into(), ..ok.clone() };
        assert_eq!(ok.dedup_key(), fired.dedup_key(), "ALARM and OK of one alarm share the dedup key");
        assert_ne!(ok.id(), fired.id());

        let event = r#"{"quarry_event":"batch_failed","resource":"b-42","severity":"warning","summary":"batch b-42: 3 of 10 failed",
            "labels":{"batch":"b-42"},"at":"2026-11-28T16:01:00Z","occurrence":"7/3/0"}"#;
        let e = parse(event).expect("event");
        assert_eq!((e.name.as_str(), e.severity, e.state), ("batch_failed", Some(Severity::Warning), State::Alarm));
        // Published again by a second worker a moment later: the same occurrence, one notification.
        let again = parse(&event.replace("16:01:00Z", "16:01:02Z")).expect("event");
        assert_eq!(e.id(), again.id());
        assert_ne!(e.id(), parse(&event.replace("7/3/0", "9/1/0")).expect("event").id(), "a new end is news");
        assert!(parse(r#"{"hello":"world"}"#).is_err());
    }
}
