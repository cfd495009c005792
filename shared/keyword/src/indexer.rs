//! The single writer of the published keyword index: takes a batch of [`ChunkChange`]s, reads
//! each changed document's chunks from the vector store, and publishes them
//! ([`PublishedIndex::publish`]), starting over from the newer manifest when another writer
//! published first.

use quarry_core::PortError;
use quarry_core::keywords::{ChunkChange, ChunkReader, IndexFiles};
use quarry_core::metric;

use crate::published::{Manifest, PublishedIndex};

/// Publishes attempted before a batch is handed back for redelivery: reserved concurrency 1 makes
/// a lost race rare, and each attempt starts from the manifest that won.
const ATTEMPTS: usize = 4;
/// Documents whose chunks are read at once.
const READERS: usize = 16;

/// The writer, over the vector store it reads chunks from and the files it publishes to. Its copy
/// of the index stays in memory between batches, so a warm writer fetches nothing.
#[derive(Debug)]
pub struct KeywordIndexer<R, F> {
    pub reader: R,
    pub files: F,
    index: tokio::sync::Mutex<PublishedIndex>,
}

impl<R: ChunkReader, F: IndexFiles> KeywordIndexer<R, F> {
    pub fn new(reader: R, files: F) -> Self {
        KeywordIndexer { reader, files, index: tokio::sync::Mutex::new(PublishedIndex::default()) }
    }

    async fn read(&self, change: &ChunkChange) -> Result<(ChunkChange, Vec<quarry_core::ports::VectorHit>), PortError> {
        Ok((change.clone(), self.reader.chunks(&change.document, change.chunks).await?))
    }

    /// Applies `changes` and publishes them in one manifest. A document named twice is read once,
    /// as the vector store holds it now (its largest count bounds the read: a later, shorter
    /// version simply returns fewer chunks).
    pub async fn apply(&self, changes: &[ChunkChange]) -> Result<Manifest, PortError> {
        let mut merged: Vec<ChunkChange> = Vec::with_capacity(changes.len());
        for c in changes {
            match merged.iter_mut().find(|m| m.document == c.document) {
                Some(m) => m.chunks = m.chunks.max(c.chunks),
                None => merged.push(c.clone()),
            }
        }
        let mut index = self.index.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Read at each attempt: what the vector store holds now is what the index must say.
            // Several documents at once: one at a time, a batch of 1,000 took 4.2 s on moto's
            // GetVectors alone (issue 16's benchmark).
            let mut read = Vec::with_capacity(merged.len());
            for group in merged.chunks(READERS) {
                read.extend(futures::future::try_join_all(group.iter().map(|c| self.read(c))).await?);
            }
            match index.publish(&self.files, &read).await {
                Ok(manifest) => {
                    metrics::gauge!(metric::KEYWORD_INDEX_SEGMENTS).set(manifest.segments as f64);
                    metrics::gauge!(metric::KEYWORD_INDEX_BYTES).set(manifest.bytes as f64);
                    tracing::info!(
                        generation = manifest.generation,
                        documents = merged.len(),
                        chunks = manifest.chunks,
                        segments = manifest.segments,
                        "keyword index published"
                    );
                    return Ok(manifest.clone());
                }
                Err(crate::PublishError::Port(PortError::Conflict { .. })) if attempt < ATTEMPTS => {
                    metrics::counter!(metric::KEYWORD_PUBLISH_CONFLICTS).increment(1);
                    tracing::warn!(attempt, "another writer published first; starting over from its manifest");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
