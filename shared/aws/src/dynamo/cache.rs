//! The embedding cache: vectors by (model, dimension, normalised text hash), in the policy's
//! encoding, expiring by DynamoDB's TTL ([`EmbeddingCache`]); reported on and cleared by a scan
//! ([`CacheAdmin`]).
//!
//! Items: `pk = emb#MODEL#DIMENSION#HASH`, `sk = emb`, `v` (the encoded vector), `at` (written,
//! ms), `expires_at` (seconds, the table's TTL attribute). DynamoDB deletes expired items within
//! days, not at once, so reads also skip items past `expires_at`. Entries are not touched on a hit
//! (a write per read would double the cache's cost): their TTL runs from their last write.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use quarry_core::cache::{CacheAdmin, CacheFilter, CacheStats, Encoding};
use quarry_core::ports::{EmbeddingCache, ModelInfo};
use quarry_core::{ContentHash, PortError};
use tracing::instrument;

use super::{DynamoState, Item, cache_key, get_n, get_s, n};
use crate::{build_error, port_error};

/// The model, dimension and hash of a cache item's `pk`; `None` for any other item.
fn parse_pk(pk: &str) -> Option<(&str, usize, &str)> {
    let rest = pk.strip_prefix("emb#")?;
    let mut parts = rest.rsplitn(3, '#');
    let hash = parts.next()?;
    let dimension = parts.next()?.parse().ok()?;
    Some((parts.next()?, dimension, hash))
}

impl DynamoState {
    /// Whether an item read now is past its TTL (and only waiting for DynamoDB to delete it).
    fn expired(&self, item: &Item) -> bool {
        get_n(item, "expires_at").is_some_and(|t| t <= (self.clock)() / 1000)
    }

    /// BatchWriteItem in groups of 25, unprocessed items sent again with back-off.
    async fn write_all(&self, operation: &'static str, writes: Vec<WriteRequest>) -> Result<(), PortError> {
        for group in writes.chunks(25) {
            let mut pending = group.to_vec();
            let mut round = 0u32;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| port_error(operation, e))?;
                pending = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    if round > 8 {
                        return Err(PortError::Throttled { operation, retry_after: None, source: None });
                    }
                    tokio::time::sleep(Duration::from_millis(20 << round)).await;
                }
            }
        }
        Ok(())
    }

    /// Every cache item (key, size, written-at), by a paginated scan of the table.
    async fn cache_items(&self, operation: &'static str) -> Result<Vec<(String, u64, i64)>, PortError> {
        let mut out = Vec::new();
        for item in self.scan_sk(operation, "emb", false).await? {
            if self.expired(&item) {
                continue;
            }
            let Some(pk) = get_s(&item, "pk") else { continue };
            let size = item.get("v").and_then(|v| v.as_b().ok()).map_or(0, |b| b.as_ref().len());
            // Written before `at` was kept: its write time follows from its expiry.
            let at = get_n(&item, "at").or_else(|| {
                let ttl = i64::try_from(super::TTL.as_millis()).unwrap_or(i64::MAX);
                get_n(&item, "expires_at").map(|e| e * 1000 - ttl)
            });
            out.push((pk.to_owned(), (pk.len() + size + 16) as u64, at.unwrap_or(0)));
        }
        Ok(out)
    }
}

impl EmbeddingCache for DynamoState {
    #[instrument(skip_all, err, fields(texts = texts.len()))]
    async fn get(&self, model: &ModelInfo, texts: &[ContentHash]) -> Result<Vec<Option<Vec<f32>>>, PortError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut unique: Vec<Item> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for h in texts {
            if seen.insert(h.as_str()) {
                unique.push(cache_key(model, h));
            }
        }
        let found = self.existing("dynamodb.cache_get", unique).await?;
        let by_pk: HashMap<&str, Vec<f32>> = found
            .iter()
            .filter(|i| !self.expired(i))
            .filter_map(|i| {
                let v = i.get("v").and_then(|v| v.as_b().ok())?;
                Some((get_s(i, "pk")?, Encoding::decode(v.as_ref(), model.dimension)?))
            })
            .collect();
        Ok(texts
            .iter()
            .map(|h| by_pk.get(format!("emb#{}#{}#{}", model.id, model.dimension, h.as_str()).as_str()).cloned())
            .collect())
    }

    #[instrument(skip_all, err, fields(entries = entries.len()))]
    async fn put(&self, model: &ModelInfo, entries: &[(ContentHash, Vec<f32>)]) -> Result<(), PortError> {
        let now = (self.clock)();
        let mut seen = std::collections::HashSet::new();
        let mut writes = Vec::new();
        for (h, v) in entries {
            if !seen.insert(h.as_str()) {
                continue;
            }
            let mut item = cache_key(model, h);
            item.insert("v".into(), AttributeValue::B(aws_smithy_types::Blob::new(self.cache.encoding.encode(v))));
            item.insert("at".into(), n(now));
            if let Some(ttl) = self.cache.ttl_ms() {
                item.insert("expires_at".into(), n((now + ttl) / 1000));
            }
            let put = PutRequest::builder().set_item(Some(item)).build().map_err(build_error("dynamodb.cache_put"))?;
            writes.push(WriteRequest::builder().put_request(put).build());
        }
        self.write_all("dynamodb.cache_put", writes).await
    }
}

/// A scan reads the whole table (documents, batches and cache alike): an administrator's
/// operation, priced in docs/AWS.md, not something to call per request.
impl CacheAdmin for DynamoState {
    #[instrument(skip_all, err)]
    async fn cache_stats(&self) -> Result<Vec<CacheStats>, PortError> {
        let mut by_model: std::collections::BTreeMap<(String, usize), CacheStats> = Default::default();
        for (pk, bytes, at) in self.cache_items("dynamodb.cache_stats").await? {
            let Some((model, dimension, _)) = parse_pk(&pk) else { continue };
            let s = by_model.entry((model.to_owned(), dimension)).or_insert_with(|| CacheStats {
                model: model.to_owned(),
                dimension,
                entries: 0,
                bytes: 0,
                oldest_ms: at,
                newest_ms: at,
            });
            s.entries += 1;
            s.bytes += bytes;
            s.oldest_ms = s.oldest_ms.min(at);
            s.newest_ms = s.newest_ms.max(at);
        }
        Ok(by_model.into_values().collect())
    }

    #[instrument(skip_all, err)]
    async fn clear_cache(&self, filter: &CacheFilter) -> Result<u64, PortError> {
        let mut deletes = Vec::new();
        for (pk, _, at) in self.cache_items("dynamodb.cache_clear").await? {
            if !parse_pk(&pk).is_some_and(|(model, _, _)| filter.matches(model, at)) {
                continue;
            }
            let key = HashMap::from([
                ("pk".to_owned(), AttributeValue::S(pk)),
                ("sk".to_owned(), AttributeValue::S("emb".into())),
            ]);
            let delete =
                DeleteRequest::builder().set_key(Some(key)).build().map_err(build_error("dynamodb.cache_clear"))?;
            deletes.push(WriteRequest::builder().delete_request(delete).build());
        }
        let n = deletes.len() as u64;
        self.write_all("dynamodb.cache_clear", deletes).await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pk;

    #[test]
    fn a_cache_key_names_its_model_even_with_separators_in_it() {
        assert_eq!(
            parse_pk("emb#openai/text-embedding-3-small#384#ab12"),
            Some(("openai/text-embedding-3-small", 384, "ab12"))
        );
        assert_eq!(parse_pk("emb#a#b#1536#ff"), Some(("a#b", 1536, "ff")));
        assert_eq!(parse_pk("doc#123"), None);
        assert_eq!(parse_pk("emb#m#x#ff"), None);
    }
}
