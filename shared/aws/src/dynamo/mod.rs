//! One DynamoDB table for everything that is state: documents (leases, checkpoints, failures),
//! batches (a counters item and one item per document) and the embedding cache. Single-table
//! design with a string partition key `pk` and sort key `sk`:
//!
//! | item            | pk                          | sk            |
//! |-----------------|-----------------------------|---------------|
//! | document        | `doc#<document id>`         | `doc`         |
//! | batch counters  | `batch#<batch id>`          | `meta`        | (and `recent` = `batch`, for the `recent` index)
//! | batch document  | `batch#<batch id>`          | `item#<key>`  |
//! | cached vector   | `emb#<model>#<dim>#<hash>`  | `emb`         |
//! | alert claim     | `alert#claim#<key>`         | `claim`       |
//! | alert member    | `alert#group#<group>`       | `m#<id>`      |
//! | spend           | `spend#day#<YYYY-MM-DD>`, `spend#batch#<batch id>` | `spend` |
//!
//! Concurrency is settled by conditional writes, never by reading and hoping: a lease is taken only
//! if the document's revision is still the one read (or it does not exist yet), and a batch
//! outcome moves a document between counters only if its state is still the one read, in the same
//! transaction as the counters' atomic `ADD`. Batch items and cached vectors carry `expires_at` for
//! DynamoDB's TTL; documents do not: they are the index's own record.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, TransactWriteItem, Update};
use quarry_core::ports::ModelInfo;
use quarry_core::{BatchId, ContentHash, DocumentId, DocumentKey, Failure, PortError};

mod alerts;
mod batches;
mod cache;
mod spend;
mod state;

use crate::{build_error, port_error};

type Item = HashMap<String, AttributeValue>;

/// The sparse index of batches by creation time (only batch counters items carry its keys), for
/// `GET /v1/batches`. One partition: batches are started a few times a minute at most, far below
/// a partition's 1,000 writes a second.
pub const RECENT_INDEX: &str = "recent";
pub const RECENT_PK: &str = "recent";
pub const RECENT_SK: &str = "created_ms";

/// How long batch records live after their last write (cached vectors: `[cache] ttl_days`).
pub const TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Tries at an optimistic update that keeps losing races before answering "busy"/"conflict".
const RACES: usize = 8;

#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
    clock: fn() -> i64,
    /// How cached vectors are stored and how long they live (`[cache]`; the cap is local only).
    cache: quarry_core::cache::CachePolicy,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

fn doc_key(id: &DocumentId) -> Item {
    HashMap::from([("pk".to_owned(), s(format!("doc#{}", id.as_str()))), ("sk".to_owned(), s("doc"))])
}

fn batch_pk(batch: &BatchId) -> AttributeValue {
    s(format!("batch#{}", batch.as_str()))
}

fn meta_key(batch: &BatchId) -> Item {
    HashMap::from([("pk".to_owned(), batch_pk(batch)), ("sk".to_owned(), s("meta"))])
}

fn item_key(batch: &BatchId, key: &DocumentKey) -> Item {
    HashMap::from([("pk".to_owned(), batch_pk(batch)), ("sk".to_owned(), s(format!("item#{}", key.as_str())))])
}

fn cache_key(model: &ModelInfo, hash: &ContentHash) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("emb#{}#{}#{}", model.id, model.dimension, hash.as_str()))),
        ("sk".to_owned(), s("emb")),
    ])
}

fn failure_of(item: &Item) -> Option<Failure> {
    Some(Failure {
        code: get_s(item, "fcode")?.to_owned(),
        message: get_s(item, "fmsg").unwrap_or_default().to_owned(),
        retryable: item.get("fretry").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
    })
}

/// A batch document's state, as stored and as counted.
impl DynamoState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoState { client, table: table.into(), clock: now_ms, cache: quarry_core::cache::CachePolicy::default() }
    }

    /// The embedding cache's encoding and TTL (`[cache]`); the defaults otherwise.
    #[must_use]
    pub fn with_cache_policy(mut self, policy: quarry_core::cache::CachePolicy) -> Self {
        self.cache = policy;
        self
    }

    fn expires_at(&self) -> AttributeValue {
        n(((self.clock)() / 1000) + TTL.as_secs() as i64)
    }

    async fn read(&self, operation: &'static str, key: Item) -> Result<Option<Item>, PortError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| port_error(operation, e))?;
        Ok(out.item)
    }

    /// Every item whose sort key is `sk`, by a paginated scan of the table: for the operator's
    /// commands (the cache's statistics, reconciliation), never a request's path.
    async fn scan_sk(&self, operation: &'static str, sk: &str, consistent: bool) -> Result<Vec<Item>, PortError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :sk")
                .expression_attribute_values(":sk", AttributeValue::S(sk.to_owned()))
                .consistent_read(consistent)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| port_error(operation, e))?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn meta(&self, batch: &BatchId) -> Result<Item, PortError> {
        self.read("dynamodb.batch_meta", meta_key(batch))
            .await?
            .ok_or_else(|| PortError::NotFound { what: format!("batch {}", batch.as_str()) })
    }

    /// Which of `keys` exist, by a consistent BatchGetItem (100 keys a call, unprocessed keys
    /// asked again).
    async fn existing(&self, operation: &'static str, keys: Vec<Item>) -> Result<Vec<Item>, PortError> {
        let mut found = Vec::new();
        for hundred in keys.chunks(100) {
            let mut ask = hundred.to_vec();
            let mut round = 0u32;
            while !ask.is_empty() {
                let ka = KeysAndAttributes::builder()
                    .set_keys(Some(ask))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error(operation))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .send()
                    .await
                    .map_err(|e| port_error(operation, e))?;
                if let Some(items) = out.responses.and_then(|mut r| r.remove(&self.table)) {
                    found.extend(items);
                }
                ask = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).map(|k| k.keys).unwrap_or_default();
                if !ask.is_empty() {
                    round += 1;
                    tokio::time::sleep(Duration::from_millis(20 << round.min(6))).await;
                }
            }
        }
        Ok(found)
    }

    async fn transact(&self, operation: &'static str, items: Vec<TransactWriteItem>) -> Result<bool, PortError> {
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_transaction_canceled_exception()) => Ok(false),
            Err(e) => Err(port_error(operation, e)),
        }
    }

    fn counters_update(&self, batch: &BatchId, adds: &[(&str, i64)]) -> Result<TransactWriteItem, PortError> {
        let mut expr = Vec::new();
        let mut update = Update::builder().table_name(&self.table).set_key(Some(meta_key(batch)));
        for (i, (name, delta)) in adds.iter().enumerate() {
            expr.push(format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), *name)
                .expression_attribute_values(format!(":c{i}"), n(delta));
        }
        let update = update
            .update_expression(format!("ADD {} SET updated_ms = :now", expr.join(", ")))
            .expression_attribute_values(":now", n((self.clock)()))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(build_error("dynamodb.batch_counters"))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}
