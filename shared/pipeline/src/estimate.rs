//! What indexing would send and cost, worked out before anything is spent (`quarry ingest
//! --estimate`): every document is read, screened and prepared exactly as the indexer would
//! (extraction, redaction, chunking in the embedder's tokens), and then, instead of embedding,
//! each chunk is looked up where the indexer would find it: a document whose content is already
//! indexed sends nothing, a chunk whose text is in the embedding cache (or earlier in this run)
//! sends nothing, and the rest are priced by the embedder's own count. Nothing is written.

use std::collections::HashSet;

use quarry_core::cache::cache_key_text;
use quarry_core::ports::{
    BatchRequest, BlobSource, DocumentPreparer, DocumentReader, EmbeddingCache, Estimate, ModelInfo, Usage,
};
use quarry_core::{Classify, ContentHash, DocumentId, DocumentKey, DocumentStatus, PortError};

/// Reads and prices documents without writing anything. `reader` and `cache` are the index's, if
/// there is one yet.
#[allow(missing_debug_implementations)] // it holds a closure; nothing to show
pub struct Estimator<'a, B, R, C, P> {
    pub source: &'a B,
    pub reader: Option<&'a R>,
    pub cache: Option<&'a C>,
    pub preparer: &'a P,
    pub model: &'a ModelInfo,
    /// The embedder's price of a call (its `Embedder::usage`).
    pub price: &'a (dyn Fn(&[String]) -> Usage + Send + Sync),
    /// A store that embeds for itself: then nothing is embedded or billed per token (OpenAI bills
    /// the store by size), and the estimate names the store.
    pub hosted: Option<&'a dyn quarry_core::hosted::HostedStore>,
}

impl<B: BlobSource, R: DocumentReader, C: EmbeddingCache, P: DocumentPreparer> Estimator<'_, B, R, C, P> {
    /// What a batch `request` would cost: its documents resolved as the planner resolves them
    /// ([`crate::batch::resolve`]), the keys that name nothing counted as failing.
    pub async fn estimate_request(&self, request: &BatchRequest) -> Result<Estimate, PortError> {
        let (items, missing) = crate::batch::resolve(self.source, request).await?;
        let keys: Vec<DocumentKey> = items.into_keys().collect();
        let mut total = self.estimate(&keys).await?;
        total.documents += missing.len() as u64;
        total.failing += missing.len() as u64;
        total.missing = missing;
        Ok(total)
    }

    /// Adds up `keys`, in order: a paragraph shared by two documents is priced once, as the
    /// indexer embeds it once.
    pub async fn estimate(&self, keys: &[DocumentKey]) -> Result<Estimate, PortError> {
        let model = self.hosted.map_or_else(|| self.model.id.clone(), |h| h.model().to_owned());
        let mut total = Estimate { model, ..Estimate::default() };
        let mut seen: HashSet<ContentHash> = HashSet::new();
        for key in keys {
            total.documents += 1;
            let blob = match self.source.get(key).await {
                Ok(b) => b,
                Err(e) if e.class() == quarry_core::ErrorClass::BadInput => {
                    total.failing += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let hash = ContentHash::of(&blob.bytes);
            if let Some(reader) = self.reader {
                let record = reader.document(&DocumentId::for_key(key)).await?;
                if record.is_some_and(|r| {
                    r.content_hash.as_ref() == Some(&hash) && matches!(r.status, DocumentStatus::Indexed { .. })
                }) {
                    total.unchanged += 1;
                    continue;
                }
            }
            let info = &blob.info;
            let Ok(prepared) = self
                .preparer
                .screen(info)
                .and_then(|()| self.preparer.prepare_document(key, info.content_type.as_deref(), &blob.bytes))
            else {
                total.failing += 1;
                continue;
            };
            if self.hosted.is_some() {
                total.chunks += prepared.chunks.len() as u64;
                continue;
            }
            let hashes: Vec<ContentHash> = prepared.chunks.iter().map(|c| cache_key_text(&c.text)).collect();
            let cached = match self.cache {
                Some(cache) => cache.peek(self.model, &hashes).await?,
                None => Vec::new(),
            };
            let mut texts = Vec::new();
            for (i, (chunk, h)) in prepared.chunks.iter().zip(&hashes).enumerate() {
                total.chunks += 1;
                if cached.get(i).is_some_and(Option::is_some) || !seen.insert(h.clone()) {
                    total.cached += 1;
                } else {
                    texts.push(chunk.text.clone());
                }
            }
            total.usage.add((self.price)(&texts));
        }
        Ok(total)
    }
}
