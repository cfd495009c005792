//! Filters decided per segment of the keyword index, and kept across searches.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use quarry_core::{DocumentId, Filter};
use tantivy::SegmentReader;

/// Distinct filters whose answers a [`FilterMemos`] keeps: each costs about a byte per document
/// (50 KB at 50k documents).
pub const FILTERS_KEPT: usize = 64;

/// The memos of the most recently used filters, one per filter, kept across writes (see
/// [`FilterMemo`]): what each deployment's keyword searcher holds, the embedded index and the
/// published one alike.
#[derive(Debug)]
pub struct FilterMemos(Mutex<lru::LruCache<String, Arc<FilterMemo>>>);

impl Default for FilterMemos {
    fn default() -> Self {
        FilterMemos(Mutex::new(lru::LruCache::new(NonZeroUsize::new(FILTERS_KEPT).unwrap_or(NonZeroUsize::MIN))))
    }
}

impl FilterMemos {
    /// `filter`'s memo: kept, or a new empty one that searches fill segment by segment.
    pub fn of(&self, filter: &Filter) -> Arc<FilterMemo> {
        let mut kept = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(kept.get_or_insert(filter_key(filter), || Arc::new(FilterMemo::default())))
    }
}

/// A filter's key among kept answers. Debug output is total over a filter's structure: equal
/// filters, and only they, share it.
pub fn filter_key(filter: &Filter) -> String {
    format!("{filter:?}")
}

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
