//! Filters decided per segment of the keyword index, and kept across searches.

use std::sync::{Arc, Mutex};

use quarry_core::DocumentId;
use tantivy::SegmentReader;

/// One filter's answer per segment (by the `doc` column's ordinals), kept across searches: deciding
/// it reads every document id of every segment and tests each document's metadata, which at 50k
/// documents cost more than the search itself (a third of the server's CPU under the load test's
/// one-in-five filtered searches, docs/LOAD.md). Segments never change, and a write that changes a
/// document's metadata re-adds its chunks to a new segment, so a segment's answer stays right for
/// as long as the segment lives: the caller keeps one memo per filter, across writes.
#[derive(Debug, Default)]
pub struct FilterMemo {
    segments: Mutex<rustc_hash::FxHashMap<tantivy::index::SegmentId, Arc<Vec<bool>>>>,
}

impl FilterMemo {
    /// Forgets the segments not in `live` (merged away): a memo kept for long stays as large as
    /// the index.
    pub(crate) fn keep_only(&self, live: &[tantivy::index::SegmentId]) {
        self.segments.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|id, _| live.contains(id));
    }

    pub(crate) fn allowed(
        &self,
        segment: &SegmentReader,
        accept: &dyn Fn(&DocumentId) -> bool,
    ) -> tantivy::Result<Arc<Vec<bool>>> {
        let id = segment.segment_id();
        if let Some(known) = self.segments.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&id) {
            return Ok(Arc::clone(known));
        }
        // Computed outside the lock: two searches may both compute it once, and agree.
        let allowed = Arc::new(allowed_documents(segment, accept)?);
        self.segments.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id, Arc::clone(&allowed));
        Ok(allowed)
    }
}

/// Per term ordinal of a segment's `doc` column: whether `accept` takes that document.
pub(crate) fn allowed_documents(
    segment: &SegmentReader,
    accept: &dyn Fn(&DocumentId) -> bool,
) -> tantivy::Result<Vec<bool>> {
    let Some(column) = segment.fast_fields().str("doc")? else { return Ok(Vec::new()) };
    let dictionary = column.dictionary();
    let mut allowed = vec![false; dictionary.num_terms()];
    let mut stream = dictionary.stream()?;
    while stream.advance() {
        let id = std::str::from_utf8(stream.key()).ok().and_then(DocumentId::parse);
        allowed[stream.term_ord() as usize] = id.is_some_and(|d| accept(&d));
    }
    Ok(allowed)
}
