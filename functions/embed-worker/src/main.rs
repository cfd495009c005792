//! Cold start: configuration, SDK clients, the model and the adapters once; then the handler.

// The handler's future nests the pipeline's and the SDK's several calls deep; computing its
// layout passes rustc's default depth of 128.
#![recursion_limit = "256"]

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use quarry_aws::Adapters;
use quarry_core::Config;
use quarry_core::ports::Either;
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_embed_worker::Worker;
use quarry_pipeline::{CoalescingEmbedder, Feeding, Indexer};
use quarry_text::{Preparer, WordPiece};

/// Longer than the function's timeout: a lease outlives the invocation that took it only when that
/// invocation died, and then the redelivery after the visibility timeout takes it over.
const LEASE: Duration = Duration::from_secs(900);
/// Texts per merged model call.
const MERGED_TEXTS: usize = 256;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let emf = quarry_lambda::init()?;
    let config = Config::from_env(None)?;
    let aws = Adapters::for_config(&config.aws).await?;
    let model_dir = config.model.resolved_dir();
    let embedder = match quarry_openai::from_settings(&config.embedder)? {
        Some(openai) => Either::Right(openai),
        None => Either::Left(LocalEmbedder::load(
            &model_dir,
            EmbedOptions { precision: config.model.precision, ..EmbedOptions::default() },
        )?),
    };
    let embedder = CoalescingEmbedder::new(embedder, MERGED_TEXTS);
    let tokens =
        quarry_openai::chunk_counter(&config.embedder, || WordPiece::from_file(&model_dir.join("tokenizer.json")))?;
    let preparer = Preparer::new(&config, tokens);
    let cache = aws.state.clone().with_cache_policy(config.cache.clone());
    let hosted = quarry_openai::stores::OpenAiStore::from_config(&config)?;
    // Each indexed or removed document's change goes to the keyword indexer, where one is set up.
    let writer = Feeding { writer: aws.vectors, feed: aws.keyword_feed };
    let indexer = Indexer {
        source: &aws.source,
        state: &aws.state,
        embedder: &embedder,
        cache: &cache,
        writer: &writer,
        preparer: &preparer,
        lease: LEASE,
        spend: &aws.state,
        budget: &config.budget,
        hosted: hosted.as_ref().map(|h| h as &dyn quarry_core::hosted::HostedStore),
    };
    let worker = Worker::new(indexer, &aws.state, &aws.events);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let worker = &worker;
        async move { Ok::<_, Error>(quarry_lambda::flushed(emf, worker.handle(event.payload)).await) }
    }))
    .await
}
