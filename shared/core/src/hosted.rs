//! A store that embeds for itself (OpenAI's vector stores): it takes a document's redacted text
//! and metadata whole, chunks and embeds it on its side, and is searched with words, not vectors.
//! The indexer hands it documents in place of embedding chunks, and keeps the handle it returns in
//! the document's checkpoint, so that a replaced or deleted document's file is removed.
//!
//! Held as `&dyn HostedStore` (hence the boxed futures): a deployment chooses it at start-up
//! beside its own vector store, and the handlers, generic over the native store, need no extra
//! type parameter for it.

use std::future::Future;
use std::pin::Pin;

use crate::domain::{ContentHash, DocumentId, Failure};
use crate::error::PortError;
use crate::filter::Filter;
use crate::meta::ChunkMeta;
use crate::ports::VectorHit;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One document as the hosted store takes it.
#[derive(Debug, Clone, Copy)]
pub struct HostedDocument<'a> {
    pub document: &'a DocumentId,
    pub content_hash: &'a ContentHash,
    /// The extracted and redacted text: nothing that redaction removed leaves Quarry.
    pub text: &'a str,
    pub meta: &'a ChunkMeta,
}

/// How storing a document ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Searchable, under this handle (OpenAI's file id).
    Attached { handle: String },
    /// The store refused the document itself (a file it cannot parse): recorded as the
    /// document's failure, with the store's reason; retrying will not help.
    Refused(Failure),
}

/// One hit, with the handle of the file it came from: a search keeps only hits whose handle is
/// the one their document's checkpoint names ([`crate::ports::DocumentRecord::handle`]), so that
/// a file no checkpoint points at (left by a crash between storing and checkpointing, or one whose
/// removal the store has not finished) is never shown.
#[derive(Debug, Clone, PartialEq)]
pub struct HostedHit {
    pub handle: String,
    pub hit: VectorHit,
}

/// A query in words.
#[derive(Debug, Clone, PartialEq)]
pub struct HostedQuery {
    pub text: String,
    pub top_k: usize,
    /// Translated to the store's own filters inside the search; what has no translation is
    /// refused ([`PortError::InvalidInput`], a 400), never applied to the results afterwards.
    pub filter: Option<Filter>,
}

pub trait HostedStore: Send + Sync + std::fmt::Debug {
    /// The store's identity, recorded as the checkpoint's model (`openai-vector-store:NAME`).
    fn model(&self) -> &str;
    /// Deepest a search goes (OpenAI's: 50).
    fn max_results(&self) -> usize;
    /// Stores a document and waits until it is searchable (within a timeout, then a transient
    /// failure). Storing the same document again makes a new handle: the caller removes the old.
    fn put<'a>(&'a self, doc: HostedDocument<'a>) -> BoxFuture<'a, Result<Stored, PortError>>;
    /// Removes what `put` stored; a handle already gone is not an error.
    fn remove<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Result<(), PortError>>;
    /// Hits scored in [0, 1] by the store's own ranker, at most [`HostedStore::max_results`].
    fn search<'a>(&'a self, query: &'a HostedQuery) -> BoxFuture<'a, Result<Vec<HostedHit>, PortError>>;
    /// What the store holds, in the bytes it bills storage by.
    fn usage_bytes(&self) -> BoxFuture<'_, Result<u64, PortError>>;
}
