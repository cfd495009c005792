//! The search Lambda's backend: the ports of `quarry_api::Backend` on AWS. Search is semantic
//! (S3 Vectors has no full-text index); documents and batches are read from DynamoDB; a batch over a
//! prefix or key list is validated against S3, recorded, and sent to the jobs queue for the
//! embed-workers, the same jobs an upload makes.

use quarry_api::{Backend, NoKeywords};
use quarry_aws::{DynamoState, S3Source, S3VectorStore, SqsQueue};
use quarry_core::ports::{
    BatchRequest, BatchStarted, BatchStarter, DocumentReader, Embedder, IndexJob, JobAction, JobQueue,
};
use quarry_core::{DocumentId, DocumentKey, PortError};

/// Starts batches: validated up front ([`quarry_pipeline::plan_batch`]), then one job per
/// document on the queue, each carrying the batch id so the worker records its outcome.
#[derive(Debug)]
pub struct AwsStarter {
    pub source: S3Source,
    pub state: DynamoState,
    pub queue: SqsQueue,
}

impl BatchStarter for AwsStarter {
    async fn start(&self, request: &BatchRequest) -> Result<BatchStarted, PortError> {
        let (started, work) = quarry_pipeline::plan_batch(&self.source, &self.state, request).await?;
        let jobs: Vec<IndexJob> = work
            .into_iter()
            .map(|(key, _)| IndexJob {
                action: JobAction::Index,
                key,
                version: None,
                batch: Some(started.batch.clone()),
            })
            .collect();
        self.queue.enqueue(&jobs).await?;
        tracing::info!(batch = %started.batch, documents = started.documents, "batch started");
        Ok(started)
    }
}

/// Everything the API needs on AWS.
#[derive(Debug)]
pub struct AwsBackend<E> {
    pub embedder: E,
    pub vectors: S3VectorStore,
    pub state: DynamoState,
    pub starter: AwsStarter,
    pub bucket: String,
}

impl<E: Embedder + 'static> Backend for AwsBackend<E> {
    type Embedder = E;
    type Searcher = S3VectorStore;
    type Documents = DynamoState;
    type Writer = S3VectorStore;
    type State = DynamoState;
    type Batches = DynamoState;
    type Starter = AwsStarter;
    type Keywords = NoKeywords;

    fn embedder(&self) -> &E {
        &self.embedder
    }
    fn keywords(&self) -> Option<&NoKeywords> {
        None
    }
    fn searcher(&self) -> &S3VectorStore {
        &self.vectors
    }
    fn documents(&self) -> &DynamoState {
        &self.state
    }
    fn writer(&self) -> &S3VectorStore {
        &self.vectors
    }
    fn state(&self) -> &DynamoState {
        &self.state
    }
    fn batches(&self) -> &DynamoState {
        &self.state
    }
    fn starter(&self) -> &AwsStarter {
        &self.starter
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// One consistent read of the state table: it answers when DynamoDB and the credentials work.
    async fn ready(&self) -> Result<(), PortError> {
        self.state.document(&DocumentId::for_key(&DocumentKey::new(".quarry-readiness"))).await.map(|_| ())
    }

    fn started(&self) -> bool {
        true
    }
}

/// The cursor key: from `QUARRY_CURSOR_SECRET`, so that every instance of the function accepts
/// every other's cursors; without it, a random key per instance (cursors then work only while the
/// same instance answers, so the template always sets it).
pub fn cursor_key(secret: Option<&quarry_core::config::Secret>) -> Result<quarry_api::CursorKey, getrandom::Error> {
    use sha2::Digest;
    match secret {
        Some(s) => Ok(quarry_api::CursorKey::from_bytes(sha2::Sha256::digest(s.expose().as_bytes()).into())),
        None => {
            tracing::warn!("QUARRY_CURSOR_SECRET is not set: cursors are valid on this instance only");
            quarry_api::CursorKey::random()
        }
    }
}
