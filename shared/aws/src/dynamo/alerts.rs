//! The alert router's ledger ([`AlertLedger`]) in the state table: a claim is a conditional put
//! (absent, or expired), a group member an item under the group's partition, taken by a delete
//! that returns it, so that two drains never both get one member. Everything carries
//! `expires_at` for DynamoDB's TTL; expiry is also checked on read, as TTL deletes lag.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use quarry_core::PortError;
use quarry_core::ports::AlertLedger;
use tracing::instrument;

use super::{DynamoState, Item, get_n, get_s, n, s};
use crate::port_error;

fn claim_key(key: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(format!("alert#claim#{key}"))), ("sk".to_owned(), s("claim"))])
}

fn group_pk(group: &str) -> AttributeValue {
    s(format!("alert#group#{group}"))
}

impl DynamoState {
    fn window(&self, ttl: Duration) -> (i64, i64) {
        let now = (self.clock)();
        (now, now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)))
    }

    async fn members(&self, group: &str, limit: Option<i32>) -> Result<Vec<Item>, PortError> {
        let now = (self.clock)();
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", group_pk(group))
                .consistent_read(true)
                .set_limit(limit)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| port_error("dynamodb.alert_members", e))?;
            out.extend(
                page.items.unwrap_or_default().into_iter().filter(|i| get_n(i, "until_ms").is_some_and(|u| u > now)),
            );
            start = page.last_evaluated_key;
            if start.is_none() || (limit.is_some() && !out.is_empty()) {
                return Ok(out);
            }
        }
    }
}

impl AlertLedger for DynamoState {
    #[instrument(skip_all, err)]
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, PortError> {
        let (now, until) = self.window(ttl);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(claim_key(key)))
            .item("until_ms", n(until))
            .item("expires_at", n(until / 1000 + 1))
            .condition_expression("attribute_not_exists(pk) OR until_ms <= :now")
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => Ok(false),
            Err(e) => Err(port_error("dynamodb.alert_claim", e)),
        }
    }

    #[instrument(skip_all, err)]
    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(claim_key(key)))
            .send()
            .await
            .map_err(|e| port_error("dynamodb.alert_release", e))?;
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn append(&self, group: &str, id: &str, payload: &str, ttl: Duration) -> Result<(), PortError> {
        let (now, until) = self.window(ttl);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", group_pk(group))
            .item("sk", s(format!("m#{id}")))
            .item("payload", s(payload))
            .item("at_ms", n(now))
            .item("until_ms", n(until))
            .item("expires_at", n(until / 1000 + 1))
            // The same member twice is one member.
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|x| x.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(port_error("dynamodb.alert_append", e)),
        }
    }

    #[instrument(skip_all, err)]
    async fn drain(&self, group: &str) -> Result<Vec<String>, PortError> {
        let mut taken: Vec<(i64, String)> = Vec::new();
        for item in self.members(group, None).await? {
            let Some(sk) = get_s(&item, "sk") else { continue };
            let old = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key("pk", group_pk(group))
                .key("sk", s(sk))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| port_error("dynamodb.alert_drain", e))?;
            // Deleted by another drain in between: theirs, not ours.
            if let Some(old) = old.attributes
                && let Some(p) = get_s(&old, "payload")
            {
                taken.push((get_n(&old, "at_ms").unwrap_or(0), p.to_owned()));
            }
        }
        taken.sort_by_key(|(at, _)| *at);
        Ok(taken.into_iter().map(|(_, p)| p).collect())
    }

    #[instrument(skip_all, err)]
    async fn waiting(&self, group: &str) -> Result<bool, PortError> {
        Ok(!self.members(group, Some(25)).await?.is_empty())
    }
}
