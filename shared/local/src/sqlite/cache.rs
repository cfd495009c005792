//! The embedding cache: vectors by (model, dimension, normalised text hash) ([`EmbeddingCache`]),
//! stored in the policy's encoding, expired a TTL after their last use, and evicted least recently
//! used first past the size cap; reported on and cleared by [`CacheAdmin`].

use quarry_core::cache::{CacheAdmin, CacheFilter, CacheStats, Encoding};
use quarry_core::ports::{EmbeddingCache, ModelInfo};
use quarry_core::{ContentHash, PortError};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{SqliteStore, db_error};

/// An entry's size as the triggers of migration 9 count it: its key, its vector and a fixed
/// allowance for the row.
const ROW_BYTES: &str = "length(model) + length(content_hash) + length(vector) + 16";

/// Eviction brings the cache this far under its cap, so that the next few puts do not each
/// evict again.
const EVICT_TO_PERCENT: u64 = 90;

impl SqliteStore {
    /// Entries last used before this are expired: neither returned nor kept.
    fn cache_fresh_since(&self, now: i64) -> i64 {
        self.cache.ttl_ms().map_or(i64::MIN, |ttl| now - ttl)
    }

    /// Drops expired entries, then the least recently used until the cache is under its cap.
    fn evict(&self, tx: &Transaction<'_>, now: i64) -> Result<u64, rusqlite::Error> {
        let mut removed =
            tx.execute("DELETE FROM embedding_cache WHERE used_ms < ?1", [self.cache_fresh_since(now)])? as u64;
        let Some(cap) = self.cache.max_bytes() else { return Ok(removed) };
        let bytes = tx.query_row("SELECT bytes FROM embedding_cache_size", [], |r| r.get::<_, i64>(0))?.max(0) as u64;
        if bytes <= cap {
            return Ok(removed);
        }
        let mut excess = bytes - cap * EVICT_TO_PERCENT / 100;
        let mut oldest = tx.prepare_cached(&format!(
            "SELECT model, dimension, content_hash, {ROW_BYTES} FROM embedding_cache ORDER BY used_ms LIMIT 512"
        ))?;
        let mut delete =
            tx.prepare_cached("DELETE FROM embedding_cache WHERE model = ?1 AND dimension = ?2 AND content_hash = ?3")?;
        while excess > 0 {
            let rows = oldest
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?.max(0) as u64,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            if rows.is_empty() {
                break;
            }
            for (model, dimension, hash, size) in rows {
                delete.execute(params![model, dimension, hash])?;
                removed += 1;
                excess = excess.saturating_sub(size);
                if excess == 0 {
                    break;
                }
            }
        }
        Ok(removed)
    }
}

impl SqliteStore {
    /// The vectors of `texts` that are cached and fresh; with `touch`, each hit is a use.
    fn lookup(
        &self,
        model: &ModelInfo,
        texts: &[ContentHash],
        touch: bool,
    ) -> Result<Vec<Option<Vec<f32>>>, PortError> {
        let now = (self.clock)();
        let fresh_since = self.cache_fresh_since(now);
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("cache.get"))?;
        let mut out = Vec::with_capacity(texts.len());
        {
            let mut select = tx
                .prepare_cached(
                    "SELECT vector FROM embedding_cache
                     WHERE model = ?1 AND dimension = ?2 AND content_hash = ?3 AND used_ms >= ?4",
                )
                .map_err(db_error("cache.get"))?;
            let mut used = tx
                .prepare_cached(
                    "UPDATE embedding_cache SET used_ms = ?4 WHERE model = ?1 AND dimension = ?2 AND content_hash = ?3",
                )
                .map_err(db_error("cache.get"))?;
            let dimension = model.dimension as i64;
            for h in texts {
                let found = select
                    .query_row(params![model.id, dimension, h.as_str(), fresh_since], |r| r.get::<_, Vec<u8>>(0))
                    .optional()
                    .map_err(db_error("cache.get"))?
                    .and_then(|b| Encoding::decode(&b, model.dimension));
                if touch && found.is_some() {
                    used.execute(params![model.id, dimension, h.as_str(), now]).map_err(db_error("cache.get"))?;
                }
                out.push(found);
            }
        }
        tx.commit().map_err(db_error("cache.get"))?;
        Ok(out)
    }
}

impl EmbeddingCache for SqliteStore {
    /// A hit counts as a use: it moves the entry's expiry and its place in the eviction order.
    async fn get(&self, model: &ModelInfo, texts: &[ContentHash]) -> Result<Vec<Option<Vec<f32>>>, PortError> {
        self.lookup(model, texts, true)
    }

    async fn peek(&self, model: &ModelInfo, texts: &[ContentHash]) -> Result<Vec<Option<Vec<f32>>>, PortError> {
        self.lookup(model, texts, false)
    }

    async fn put(&self, model: &ModelInfo, entries: &[(ContentHash, Vec<f32>)]) -> Result<(), PortError> {
        let now = (self.clock)();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("cache.put"))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO embedding_cache (model, dimension, content_hash, vector, used_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (model, dimension, content_hash)
                     DO UPDATE SET vector = excluded.vector, used_ms = excluded.used_ms",
                )
                .map_err(db_error("cache.put"))?;
            for (h, v) in entries {
                stmt.execute(params![model.id, model.dimension as i64, h.as_str(), self.cache.encoding.encode(v), now])
                    .map_err(db_error("cache.put"))?;
            }
        }
        let evicted = self.evict(&tx, now).map_err(db_error("cache.evict"))?;
        tx.commit().map_err(db_error("cache.put"))?;
        if evicted > 0 {
            metrics::counter!(quarry_core::metric::EMBEDDING_CACHE_EVICTED).increment(evicted);
        }
        Ok(())
    }
}

impl CacheAdmin for SqliteStore {
    /// What a lookup would find: entries past their TTL, waiting for the next write to drop
    /// them, are not counted (as DynamoDB's, waiting for its sweeper, are not).
    async fn cache_stats(&self) -> Result<Vec<CacheStats>, PortError> {
        let fresh_since = self.cache_fresh_since((self.clock)());
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT model, dimension, COUNT(*), SUM({ROW_BYTES}), MIN(used_ms), MAX(used_ms)
                 FROM embedding_cache WHERE used_ms >= ?1 GROUP BY model, dimension ORDER BY model, dimension"
            ))
            .map_err(db_error("cache.stats"))?;
        stmt.query_map([fresh_since], |r| {
            Ok(CacheStats {
                model: r.get(0)?,
                dimension: r.get::<_, i64>(1)? as usize,
                entries: r.get::<_, i64>(2)?.max(0) as u64,
                bytes: r.get::<_, i64>(3)?.max(0) as u64,
                oldest_ms: r.get(4)?,
                newest_ms: r.get(5)?,
            })
        })
        .map_err(db_error("cache.stats"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_error("cache.stats"))
    }

    async fn clear_cache(&self, filter: &CacheFilter) -> Result<u64, PortError> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM embedding_cache WHERE (?1 IS NULL OR model = ?1) AND (?2 IS NULL OR used_ms < ?2)",
                params![filter.model, filter.unused_since_ms],
            )
            .map_err(db_error("cache.clear"))?;
        Ok(n as u64)
    }
}
