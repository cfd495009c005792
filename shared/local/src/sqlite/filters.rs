//! Filter answers kept across searches, as Lucene's filter cache keeps them.
//!
//! A filter is decided per document, by its metadata; at 50k documents deciding it for the vector
//! scan and for each keyword list cost more than the search itself. Under the load test's mix (one
//! search in five filtered, hybrid running three lists) it took 40 % of the server's CPU, and held
//! search p95 far above idle (docs/LOAD.md). Users repeat filters (a tenant's narrowing is on every
//! one of its searches), so the answer is kept per filter: for the vector index until a write
//! changes the documents, for the keyword index per segment, for as long as the segment lives.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use quarry_core::Filter;
use quarry_keyword::{FILTERS_KEPT, FilterMemo, FilterMemos, filter_key};

/// One filter's answer for the vector index, by its document number (`FlatIndex::accepted`),
/// decided by the first search that needs it.
#[derive(Debug, Default)]
struct VectorAnswer(Mutex<Option<Arc<Vec<bool>>>>);

#[derive(Debug)]
pub(super) struct Filters {
    /// Moved on by every write, once all of it is visible: a vector answer belongs to the version
    /// it was looked up under, and a write makes every kept one unreachable.
    version: AtomicU64,
    vectors: Mutex<lru::LruCache<(u64, String), Arc<VectorAnswer>>>,
    /// Keyword answers outlive writes: they are kept by segment, segments never change, and a
    /// write that changes a document's metadata re-adds its chunks to a new segment (its chunks in
    /// older ones are deleted, so their answers there no longer matter). While a batch is indexed,
    /// versions move on several times a second; answers decided anew for each would cost filtered
    /// searches what they cost before answers were kept.
    keywords: FilterMemos,
}

impl Default for Filters {
    fn default() -> Self {
        let kept = NonZeroUsize::new(FILTERS_KEPT).unwrap_or(NonZeroUsize::MIN);
        Filters {
            version: AtomicU64::new(0),
            vectors: Mutex::new(lru::LruCache::new(kept)),
            keywords: FilterMemos::default(),
        }
    }
}

impl Filters {
    /// `filter`'s answer for the vector index as the documents are now: kept, or decided by
    /// `decide` (outside any lock: two searches may both decide it, and agree) and kept.
    pub(super) fn vectors(&self, filter: &Filter, decide: impl FnOnce() -> Vec<bool>) -> Arc<Vec<bool>> {
        let answer = {
            let mut kept = self.vectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let at = (self.version.load(Ordering::Acquire), filter_key(filter));
            Arc::clone(kept.get_or_insert(at, || Arc::new(VectorAnswer::default())))
        };
        if let Some(known) = &*answer.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            return Arc::clone(known);
        }
        let decided = Arc::new(decide());
        *answer.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&decided));
        decided
    }

    /// `filter`'s answers for the keyword index, by segment.
    pub(super) fn keywords(&self, filter: &Filter) -> Arc<FilterMemo> {
        self.keywords.of(filter)
    }

    /// For a write that changes documents or their metadata: when the guard drops, with all of
    /// the write visible (or failed part way), answers kept so far are not looked up again.
    pub(super) fn change(&self) -> Change<'_> {
        Change(self)
    }
}

pub(super) struct Change<'a>(&'a Filters);

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.0.version.fetch_add(1, Ordering::AcqRel);
    }
}
