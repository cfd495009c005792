//! The AWS adapters of Quarry's ports: S3 as the blob source, SQS as the job queue, one DynamoDB
//! table for document state, checkpoints, batches and the embedding cache, and S3 Vectors as the
//! vector store. The core knows none of this; the Lambdas build these once per cold start.
//!
//! Every call maps its SDK error into a [`PortError`] that says whether a retry may help
//! (throttling, timeouts, 5xx) or not, keeping the SDK error as the source.

pub mod dynamo;
pub mod keywords;
pub mod provision;
pub mod s3;
pub mod ses;
pub mod sns;
pub mod sqs;
pub mod vectors;

pub use dynamo::DynamoState;
pub use keywords::{S3IndexFiles, SqsChanges};
pub use s3::{S3Source, UPLOAD_URL_TTL};
pub use ses::SesMailer;
pub use sns::SnsEvents;
pub use sqs::SqsQueue;
pub use vectors::S3VectorStore;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response;
use quarry_core::PortError;

/// Where Quarry's AWS resources are: the names the template outputs and the Lambdas read from
/// their environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub bucket: String,
    pub queue_url: String,
    pub table: String,
    pub vector_bucket: String,
    pub vector_index: String,
    /// Where Quarry's own events go (optional: unset, none are published).
    pub events_topic: Option<String>,
    /// The published keyword index's bucket and changes queue (optional: unset, search is
    /// semantic only).
    pub index_bucket: Option<String>,
    pub keyword_queue_url: Option<String>,
}

impl Resources {
    /// The resources named in the configuration (`QUARRY_BUCKET`, `QUARRY_QUEUE_URL`,
    /// `QUARRY_TABLE`, `QUARRY_VECTOR_BUCKET`, `QUARRY_VECTOR_INDEX`); every missing one is named
    /// in the error.
    pub fn from_config(aws: &quarry_core::config::Aws) -> Result<Resources, MissingSettings> {
        let mut missing = Vec::new();
        let mut get = |value: &Option<String>, name: &'static str| match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => v.to_owned(),
            _ => {
                missing.push(name);
                String::new()
            }
        };
        let r = Resources {
            bucket: get(&aws.bucket, "QUARRY_BUCKET"),
            queue_url: get(&aws.queue_url, "QUARRY_QUEUE_URL"),
            table: get(&aws.table, "QUARRY_TABLE"),
            vector_bucket: get(&aws.vector_bucket, "QUARRY_VECTOR_BUCKET"),
            vector_index: get(&aws.vector_index, "QUARRY_VECTOR_INDEX"),
            events_topic: optional(&aws.events_topic),
            index_bucket: optional(&aws.index_bucket),
            keyword_queue_url: optional(&aws.keyword_queue_url),
        };
        if missing.is_empty() { Ok(r) } else { Err(MissingSettings { names: missing }) }
    }

    /// The environment that names these resources, as the template sets it for every function.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("QUARRY_BUCKET", self.bucket.clone()),
            ("QUARRY_QUEUE_URL", self.queue_url.clone()),
            ("QUARRY_TABLE", self.table.clone()),
            ("QUARRY_VECTOR_BUCKET", self.vector_bucket.clone()),
            ("QUARRY_VECTOR_INDEX", self.vector_index.clone()),
        ];
        env.extend(self.events_topic.clone().map(|t| ("QUARRY_EVENTS_TOPIC", t)));
        env.extend(self.index_bucket.clone().map(|b| ("QUARRY_INDEX_BUCKET", b)));
        env.extend(self.keyword_queue_url.clone().map(|q| ("QUARRY_KEYWORD_QUEUE_URL", q)));
        env
    }
}

fn optional(value: &Option<String>) -> Option<String> {
    value.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned)
}

#[derive(Debug, thiserror::Error)]
#[error("missing settings: {}", names.join(", "))]
pub struct MissingSettings {
    pub names: Vec<&'static str>,
}

/// The SDK clients, built once per cold start from one shared configuration.
#[derive(Debug, Clone)]
pub struct Clients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub s3vectors: aws_sdk_s3vectors::Client,
    pub sesv2: aws_sdk_sesv2::Client,
    pub sns: aws_sdk_sns::Client,
    /// The one endpoint every client uses, where one is set (an emulator).
    pub endpoint: Option<String>,
}

impl Clients {
    /// Loads the environment's AWS configuration (region, credentials). `endpoint` points every
    /// client at one emulator (the tests' moto server); S3 then needs path-style addressing.
    pub async fn load(endpoint: Option<&str>) -> Clients {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        Clients::new(&loader.load().await, endpoint.is_some())
    }

    /// A function's cold start: the resources its configuration names (every missing one named in
    /// the error) and the clients, pointed at `aws.endpoint_url` when one is set.
    pub async fn for_config(aws: &quarry_core::config::Aws) -> Result<(Resources, Clients), MissingSettings> {
        let resources = Resources::from_config(aws)?;
        Ok((resources, Clients::load(aws.endpoint_url.as_deref()).await))
    }

    /// Clients for an emulator at `endpoint` (the tests' moto server): fixed test credentials, one
    /// region, path-style S3.
    pub async fn emulator(endpoint: &str) -> Clients {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "emulator"))
            .load()
            .await;
        Clients::new(&config, true)
    }

    pub fn new(config: &aws_config::SdkConfig, path_style: bool) -> Clients {
        let s3 = aws_sdk_s3::config::Builder::from(config).force_path_style(path_style).build();
        // PutVectors is throttled per index; the standard retry backs off (exponential, jittered)
        // on 429 and 5xx, a few more times than the default 3 before the port sees an error.
        let retry = aws_config::retry::RetryConfig::standard().with_max_attempts(6);
        let s3vectors = aws_sdk_s3vectors::config::Builder::from(config).retry_config(retry).build();
        Clients {
            s3: aws_sdk_s3::Client::from_conf(s3),
            sqs: aws_sdk_sqs::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            s3vectors: aws_sdk_s3vectors::Client::from_conf(s3vectors),
            sesv2: aws_sdk_sesv2::Client::new(config),
            sns: aws_sdk_sns::Client::new(config),
            endpoint: config.endpoint_url().map(str::to_owned),
        }
    }
}

/// Every AWS adapter a function may need, built once per cold start: each function's `main` takes
/// the ones it uses.
#[derive(Debug, Clone)]
pub struct Adapters {
    pub resources: Resources,
    pub clients: Clients,
    pub source: S3Source,
    pub queue: SqsQueue,
    pub state: DynamoState,
    pub vectors: S3VectorStore,
    pub events: SnsEvents,
    /// The published keyword index's files, where a bucket is configured.
    pub keyword_files: Option<S3IndexFiles>,
    /// Where chunk changes go for the keyword indexer, where a queue is configured.
    pub keyword_feed: Option<SqsChanges>,
}

impl Adapters {
    /// The adapters over `clients` for `resources`.
    pub fn new(resources: Resources, clients: Clients) -> Adapters {
        Adapters {
            source: S3Source::new(clients.s3.clone(), &resources.bucket).with_endpoint(clients.endpoint.clone()),
            queue: SqsQueue::new(clients.sqs.clone(), &resources.queue_url),
            state: DynamoState::new(clients.dynamodb.clone(), &resources.table),
            vectors: S3VectorStore::new(clients.s3vectors.clone(), &resources.vector_bucket, &resources.vector_index),
            events: SnsEvents::new(clients.sns.clone(), resources.events_topic.clone()),
            keyword_files: resources.index_bucket.as_ref().map(|b| S3IndexFiles::new(clients.s3.clone(), b)),
            keyword_feed: resources.keyword_queue_url.as_ref().map(|q| SqsChanges::new(clients.sqs.clone(), q)),
            resources,
            clients,
        }
    }

    /// A function's cold start ([`Clients::for_config`]), then the adapters.
    pub async fn for_config(aws: &quarry_core::config::Aws) -> Result<Adapters, MissingSettings> {
        let (resources, clients) = Clients::for_config(aws).await?;
        Ok(Adapters::new(resources, clients))
    }
}

/// Error codes AWS services use for "slow down", across S3, SQS, DynamoDB and S3 Vectors.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "RequestThrottled",
    "RequestThrottledException",
];

/// Maps an SDK error to the port's taxonomy, keeping it as the source.
pub(crate) fn port_error<E>(operation: &'static str, err: SdkError<E, Response>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().map(str::to_owned);
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            PortError::Transient { operation, source: Box::new(err) }
        }
        _ if status == Some(429) || code.as_deref().is_some_and(|c| THROTTLING.contains(&c)) => {
            PortError::Throttled { operation, retry_after: None, source: Some(Box::new(err)) }
        }
        _ if status.is_some_and(|s| s >= 500) => PortError::Transient { operation, source: Box::new(err) },
        _ => PortError::Permanent { operation, source: Box::new(err) },
    }
}

/// A request the SDK refused to build (a required field missing): a bug, never retried.
pub(crate) fn build_error(
    operation: &'static str,
) -> impl FnOnce(aws_smithy_types::error::operation::BuildError) -> PortError {
    move |e| PortError::Permanent { operation, source: Box::new(e) }
}

/// JSON values to Smithy documents (S3 Vectors metadata and filters) and back.
pub(crate) mod document {
    use aws_smithy_types::{Document, Number};
    use serde_json::Value;

    pub fn from_json(v: &Value) -> Document {
        match v {
            Value::Null => Document::Null,
            Value::Bool(b) => Document::Bool(*b),
            Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
                Number::PosInt(u)
            } else if let Some(i) = n.as_i64() {
                Number::NegInt(i)
            } else {
                Number::Float(n.as_f64().unwrap_or(0.0))
            }),
            Value::String(s) => Document::String(s.clone()),
            Value::Array(items) => Document::Array(items.iter().map(from_json).collect()),
            Value::Object(map) => Document::Object(map.iter().map(|(k, v)| (k.clone(), from_json(v))).collect()),
        }
    }

    pub fn to_json(d: &Document) -> Value {
        match d {
            Document::Null => Value::Null,
            Document::Bool(b) => Value::Bool(*b),
            Document::Number(Number::PosInt(u)) => Value::from(*u),
            Document::Number(Number::NegInt(i)) => Value::from(*i),
            Document::Number(Number::Float(f)) => {
                // Integers come back from JSON wire formats as floats; keep them integers.
                if f.fract() == 0.0 && f.abs() < 9.0e15 { Value::from(*f as i64) } else { Value::from(*f) }
            }
            Document::String(s) => Value::String(s.clone()),
            Document::Array(items) => Value::Array(items.iter().map(to_json).collect()),
            Document::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_name_every_missing_setting() {
        let aws =
            quarry_core::config::Aws { table: Some("quarry".into()), bucket: Some(" ".into()), ..Default::default() };
        let err = Resources::from_config(&aws).expect_err("four are missing");
        assert_eq!(err.names, ["QUARRY_BUCKET", "QUARRY_QUEUE_URL", "QUARRY_VECTOR_BUCKET", "QUARRY_VECTOR_INDEX"]);
    }

    #[test]
    fn documents_round_trip_json() {
        let v = serde_json::json!({"a": [1, -2, 2.5, "x", true, null], "b": {"c": "d"}});
        assert_eq!(document::to_json(&document::from_json(&v)), v);
    }
}
