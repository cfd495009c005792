//! A vector writer that tells the published keyword index's writer what changed
//! ([`quarry_core::keywords`]). Every lifecycle path (index, forget, reject) ends its writes with
//! `delete_from(document, keep)` where `keep` is the document's new chunk count, before its
//! checkpoint: that call is where the change is sent, so a crash before the send redoes both.

use quarry_core::DocumentId;
use quarry_core::PortError;
use quarry_core::keywords::{ChangeFeed, ChunkChange};
use quarry_core::ports::{VectorHit, VectorQuery, VectorRecord, VectorSearcher, VectorWriter};

/// `writer`, with each document's change sent to `feed` (none configured: `feed` is `None`).
#[derive(Debug, Clone)]
pub struct Feeding<W, F> {
    pub writer: W,
    pub feed: Option<F>,
}

impl<W: VectorWriter, F: ChangeFeed> VectorWriter for Feeding<W, F> {
    async fn upsert(&self, records: &[VectorRecord]) -> Result<(), PortError> {
        self.writer.upsert(records).await
    }

    async fn delete_from(&self, document: &DocumentId, keep: u32) -> Result<u64, PortError> {
        let removed = self.writer.delete_from(document, keep).await?;
        if let Some(feed) = &self.feed {
            feed.changed(&ChunkChange { document: document.clone(), chunks: keep }).await?;
        }
        Ok(removed)
    }
}

/// Searching passes through: a role that both writes and searches (the search function) holds one
/// store.
impl<W: VectorSearcher, F: Send + Sync> VectorSearcher for Feeding<W, F> {
    async fn search(&self, query: &VectorQuery) -> Result<Vec<VectorHit>, PortError> {
        self.writer.search(query).await
    }
}
