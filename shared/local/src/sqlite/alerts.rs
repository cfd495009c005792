//! The alert router's ledger ([`AlertLedger`]) for `quarry serve`: claims and group members in
//! two tables, each row with its expiry. One connection serialises the writes, so a claim is a
//! plain conditional insert.

use std::time::Duration;

use quarry_core::PortError;
use quarry_core::ports::AlertLedger;
use rusqlite::params;

use super::{SqliteStore, db_error};

impl SqliteStore {
    fn until(&self, ttl: Duration) -> (i64, i64) {
        let now = (self.clock)();
        (now, now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)))
    }
}

impl AlertLedger for SqliteStore {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<bool, PortError> {
        let (now, until) = self.until(ttl);
        let conn = self.conn();
        // Taken if absent, or if the holder's claim has expired.
        let changed = conn
            .execute(
                "INSERT INTO alert_claims (key, expires_ms) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET expires_ms = excluded.expires_ms WHERE alert_claims.expires_ms <= ?3",
                params![key, until, now],
            )
            .map_err(db_error("alerts.claim"))?;
        Ok(changed == 1)
    }

    async fn release(&self, key: &str) -> Result<(), PortError> {
        self.conn()
            .execute("DELETE FROM alert_claims WHERE key = ?1", params![key])
            .map_err(db_error("alerts.release"))?;
        Ok(())
    }

    async fn append(&self, group: &str, id: &str, payload: &str, ttl: Duration) -> Result<(), PortError> {
        let (_, until) = self.until(ttl);
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO alert_members (grp, id, payload, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![group, id, payload, until],
            )
            .map_err(db_error("alerts.append"))?;
        Ok(())
    }

    async fn drain(&self, group: &str) -> Result<Vec<String>, PortError> {
        let now = (self.clock)();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_error("alerts.drain"))?;
        let members = {
            let mut stmt = tx
                .prepare("SELECT payload FROM alert_members WHERE grp = ?1 AND expires_ms > ?2 ORDER BY rowid")
                .map_err(db_error("alerts.drain"))?;
            let rows =
                stmt.query_map(params![group, now], |r| r.get::<_, String>(0)).map_err(db_error("alerts.drain"))?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_error("alerts.drain"))?
        };
        tx.execute("DELETE FROM alert_members WHERE grp = ?1", params![group]).map_err(db_error("alerts.drain"))?;
        tx.commit().map_err(db_error("alerts.drain"))?;
        Ok(members)
    }

    async fn waiting(&self, group: &str) -> Result<bool, PortError> {
        let now = (self.clock)();
        self.conn()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM alert_members WHERE grp = ?1 AND expires_ms > ?2)",
                params![group, now],
                |r| r.get::<_, bool>(0),
            )
            .map_err(db_error("alerts.waiting"))
    }
}
