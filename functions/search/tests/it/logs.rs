//! Log hygiene in Lambda: the search function's real binary at `RUST_LOG=debug`, over moto and the
//! real model, answering API Gateway events whose queries, filters and cursors carry personal data
//! and secrets, refused ones included. Every line it writes is captured; none may hold any of them,
//! nor the deployment's cursor secret.

use std::time::Duration;

use quarry_aws::provision;
use quarry_testkit::lambda::apigw_request;
use quarry_testkit::pii::{self, CARD, EMAIL, JWT, SSN, TOKEN};
use quarry_testkit::runtime::invoke;
use serde_json::{Value, json};

#[test]
fn searching_with_personal_data_logs_none_of_it() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let name = quarry_testkit::moto::unique_name("logs");
    let mut env = rt
        .block_on(provision::emulated(quarry_testkit::moto::endpoint(), &name, quarry_embed::DIMENSION, &[]))
        .expect("a deployment on moto");
    env.extend([
        ("QUARRY_MODEL_DIR", quarry_testkit::model_dir().display().to_string()),
        ("QUARRY_CURSOR_SECRET", pii::CURSOR_SECRET.to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ]);
    let query = format!("who is {EMAIL} with card {CARD}");
    let events = vec![
        apigw_request("POST", "/v1/search", Some(&json!({"query": query}))),
        apigw_request("POST", "/v1/search", Some(&json!({"query": query, "mode": "keyword"}))),
        apigw_request("POST", "/v1/search", Some(&json!({"query": query, "mode": "hybrid"}))),
        apigw_request("POST", "/v1/search", Some(&json!({"query": TOKEN, "filter": {"user.contact": EMAIL}}))),
        apigw_request("POST", "/v1/search", Some(&json!({"query": format!("{EMAIL} {JWT}"), "top_k": 1000}))),
        apigw_request("POST", "/v1/search", Some(&json!({"query": SSN, "filter": {"$bogus": {"email": EMAIL}}}))),
        apigw_request("POST", "/v1/search", Some(&json!({"query": SSN, "cursor": JWT}))),
    ];
    let run = invoke(env!("CARGO_BIN_EXE_search"), &env, events, Duration::from_secs(120));
    let statuses: Vec<u64> = run
        .answers
        .iter()
        .map(|(_, _, body)| {
            serde_json::from_str::<Value>(body).ok().and_then(|v| v["statusCode"].as_u64()).unwrap_or(0)
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 400, 400, 400], "{:?}\n{}", run.answers, run.stderr);
    let logs = format!("{}\n{}", run.stdout, run.stderr);
    pii::assert_clean("the search function", &logs, "\"level\":\"DEBUG\"", &[]);
    // The audit log is in the same lines: each search by its query's hash, with the IAM caller.
    let audited: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "quarry::audit")
        .collect();
    assert_eq!(audited.len(), 7, "one entry per request:\n{logs}");
    let first = &audited[0]["fields"];
    assert_eq!(first["who"], "arn:aws:iam::123456789012:user/searcher", "{first}");
    assert_eq!((&first["route"], &first["status"]), (&json!("/v1/search"), &json!(200)));
    let detail: Value = serde_json::from_str(first["detail"].as_str().unwrap_or("{}")).expect("detail");
    assert_eq!(detail["query_sha256"], quarry_api::audit::fingerprint(&query));
}
