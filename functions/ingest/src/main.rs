//! Cold start: configuration, SDK clients and adapters once; then the handler for every event.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use quarry_aws::Adapters;
use quarry_core::Config;
use quarry_ingest::Ingest;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let emf = quarry_lambda::init()?;
    let config = Config::from_env(None)?;
    let aws = Adapters::for_config(&config.aws).await?;
    let hosted = quarry_openai::stores::OpenAiStore::from_config(&config)?;
    // A removed object's chunks leave the keyword index too.
    let writer = quarry_pipeline::Feeding { writer: aws.vectors, feed: aws.keyword_feed };
    let ingest = Ingest {
        queue: &aws.queue,
        state: &aws.state,
        writer: &writer,
        limits: &config.limits,
        bucket: &aws.resources.bucket,
        hosted: hosted.as_ref().map(|h| h as &dyn quarry_core::hosted::HostedStore),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let ingest = &ingest;
        async move { Ok::<_, Error>(quarry_lambda::flushed(emf, ingest.handle(event.payload)).await) }
    }))
    .await
}
