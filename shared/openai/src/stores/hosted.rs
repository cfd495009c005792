//! OpenAI's vector stores behind Quarry's [`HostedStore`] port: a document's redacted text is one
//! Markdown file with the document's metadata as attributes, attached and waited for; a search is
//! the store's search endpoint, its hits mapped onto Quarry's.

use quarry_core::config::{Config, StoreBackend, StoreSettings};
use quarry_core::hosted::{BoxFuture, HostedDocument, HostedHit, HostedQuery, HostedStore, Stored};
use quarry_core::meta::ChunkMeta;
use quarry_core::metric;
use quarry_core::ports::VectorHit;
use quarry_core::{CharSpan, ChunkId, ContentHash, DocumentId, Failure, PortError};
use tokio::sync::OnceCell;

use super::filter::{self, DOCUMENT_ID, NUMERIC};
use super::{FileId, MAX_RESULTS, StoreHit, StoreId, StoreOptions, VectorStores};
use crate::OpenAiError;

/// One named OpenAI vector store, found or created on first use (not at start-up, so that a
/// process that never indexes or searches makes no call).
#[derive(Debug)]
pub struct OpenAiStore {
    client: VectorStores,
    name: String,
    model: String,
    store: OnceCell<StoreId>,
    /// Its price, for the storage gauges.
    settings: StoreSettings,
}

impl OpenAiStore {
    /// The identity a store of these settings records in checkpoints: what tells an index built on
    /// it from one built on another store or by an embedder.
    pub fn model_id(settings: &StoreSettings) -> String {
        format!("openai-vector-store:{}", settings.openai_name)
    }

    pub fn new(client: VectorStores, settings: &StoreSettings) -> Self {
        let name = settings.openai_name.clone();
        OpenAiStore {
            client,
            model: Self::model_id(settings),
            name,
            store: OnceCell::new(),
            settings: settings.clone(),
        }
    }

    /// The store the configuration selects (`store.backend = "openai"`), with the embedder's key
    /// and base URL; `None` for the deployment's own store.
    pub fn from_config(config: &Config) -> Result<Option<Self>, OpenAiError> {
        if config.store.backend != StoreBackend::Openai {
            return Ok(None);
        }
        let key = config.embedder.openai_api_key.as_ref().ok_or(OpenAiError::NoKey)?;
        let (chunk_tokens, overlap_tokens) = (config.chunking.openai_max_tokens, config.chunking.openai_overlap_tokens);
        let options = StoreOptions {
            api_base: config.embedder.openai_base_url.clone(),
            retries: config.embedder.openai_max_retries,
            attach_timeout: std::time::Duration::from_secs(config.store.openai_attach_timeout_s),
            chunk_tokens,
            overlap_tokens,
            ..StoreOptions::default()
        };
        Ok(Some(OpenAiStore::new(VectorStores::new(key, options)?, &config.store)))
    }

    async fn id(&self) -> Result<&StoreId, PortError> {
        self.store.get_or_try_init(|| self.client.find_or_create(&self.name)).await
    }

    async fn put_document(&self, doc: HostedDocument<'_>) -> Result<Stored, PortError> {
        let store = self.id().await?;
        let (attributes, left_out) = filter::attributes(doc.document.as_str(), &doc.meta.to_metadata());
        if !left_out.is_empty() {
            tracing::info!(fields = ?left_out, "metadata past OpenAI's attribute limits is not filterable there");
        }
        let file = self.client.upload(&format!("{}.md", doc.document.as_str()), doc.text).await?;
        let attached = match self.client.attach(store, &[(file.clone(), attributes)]).await {
            Ok(a) => a,
            Err(e) => {
                // Nothing should stay behind that no checkpoint points at (search would not show
                // it, but it would be stored and billed); the attach's error is the one to report.
                self.discard(&file).await;
                return Err(e);
            }
        };
        if attached.completed.contains(&file) {
            self.measure(store).await;
            return Ok(Stored::Attached { handle: file.0 });
        }
        self.discard(&file).await;
        let (code, message) = attached
            .failed
            .into_iter()
            .find(|(f, _, _)| *f == file)
            .map(|(_, code, message)| (code, message))
            .unwrap_or_else(|| ("cancelled".into(), "the file batch ended without the file".into()));
        match code.as_str() {
            // The file itself: OpenAI cannot parse it, and never will.
            "unsupported_file" | "invalid_file" => Ok(Stored::Refused(Failure {
                code: "hosted_store_refused".into(),
                message: format!("OpenAI's vector store refused the document ({code}): {message}"),
                retryable: false,
            })),
            // OpenAI's own trouble (server_error, a rate limit, a cancelled batch, a code not known
            // yet): the job comes back and uploads again.
            _ => Err(PortError::Transient {
                operation: "openai.vector_stores.attach",
                source: Box::new(OpenAiError::Refused { code, message }),
            }),
        }
    }

    /// Deletes a file that will not be checkpointed; a failure is logged, not returned, so that
    /// the error that made the file useless is the one reported.
    async fn discard(&self, file: &FileId) {
        if let Err(e) = self.client.delete_file(file).await {
            tracing::warn!(file = file.0, error = %quarry_core::error::chain(&e), "a file no checkpoint names was left in OpenAI");
        }
    }

    /// The storage gauges, from the store's size as OpenAI bills it. A failed look changes
    /// nothing: the next document stored looks again.
    async fn measure(&self, store: &StoreId) {
        match self.client.usage_bytes(store).await {
            Ok(bytes) => {
                metrics::gauge!(metric::HOSTED_STORE_BYTES).set(bytes as f64);
                metrics::gauge!(metric::HOSTED_STORE_DAILY_COST).set(self.settings.nanodollars_per_day(bytes) as f64);
            }
            Err(e) => tracing::debug!(error = %quarry_core::error::chain(&e), "cannot read the vector store's size"),
        }
    }

    async fn search_store(&self, query: &HostedQuery) -> Result<Vec<HostedHit>, PortError> {
        let filters = match &query.filter {
            Some(f) => Some(
                filter::translate(f)
                    .map_err(|e| PortError::InvalidInput { operation: "search", reason: e.to_string() })?,
            ),
            None => None,
        };
        let store = self.id().await?;
        let hits = self.client.search(store, &query.text, filters.as_ref(), query.top_k.min(MAX_RESULTS)).await?;
        Ok(hits.into_iter().filter_map(hit).take(query.top_k).collect())
    }
}

/// A store hit as Quarry's: the document from its attributes, its metadata read back without the
/// numeric twins. OpenAI's chunks have no ordinal or offsets: the chunk id's number is a digest
/// of the chunk's text (stable across searches), and the span is empty. A file Quarry did not
/// write (no document id or key) is skipped.
fn hit(h: StoreHit) -> Option<HostedHit> {
    let document = DocumentId::parse(h.attributes.get(DOCUMENT_ID)?.as_str()?)?;
    let metadata: quarry_core::meta::Metadata = h
        .attributes
        .iter()
        .filter(|(k, _)| k.as_str() != DOCUMENT_ID && !k.ends_with(NUMERIC))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let meta = match ChunkMeta::from_metadata(&metadata) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(file = h.file.0, error = %e, "a file in the vector store without Quarry's metadata");
            return None;
        }
    };
    let digest = ContentHash::of(h.text.as_bytes());
    let ordinal = u32::from_str_radix(&digest.as_str()[..8], 16).unwrap_or(0) % 1_000_000;
    let hit = VectorHit {
        id: ChunkId::new(&document, ordinal),
        document,
        score: h.score,
        text: h.text,
        pages: None,
        span: CharSpan { start: 0, end: 0 },
        meta,
    };
    Some(HostedHit { handle: h.file.0, hit })
}

impl HostedStore for OpenAiStore {
    fn model(&self) -> &str {
        &self.model
    }

    fn max_results(&self) -> usize {
        MAX_RESULTS
    }

    fn put<'a>(&'a self, doc: HostedDocument<'a>) -> BoxFuture<'a, Result<Stored, PortError>> {
        Box::pin(self.put_document(doc))
    }

    fn remove<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Result<(), PortError>> {
        Box::pin(async move {
            self.client.delete_file(&FileId(handle.to_owned())).await?;
            let store = self.id().await?;
            self.measure(store).await;
            Ok(())
        })
    }

    fn search<'a>(&'a self, query: &'a HostedQuery) -> BoxFuture<'a, Result<Vec<HostedHit>, PortError>> {
        Box::pin(self.search_store(query))
    }

    fn usage_bytes(&self) -> BoxFuture<'_, Result<u64, PortError>> {
        Box::pin(async move {
            let store = self.id().await?;
            self.client.usage_bytes(store).await
        })
    }
}
