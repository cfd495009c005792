//! Email through SESv2 ([`Mailer`]), for the alert router's email receivers.

use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use quarry_core::PortError;
use quarry_core::ports::{Email, Mailer};
use tracing::instrument;

use crate::{build_error, port_error};

#[derive(Debug, Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
}

impl SesMailer {
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        SesMailer { client }
    }
}

fn content(text: &str) -> Result<Content, PortError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(build_error("sesv2.send_email"))
}

impl Mailer for SesMailer {
    #[instrument(skip_all, err, fields(recipients = email.to.len()))]
    async fn send(&self, email: &Email) -> Result<(), PortError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(Body::builder().text(content(&email.body)?).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&email.from)
            .destination(Destination::builder().set_to_addresses(Some(email.to.clone())).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| port_error("sesv2.send_email", e))?;
        Ok(())
    }
}
