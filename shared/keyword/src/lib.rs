//! Keyword search, the same in every deployment: Quarry's word analysis ([`analysis`]) over a
//! tantivy index ([`KeywordIndex`]): BM25, block-max WAND, immutable segments on disk.
//!
//! Why tantivy rather than the hand-written in-memory index it replaced: the index persists (no
//! rebuild when a process starts), it prunes (block-max WAND) where summing every posting grew
//! with the collection, and its segments are files, which is what an index kept on object storage
//! needs. docs/PERFORMANCE.md has the comparison.

pub mod analysis;
mod filter;
mod index;
mod indexer;
pub mod published;
mod replica;
mod strays;

pub use analysis::query_terms;
pub use filter::{FILTERS_KEPT, FilterMemo, FilterMemos, filter_key};
pub use index::{KeywordError, KeywordHit, KeywordIndex, Ranked};
pub use indexer::KeywordIndexer;
pub use published::{Fetched, Manifest, PublishError, PublishedIndex};
pub use replica::{KeywordReplica, REFRESH_INTERVAL};
pub use strays::stray_files;
