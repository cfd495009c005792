//! Cold start: configuration, the routes and their secrets, SDK clients and the ledger once; then
//! the handler for every SNS delivery and scheduled tick.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use quarry_alert_router::{Handler, Input};
use quarry_alerts::{AlertRouter, Routes};
use quarry_aws::{Clients, DynamoState, SesMailer};
use quarry_core::Config;

/// A receiver that has not answered in this long has failed this attempt.
const RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let emf = quarry_lambda::init()?;
    let config = Config::from_env(None)?;
    let routes = Routes::load(config.alerts.routes.as_deref().ok_or("QUARRY_ALERT_ROUTES is not set")?)?;
    let table = config.aws.table.clone().ok_or("QUARRY_TABLE is not set")?;
    let clients = Clients::load(config.aws.endpoint_url.as_deref()).await;
    let ledger = DynamoState::new(clients.dynamodb.clone(), table);
    let http = reqwest::Client::builder().timeout(RECEIVER_TIMEOUT).build()?;
    let router = AlertRouter::new(routes, ledger, Some(SesMailer::new(clients.sesv2.clone())), http)?;
    let handler = Handler::new(router);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Input>| {
        let handler = &handler;
        // Boxed: the routing future nests deeper than the compiler's layout recursion limit.
        async move { quarry_lambda::flushed(emf, Box::pin(handler.invoke(event.payload))).await.map_err(Error::from) }
    }))
    .await
}
