//! Quarry's own events on SNS ([`EventPublisher`]): published on the alarm topic, beside the
//! CloudWatch alarms, for the alert router.

use aws_sdk_sns::types::MessageAttributeValue;
use quarry_core::PortError;
use quarry_core::event::Event;
use quarry_core::ports::EventPublisher;
use tracing::instrument;

use crate::{build_error, port_error};

#[derive(Debug, Clone)]
pub struct SnsEvents {
    client: aws_sdk_sns::Client,
    /// `None`: no topic configured, nothing is published.
    topic: Option<String>,
}

impl SnsEvents {
    pub fn new(client: aws_sdk_sns::Client, topic: Option<String>) -> Self {
        SnsEvents { client, topic }
    }
}

impl EventPublisher for SnsEvents {
    #[instrument(skip_all, err, fields(event = %event.quarry_event))]
    async fn publish(&self, event: &Event) -> Result<(), PortError> {
        let Some(topic) = &self.topic else {
            tracing::debug!("no events topic configured; event not published");
            return Ok(());
        };
        let body = serde_json::to_string(event)
            .map_err(|e| PortError::Permanent { operation: "sns.publish", source: Box::new(e) })?;
        // The kind as an attribute too, for subscription filter policies.
        let kind = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(&event.quarry_event)
            .build()
            .map_err(build_error("sns.publish"))?;
        self.client
            .publish()
            .topic_arn(topic)
            .message(body)
            .message_attributes("quarry_event", kind)
            .send()
            .await
            .map_err(|e| port_error("sns.publish", e))?;
        Ok(())
    }
}
