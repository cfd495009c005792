//! Log hygiene in Lambda: the search function's real binary at `RUST_LOG=debug`, over moto and the
//! real model, answering API Gateway events whose queries, filters and cursors carry personal data
//! and secrets, refused ones included. Every line it writes is captured; none may hold any of them,
//! nor the deployment's cursor secret.

use std::time::Duration;

use quarry_aws::{Clients, provision};
use quarry_testkit::pii::{self, CARD, EMAIL, JWT, SSN, TOKEN};
use quarry_testkit::runtime::invoke;
use serde_json::{Value, json};

fn request(method: &str, path: &str, body: Option<&Value>) -> Value {
    serde_json::from_str(&quarry_testkit::lambda::apigw_event(method, path, body)).expect("an API Gateway v2 event")
}

#[test]
fn searching_with_personal_data_logs_none_of_it() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = quarry_testkit::moto::endpoint();
    let created = rt.block_on(async {
        let clients = Clients::emulator(endpoint).await;
        provision::create(&clients, &quarry_testkit::moto::unique_name("logs"), quarry_embed::DIMENSION)
            .await
            .expect("provision")
    });
    let mut env = vec![("QUARRY_AWS_ENDPOINT_URL", endpoint.to_owned())];
    env.extend(created.resources.env());
    env.extend([
        ("QUARRY_MODEL_DIR", quarry_testkit::model_dir().display().to_string()),
        ("QUARRY_CURSOR_SECRET", pii::CURSOR_SECRET.to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ]);
    let query = format!("who is {EMAIL} with card {CARD}");
    let events = vec![
        request("POST", "/v1/search", Some(&json!({"query": query}))),
        request("POST", "/v1/search", Some(&json!({"query": query, "mode": "keyword"}))),
        request("POST", "/v1/search", Some(&json!({"query": query, "mode": "hybrid"}))),
        request("POST", "/v1/search", Some(&json!({"query": TOKEN, "filter": {"user.contact": EMAIL}}))),
        request("POST", "/v1/search", Some(&json!({"query": format!("{EMAIL} {JWT}"), "top_k": 1000}))),
        request("POST", "/v1/search", Some(&json!({"query": SSN, "filter": {"$bogus": {"email": EMAIL}}}))),
        request("POST", "/v1/search", Some(&json!({"query": SSN, "cursor": JWT}))),
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
    pii::assert_clean("the search function", &format!("{}\n{}", run.stdout, run.stderr), "\"level\":\"DEBUG\"", &[]);
}
