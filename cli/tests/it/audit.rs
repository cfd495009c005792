//! The audit log of `quarry serve`: one JSON line per search, delete, batch and refusal, with who
//! (the presented key's fingerprint), the route, the status, the latency and the search's mode,
//! result count, query length and hash and filter shape, in `STATE/audit/`; never a query, a
//! filter value or a key.

use crate::common;

use quarry_api::audit::fingerprint;
use quarry_testkit::http::Server;
use quarry_testkit::pii::{self, EMAIL};
use serde_json::{Value, json};

#[test]
fn searches_deletes_batches_and_refusals_are_audited_without_what_they_held() {
    let dir = common::scratch("audit", "serve");
    std::fs::write(dir.join("notes.txt"), "Prune apple trees in late winter.").expect("write");
    std::fs::write(dir.join("pump.txt"), "Prime the pump before starting the motor.").expect("write");
    let s = Server::start(
        env!("CARGO_BIN_EXE_quarry"),
        &["--watch", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0", "--poll", "0.2"],
        &[("QUARRY_API_KEY", pii::API_KEY)],
    );
    let bearer = format!("Bearer {}", pii::API_KEY);
    let auth = [("Authorization", bearer.as_str())];
    let call = |method: &str, path: &str, body: Option<Value>| {
        s.call(method, path, body.map(|b| b.to_string()).as_deref(), &auth)
    };
    let t = std::time::Instant::now();
    while s.call("GET", "/health/ready", None, &[]).0 != 200 {
        assert!(t.elapsed().as_secs() < 90, "never ready");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let query = format!("when to prune, asks {EMAIL}");
    let searched = || {
        call(
            "POST",
            "/v1/search",
            Some(json!({"query": query, "mode": "keyword", "filter": {"user.owner": EMAIL}, "top_k": 3})),
        )
    };
    // Indexing runs beside the server: wait for the documents.
    while call("POST", "/v1/search", Some(json!({"query": "prune", "mode": "keyword"}))).1["results"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(t.elapsed().as_secs() < 90, "never indexed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(searched().0, 200);
    assert_eq!(call("POST", "/v1/search", Some(json!({"query": "  "}))).0, 400);
    let wrong = s.call(
        "POST",
        "/v1/search",
        Some(&json!({"query": "x"}).to_string()),
        &[("Authorization", "Bearer not-the-key")],
    );
    assert_eq!(wrong.0, 401);
    let id = quarry_core::DocumentId::for_key(&quarry_core::DocumentKey::new("pump.txt"));
    assert_eq!(call("DELETE", &format!("/v1/documents/{id}"), None).0, 200);
    let (code, _) = call("POST", "/v1/batches", Some(json!({"keys": ["notes.txt"]})));
    assert!(code == 200 || code == 202, "{code}");
    assert_eq!(call("GET", "/v1/batches", None).0, 200, "a read");

    let audit = dir.join(".quarry/audit");
    let text: String = std::fs::read_dir(&audit)
        .expect("an audit folder")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    assert!(!text.contains(EMAIL) && !text.contains(pii::API_KEY) && !text.contains("not-the-key"), "{text}");
    let entries: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    let key = format!("key:{}", fingerprint(pii::API_KEY));
    let search = entries
        .iter()
        .find(|e| e["route"] == "/v1/search" && e["query_sha256"] == fingerprint(&query))
        .unwrap_or_else(|| panic!("the search is audited: {text}"));
    assert_eq!((&search["who"], &search["status"], &search["mode"]), (&json!(key), &json!(200), &json!("keyword")));
    assert_eq!(search["query_chars"], query.chars().count());
    assert_eq!(search["filter"], json!({"user.owner": "<string>"}), "the filter's shape, not its values");
    assert!(search["results"].is_u64() && search["latency_ms"].is_f64() && search["at_ms"].is_i64(), "{search}");
    let statuses = |route: &str| {
        entries.iter().filter(|e| e["route"] == route).map(|e| e["status"].as_u64().unwrap_or(0)).collect::<Vec<_>>()
    };
    assert!(statuses("/v1/search").contains(&400) && statuses("/v1/search").contains(&401), "{text}");
    assert!(
        entries.iter().any(|e| e["status"] == 401 && e["who"] == json!(format!("key:{}", fingerprint("not-the-key"))))
    );
    assert_eq!(statuses("/v1/documents/{id}"), [200]);
    assert!(entries.iter().any(|e| e["path"] == json!(format!("/v1/documents/{id}")) && e["method"] == "DELETE"));
    assert_eq!(statuses("/v1/batches").len(), 1, "the batch is audited, the listing (a read) is not: {text}");
}
