//! Cold start: configuration, SDK clients, the model and the router once; then lambda_http serves
//! API Gateway's requests with the same axum router as `quarry serve`.

use quarry_aws::{Clients, DynamoState, S3Source, S3VectorStore, SqsQueue};
use quarry_core::Config;
use quarry_core::ports::Either;
use quarry_embed::EmbedOptions;
use quarry_search::{AwsBackend, AwsStarter, BackgroundEmbedder, cursor_key};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    quarry_lambda::init_logging();
    let config = Config::from_env(None)?;
    let (resources, clients) = Clients::for_config(&config.aws).await?;
    // The local model loads on its own thread: init ends at the first poll, in milliseconds.
    let embedder = match quarry_openai::from_settings(&config.embedder)? {
        Some(openai) => Either::Right(openai),
        None => Either::Left(BackgroundEmbedder::load(config.model.resolved_dir(), EmbedOptions::default())),
    };
    let state = DynamoState::new(clients.dynamodb.clone(), &resources.table);
    let backend = AwsBackend {
        embedder,
        vectors: S3VectorStore::new(clients.s3vectors.clone(), &resources.vector_bucket, &resources.vector_index),
        state: state.clone(),
        starter: AwsStarter {
            source: S3Source::new(clients.s3.clone(), &resources.bucket),
            state,
            queue: SqsQueue::new(clients.sqs.clone(), &resources.queue_url),
        },
        bucket: resources.bucket.clone(),
    };
    let key = cursor_key(config.server.cursor_secret.as_ref())?;
    let router = quarry_api::router(backend, config.server.clone(), key);
    lambda_http::run(router).await
}
