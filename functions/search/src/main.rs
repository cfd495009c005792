//! Cold start: configuration, SDK clients, the model and the router once; then lambda_http serves
//! API Gateway's requests with the same axum router as `quarry serve`.

use quarry_aws::Adapters;
use quarry_core::Config;
use quarry_core::ports::Either;
use quarry_embed::EmbedOptions;
use quarry_keyword::{KeywordReplica, REFRESH_INTERVAL};
use quarry_pipeline::Feeding;
use quarry_search::{AwsBackend, AwsStarter, BackgroundEmbedder, cursor_key};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let emf = quarry_lambda::init()?;
    let config = Config::from_env(None)?;
    let aws = Adapters::for_config(&config.aws).await?;
    // The local model loads on its own thread: init ends at the first poll, in milliseconds.
    let embedder = match quarry_openai::from_settings(&config.embedder)? {
        Some(openai) => Either::Right(openai),
        None => Either::Left(BackgroundEmbedder::load(
            config.model.resolved_dir(),
            EmbedOptions { precision: config.model.precision, ..EmbedOptions::default() },
        )),
    };
    let hosted = quarry_openai::stores::OpenAiStore::from_config(&config)?;
    // A deleted document's chunks leave the keyword index too: its change goes to the indexer.
    let vectors = Feeding { writer: aws.vectors, feed: aws.keyword_feed };
    let refresh = config.aws.keyword_refresh_secs.map_or(REFRESH_INTERVAL, std::time::Duration::from_secs);
    let keywords = aws.keyword_files.map(|files| KeywordReplica::new(files, refresh));
    if let Some(replica) = &keywords {
        // Loaded now, so that the first keyword search does not wait for it; a failure here is
        // retried by the first search.
        if let Err(e) = replica.warm().await {
            tracing::warn!(error = %quarry_core::error::chain(&e), "the keyword index did not load at cold start");
        }
    }
    let backend = AwsBackend {
        embedder,
        vectors: vectors.clone(),
        state: aws.state.clone(),
        starter: AwsStarter {
            source: aws.source,
            state: aws.state,
            vectors,
            queue: aws.queue,
            events: aws.events,
            limits: config.limits.clone(),
            hosted: hosted.map(|h| std::sync::Arc::new(h) as std::sync::Arc<dyn quarry_core::hosted::HostedStore>),
        },
        bucket: aws.resources.bucket,
        keywords,
    };
    let key = cursor_key(config.server.cursor_secret.as_ref())?;
    // lambda_http hands the router one request per invocation: its metrics are flushed after it.
    let router = quarry_api::router(backend, config.server.clone(), key).layer(axum::middleware::map_response(
        move |response: axum::response::Response| quarry_lambda::flushed(emf, std::future::ready(response)),
    ));
    let router = quarry_search::authorized(router, &config.server.tenant_claim);
    lambda_http::run(router).await
}
