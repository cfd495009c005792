//! The search Lambda's backend: the ports of `quarry_api::Backend` on AWS. Semantic search is S3
//! Vectors'; keyword and hybrid search use the published keyword index where one is configured
//! (`QUARRY_INDEX_BUCKET`; docs/AWS.md), and are refused otherwise; documents and batches are read from DynamoDB; a batch over a
//! prefix or key list is validated against S3, recorded, and sent to the jobs queue for the
//! embed-workers, the same jobs an upload makes.

use std::path::PathBuf;
use std::sync::Arc;

use quarry_api::{Backend, NoFields, NoKeywords, NoUploads};
use quarry_aws::{DynamoState, S3Source, S3VectorStore, SnsEvents, SqsQueue};
use quarry_core::config::Limits;
use quarry_core::ports::{
    BatchRequest, BatchStarted, BatchStarter, BatchTracker, BlobSource, CheckpointStore, DocumentReader, Embedder,
    Estimate, EventPublisher, JobQueue, ModelInfo, UploadGranter, VectorSearcher, VectorWriter,
};
use quarry_core::{BatchId, DocumentId, DocumentKey, PortError};
use quarry_embed::{EmbedError, EmbedOptions, LocalEmbedder};
use quarry_pipeline::Planner;

/// The local model, loaded on a thread of its own while the function finishes its cold start and
/// asks for its first request: init stays in milliseconds, and the first query waits only for
/// what is left of the load.
#[derive(Debug, Clone)]
pub struct BackgroundEmbedder {
    info: ModelInfo,
    loaded: tokio::sync::watch::Receiver<Option<Loaded>>,
}

type Loaded = Result<Arc<LocalEmbedder>, Arc<EmbedError>>;

impl BackgroundEmbedder {
    pub fn load(dir: PathBuf, options: EmbedOptions) -> Self {
        let (tx, loaded) = tokio::sync::watch::channel(None);
        std::thread::spawn(move || {
            let result = LocalEmbedder::load(&dir, options).map(Arc::new).map_err(Arc::new);
            if let Err(e) = &result {
                tracing::error!(error = %quarry_core::error::chain(e.as_ref()), "the embedding model did not load");
            }
            // No receiver left means the function is shutting down: nothing to tell.
            let _ = tx.send(Some(result));
        });
        BackgroundEmbedder { info: quarry_embed::model_info(options.precision), loaded }
    }
}

impl Embedder for BackgroundEmbedder {
    fn model(&self) -> &ModelInfo {
        &self.info
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        let mut rx = self.loaded.clone();
        let loaded: Option<Loaded> = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|e| PortError::Permanent { operation: "embed.load_model", source: Box::new(e) })?
            .clone();
        match loaded {
            Some(Ok(model)) => model.embed(texts).await,
            Some(Err(e)) => Err(PortError::Permanent { operation: "embed.load_model", source: Box::new(e) }),
            None => Err(PortError::Permanent { operation: "embed.load_model", source: "no model was loaded".into() }),
        }
    }
}

/// Starts batches: planned up front ([`quarry_pipeline::Planner`]: listed, screened, recorded),
/// then one job per document on the queue, each carrying the batch id so the worker records its
/// outcome. Generic over the ports (S3, DynamoDB, S3 Vectors and SQS by default), so that tests
/// drive it on the testkit's in-memory fakes.
#[derive(Debug)]
pub struct AwsStarter<B = S3Source, S = DynamoState, V = S3VectorStore, Q = SqsQueue, P = SnsEvents> {
    pub source: B,
    pub state: S,
    pub vectors: V,
    pub queue: Q,
    /// Where a batch that ends as it starts (every document refused) says so.
    pub events: P,
    pub limits: Limits,
    /// The OpenAI vector store, where it holds the documents (`QUARRY_STORE=openai`): searched
    /// instead of `vectors`, and a refused or deleted document's file leaves it.
    pub hosted: Option<Arc<dyn quarry_core::hosted::HostedStore>>,
}

impl<B, S, V, Q, P> BatchStarter for AwsStarter<B, S, V, Q, P>
where
    B: BlobSource,
    S: CheckpointStore + BatchTracker,
    V: VectorWriter,
    Q: JobQueue,
    P: EventPublisher,
{
    async fn start(&self, request: &BatchRequest) -> Result<BatchStarted, PortError> {
        let planner = Planner {
            source: &self.source,
            tracker: &self.state,
            state: &self.state,
            writer: &self.vectors,
            events: &self.events,
            limits: &self.limits,
            hosted: self.hosted.as_deref(),
        };
        let plan = planner.plan(request, &[]).await?;
        self.queue.enqueue(&plan.jobs).await?;
        tracing::info!(batch = %plan.started.batch, documents = plan.started.documents, "batch started");
        Ok(plan.started)
    }

    /// The search Lambda carries no extractors (they would double its bootstrap and its cold
    /// start): what a batch costs is known only once the embed-workers read its documents.
    async fn estimate(&self, _request: &BatchRequest) -> Result<Option<Estimate>, PortError> {
        Ok(None)
    }

    async fn resume(&self, batch: &BatchId, keys: &[DocumentKey]) -> Result<u64, PortError> {
        let jobs = quarry_pipeline::index_jobs(keys.iter().map(|k| (k, None)), Some(batch));
        self.queue.enqueue(&jobs).await?;
        tracing::info!(batch = %batch, documents = jobs.len(), "batch resumed");
        Ok(jobs.len() as u64)
    }
}

/// A keyword index whose freshness readiness reports: the published one's manifest.
pub trait Freshness: Send + Sync {
    /// The generation, age, chunks, segments and size of what is searched now.
    fn freshness(&self) -> impl std::future::Future<Output = Result<serde_json::Value, PortError>> + Send;
}

impl<F: quarry_core::keywords::IndexFiles> Freshness for quarry_keyword::KeywordReplica<F> {
    async fn freshness(&self) -> Result<serde_json::Value, PortError> {
        let m = self.current().await?;
        Ok(serde_json::json!({
            "generation": m.generation,
            "age_ms": (m.generation > 0).then(|| m.age_ms()),
            "chunks": m.chunks,
            "segments": m.segments,
            "bytes": m.bytes,
        }))
    }
}

impl Freshness for NoKeywords {
    async fn freshness(&self) -> Result<serde_json::Value, PortError> {
        match *self {}
    }
}

/// Everything the API needs on AWS: the embedder, the vector store (searched, and written to delete
/// a document), the state table (documents, batches) and the batch starter.
#[derive(Debug)]
pub struct AwsBackend<E, V = S3VectorStore, S = DynamoState, B = S3Source, Q = SqsQueue, P = SnsEvents, K = NoKeywords>
{
    pub embedder: E,
    pub vectors: V,
    pub state: S,
    pub starter: AwsStarter<B, S, V, Q, P>,
    pub bucket: String,
    /// The published keyword index, where one is configured: keyword and hybrid search.
    pub keywords: Option<K>,
}

impl<E, V, S, B, Q, P, K> Backend for AwsBackend<E, V, S, B, Q, P, K>
where
    K: quarry_core::ports::KeywordSearcher + Freshness + 'static,
    E: Embedder + 'static,
    V: VectorSearcher + VectorWriter + 'static,
    S: CheckpointStore
        + BatchTracker
        + DocumentReader
        + quarry_core::spend::SpendLedger
        + quarry_core::cache::CacheAdmin
        + 'static,
    B: BlobSource + UploadGranter + 'static,
    Q: JobQueue + 'static,
    P: EventPublisher + 'static,
{
    type Embedder = E;
    type Searcher = V;
    type Documents = S;
    type Writer = V;
    type State = S;
    type Batches = S;
    type Starter = AwsStarter<B, S, V, Q, P>;
    type Keywords = K;
    type Fields = NoFields;
    type Uploads = B;
    type Inbox = NoUploads;
    type Cache = S;

    fn embedder(&self) -> &E {
        &self.embedder
    }
    fn keywords(&self) -> Option<&K> {
        self.keywords.as_ref()
    }
    fn searcher(&self) -> &V {
        &self.vectors
    }
    fn fields(&self) -> Option<&NoFields> {
        None
    }
    fn documents(&self) -> &S {
        &self.state
    }
    fn writer(&self) -> &V {
        &self.vectors
    }
    fn state(&self) -> &S {
        &self.state
    }
    fn cache(&self) -> &S {
        &self.state
    }
    fn batches(&self) -> &S {
        &self.state
    }
    fn starter(&self) -> &AwsStarter<B, S, V, Q, P> {
        &self.starter
    }
    /// Presigned PUTs straight to the bucket: the bytes never pass through the function (whose
    /// request body API Gateway caps at 10 MB), and the bucket's event indexes them.
    fn uploads(&self) -> Option<&B> {
        Some(&self.starter.source)
    }
    fn inbox(&self) -> Option<&NoUploads> {
        None
    }
    fn file_limits(&self) -> &Limits {
        &self.starter.limits
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The state table (one consistent read), the vector index (a one-result query) and the
    /// embedder (one word: the local model must have loaded; OpenAI must answer).
    fn dependencies(&self) -> Vec<quarry_api::Dependency<'_>> {
        use quarry_api::Dependency;
        use quarry_core::ports::VectorQuery;
        let dimension = self.embedder.model().dimension;
        let hosted = self.hosted();
        vec![
            Dependency::required("state_store", async {
                self.state.document(&DocumentId::for_key(&DocumentKey::new(".quarry-readiness"))).await.map(|_| ())
            }),
            Dependency::required("vector_store", async move {
                if let Some(store) = hosted {
                    return store.usage_bytes().await.map(|_| ());
                }
                let mut vector = vec![0.0; dimension];
                if let Some(x) = vector.first_mut() {
                    *x = 1.0;
                }
                self.vectors.search(&VectorQuery { vector, top_k: 1, filter: None }).await.map(|_| ())
            }),
            Dependency::required("embedder", async { self.embedder.embed(&["ready".to_owned()]).await.map(|_| ()) }),
        ]
        .into_iter()
        // Optional: without it keyword search fails, semantic search still answers.
        .chain(self.keywords.as_ref().map(|k| Dependency::optional("keyword_index", k.freshness())))
        .collect()
    }

    fn started(&self) -> bool {
        true
    }

    fn hosted(&self) -> Option<&dyn quarry_core::hosted::HostedStore> {
        self.starter.hosted.as_deref()
    }
}

/// The cursor key: from `QUARRY_CURSOR_SECRET`, so that every instance of the function accepts
/// every other's cursors; without it, a random key per instance (cursors then work only while the
/// same instance answers, so the template always sets it).
pub fn cursor_key(secret: Option<&quarry_core::config::Secret>) -> Result<quarry_api::CursorKey, getrandom::Error> {
    if secret.is_none() {
        tracing::warn!("QUARRY_CURSOR_SECRET is not set: cursors are valid on this instance only");
    }
    quarry_api::CursorKey::from_config(secret)
}

/// `router` behind what API Gateway vouches for: each request carries its caller (for the audit
/// log) and the tenant it acts for ([`reach`]); a JWT whose tenant claim names no valid tenant is
/// refused with 403 before any route runs.
pub fn authorized(router: axum::Router, claim: &str) -> axum::Router {
    let claim: std::sync::Arc<str> = claim.into();
    router.layer(axum::middleware::from_fn(move |mut request: axum::extract::Request, next: axum::middleware::Next| {
        let claim = std::sync::Arc::clone(&claim);
        async move {
            use axum::response::IntoResponse as _;
            use lambda_http::RequestExt as _;
            let context = request.request_context_ref().cloned();
            if let Some(caller) = context.as_ref().and_then(caller) {
                request.extensions_mut().insert(caller);
            }
            match context.as_ref().map(|c| reach(c, &claim)) {
                Some(Ok(Some(reach))) => {
                    request.extensions_mut().insert(reach);
                }
                Some(Err(_)) => {
                    return quarry_api::ApiError::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "invalid_tenant",
                        "the token's tenant claim is not 1 to 64 letters, digits, - or _",
                    )
                    .into_response();
                }
                _ => {}
            }
            next.run(request).await
        }
    }))
}

/// Whose documents the caller reaches, from what API Gateway vouches for: an IAM principal (an
/// operator, or a service the deployment trusts) reaches every tenant; a JWT's caller reaches the
/// tenant its `claim` names ([`quarry_core::config::Server::tenant_claim`]), or the default tenant
/// when the token has none. `Err` holds a claim that cannot name a tenant: the request is refused.
/// `None` without an authorizer (a test's event, or a route API Gateway does not guard).
pub fn reach(
    context: &lambda_http::request::RequestContext,
    claim: &str,
) -> Result<Option<quarry_core::tenant::Reach>, String> {
    use quarry_core::tenant::{self, Reach};
    let lambda_http::request::RequestContext::ApiGatewayV2(ctx) = context else { return Ok(None) };
    let Some(authorizer) = ctx.authorizer.as_ref() else { return Ok(None) };
    if authorizer.iam.is_some() {
        return Ok(Some(Reach::All));
    }
    let Some(jwt) = authorizer.jwt.as_ref() else { return Ok(None) };
    match jwt.claims.get(claim) {
        None => Ok(Some(Reach::Tenant(tenant::DEFAULT.to_owned()))),
        Some(t) if tenant::valid_id(t) => Ok(Some(Reach::Tenant(t.clone()))),
        Some(t) => Err(t.clone()),
    }
}

/// Who API Gateway says is calling, for the audit log: the IAM principal's ARN (IAM auth) or the
/// JWT's `sub` claim (a JWT authorizer); nothing for an unauthenticated request.
pub fn caller(context: &lambda_http::request::RequestContext) -> Option<quarry_api::audit::Caller> {
    let lambda_http::request::RequestContext::ApiGatewayV2(ctx) = context else { return None };
    let authorizer = ctx.authorizer.as_ref()?;
    let iam = authorizer.iam.as_ref().and_then(|i| i.user_arn.clone().or_else(|| i.caller_id.clone()));
    let jwt = || authorizer.jwt.as_ref().and_then(|j| j.claims.get("sub")).map(|s| format!("jwt:{s}"));
    iam.or_else(jwt).map(quarry_api::audit::Caller)
}
