//! Embedding spend per scope ([`SpendLedger`]): one row per scope, reserved and settled in
//! immediate transactions, so that a reservation's check and its write are one step.

use quarry_core::PortError;
use quarry_core::ports::Usage;
use quarry_core::spend::{Charge, Reservation, SpendLedger, SpendScope, Spent};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{SqliteStore, db_error};

impl SpendLedger for SqliteStore {
    async fn reserve(&self, charges: &[Charge], nanodollars: u64) -> Result<Reservation, PortError> {
        let now = (self.clock)();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error("spend.reserve"))?;
        for charge in charges {
            let Some(limit) = charge.limit else { continue };
            let held: i64 = tx
                .query_row("SELECT nanodollars + reserved FROM spend WHERE scope = ?1", [charge.scope.key()], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_error("spend.reserve"))?
                .unwrap_or(0);
            let held = held.max(0) as u64;
            if held + nanodollars > limit {
                return Ok(Reservation::Refused { scope: charge.scope.clone(), held, limit });
            }
        }
        for charge in charges {
            tx.execute(
                "INSERT INTO spend (scope, reserved, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (scope) DO UPDATE SET reserved = reserved + ?2, updated_ms = ?3",
                params![charge.scope.key(), nanodollars as i64, now],
            )
            .map_err(db_error("spend.reserve"))?;
        }
        tx.commit().map_err(db_error("spend.reserve"))?;
        Ok(Reservation::Granted)
    }

    async fn settle(&self, scopes: &[SpendScope], reserved: u64, used: Usage) -> Result<(), PortError> {
        let now = (self.clock)();
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_error("spend.settle"))?;
        for scope in scopes {
            tx.execute(
                "INSERT INTO spend (scope, tokens, nanodollars, updated_ms) VALUES (?1, ?2, ?3, ?5)
                 ON CONFLICT (scope) DO UPDATE SET tokens = tokens + ?2, nanodollars = nanodollars + ?3,
                     reserved = MAX(reserved - ?4, 0), updated_ms = ?5",
                params![scope.key(), used.tokens as i64, used.nanodollars as i64, reserved as i64, now],
            )
            .map_err(db_error("spend.settle"))?;
        }
        tx.commit().map_err(db_error("spend.settle"))
    }

    async fn spent(&self, scope: &SpendScope) -> Result<Spent, PortError> {
        let row: Option<(i64, i64, i64)> = self
            .conn()
            .query_row("SELECT tokens, nanodollars, reserved FROM spend WHERE scope = ?1", [scope.key()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(db_error("spend.spent"))?;
        Ok(row.map_or_else(Spent::default, |(tokens, nd, reserved)| Spent {
            used: Usage { tokens: tokens.max(0) as u64, nanodollars: nd.max(0) as u64 },
            reserved_nanodollars: reserved.max(0) as u64,
        }))
    }
}
