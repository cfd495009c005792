//! Result snapshots: what keeps a page sequence stable while the index changes under it.
//!
//! The first page of a search ranks deeper than it shows (`SNAPSHOT_DEPTH`) and keeps the ranked
//! hits here under an id that its cursor carries (sealed). Later pages are cut from the snapshot,
//! so a document indexed, changed or deleted meanwhile neither shifts the sequence, nor repeats a
//! result, nor skips one. Past the snapshot's depth, or once it has expired or been evicted (or on
//! another instance of the search function), pages are ranked live at the cursor's offset: still
//! correct, no longer frozen. An in-memory LRU with a time to live, like the query cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quarry_core::ports::VectorHit;

/// Page sequences kept at once, and for how long.
pub const SNAPSHOTS: usize = 512;
/// Hits kept in all: as many as [`SNAPSHOTS`] first pages hold. A sequence paged past its first
/// page's depth grows (see [`Snapshots::extend`]); the least recently used go first to stay under.
pub const HITS: usize = SNAPSHOTS * 100;
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug)]
struct Snapshot {
    hits: Arc<Vec<VectorHit>>,
    /// Whether the ranking went deeper than the snapshot holds.
    truncated: bool,
    born: Instant,
    used: u64,
}

/// A snapshot's hits, and whether there were more than it holds.
#[derive(Debug, Clone)]
pub struct Frozen {
    pub hits: Arc<Vec<VectorHit>>,
    pub truncated: bool,
}

#[derive(Debug)]
pub struct Snapshots {
    capacity: usize,
    /// Hits kept in all (see [`HITS`]).
    hits: usize,
    ttl: Duration,
    entries: Mutex<(HashMap<u64, Snapshot>, u64)>,
    next: AtomicU64,
}

impl Snapshots {
    /// `seed` starts the ids: a random one keeps ids from one process's life out of the next's.
    pub fn new(capacity: usize, hits: usize, ttl: Duration, seed: u64) -> Self {
        Snapshots { capacity, hits, ttl, entries: Mutex::new((HashMap::new(), 0)), next: AtomicU64::new(seed | 1) }
    }

    /// Keeps `hits` and returns the id a cursor carries (never 0, which means "no snapshot").
    pub fn put(&self, hits: Vec<VectorHit>, truncated: bool) -> u64 {
        let mut id = self.next.fetch_add(1, Ordering::Relaxed);
        if id == 0 {
            id = self.next.fetch_add(1, Ordering::Relaxed);
        }
        self.keep(id, hits, truncated, Instant::now());
        id
    }

    /// Replaces snapshot `id` with a longer sequence that begins with it (a page past its depth
    /// ranked the rest), keeping its expiry: the cursor that carries `id` pages on through the
    /// longer one. An `id` gone meanwhile is kept anew under a new id, which is returned.
    pub fn extend(&self, id: u64, hits: Vec<VectorHit>, truncated: bool) -> u64 {
        let born = {
            let guard = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            guard.0.get(&id).map(|s| s.born)
        };
        match born {
            Some(born) => {
                self.keep(id, hits, truncated, born);
                id
            }
            None => self.put(hits, truncated),
        }
    }

    fn keep(&self, id: u64, hits: Vec<VectorHit>, truncated: bool, born: Instant) {
        let mut guard = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, clock) = &mut *guard;
        *clock += 1;
        map.retain(|_, s| s.born.elapsed() < self.ttl);
        map.remove(&id);
        let mut held: usize = map.values().map(|s| s.hits.len()).sum();
        while map.len() >= self.capacity || (held + hits.len() > self.hits && !map.is_empty()) {
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| *k) else { break };
            held -= map.remove(&oldest).map_or(0, |s| s.hits.len());
        }
        map.insert(id, Snapshot { hits: Arc::new(hits), truncated, born, used: *clock });
    }

    pub fn get(&self, id: u64) -> Option<Frozen> {
        let mut guard = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, clock) = &mut *guard;
        *clock += 1;
        let s = map.get_mut(&id)?;
        if s.born.elapsed() >= self.ttl {
            map.remove(&id);
            return None;
        }
        s.used = *clock;
        Some(Frozen { hits: Arc::clone(&s.hits), truncated: s.truncated })
    }
}

#[cfg(test)]
mod tests {
    use quarry_core::{CharSpan, ChunkId, DocumentId, DocumentKey};

    use super::*;

    fn hits(n: u32) -> Vec<VectorHit> {
        let document = DocumentId::for_key(&DocumentKey::new("a"));
        (0..n)
            .map(|o| VectorHit {
                id: ChunkId::new(&document, o),
                document: document.clone(),
                score: 1.0,
                text: String::new(),
                pages: None,
                span: CharSpan { start: 0, end: 0 },
                meta: quarry_core::meta::ChunkMeta::new(DocumentKey::new("a"), quarry_core::Format::Text),
            })
            .collect()
    }

    #[test]
    fn snapshots_are_kept_evicted_least_recently_used_and_expire() {
        let s = Snapshots::new(2, 100, Duration::from_secs(60), 41);
        let a = s.put(hits(3), false);
        let b = s.put(hits(4), true);
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(s.get(a).map(|f| f.hits.len()), Some(3));
        let c = s.put(hits(5), false); // evicts b, the least recently used
        assert!(s.get(b).is_none());
        assert_eq!((s.get(a).map(|f| f.hits.len()), s.get(c).map(|f| f.truncated)), (Some(3), Some(false)));
        assert!(s.get(0).is_none(), "0 is never an id");

        let short = Snapshots::new(2, 100, Duration::from_millis(30), 7);
        let d = short.put(hits(1), false);
        std::thread::sleep(Duration::from_millis(60));
        assert!(short.get(d).is_none(), "expired");
    }

    #[test]
    fn an_extended_snapshot_keeps_its_id_and_the_hits_kept_stay_under_their_budget() {
        let s = Snapshots::new(8, 10, Duration::from_secs(60), 3);
        let a = s.put(hits(4), true);
        assert_eq!(s.extend(a, hits(8), false), a, "the cursor's id goes on");
        assert_eq!(s.get(a).map(|f| (f.hits.len(), f.truncated)), Some((8, false)));
        let b = s.put(hits(3), false); // 8 + 3 hits is over 10: the least recently used goes
        assert!(s.get(a).is_none());
        assert_eq!(s.get(b).map(|f| f.hits.len()), Some(3));
        let gone = b.wrapping_add(1_000);
        let c = s.extend(gone, hits(2), true);
        assert!(c != gone && c != 0, "kept anew");
        assert_eq!(s.get(c).map(|f| f.hits.len()), Some(2));
    }
}
