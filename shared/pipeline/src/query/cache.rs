//! Query vectors by query text: an in-memory LRU with a time to live. Users repeat queries (paging
//! through results is the same query again), and embedding is most of a search's time.
//!
//! Keyed by the model id and the exact query text; entries live at most `ttl` (a model change
//! restarts the process, but a TTL keeps a long-running server honest anyway) and the least
//! recently used goes first when full. Hits and misses are counted in `query_cache`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use quarry_core::metric;

#[derive(Debug)]
struct Entry {
    vector: Vec<f32>,
    born: Instant,
    used: u64,
}

#[derive(Debug)]
pub struct QueryCache {
    capacity: usize,
    ttl: Duration,
    entries: Mutex<(HashMap<String, Entry>, u64)>,
}

impl QueryCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        QueryCache { capacity, ttl, entries: Mutex::new((HashMap::new(), 0)) }
    }

    fn key(model: &str, query: &str) -> String {
        format!("{model}\u{0}{query}")
    }

    pub fn get(&self, model: &str, query: &str) -> Option<Vec<f32>> {
        let mut guard = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, clock) = &mut *guard;
        let key = Self::key(model, query);
        let fresh = map.get(&key).is_some_and(|e| e.born.elapsed() < self.ttl);
        if !fresh {
            map.remove(&key);
            metrics::counter!(metric::QUERY_CACHE, "result" => "miss").increment(1);
            return None;
        }
        *clock += 1;
        let e = map.get_mut(&key)?;
        e.used = *clock;
        metrics::counter!(metric::QUERY_CACHE, "result" => "hit").increment(1);
        Some(e.vector.clone())
    }

    pub fn put(&self, model: &str, query: &str, vector: Vec<f32>) {
        if self.capacity == 0 {
            return;
        }
        let mut guard = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, clock) = &mut *guard;
        *clock += 1;
        let key = Self::key(model, query);
        if map.len() >= self.capacity && !map.contains_key(&key) {
            // A linear scan: at a few thousand entries it costs microseconds, next to milliseconds
            // of embedding, and needs no second structure to keep in step.
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        map.insert(key, Entry { vector, born: Instant::now(), used: *clock });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_lru_and_ttl() {
        let recorder = crate::testing::Recorded::default();
        let c = QueryCache::new(2, Duration::from_secs(60));
        assert_eq!(c.get("m", "a"), None);
        c.put("m", "a", vec![1.0]);
        c.put("m", "b", vec![2.0]);
        assert_eq!(c.get("m", "a"), Some(vec![1.0]));
        // "b" is now the least recently used: it goes when "c" comes.
        c.put("m", "c", vec![3.0]);
        assert_eq!(c.get("m", "b"), None);
        assert_eq!(c.get("m", "a"), Some(vec![1.0]));
        assert_eq!(c.get("m", "c"), Some(vec![3.0]));
        assert_eq!(c.get("other-model", "a"), None, "the model is part of the key");
        assert_eq!(recorder.counter(metric::QUERY_CACHE, &[("result", "hit")]), 3);
        assert_eq!(recorder.counter(metric::QUERY_CACHE, &[("result", "miss")]), 3);

        let short = QueryCache::new(8, Duration::from_millis(20));
        short.put("m", "a", vec![1.0]);
        assert!(short.get("m", "a").is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(short.get("m", "a"), None, "expired");
        let off = QueryCache::new(0, Duration::from_secs(60));
        off.put("m", "a", vec![1.0]);
        assert_eq!(off.get("m", "a"), None, "capacity 0 turns it off");
    }
}
