//! The spend ledger's contract: reservations all-or-nothing against every limit, settlement that
//! adds what was billed and releases what was held, and concurrent reservations that together
//! never pass a limit.

use quarry_core::BatchId;
use quarry_core::ports::Usage;
use quarry_core::spend::{Charge, Reservation, SpendLedger, SpendScope, Spent};

/// Takes a fresh ledger.
pub async fn spend_ledger<L: SpendLedger>(ledger: &L) {
    let day = SpendScope::Day("2026-12-05".into());
    let batch = SpendScope::Batch(BatchId::new("contract-spend"));
    assert_eq!(ledger.spent(&day).await.expect("spent"), Spent::default(), "a scope never charged spent nothing");
    let charges = [Charge { scope: day.clone(), limit: Some(1_000) }, Charge { scope: batch.clone(), limit: None }];

    assert_eq!(ledger.reserve(&charges, 600).await.expect("reserve"), Reservation::Granted);
    let held = ledger.spent(&day).await.expect("spent");
    assert_eq!((held.used, held.reserved_nanodollars, held.held()), (Usage::default(), 600, 600));
    // 600 held of 1,000: another 600 would pass the limit, in the day; the batch has none.
    match ledger.reserve(&charges, 600).await.expect("reserve") {
        Reservation::Refused { scope, held, limit } => assert_eq!((scope, held, limit), (day.clone(), 600, 1_000)),
        r @ Reservation::Granted => panic!("over the limit: {r:?}"),
    }
    assert_eq!(ledger.spent(&batch).await.expect("spent").reserved_nanodollars, 600, "refused means none reserved");

    // Settled for less than reserved: what was billed stays, the rest is free again.
    ledger.settle(&[day.clone(), batch.clone()], 600, Usage { tokens: 25, nanodollars: 500 }).await.expect("settle");
    let after = ledger.spent(&day).await.expect("spent");
    assert_eq!((after.used, after.reserved_nanodollars), (Usage { tokens: 25, nanodollars: 500 }, 0));
    assert_eq!(ledger.spent(&batch).await.expect("spent").used, Usage { tokens: 25, nanodollars: 500 });
    // A failed request is settled with nothing used.
    assert_eq!(ledger.reserve(&charges, 500).await.expect("reserve"), Reservation::Granted, "exactly to the limit");
    ledger.settle(&[day.clone(), batch.clone()], 500, Usage::default()).await.expect("settle");
    assert_eq!(ledger.spent(&day).await.expect("spent").held(), 500);
    let alone = [Charge { scope: SpendScope::Day("2026-12-06".into()), limit: Some(100) }];
    assert!(matches!(ledger.reserve(&alone, 101).await.expect("reserve"), Reservation::Refused { .. }));

    // Eight workers reserving 100 at a time against 1,000: exactly ten are granted, never more.
    let race = SpendScope::Batch(BatchId::new("contract-race"));
    let limited = vec![Charge { scope: race.clone(), limit: Some(1_000) }];
    let worker = |_| async {
        let mut granted = 0;
        for _ in 0..4 {
            if ledger.reserve(&limited, 100).await.expect("reserve") == Reservation::Granted {
                granted += 1;
            }
        }
        granted
    };
    let granted: u32 = futures::future::join_all((0..8).map(worker)).await.into_iter().sum();
    assert_eq!(granted, 10, "concurrent reservations fill the limit and never pass it");
    assert_eq!(ledger.spent(&race).await.expect("spent").held(), 1_000);
}
