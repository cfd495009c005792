//! `quarry cache` as a user meets it: the real binary, the real model and SQLite. The cache fills
//! as documents are indexed, is reported per model, and is cleared by model and by age; an edited
//! document then embeds what the cleared cache no longer holds, and the same paragraph in two
//! documents is stored once.

use crate::common;

use std::path::Path;

use common::quarry;

fn ok(args: &[&str], dir: &Path) -> String {
    let (code, out, err) = quarry(args, dir);
    assert_eq!(code, 0, "quarry {args:?}\nstdout: {out}\nstderr: {err}");
    out
}

/// The entries `quarry cache stats` reports in all.
fn entries(out: &str) -> u64 {
    let total = out.lines().find_map(|l| l.strip_prefix("total: ")).unwrap_or_else(|| panic!("no total: {out}"));
    total.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count: {out}"))
}

#[test]
fn the_cache_is_reported_per_model_and_cleared_by_model_and_by_age() {
    let dir = common::scratch("cache", "stats");
    let shared = "Coffee contains caffeine, which blocks adenosine receptors and keeps people awake.";
    std::fs::write(dir.join("a.md"), format!("# A\n\n{shared}\n")).expect("write");
    std::fs::write(dir.join("b.txt"), "Tea leaves are steamed or withered, rolled and dried.\n").expect("write");
    ok(&["ingest", ".", "--quiet"], &dir);

    let stats = ok(&["cache", "stats"], &dir);
    assert!(stats.contains("sentence-transformers/all-MiniLM-L6-v2  384-d  2 entries"), "{stats}");
    assert_eq!(entries(&stats), 2);
    assert!(
        stats.contains("of a 1.0 GiB cap") && stats.contains("stored as int8") && stats.contains("30 days"),
        "{stats}"
    );

    // The same paragraph in another document: its vector comes from the cache, stored once.
    std::fs::write(dir.join("c.md"), format!("# A\n\n{shared}\n")).expect("write");
    ok(&["ingest", ".", "--quiet"], &dir);
    assert_eq!(entries(&ok(&["cache", "stats"], &dir)), 2, "nothing new to store");

    let out = ok(&["cache", "clear", "--older-than", "1d"], &dir);
    assert!(out.starts_with("removed 0 cached vectors"), "nothing is a day old: {out}");
    let out = ok(&["cache", "clear", "--model", "someone/else"], &dir);
    assert!(out.starts_with("removed 0 cached vectors"), "another model's entries only: {out}");
    let out = ok(&["cache", "clear", "--model", "sentence-transformers/all-MiniLM-L6-v2"], &dir);
    assert!(out.starts_with("removed 2 cached vectors"), "{out}");
    assert_eq!(entries(&out), 0);

    // Cleared: the index keeps its vectors (search still answers), and an edit embeds again.
    let hits = ok(&["search", "caffeine", "--dir", "."], &dir);
    assert!(hits.contains("a.md") || hits.contains("c.md"), "{hits}");
    std::fs::write(dir.join("b.txt"), "Tea leaves are steamed, rolled and dried in the sun.\n").expect("write");
    ok(&["ingest", ".", "--quiet"], &dir);
    assert_eq!(entries(&ok(&["cache", "stats"], &dir)), 1, "the edited document's chunk");

    let (code, _, err) = quarry(&["cache", "clear", "--older-than", "3w"], &dir);
    assert_eq!(code, 2, "a unit it does not know is a usage error: {err}");
    assert!(err.contains("the unit is d, h, m or s"), "{err}");
}
