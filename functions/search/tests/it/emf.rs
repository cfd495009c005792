//! The search function's real binary under a Runtime API on loopback, over moto and the real
//! model, answering API Gateway events: its stdout holds EMF blobs that pass the specification,
//! one flush per request, with the search metrics the dashboard and alarms read.

use std::time::Duration;

use quarry_aws::provision;
use quarry_testkit::lambda::apigw_request;
use quarry_testkit::runtime::{emf_blobs, invoke, values};
use serde_json::{Value, json};

#[test]
fn stdout_carries_valid_emf_once_per_request() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let name = quarry_testkit::moto::unique_name("emf");
    let mut env = rt
        .block_on(provision::emulated(quarry_testkit::moto::endpoint(), &name, quarry_embed::DIMENSION, &[]))
        .expect("a deployment on moto");
    env.extend([
        ("QUARRY_MODEL_DIR", quarry_testkit::model_dir().display().to_string()),
        ("QUARRY_CURSOR_SECRET", "an EMF test cursor secret of 32+ characters".to_owned()),
    ]);
    let events = vec![
        apigw_request("POST", "/v1/search", Some(&json!({"query": "bones and calcium"}))),
        apigw_request("POST", "/v1/search", Some(&json!({"query": "   "}))),
        apigw_request("POST", "/v1/search", Some(&json!({"query": "pumps", "top_k": 3}))),
    ];
    let run = invoke(env!("CARGO_BIN_EXE_search"), &env, events, Duration::from_secs(120));
    let statuses: Vec<u64> = run
        .answers
        .iter()
        .map(|(_, _, body)| {
            serde_json::from_str::<Value>(body).ok().and_then(|v| v["statusCode"].as_u64()).unwrap_or(0)
        })
        .collect();
    assert_eq!(statuses, [200, 400, 200], "{:?}\n{}", run.answers, run.stderr);

    let blobs = emf_blobs(&run);
    assert_eq!(values(&blobs, "cold_starts"), [1.0]);
    let requests = |status: &str| -> f64 {
        blobs.iter().filter(|b| b["status"] == status).flat_map(|b| b["search_requests"].as_f64()).sum()
    };
    assert_eq!((requests("ok"), requests("client_error")), (2.0, 1.0));
    let mut searched = blobs.iter().filter(|b| b["status"] == "ok" && b.get("search_requests").is_some());
    assert!(
        searched.clone().count() == 2 && searched.all(|b| b["mode"] == "hybrid"),
        "with the published keyword index configured, hybrid by default"
    );
    let latency = values(&blobs, "search_latency");
    assert_eq!(latency.len(), 2, "successful requests only");
    assert!(latency.iter().all(|&ms| ms > 0.0 && ms < 60_000.0));
    // One flush per request: no blob mixes two requests' counts.
    assert!(blobs.iter().all(|b| b["search_requests"].as_f64().is_none_or(|n| n == 1.0)), "{blobs:?}");
    let dims =
        blobs.iter().find(|b| b.get("search_requests").is_some()).expect("a search blob")["_aws"]["CloudWatchMetrics"]
            [0]["Dimensions"]
            .clone();
    assert_eq!(dims, json!([[], ["mode"], ["status"], ["mode", "status"]]), "the rollups the alarms read");
}
