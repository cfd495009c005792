//! The ports of the keyword index published on object storage (the AWS deployment; the embedded
//! default keeps its index beside its database and needs none of them).
//!
//! The design is Quickwit's: one writer builds immutable segments, uploads them, then publishes a
//! manifest naming them with a conditional write; searchers load what a manifest names and poll
//! it for a newer one. A document's change reaches the writer as a [`ChunkChange`] (its id and how
//! many chunks it now has), never as its text: the writer reads the chunks from the vector store,
//! so whatever order changes arrive in, what it indexes is what the vector store holds now.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::domain::DocumentId;
use crate::error::PortError;
use crate::ports::VectorHit;

/// A document's chunks changed: it now has `chunks` of them (0: it is gone). Idempotent: applying
/// it twice, or after a later change, leaves the index as the vector store is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkChange {
    pub document: DocumentId,
    pub chunks: u32,
}

/// Tells the keyword index's writer that a document's chunks changed (an SQS queue on AWS).
/// Sent after the vector store is written and before the checkpoint, so a crash between the two
/// redoes both.
pub trait ChangeFeed: Send + Sync {
    fn changed(&self, change: &ChunkChange) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// No feed: a deployment without a published keyword index (the embedded default keeps its own).
#[derive(Debug, Clone, Copy)]
pub enum NoFeed {}

impl ChangeFeed for NoFeed {
    async fn changed(&self, _: &ChunkChange) -> Result<(), PortError> {
        match *self {}
    }
}

/// Reads a document's chunks back from the vector store, with what search shows of them (text,
/// span, pages, metadata). Chunks past `count`, or missing, are simply not returned.
pub trait ChunkReader: Send + Sync {
    fn chunks(
        &self,
        document: &DocumentId,
        count: u32,
    ) -> impl Future<Output = Result<Vec<VectorHit>, PortError>> + Send;
}

/// What reading the manifest found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRead {
    /// Nothing was ever published.
    Missing,
    /// The manifest is still the one tagged `known`.
    Unchanged,
    /// The manifest, and the tag a conditional publish names to replace it.
    Found { bytes: Vec<u8>, tag: String },
}

/// The files of a published index and the manifest that names them (a prefix of an S3 bucket on
/// AWS). Files are immutable once put (their names are unique); only the manifest changes, and
/// only by a conditional write, so that two writers never both win.
pub trait IndexFiles: Send + Sync {
    /// The manifest, unless it is still the one tagged `known` (a conditional read).
    fn manifest(&self, known: Option<&str>) -> impl Future<Output = Result<ManifestRead, PortError>> + Send;
    /// Replaces the manifest tagged `replaces` (`None`: there must be none yet) and returns the
    /// new tag; [`PortError::Conflict`] when another writer published first.
    fn publish(&self, bytes: &[u8], replaces: Option<&str>) -> impl Future<Output = Result<String, PortError>> + Send;
    fn get(&self, name: &str) -> impl Future<Output = Result<Vec<u8>, PortError>> + Send;
    fn put(&self, name: &str, bytes: &[u8]) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Deletes files no manifest names any more (a missing one is not an error).
    fn delete(&self, names: &[String]) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Every file stored (not the manifest), with when it was written, in milliseconds since the
    /// Unix epoch: what reconciliation holds against the manifest's names.
    fn list(&self) -> impl Future<Output = Result<Vec<(String, i64)>, PortError>> + Send;
}
