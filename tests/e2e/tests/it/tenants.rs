//! Tenants on the AWS stores, on moto: documents under `tenants/<id>/` carry their tenant into S3
//! Vectors and the published keyword index, and a JWT caller of the search function (its tenant
//! from a claim, as API Gateway's JWT authorizer passes it) finds only its tenant's, in every mode
//! and whatever filter it sends; an IAM caller finds them all.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use quarry_e2e::{Stack, api};
use serde_json::{Value, json};

fn keys(response: &Value) -> Vec<String> {
    let results = response["results"].as_array().unwrap_or_else(|| panic!("results: {response}"));
    results.iter().map(|r| r["metadata"]["key"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_tenant_finds_its_own_documents_alone_on_the_aws_stores() {
    let stack = Stack::named("tenants").await;
    stack
        .put("tenants/acme/pump.txt", b"Acme pump manual: prime the pump before starting the motor.".to_vec(), &[])
        .await;
    stack
        .put("tenants/globex/pump.txt", b"Globex pump manual: prime the pump and bleed the valves first.".to_vec(), &[])
        .await;
    stack.put("manuals/pump.txt", b"Shared pump manual: prime the pump, then start the motor.".to_vec(), &[]).await;
    let ingest = stack.ingest();
    stack.drain(&stack.created.events_url.clone(), 1, |e| ingest.handle(e)).await;
    let worker = stack.worker();
    stack.drain(&stack.created.resources.queue_url.clone(), 1, |e| worker.handle(e)).await;
    let indexer = stack.keyword_indexer();
    let changes = stack.created.resources.keyword_queue_url.clone().expect("provisioned");
    stack.drain(&changes, 1, |e| quarry_keyword_indexer::handle(&indexer, e)).await;
    assert_eq!(stack.vector_keys().await.len(), 3);

    let router = quarry_search::authorized(stack.router(), "custom:tenant");
    let as_tenant = |tenant: &str, body: Value| {
        let mut event = quarry_testkit::lambda::apigw_request("POST", "/v1/search", Some(&body));
        event["requestContext"]["authorizer"] =
            json!({"jwt": {"claims": {"sub": "user-1", "custom:tenant": tenant}, "scopes": null}});
        event
    };
    for mode in ["semantic", "keyword", "hybrid"] {
        let q = json!({"query": "prime the pump motor", "mode": mode, "top_k": 10});
        let (code, all) = api(&router, "POST", "/v1/search", Some(&q)).await;
        assert_eq!((code, keys(&all).len()), (200, 3), "{mode}, an IAM caller: {all}");
        let (code, acme) = quarry_testkit::lambda::api_event(&router, &as_tenant("acme", q.clone())).await;
        assert_eq!((code, keys(&acme)), (200, vec!["tenants/acme/pump.txt".to_owned()]), "{mode}: {acme}");
        for filter in [json!({"tenant": "globex"}), json!({"key": "tenants/globex/pump.txt"})] {
            let mut crafted = q.clone();
            crafted["filter"] = filter;
            let (_, r) = quarry_testkit::lambda::api_event(&router, &as_tenant("acme", crafted)).await;
            assert!(keys(&r).is_empty(), "{mode}: {r}");
        }
    }
}
