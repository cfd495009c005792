//! The stable fuzz harness, reduced for CI: every target, a fixed seed, a few hundred inputs each.
//! No input may panic, and none may hang (a bound of 10 s on this shared machine; the long run,
//! `scripts/fuzz.sh`, reports the slowest input against the 1 s target).

use std::path::PathBuf;
use std::time::Duration;

use quarry_fuzz::{Harness, Target};

#[test]
fn no_target_panics_or_hangs_on_mutated_and_built_inputs() {
    let harness = Harness::new(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")).expect("harness");
    let runs = std::env::var("QUARRY_FUZZ_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    for target in Target::ALL {
        let s = harness.run(target, runs, 20_261_206);
        assert_eq!(s.execs, runs);
        assert!(
            s.crashes.is_empty(),
            "{}: {} crash(es), the first: {} on {:?}",
            target.name(),
            s.crashes.len(),
            s.crashes[0].1,
            String::from_utf8_lossy(&s.crashes[0].0)
        );
        assert!(s.slowest < Duration::from_secs(10), "{}: an input took {:?}", target.name(), s.slowest);
        // Inputs that all fail the first check would exercise nothing behind it.
        assert!(s.accepted * 100 >= s.execs, "{}: only {} of {} inputs accepted", target.name(), s.accepted, s.execs);
    }
}
