//! Cold start: configuration, SDK clients and the indexer once; then the handler. The indexer's
//! copy of the index stays in memory between invocations, so a warm function fetches nothing.

// The publish future nests the SDK's request futures several calls deep; computing its layout
// passes rustc's default depth of 128.
#![recursion_limit = "256"]

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use quarry_aws::Adapters;
use quarry_core::Config;
use quarry_keyword::KeywordIndexer;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let emf = quarry_lambda::init()?;
    let config = Config::from_env(None)?;
    let aws = Adapters::for_config(&config.aws).await?;
    let files =
        aws.keyword_files.ok_or("QUARRY_INDEX_BUCKET is not set: the keyword indexer has nowhere to publish")?;
    let indexer = KeywordIndexer::new(aws.vectors, files);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let indexer = &indexer;
        async move {
            Ok::<_, Error>(quarry_lambda::flushed(emf, quarry_keyword_indexer::handle(indexer, event.payload)).await)
        }
    }))
    .await
}
