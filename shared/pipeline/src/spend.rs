//! Budgets, where indexing spends: which scopes a document's embedding is charged to (today, UTC,
//! and its batch), and the alerts a scope's spend raises (a warning at `budget.warn_percent`,
//! critical when a reservation is refused). The reservation itself is the ledger's
//! ([`quarry_core::spend`]); the indexer reserves before each embedding call and settles after.

use std::collections::BTreeMap;

use quarry_core::config::Budget;
use quarry_core::event::{Event, Severity, kind};
use quarry_core::ports::EventPublisher;
use quarry_core::spend::{Charge, SpendLedger, SpendScope};
use quarry_core::{BatchId, PortError};

/// The scopes a document of `batch` is charged to, with their limits.
pub fn charges(budget: &Budget, batch: Option<&BatchId>) -> Vec<Charge> {
    let mut out = vec![Charge { scope: SpendScope::today(), limit: budget.daily_usd.map(|u| u.nanodollars()) }];
    if let Some(b) = batch {
        out.push(Charge { scope: SpendScope::Batch(b.clone()), limit: budget.batch_usd.map(|u| u.nanodollars()) });
    }
    out
}

/// A budget was refused a reservation: embedding stops in its scope until the limit is raised or
/// the day turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    pub scope: SpendScope,
    pub held: u64,
    pub limit: u64,
}

/// Publishes a warning for every limited scope whose spend has reached `warn_percent` of its
/// limit. The occurrence names the scope, the threshold and the limit: every worker that sees it
/// publishes the same one (the router sends it once), and a raised limit warns anew.
pub async fn warn_if_near<L: SpendLedger, V: EventPublisher>(
    ledger: &L,
    budget: &Budget,
    charges: &[Charge],
    events: &V,
) -> Result<(), PortError> {
    for charge in charges {
        let Some(limit) = charge.limit else { continue };
        let held = ledger.spent(&charge.scope).await?.held();
        if u128::from(held) * 100 >= u128::from(limit) * u128::from(budget.warn_percent) {
            events.publish(&budget_event(&charge.scope, held, limit, Severity::Warning)).await?;
        }
    }
    Ok(())
}

/// The `budget_reached` event: warning near the limit, critical at it. Amounts only.
pub fn budget_event(scope: &SpendScope, held: u64, limit: u64, severity: Severity) -> Event {
    let dollars = |nd: u64| format!("${:.4}", nd as f64 / 1e9);
    let percent = (u128::from(held) * 100 / u128::from(limit.max(1))) as u64;
    let (what, reason) = match severity {
        Severity::Critical => (
            "reached",
            "embedding is paused in this scope: raise the budget (budget.daily_usd, budget.batch_usd), or wait for \
             the day to turn, then resume the batch (`quarry retry ID`, POST /v1/batches/{id}/retry)",
        ),
        _ => ("nearly reached", "embedding goes on until the budget is reached, then pauses"),
    };
    Event {
        quarry_event: kind::BUDGET_REACHED.to_owned(),
        resource: scope.key(),
        severity,
        summary: format!("{scope} is {what}: {} of {} spent ({percent}%)", dollars(held), dollars(limit)),
        reason: reason.to_owned(),
        labels: BTreeMap::from([
            ("scope".to_owned(), scope.key()),
            ("held_nanodollars".to_owned(), held.to_string()),
            ("limit_nanodollars".to_owned(), limit.to_string()),
        ]),
        at: jiff::Timestamp::now().to_string(),
        occurrence: format!("{}/{}/{limit}", scope.key(), severity.name()),
    }
}

#[cfg(test)]
mod tests {
    use quarry_core::config::Usd;
    use quarry_core::spend::NoLedger;
    use quarry_testkit::fakes::MemoryEvents;

    use super::*;

    #[test]
    fn a_document_is_charged_to_today_and_its_batch() {
        let budget = Budget { daily_usd: Some(Usd(5)), batch_usd: None, warn_percent: 80 };
        let c = charges(&budget, Some(&BatchId::new("b-1")));
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].scope.clone(), c[0].limit), (SpendScope::today(), Some(5)));
        assert_eq!((c[1].scope.key(), c[1].limit), ("batch#b-1".to_owned(), None));
        assert_eq!(charges(&budget, None).len(), 1);
    }

    #[test]
    fn the_event_says_how_much_of_which_budget() {
        let e = budget_event(&SpendScope::Batch(BatchId::new("b-1")), 850_000_000, 1_000_000_000, Severity::Warning);
        assert_eq!(e.summary, "the budget of batch b-1 is nearly reached: $0.8500 of $1.0000 spent (85%)");
        assert_eq!(e.occurrence, "batch#b-1/warning/1000000000");
        let c = budget_event(&SpendScope::Day("2026-12-05".into()), 10, 10, Severity::Critical);
        assert!(c.summary.starts_with("the daily budget (2026-12-05 UTC) is reached"), "{}", c.summary);
    }

    #[tokio::test]
    async fn nothing_is_said_below_the_threshold() {
        let events = MemoryEvents::default();
        let budget = Budget { daily_usd: Some(Usd(100)), batch_usd: None, warn_percent: 80 };
        warn_if_near(&NoLedger, &budget, &charges(&budget, None), &events).await.expect("checks");
        assert!(events.published().is_empty());
    }
}
