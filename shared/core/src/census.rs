//! What reconciliation reads (`quarry verify`): every document each store holds, listed whole.
//!
//! The indexing ports are keyed by one document; a store that drifted (a crash between writes on
//! a path that had no checkpoint yet, a hand-edited table, a restore from a backup) can only be
//! found by listing each store and comparing. These ports are read-only, and slow on purpose: a
//! full scan, for an operator's command, never on a request's path.

use std::future::Future;

use crate::ports::DocumentRecord;
use crate::{DocumentId, PortError};

/// Every document the state store knows, whatever its status.
pub trait StateCensus: Send + Sync {
    fn documents(&self) -> impl Future<Output = Result<Vec<DocumentRecord>, PortError>> + Send;
}

/// One document's chunks as the vector store holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunks {
    pub document: DocumentId,
    /// The ordinals of its stored chunks, ascending.
    pub ordinals: Vec<u32>,
}

impl StoredChunks {
    /// Chunk ids' (document, ordinal) pairs, in any order, grouped by document with ordinals
    /// ascending: what each store's listing becomes.
    pub fn group(mut ids: Vec<(DocumentId, u32)>) -> Vec<StoredChunks> {
        ids.sort_unstable();
        let mut out: Vec<StoredChunks> = Vec::new();
        for (document, ordinal) in ids {
            match out.last_mut() {
                Some(s) if s.document == document => s.ordinals.push(ordinal),
                _ => out.push(StoredChunks { document, ordinals: vec![ordinal] }),
            }
        }
        out
    }

    pub fn count(&self) -> u32 {
        u32::try_from(self.ordinals.len()).unwrap_or(u32::MAX)
    }

    /// How many of its chunks are below `end`: all of a checkpoint's `end` chunks when none is
    /// missing.
    pub fn below(&self, end: u32) -> u32 {
        u32::try_from(self.ordinals.partition_point(|&o| o < end)).unwrap_or(u32::MAX)
    }
}

/// Every document with chunks in the vector store.
pub trait VectorCensus: Send + Sync {
    fn stored(&self) -> impl Future<Output = Result<Vec<StoredChunks>, PortError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_group_by_document_with_ordinals_ascending() {
        let id = |n: char| DocumentId::parse(&n.to_string().repeat(32)).expect("an id");
        let (a, b) = (id('a'), id('b'));
        let grouped = StoredChunks::group(vec![(b.clone(), 2), (a.clone(), 1), (b.clone(), 0), (a.clone(), 0)]);
        assert_eq!(
            grouped,
            [StoredChunks { document: a, ordinals: vec![0, 1] }, StoredChunks { document: b, ordinals: vec![0, 2] }]
        );
        // b holds ordinals 0 and 2: of a checkpoint's 2 chunks, one is missing, and 2 is a tail.
        assert_eq!((grouped[1].count(), grouped[1].below(2), grouped[1].below(3)), (2, 1, 2));
        assert!(StoredChunks::group(Vec::new()).is_empty());
    }
}
