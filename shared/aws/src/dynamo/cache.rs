//! The embedding cache: vectors by (model, dimension, text hash), expiring by TTL
//! ([`EmbeddingCache`]).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use quarry_core::ports::{EmbeddingCache, ModelInfo};
use quarry_core::{ContentHash, PortError};
use tracing::instrument;

use super::{DynamoState, Item, cache_key, get_s};
use crate::{build_error, port_error};

fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_vector(b: &[u8], dimension: usize) -> Option<Vec<f32>> {
    (b.len() == dimension * 4)
        .then(|| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
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
            .filter_map(|i| {
                let v = i.get("v").and_then(|v| v.as_b().ok())?;
                Some((get_s(i, "pk")?, bytes_vector(v.as_ref(), model.dimension)?))
            })
            .collect();
        Ok(texts
            .iter()
            .map(|h| by_pk.get(format!("emb#{}#{}#{}", model.id, model.dimension, h.as_str()).as_str()).cloned())
            .collect())
    }

    #[instrument(skip_all, err, fields(entries = entries.len()))]
    async fn put(&self, model: &ModelInfo, entries: &[(ContentHash, Vec<f32>)]) -> Result<(), PortError> {
        let mut seen = std::collections::HashSet::new();
        let mut writes = Vec::new();
        for (h, v) in entries {
            if !seen.insert(h.as_str()) {
                continue;
            }
            let mut item = cache_key(model, h);
            item.insert("v".into(), AttributeValue::B(aws_smithy_types::Blob::new(vector_bytes(v))));
            item.insert("expires_at".into(), self.expires_at());
            let put = PutRequest::builder().set_item(Some(item)).build().map_err(build_error("dynamodb.cache_put"))?;
            writes.push(WriteRequest::builder().put_request(put).build());
        }
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
                    .map_err(|e| port_error("dynamodb.cache_put", e))?;
                pending = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)).unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    if round > 8 {
                        return Err(PortError::Throttled {
                            operation: "dynamodb.cache_put",
                            retry_after: None,
                            source: None,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(20 << round)).await;
                }
            }
        }
        Ok(())
    }
}
