//! Embedding spend per scope ([`SpendLedger`]) in one item per scope, `held` being settled spend
//! plus reservations. A reservation is a conditional `ADD` (`held <= limit - cost`), in one
//! transaction over every charged scope, so that concurrent embed-workers can never together pass
//! a limit: each check-and-take is one atomic step. Settling needs no condition: an `ADD` of what
//! was billed and the release of what was reserved.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
use quarry_core::PortError;
use quarry_core::ports::Usage;
use quarry_core::spend::{Charge, Reservation, SpendLedger, SpendScope, Spent};
use tracing::instrument;

use super::{DynamoState, Item, RACES, TTL, get_n, n, s};
use crate::{build_error, port_error};

/// Days are kept for a year of reports; a batch's spend lives as long as its batch.
const DAY_TTL_S: i64 = 400 * 24 * 3600;

fn spend_key(scope: &SpendScope) -> Item {
    HashMap::from([("pk".to_owned(), s(format!("spend#{}", scope.key()))), ("sk".to_owned(), s("spend"))])
}

impl DynamoState {
    fn spend_expiry(&self, scope: &SpendScope) -> aws_sdk_dynamodb::types::AttributeValue {
        let ttl = match scope {
            SpendScope::Day(_) => DAY_TTL_S,
            SpendScope::Batch(_) => TTL.as_secs() as i64,
        };
        n((self.clock)() / 1000 + ttl)
    }

    fn held(item: Option<&Item>) -> u64 {
        item.and_then(|i| get_n(i, "held")).unwrap_or(0).max(0) as u64
    }
}

impl SpendLedger for DynamoState {
    #[instrument(skip_all, err, fields(scopes = charges.len()))]
    async fn reserve(&self, charges: &[Charge], nanodollars: u64) -> Result<Reservation, PortError> {
        let cost = nanodollars as i64;
        for _ in 0..RACES {
            let mut actions = Vec::with_capacity(charges.len());
            for charge in charges {
                let mut update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(spend_key(&charge.scope)))
                    .update_expression("ADD held :c, reserved :c SET updated_ms = :now, expires_at = :exp")
                    .expression_attribute_values(":c", n(cost))
                    .expression_attribute_values(":now", n((self.clock)()))
                    .expression_attribute_values(":exp", self.spend_expiry(&charge.scope));
                if let Some(limit) = charge.limit {
                    if nanodollars > limit {
                        return Ok(Reservation::Refused { scope: charge.scope.clone(), held: 0, limit });
                    }
                    update = update
                        .condition_expression("attribute_not_exists(held) OR held <= :max")
                        .expression_attribute_values(":max", n(limit - nanodollars));
                }
                let update = update.build().map_err(build_error("dynamodb.spend_reserve"))?;
                actions.push(TransactWriteItem::builder().update(update).build());
            }
            if self.transact("dynamodb.spend_reserve", actions).await? {
                return Ok(Reservation::Granted);
            }
            // Cancelled: a limit would be passed, or another reservation raced ours on the same
            // item (a transaction conflict). Read which, and try again only for a race.
            for charge in charges {
                let Some(limit) = charge.limit else { continue };
                let held = Self::held(self.read("dynamodb.spend_reserve", spend_key(&charge.scope)).await?.as_ref());
                if held + nanodollars > limit {
                    return Ok(Reservation::Refused { scope: charge.scope.clone(), held, limit });
                }
            }
        }
        Err(PortError::Conflict { operation: "dynamodb.spend_reserve" })
    }

    #[instrument(skip_all, err, fields(scopes = scopes.len()))]
    async fn settle(&self, scopes: &[SpendScope], reserved: u64, used: Usage) -> Result<(), PortError> {
        let delta = used.nanodollars as i64 - reserved as i64;
        for scope in scopes {
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(spend_key(scope)))
                .update_expression(
                    "ADD held :d, reserved :r, nanodollars :nd, tokens :t SET updated_ms = :now, expires_at = :exp",
                )
                .expression_attribute_values(":d", n(delta))
                .expression_attribute_values(":r", n(-(reserved as i64)))
                .expression_attribute_values(":nd", n(used.nanodollars))
                .expression_attribute_values(":t", n(used.tokens))
                .expression_attribute_values(":now", n((self.clock)()))
                .expression_attribute_values(":exp", self.spend_expiry(scope))
                .send()
                .await
                .map_err(|e| port_error("dynamodb.spend_settle", e))?;
        }
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn spent(&self, scope: &SpendScope) -> Result<Spent, PortError> {
        let item = self.read("dynamodb.spend", spend_key(scope)).await?;
        let get = |name: &str| item.as_ref().and_then(|i| get_n(i, name)).unwrap_or(0).max(0) as u64;
        Ok(Spent {
            used: Usage { tokens: get("tokens"), nanodollars: get("nanodollars") },
            reserved_nanodollars: get("reserved"),
        })
    }
}
