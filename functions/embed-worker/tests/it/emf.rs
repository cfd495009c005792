//! The embed-worker's real binary under a Runtime API on loopback, over moto and the real model:
//! what it prints to stdout (where CloudWatch Logs reads it) holds EMF blobs that pass the
//! specification, flushed once per invocation, with the indexing metrics the dashboard and alarms
//! read.

use std::time::Duration;

use quarry_aws::provision;
use quarry_testkit::runtime::{emf_blobs, invoke, sqs_event, values};
use serde_json::json;

#[test]
fn stdout_carries_valid_emf_once_per_invocation() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let objects: [(&str, &[u8]); 2] = [("a.txt", b"Calcium and vitamin D keep bones strong."), ("empty.txt", b"")];
    let name = quarry_testkit::moto::unique_name("emf");
    let mut env = rt
        .block_on(provision::emulated(quarry_testkit::moto::endpoint(), &name, quarry_embed::DIMENSION, &objects))
        .expect("a deployment on moto");
    env.extend([
        ("QUARRY_MODEL_DIR", quarry_testkit::model_dir().display().to_string()),
        ("RUST_LOG", "info".to_owned()),
    ]);
    let job = |key: &str| json!({"action": "index", "key": key, "version": null, "batch": null});
    let events = vec![sqs_event(&[job("a.txt"), job("empty.txt")]), sqs_event(&[job("a.txt")])];
    let run = invoke(env!("CARGO_BIN_EXE_embed-worker"), &env, events, Duration::from_secs(120));
    assert!(run.answers.iter().all(|(_, ok, _)| *ok), "{:?}\n{}", run.answers, run.stderr);

    let blobs = emf_blobs(&run);
    assert!(!blobs.is_empty(), "no EMF on stdout:\n{}", run.stdout);
    assert!(blobs.iter().all(|b| b["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Quarry"));
    assert_eq!(values(&blobs, "cold_starts"), [1.0], "one cold start, flushed once");
    // Per outcome: the first invocation indexed one and failed one; the second found it unchanged.
    let by = |outcome: &str| -> f64 {
        blobs.iter().filter(|b| b["outcome"] == outcome).flat_map(|b| b["documents"].as_f64()).sum()
    };
    assert_eq!((by("indexed"), by("failed"), by("unchanged")), (1.0, 1.0, 1.0));
    assert!(blobs.iter().any(|b| b["code"] == "empty_file" && b["document_failures"] == 1));
    assert_eq!(values(&blobs, "document_latency").len(), 1);
    assert_eq!(values(&blobs, "queue_lag").len(), 3, "one per message");
    assert!(values(&blobs, "queue_lag").iter().all(|&ms| ms >= 1_000.0));
    // Two flushes, two timestamps at least: each invocation's metrics left with it.
    let stamps: std::collections::BTreeSet<u64> =
        blobs.iter().filter_map(|b| b["_aws"]["Timestamp"].as_u64()).collect();
    assert!(stamps.len() >= 2, "{stamps:?}");
    // A rollup: every blob is also published without dimensions.
    assert!(blobs.iter().all(|b| b["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0] == json!([])));
}
