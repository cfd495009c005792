//! Scores a user can read, on the sample folder the README searches: the real binary, the real
//! model. In hybrid mode the right document leads and its score stands clearly apart from the
//! documents that do not answer (docs/RELEVANCE.md, "Scores a user can read").

use crate::common;

use std::path::Path;

/// `quarry ARGS` in `dir`, which must succeed: its stdout.
fn quarry(args: &[&str], dir: &Path) -> String {
    let (code, out, err) = common::quarry(args, dir);
    assert_eq!(code, 0, "quarry {args:?}: {err}");
    out
}

/// The ranked (score, file) lines of `quarry search`.
fn ranked(out: &str) -> Vec<(f32, String)> {
    out.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let rank = parts.next()?;
            rank.strip_suffix('.')?.parse::<u32>().ok()?;
            Some((parts.next()?.parse().ok()?, parts.next()?.to_owned()))
        })
        .collect()
}

#[test]
fn the_sample_queries_lead_with_their_answer_by_a_clear_margin() {
    let dir = std::env::temp_dir().join(format!("quarry-cli-relevance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples");
    for entry in std::fs::read_dir(&samples).expect("samples") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    quarry(&["ingest", ".", "--quiet"], &dir);
    // Each query, the document that answers it, and the documents that do not (the rest).
    let cases = [
        ("who is at risk of vitamin D deficiency", &["vitamin-d.md"][..]),
        ("does salt raise blood pressure", &["study.json"][..]),
        // Both answer: the fiber text, and the food table with its fiber column.
        ("which foods are high in fiber", &["fiber.txt", "foods.csv"][..]),
    ];
    for (query, answers) in cases {
        let hits = ranked(&quarry(&["search", "-k", "7", query], &dir));
        assert!(hits.len() > answers.len(), "{query}: {hits:?}");
        let (top, rest) = hits.split_at(answers.len());
        for (_, file) in top {
            assert!(answers.contains(&file.as_str()), "{query}: {hits:?}");
        }
        let weakest_answer = top.iter().map(|(s, _)| *s).fold(f32::INFINITY, f32::min);
        let gap = weakest_answer - rest[0].0;
        assert!(gap >= 0.2 - 1e-3, "{query}: the answers stand {gap:.3} above the rest: {hits:?}");
        assert!(hits.iter().all(|(s, _)| (0.0..=1.0).contains(s)), "{hits:?}");
    }
    std::fs::remove_dir_all(dir).ok();
}
