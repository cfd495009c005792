//! Batches: a counters item moved by atomic `ADD` in the same transaction as the conditional write
//! of a document's state, so that an outcome delivered twice counts once ([`BatchTracker`]).

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use quarry_core::ports::{BatchOutcome, BatchTiming, BatchTracker};
use quarry_core::{BatchCounters, BatchId, DocumentKey, Failure, PortError};
use tracing::instrument;

use super::{
    DynamoState, RACES, RECENT_INDEX, RECENT_PK, RECENT_SK, batch_pk, failure_of, get_n, get_s, item_key, meta_key, n,
    s,
};
use crate::{build_error, port_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Done,
    Failed,
    Skipped,
    /// Pending, held back by a budget: counted in `pending` and in `paused`.
    Paused,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Done => "done",
            State::Failed => "failed",
            State::Skipped => "skipped",
            State::Paused => "paused",
        }
    }

    /// The counters a document in this state is counted in.
    fn counters(self) -> &'static [&'static str] {
        match self {
            State::Pending => &["pending"],
            State::Paused => &["pending", "paused"],
            State::Done => &["done"],
            State::Failed => &["failed"],
            State::Skipped => &["skipped"],
        }
    }

    fn waiting(self) -> bool {
        matches!(self, State::Pending | State::Paused)
    }

    fn parse(s: &str) -> Option<State> {
        [State::Pending, State::Done, State::Failed, State::Skipped, State::Paused].into_iter().find(|x| x.name() == s)
    }

    fn of(outcome: &BatchOutcome) -> State {
        match outcome {
            BatchOutcome::Indexed { .. } => State::Done,
            BatchOutcome::Unchanged { .. } => State::Skipped,
            BatchOutcome::Failed { .. } => State::Failed,
            BatchOutcome::Paused { .. } => State::Paused,
        }
    }
}

impl BatchTracker for DynamoState {
    #[instrument(skip_all, err, fields(items = items.len()))]
    async fn create(&self, batch: &BatchId, items: &[(DocumentKey, u64)]) -> Result<(), PortError> {
        let now = (self.clock)();
        let counters = ["total", "pending", "done", "failed", "skipped", "paused", "bytes_total", "bytes_done"];
        let mut zero =
            String::from("SET created_ms = if_not_exists(created_ms, :now), expires_at = :exp, #recent = :batch ADD ");
        zero.push_str(&(0..counters.len()).map(|i| format!("#c{i} :zero")).collect::<Vec<_>>().join(", "));
        let mut req = self.client.update_item().table_name(&self.table).set_key(Some(meta_key(batch)));
        for (i, c) in counters.iter().enumerate() {
            req = req.expression_attribute_names(format!("#c{i}"), *c);
        }
        req.update_expression(zero)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":exp", self.expires_at())
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_names("#recent", RECENT_PK)
            .expression_attribute_values(":batch", s("batch"))
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
            paused: c("paused"),
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
            let paused;
            let failure = match outcome {
                BatchOutcome::Failed { failure, .. } => Some(failure),
                BatchOutcome::Paused { reason } => {
                    paused = Failure { code: reason.clone(), message: String::new(), retryable: true };
                    Some(&paused)
                }
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
                let mut adds: Vec<(&str, i64)> = Vec::new();
                for (names, delta) in [(prev.counters(), -1), (new.counters(), 1)] {
                    for name in names {
                        match adds.iter_mut().find(|(n, _)| n == name) {
                            Some((_, d)) => *d += delta,
                            None => adds.push((name, delta)),
                        }
                    }
                }
                if prev.waiting() != new.waiting() {
                    adds.push(("bytes_done", if prev.waiting() { bytes } else { -bytes }));
                }
                adds.retain(|(_, d)| *d != 0);
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
        let items = self.items_in(batch, State::Failed, "dynamodb.batch_failures").await?;
        Ok(items.iter().filter_map(|item| Some((DocumentKey::new(get_s(item, "key")?), failure_of(item)?))).collect())
    }

    #[instrument(skip_all, err)]
    async fn paused(&self, batch: &BatchId) -> Result<Vec<(DocumentKey, String)>, PortError> {
        let items = self.items_in(batch, State::Paused, "dynamodb.batch_paused").await?;
        let mut out: Vec<(DocumentKey, String)> = items
            .iter()
            .filter_map(|item| {
                Some((DocumentKey::new(get_s(item, "key")?), get_s(item, "fcode").unwrap_or_default().to_owned()))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    #[instrument(skip_all, err)]
    async fn recent(&self, limit: usize) -> Result<Vec<(BatchId, i64)>, PortError> {
        let mut out = Vec::new();
        let mut start = None;
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(RECENT_INDEX)
                .key_condition_expression("#recent = :batch")
                .expression_attribute_names("#recent", RECENT_PK)
                .expression_attribute_values(":batch", s("batch"))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| port_error("dynamodb.batch_recent", e))?;
            for item in page.items() {
                let id = get_s(item, "pk").and_then(|pk| pk.strip_prefix("batch#"));
                if let (Some(id), Some(created)) = (id, get_n(item, RECENT_SK)) {
                    out.push((BatchId::new(id), created));
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

impl DynamoState {
    /// The batch's documents in `state`, by a consistent query of its items.
    async fn items_in(
        &self,
        batch: &BatchId,
        state: State,
        operation: &'static str,
    ) -> Result<Vec<super::Item>, PortError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :item)")
            .filter_expression("#st = :state")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":pk", batch_pk(batch))
            .expression_attribute_values(":item", s("item#"))
            .expression_attribute_values(":state", s(state.name()))
            .consistent_read(true)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            out.extend(page.map_err(|e| port_error(operation, e))?.items.unwrap_or_default());
        }
        Ok(out)
    }

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
