//! Money spent on embedding, counted and limited where it is spent: a request's cost is reserved
//! against every budget it falls under before it is sent, and settled after (what it was billed
//! is added, the reservation released). Reservation is what keeps any number of concurrent
//! workers inside a budget: each checks and takes its share in one atomic step (a SQLite
//! transaction, a DynamoDB conditional update), so they can never together pass the limit.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::ports::Usage;
use crate::{BatchId, PortError};

/// What spend is counted and limited over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendScope {
    /// One UTC day, `YYYY-MM-DD`: every batch, worker and search of that day.
    Day(String),
    /// One batch's documents.
    Batch(BatchId),
}

impl SpendScope {
    /// The UTC day `unix_ms` falls in.
    pub fn day_of(unix_ms: i64) -> SpendScope {
        let ts = jiff::Timestamp::from_millisecond(unix_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        SpendScope::Day(ts.strftime("%Y-%m-%d").to_string())
    }

    /// Today, UTC.
    pub fn today() -> SpendScope {
        SpendScope::day_of(jiff::Timestamp::now().as_millisecond())
    }

    /// The scope as stored: `day#2026-12-05`, `batch#b-…`.
    pub fn key(&self) -> String {
        match self {
            SpendScope::Day(d) => format!("day#{d}"),
            SpendScope::Batch(b) => format!("batch#{}", b.as_str()),
        }
    }
}

impl std::fmt::Display for SpendScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpendScope::Day(d) => write!(f, "the daily budget ({d} UTC)"),
            SpendScope::Batch(b) => write!(f, "the budget of batch {b}"),
        }
    }
}

/// A scope a request is charged to, with its limit in nanodollars (`None`: counted, not limited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub scope: SpendScope,
    pub limit: Option<u64>,
}

/// What a scope has spent: settled usage, plus what requests in flight have reserved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spent {
    pub used: Usage,
    pub reserved_nanodollars: u64,
}

impl Spent {
    /// Used and reserved: what a new reservation is checked against.
    pub fn held(&self) -> u64 {
        self.used.nanodollars + self.reserved_nanodollars
    }
}

/// How a reservation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved in every scope; settle it after the request.
    Granted,
    /// Reserved in none: `scope` holds `held` of its `limit`, and the request would pass it.
    Refused { scope: SpendScope, held: u64, limit: u64 },
}

/// Counts and limits spend per scope ([`Charge`]). Adapters: SQLite locally, DynamoDB on AWS;
/// every one passes the contract suite in `quarry-testkit`.
pub trait SpendLedger: Send + Sync {
    /// Reserves `nanodollars` in every charged scope, all or none: refused when any scope's held
    /// spend plus this would pass its limit.
    fn reserve(
        &self,
        charges: &[Charge],
        nanodollars: u64,
    ) -> impl Future<Output = Result<Reservation, PortError>> + Send;
    /// Ends a granted reservation of `reserved` nanodollars: `used` (what the request was billed;
    /// nothing when it failed) is added, and the reservation released.
    fn settle(
        &self,
        scopes: &[SpendScope],
        reserved: u64,
        used: Usage,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// What `scope` has spent so far (zero for a scope never charged).
    fn spent(&self, scope: &SpendScope) -> impl Future<Output = Result<Spent, PortError>> + Send;
}

/// Spend counted nowhere: for wiring that bills nothing (tests, a local model).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLedger;

impl SpendLedger for NoLedger {
    async fn reserve(&self, _: &[Charge], _: u64) -> Result<Reservation, PortError> {
        Ok(Reservation::Granted)
    }
    async fn settle(&self, _: &[SpendScope], _: u64, _: Usage) -> Result<(), PortError> {
        Ok(())
    }
    async fn spent(&self, _: &SpendScope) -> Result<Spent, PortError> {
        Ok(Spent::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_turn_at_midnight_utc() {
        assert_eq!(SpendScope::day_of(0), SpendScope::Day("1970-01-01".into()));
        let midnight = 1_796_428_800_000; // 2026-12-05T00:00:00Z
        assert_eq!(SpendScope::day_of(midnight - 1).key(), "day#2026-12-04");
        assert_eq!(SpendScope::day_of(midnight).key(), "day#2026-12-05");
        assert_eq!(SpendScope::Batch(BatchId::new("b-1")).key(), "batch#b-1");
    }
}
