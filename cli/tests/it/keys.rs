//! API keys from a keys file on `quarry serve`: several keys at once, each with its scopes
//! (search, read, write, admin: 403 without the one a route needs) and its rate (429 with
//! `Retry-After` past it), stored as hashes, and rotated by editing the file while the server runs:
//! a removed key stops working and an added one starts, without a restart. The audit log names
//! each request's key by its id.

use crate::common;
use std::path::Path;
use std::time::{Duration, Instant};

use quarry_testkit::http::Server;
use serde_json::{Value, json};

fn write_keys(path: &Path, keys: &[(&str, &str, &[&str], Option<u32>)]) {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(id, key, scopes, rate)| {
            let mut k = json!({"id": id, "sha256": common::sha256(key), "scopes": scopes});
            if let Some(r) = rate {
                k["requests_per_second"] = json!(r);
            }
            k
        })
        .collect();
    // Written whole, then renamed: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json!({ "keys": keys }).to_string()).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

const SEARCHER: &str = "searcher key, 16+ characters";
const OPERATOR: &str = "operator key, 16+ characters";
const NEWCOMER: &str = "newcomer key, 16+ characters";

#[test]
fn keys_have_scopes_and_rates_and_rotate_without_a_restart() {
    let dir = common::scratch("keys", "serve");
    std::fs::write(dir.join("notes.txt"), "Prune apple trees in late winter.").expect("write");
    // Outside the served folder, which indexes every file in it.
    let keys = common::scratch("keys", "serve-keys").join("keys.json");
    write_keys(
        &keys,
        &[("searcher", SEARCHER, &["search"], Some(2)), ("ops", OPERATOR, &["search", "read", "write", "admin"], None)],
    );
    let s = Server::start(
        env!("CARGO_BIN_EXE_quarry"),
        &["--watch", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0", "--poll", "0.2"],
        &[("QUARRY_KEYS_FILE", keys.to_str().expect("utf-8"))],
    );
    let call = |key: &str, method: &str, path: &str, body: Option<Value>| {
        let bearer = format!("Bearer {key}");
        s.exchange(method, path, body.map(|b| b.to_string()).as_deref(), &[("Authorization", bearer.as_str())])
    };
    let t = Instant::now();
    while s.call("GET", "/health/ready", None, &[]).0 != 200 {
        assert!(t.elapsed() < Duration::from_secs(90), "never ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let search = json!({"query": "prune", "mode": "keyword"});
    // Indexing runs beside the server: wait for the document.
    while call(OPERATOR, "POST", "/v1/search", Some(search.clone())).body["results"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(t.elapsed() < Duration::from_secs(90), "never indexed");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(call(SEARCHER, "POST", "/v1/search", Some(search.clone())).status, 200);
    let id = quarry_core::DocumentId::for_key(&quarry_core::DocumentKey::new("notes.txt"));
    let forbidden = call(SEARCHER, "GET", &format!("/v1/documents/{id}"), None);
    assert_eq!(
        (forbidden.status, &forbidden.body["error"]["code"]),
        (403, &json!("forbidden")),
        "{:?}",
        forbidden.body
    );
    assert_eq!(call(OPERATOR, "GET", &format!("/v1/documents/{id}"), None).status, 200);
    assert_eq!(call(SEARCHER, "POST", "/v1/cache/clear", Some(json!({}))).status, 403);
    assert_eq!(call("not a key at all, 16+ chars", "POST", "/v1/search", Some(search.clone())).status, 401);

    // Two a second for the searcher: a burst is refused with Retry-After; the operator is not held.
    let burst: Vec<_> = (0..6).map(|_| call(SEARCHER, "POST", "/v1/search", Some(search.clone()))).collect();
    let limited: Vec<_> = burst.iter().filter(|r| r.status == 429).collect();
    assert!(!limited.is_empty(), "{:?}", burst.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(limited.iter().all(|r| r.header("retry-after").is_some_and(|v| v.parse::<u64>().is_ok_and(|s| s >= 1))));
    assert_eq!(call(OPERATOR, "POST", "/v1/search", Some(search.clone())).status, 200);

    // Rotation: the searcher's key is replaced by the newcomer's while the server runs.
    write_keys(
        &keys,
        &[("newcomer", NEWCOMER, &["search"], None), ("ops", OPERATOR, &["search", "read", "write", "admin"], None)],
    );
    let t = Instant::now();
    while call(NEWCOMER, "POST", "/v1/search", Some(search.clone())).status != 200 {
        assert!(t.elapsed() < Duration::from_secs(10), "the new key never started working");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(call(SEARCHER, "POST", "/v1/search", Some(search.clone())).status, 401, "the removed key stops");
    // A broken edit keeps the keys that worked.
    std::fs::write(&keys, "{ not json").expect("write");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(call(NEWCOMER, "POST", "/v1/search", Some(search)).status, 200);

    let audit: String = std::fs::read_dir(dir.join(".quarry/audit"))
        .expect("an audit log")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    let who = |id: &str, status: u64| {
        audit
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|e| e["who"] == format!("key:{id}") && e["status"] == status)
    };
    assert!(who("searcher", 200) && who("searcher", 429) && who("searcher", 403) && who("newcomer", 200), "{audit}");
}

#[test]
fn a_keys_file_that_cannot_be_used_stops_the_start() {
    let dir = common::scratch("keys", "bad");
    std::fs::write(dir.join("a.txt"), "text").expect("write");
    let keys = dir.join("keys.json");
    std::fs::write(&keys, r#"{"keys": [{"id": "x", "sha256": "not hex", "scopes": ["search"]}]}"#).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["serve", "--dir", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0"])
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .env("QUARRY_KEYS_FILE", &keys)
        .env_remove("QUARRY_CONFIG")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("key \"x\" has a sha256 that is not 64 hex digits"), "{err}");
}
