//! One DynamoDB table for everything that is state: documents (leases, checkpoints, failures),
//! batches (a counters item and one item per document) and the embedding cache. Single-table
//! design with a string partition key `pk` and sort key `sk`:
//!
//! | item            | pk                          | sk            |
//! |-----------------|-----------------------------|---------------|
//! | document        | `doc#<document id>`         | `doc`         |
//! | batch counters  | `batch#<batch id>`          | `meta`        |
//! | batch document  | `batch#<batch id>`          | `item#<key>`  |
//! | cached vector   | `emb#<model>#<dim>#<hash>`  | `emb`         |
//!
//! Concurrency is settled by conditional writes, never by reading and hoping: a lease is taken only
//! if the document's revision is still the one read (or it does not exist yet), and a batch
//! outcome moves a document between counters only if its state is still the one read, in the same
//! transaction as the counters' atomic `ADD`. Batch items and cached vectors carry `expires_at` for
//! DynamoDB's TTL; documents do not: they are the index's own record.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, PutRequest, TransactWriteItem, Update, WriteRequest,
};
use quarry_core::ports::{
    BatchOutcome, BatchTiming, BatchTracker, Checkpoint, CheckpointStore, DocumentReader, DocumentRecord,
    EmbeddingCache, Lease, ModelInfo,
};
use quarry_core::{BatchCounters, BatchId, ContentHash, DocumentId, DocumentKey, DocumentStatus, Failure, PortError};
use tracing::instrument;

use crate::{build_error, port_error};

type Item = HashMap<String, AttributeValue>;

/// How long batch records and cached vectors live after their last write.
pub const TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Tries at an optimistic update that keeps losing races before answering "busy"/"conflict".
const RACES: usize = 8;

#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
    clock: fn() -> i64,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Done,
    Failed,
    Skipped,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Done => "done",
            State::Failed => "failed",
            State::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Option<State> {
        [State::Pending, State::Done, State::Failed, State::Skipped].into_iter().find(|x| x.name() == s)
    }

    fn of(outcome: &BatchOutcome) -> State {
        match outcome {
            BatchOutcome::Indexed { .. } => State::Done,
            BatchOutcome::Unchanged { .. } => State::Skipped,
            BatchOutcome::Failed { .. } => State::Failed,
        }
    }
}

impl DynamoState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoState { client, table: table.into(), clock: now_ms }
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

impl CheckpointStore for DynamoState {
    #[instrument(skip_all, err)]
    async fn acquire(
        &self,
        document: &DocumentId,
        content_hash: &ContentHash,
        lease: Duration,
    ) -> Result<Lease, PortError> {
        for _ in 0..RACES {
            let now = (self.clock)();
            let item = self.read("dynamodb.acquire", doc_key(document)).await?;
            let attempts = match &item {
                Some(i) => {
                    let (status, hash) = (get_s(i, "status"), get_s(i, "hash"));
                    if status == Some("indexed") && hash == Some(content_hash.as_str()) {
                        return Ok(Lease::AlreadyIndexed);
                    }
                    if status == Some("processing") && get_n(i, "lease_until").is_some_and(|u| u > now) {
                        return Ok(Lease::Busy);
                    }
                    // Attempts count per content: a new version starts again at 1.
                    if hash == Some(content_hash.as_str()) { get_n(i, "attempts").unwrap_or(0) + 1 } else { 1 }
                }
                None => 1,
            };
            let rev = item.as_ref().and_then(|i| get_n(i, "rev")).unwrap_or(0);
            let mut req = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(doc_key(document)))
                .update_expression(
                    "SET #h = :h, #s = :p, attempts = :a, lease_until = :u, updated_ms = :now, rev = :next",
                )
                .expression_attribute_names("#h", "hash")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":h", s(content_hash.as_str()))
                .expression_attribute_values(":p", s("processing"))
                .expression_attribute_values(":a", n(attempts))
                .expression_attribute_values(":u", n(now + lease.as_millis() as i64))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":next", n(rev + 1));
            req = if item.is_some() {
                req.condition_expression("rev = :rev").expression_attribute_values(":rev", n(rev))
            } else {
                req.condition_expression("attribute_not_exists(pk)")
            };
            match req.send().await {
                Ok(_) => return Ok(Lease::Acquired { attempt: attempts as u32, expires_in: lease }),
                // Another worker changed the document between our read and write: look again.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(port_error("dynamodb.acquire", e)),
            }
        }
        Ok(Lease::Busy)
    }

    #[instrument(skip_all, err)]
    async fn checkpoint(&self, c: &Checkpoint) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(doc_key(&c.document)))
            .update_expression(
                "SET #k = :k, #h = :h, #s = :s, chunks = :c, model = :m, updated_ms = :now, \
                 rev = if_not_exists(rev, :zero) + :one REMOVE lease_until, fcode, fmsg, fretry",
            )
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#h", "hash")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":k", s(c.key.as_str()))
            .expression_attribute_values(":h", s(c.content_hash.as_str()))
            .expression_attribute_values(":s", s("indexed"))
            .expression_attribute_values(":c", n(c.chunks))
            .expression_attribute_values(":m", s(&c.model))
            .expression_attribute_values(":now", n((self.clock)()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| port_error("dynamodb.checkpoint", e))?;
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn fail(&self, document: &DocumentId, key: &DocumentKey, failure: &Failure) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(doc_key(document)))
            .update_expression(
                "SET #k = :k, #s = :s, fcode = :fc, fmsg = :fm, fretry = :fr, updated_ms = :now, \
                 rev = if_not_exists(rev, :zero) + :one REMOVE lease_until",
            )
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":k", s(key.as_str()))
            .expression_attribute_values(":s", s("failed"))
            .expression_attribute_values(":fc", s(&failure.code))
            .expression_attribute_values(":fm", s(&failure.message))
            .expression_attribute_values(":fr", AttributeValue::Bool(failure.retryable))
            .expression_attribute_values(":now", n((self.clock)()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| port_error("dynamodb.fail", e))?;
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn forget(&self, document: &DocumentId) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(doc_key(document)))
            .send()
            .await
            .map_err(|e| port_error("dynamodb.forget", e))?;
        Ok(())
    }
}

impl DocumentReader for DynamoState {
    #[instrument(skip_all, err)]
    async fn document(&self, id: &DocumentId) -> Result<Option<DocumentRecord>, PortError> {
        let Some(item) = self.read("dynamodb.document", doc_key(id)).await? else { return Ok(None) };
        let status = match get_s(&item, "status") {
            Some("indexed") => DocumentStatus::Indexed { chunks: get_n(&item, "chunks").unwrap_or(0) as u32 },
            Some("failed") => match failure_of(&item) {
                Some(failure) => DocumentStatus::Failed { failure },
                None => DocumentStatus::Pending,
            },
            Some("processing") => DocumentStatus::Processing { attempt: get_n(&item, "attempts").unwrap_or(1) as u32 },
            _ => DocumentStatus::Pending,
        };
        Ok(Some(DocumentRecord {
            id: id.clone(),
            key: get_s(&item, "key").map(DocumentKey::new),
            content_hash: get_s(&item, "hash").map(|h| ContentHash::from_stored(h.to_owned())),
            model: get_s(&item, "model").map(str::to_owned),
            status,
            updated_ms: get_n(&item, "updated_ms").unwrap_or(0),
        }))
    }
}

impl BatchTracker for DynamoState {
    #[instrument(skip_all, err, fields(items = items.len()))]
    async fn create(&self, batch: &BatchId, items: &[(DocumentKey, u64)]) -> Result<(), PortError> {
        let now = (self.clock)();
        let counters = ["total", "pending", "done", "failed", "skipped", "bytes_total", "bytes_done"];
        let mut zero = String::from("SET created_ms = if_not_exists(created_ms, :now), expires_at = :exp ADD ");
        zero.push_str(&(0..counters.len()).map(|i| format!("#c{i} :zero")).collect::<Vec<_>>().join(", "));
        let mut req = self.client.update_item().table_name(&self.table).set_key(Some(meta_key(batch)));
        for (i, c) in counters.iter().enumerate() {
            req = req.expression_attribute_names(format!("#c{i}"), *c);
        }
        req.update_expression(zero)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":exp", self.expires_at())
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(|e| port_error("dynamodb.batch_create", e))?;

        // A resumed batch keeps what it recorded: only documents it lacks are added.
        let existing =
            self.existing("dynamodb.batch_create", items.iter().map(|(k, _)| item_key(batch, k)).collect()).await?;
        let known: std::collections::HashSet<&str> = existing.iter().filter_map(|i| get_s(i, "sk")).collect();
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<&(DocumentKey, u64)> = items
            .iter()
            .filter(|(k, _)| !known.contains(format!("item#{}", k.as_str()).as_str()) && seen.insert(k.as_str()))
            .collect();
        // Up to 99 puts and the counters' update per transaction (the limit is 100 actions).
        for group in fresh.chunks(99) {
            if !self.add_items(batch, group).await? {
                // Someone added one of these at the same moment: add them one by one, skipping theirs.
                for one in group {
                    self.add_items(batch, std::slice::from_ref(one)).await?;
                }
            }
        }
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn counters(&self, batch: &BatchId) -> Result<BatchCounters, PortError> {
        let m = self.meta(batch).await?;
        let c = |name: &str| get_n(&m, name).unwrap_or(0).max(0) as u64;
        Ok(BatchCounters {
            total: c("total"),
            pending: c("pending"),
            done: c("done"),
            failed: c("failed"),
            skipped: c("skipped"),
            bytes_total: c("bytes_total"),
            bytes_done: c("bytes_done"),
        })
    }

    #[instrument(skip_all, err)]
    async fn timing(&self, batch: &BatchId) -> Result<BatchTiming, PortError> {
        let m = self.meta(batch).await?;
        let created_ms = get_n(&m, "created_ms").unwrap_or(0);
        // `updated_ms` is set by the first recorded outcome only (creation sets `created_ms`).
        Ok(BatchTiming { created_ms, updated_ms: get_n(&m, "updated_ms") })
    }

    #[instrument(skip_all, err)]
    async fn record(&self, batch: &BatchId, document: &DocumentKey, outcome: &BatchOutcome) -> Result<(), PortError> {
        let new = State::of(outcome);
        for _ in 0..RACES {
            let item = self.read("dynamodb.batch_record", item_key(batch, document)).await?.ok_or_else(|| {
                PortError::NotFound { what: format!("document {} in batch {}", document.as_str(), batch.as_str()) }
            })?;
            let prev = get_s(&item, "state").and_then(State::parse).unwrap_or(State::Pending);
            let failure = match outcome {
                BatchOutcome::Failed { failure, .. } => Some(failure),
                _ => None,
            };
            if prev == new && failure.is_none_or(|f| failure_of(&item).as_ref() == Some(f)) {
                return Ok(());
            }
            let bytes = get_n(&item, "bytes").unwrap_or(0);
            let mut update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(item_key(batch, document)))
                .condition_expression("#st = :prev")
                .expression_attribute_names("#st", "state")
                .expression_attribute_values(":prev", s(prev.name()))
                .expression_attribute_values(":new", s(new.name()))
                .expression_attribute_values(":exp", self.expires_at());
            update = match failure {
                Some(f) => update
                    .update_expression("SET #st = :new, expires_at = :exp, fcode = :fc, fmsg = :fm, fretry = :fr")
                    .expression_attribute_values(":fc", s(&f.code))
                    .expression_attribute_values(":fm", s(&f.message))
                    .expression_attribute_values(":fr", AttributeValue::Bool(f.retryable)),
                None => update.update_expression("SET #st = :new, expires_at = :exp REMOVE fcode, fmsg, fretry"),
            };
            let mut actions = vec![
                TransactWriteItem::builder()
                    .update(update.build().map_err(build_error("dynamodb.batch_record"))?)
                    .build(),
            ];
            if prev != new {
                let mut adds = vec![(prev.name(), -1), (new.name(), 1)];
                if prev == State::Pending {
                    adds.push(("bytes_done", bytes));
                }
                actions.push(self.counters_update(batch, &adds)?);
            }
            if self.transact("dynamodb.batch_record", actions).await? {
                return Ok(());
            }
        }
        Err(PortError::Conflict { operation: "dynamodb.batch_record" })
    }

    #[instrument(skip_all, err)]
    async fn failures(&self, batch: &BatchId) -> Result<Vec<(DocumentKey, Failure)>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :item)")
            .filter_expression("#st = :failed")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":pk", batch_pk(batch))
            .expression_attribute_values(":item", s("item#"))
            .expression_attribute_values(":failed", s("failed"))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("dynamodb.batch_failures", e))?;
            for item in page.items() {
                if let (Some(key), Some(f)) = (get_s(item, "key"), failure_of(item)) {
                    out.push((DocumentKey::new(key), f));
                }
            }
        }
        Ok(out)
    }
}

impl DynamoState {
    /// Adds batch documents and their counts in one transaction; `false` when one of them
    /// already exists (nothing is written then).
    async fn add_items(&self, batch: &BatchId, group: &[&(DocumentKey, u64)]) -> Result<bool, PortError> {
        if group.is_empty() {
            return Ok(true);
        }
        let mut actions = Vec::with_capacity(group.len() + 1);
        for (key, bytes) in group {
            let mut item = item_key(batch, key);
            item.insert("key".into(), s(key.as_str()));
            item.insert("bytes".into(), n(bytes));
            item.insert("state".into(), s(State::Pending.name()));
            item.insert("expires_at".into(), self.expires_at());
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(build_error("dynamodb.batch_create"))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        let bytes: u64 = group.iter().map(|(_, b)| b).sum();
        let count = group.len() as i64;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(batch)))
            .update_expression("ADD #t :n, #p :n, #b :b")
            .expression_attribute_names("#t", "total")
            .expression_attribute_names("#p", "pending")
            .expression_attribute_names("#b", "bytes_total")
            .expression_attribute_values(":n", n(count))
            .expression_attribute_values(":b", n(bytes))
            .build()
            .map_err(build_error("dynamodb.batch_create"))?;
        actions.push(TransactWriteItem::builder().update(update).build());
        self.transact("dynamodb.batch_create", actions).await
    }
}

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
