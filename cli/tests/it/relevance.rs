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

/// `quarry eval` on a BEIR-format set a user writes by hand: every mode scored with trec_eval's
/// definitions, the peer's figures beside Quarry's, what a `min_score` keeps, and the hidden
/// levers the relevance work measures with (whole-document vectors, adaptive feedback).
#[test]
fn quarry_eval_scores_a_beir_set_beside_the_peer() {
    let dir = common::scratch("relevance", "eval");
    let data = dir.join("tiny");
    std::fs::create_dir_all(&data).expect("dataset folder");
    let corpus = [
        ("d1", "Vitamin D", "Vitamin D deficiency is common in people with little sun, older adults and darker skin."),
        ("d2", "Salt", "A diet high in sodium raises blood pressure, most of all in salt-sensitive people."),
        ("d3", "Fiber", "Whole grains, beans and lentils are high in dietary fiber, which helps digestion."),
        ("d4", "Omega-3", "Oily fish such as salmon and sardines provide omega-3 fatty acids."),
        ("d5", "Water", "Drinking water through the day keeps the body hydrated; thirst lags behind need."),
        ("d6", "Protein", "Older adults need more protein to keep their muscle as they age."),
    ];
    let lines: Vec<String> = corpus
        .iter()
        .map(|(id, title, text)| serde_json::json!({"_id": id, "title": title, "text": text}).to_string())
        .collect();
    std::fs::write(data.join("corpus.jsonl"), lines.join("\n")).expect("corpus");
    let queries = [
        ("q1", "who is at risk of vitamin D deficiency", "d1"),
        ("q2", "does salt raise blood pressure", "d2"),
        ("q3", "which foods are high in fiber", "d3"),
        ("q4", "an unjudged query is left out", ""),
    ];
    let lines: Vec<String> =
        queries.iter().map(|(id, text, _)| serde_json::json!({"_id": id, "text": text}).to_string()).collect();
    std::fs::write(data.join("queries.jsonl"), lines.join("\n")).expect("queries");
    let qrels: String =
        queries.iter().filter(|(_, _, d)| !d.is_empty()).map(|(q, _, d)| format!("{q}\t{d}\t1\n")).collect();
    std::fs::write(data.join("qrels.tsv"), format!("query-id\tcorpus-id\tscore\n{qrels}")).expect("qrels");
    let figures = serde_json::json!({"ndcg@10": 0.25, "recall@100": 0.5, "mrr@10": 0.125});
    let peer = serde_json::json!({"metrics": {"dense": figures, "bm25": figures, "hybrid": figures}});
    std::fs::write(dir.join("peer.json"), peer.to_string()).expect("peer");

    let out = quarry(
        &["eval", "tiny", "--peer", "peer.json", "--min-score", "0.5", "--doc-vectors", "max", "--adaptive"],
        &dir,
    );
    assert!(out.contains("6 documents indexed, 3 queries with judgments"), "{out}");
    assert!(out.contains("the peer's figures (in brackets) from peer.json"), "{out}");
    for mode in ["semantic", "keyword", "hybrid"] {
        let row = out.lines().find(|l| l.starts_with(&format!("| {mode} |"))).unwrap_or_else(|| panic!("{out}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        // Each query's one judged document leads: nDCG@10, Recall@100 and MRR@10 are all 1.
        assert_eq!(&cells[2..5], ["1.0000 (0.2500)", "1.0000 (0.5000)", "1.0000 (0.1250)"], "{row}");
    }
    assert!(out.contains("0 documents longer than one window got a whole-document vector"), "{out}");
    assert!(out.contains("feedback by the keyword list's strength"), "{out}");
    let kept = out.lines().filter(|l| l.contains("min_score 0.5 | kept")).count();
    assert_eq!(kept, 3, "one line per mode: {out}");

    // A peer file that is there but unreadable is an error, not a comparison silently left out.
    std::fs::write(dir.join("peer.json"), "{\"metrics\": {}}").expect("peer");
    let (code, _, err) = common::quarry(&["eval", "tiny", "--peer", "peer.json"], &dir);
    assert_ne!(code, 0);
    assert!(err.contains("no metrics.dense.ndcg@10"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
