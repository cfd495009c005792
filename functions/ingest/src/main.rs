//! Cold start: configuration, SDK clients and adapters once; then the handler for every event.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use quarry_aws::{Clients, DynamoState, S3VectorStore, SqsQueue};
use quarry_core::Config;
use quarry_ingest::Ingest;
use quarry_text::Extractor;

#[tokio::main]
async fn main() -> Result<(), Error> {
    quarry_lambda::init_logging();
    let config = Config::from_env(None)?;
    let (resources, clients) = Clients::for_config(&config.aws).await?;
    let queue = SqsQueue::new(clients.sqs.clone(), &resources.queue_url);
    let state = DynamoState::new(clients.dynamodb.clone(), &resources.table);
    let writer = S3VectorStore::new(clients.s3vectors.clone(), &resources.vector_bucket, &resources.vector_index);
    let extractor = Extractor::new(config.limits.clone());
    let ingest =
        Ingest { queue: &queue, state: &state, writer: &writer, extractor: &extractor, bucket: &resources.bucket };
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let ingest = &ingest;
        async move { Ok::<_, Error>(ingest.handle(event.payload).await) }
    }))
    .await
}
