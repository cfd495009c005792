//! `quarry serve` as a client meets it: the real binary on a real socket, the real model and
//! SQLite, spoken to over plain HTTP/1.1.

use crate::common;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use quarry_testkit::http::Server;
use serde_json::{Value, json};

fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
    Server::start(env!("CARGO_BIN_EXE_quarry"), args, env)
}

fn call(s: &Server, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> (u16, Value) {
    s.call(method, path, body, headers)
}

fn search(s: &Server, body: Value) -> (u16, Value) {
    call(s, "POST", "/v1/search", Some(&body.to_string()), &[])
}

fn keys(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .map_or_else(Vec::new, |a| a.iter().map(|r| r["metadata"]["key"].as_str().unwrap_or("").to_owned()).collect())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(90), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

#[test]
fn serve_watch_search_documents_batches_and_errors() {
    let dir = common::scratch("serve", "watch");
    write(
        &dir,
        "bones.txt",
        "Vitamin D helps the body absorb calcium and keeps bones strong.\n\nSunlight makes vitamin D in the skin.",
    );
    write(&dir, "heart.md", "# Salt\n\nEating less sodium lowers blood pressure and the risk of stroke.");
    write(&dir, "fish.txt", "Oily fish such as salmon are rich in omega-3 fatty acids.");
    write(&dir, "broken.pdf", "%PDF-1.7 truncated");
    let s = start(&["--watch", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0", "--poll", "0.2"], &[]);

    assert_eq!(call(&s, "GET", "/health/live", None, &[]).0, 200);
    wait_for("start-up sync", || call(&s, "GET", "/health/startup", None, &[]).0 == 200);
    let (st, ready) = call(&s, "GET", "/health/ready", None, &[]);
    assert_eq!(st, 200, "{ready}");
    let deps = ready["dependencies"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = deps.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["state_store", "embedder", "job_queue"], "{ready}");
    assert!(deps.iter().all(|d| d["status"] == "ok" && d["latency_ms"].as_f64().is_some()), "{ready}");

    // Search: the right document first, with score, text, and offsets that point into it.
    let (st, r) = search(&s, json!({"query": "how does the body get calcium into bones?", "top_k": 3}));
    assert_eq!(st, 200, "{r}");
    assert_eq!(keys(&r).first().map(String::as_str), Some("bones.txt"), "{r}");
    let top = &r["results"][0];
    let score = top["score"].as_f64().expect("score");
    assert!((0.0..=1.0).contains(&score), "{score}");
    let text = std::fs::read_to_string(dir.join("bones.txt")).expect("read");
    let (a, b) = (
        top["source"]["start"].as_u64().expect("start") as usize,
        top["source"]["end"].as_u64().expect("end") as usize,
    );
    let slice: String = text.chars().skip(a).take(b - a).collect();
    assert_eq!(top["text"].as_str(), Some(slice.as_str()), "source offsets point at the chunk's text");
    assert!(
        top["source"]["uri"].as_str().is_some_and(|u| u.starts_with("file://") && u.ends_with("bones.txt")),
        "{top}"
    );
    assert!(r["took_ms"].as_f64().is_some());
    assert_eq!(r["usage"], json!({"tokens": 0, "cost_usd": 0.0}), "the local model bills nothing");
    // Where the time went, for browsers' developer tools and the search benchmark.
    let reply =
        s.exchange("POST", "/v1/search", Some(&json!({"query": "calcium", "mode": "keyword"}).to_string()), &[]);
    let timing = reply.header("server-timing").unwrap_or_default().to_owned();
    let stages: Vec<&str> = timing.split(", ").filter_map(|p| p.split(';').next()).collect();
    assert_eq!(stages, ["retrieve", "highlight", "total"], "{timing}");
    let total: f64 = timing.rsplit("total;dur=").next().and_then(|d| d.parse().ok()).expect("a total");
    assert!(total > 0.0 && total < reply.took.as_secs_f64() * 1e3, "{timing} within {:?}", reply.took);
    // The highlight is the sentence that answers, by character offsets into `text`.
    let (ha, hb) = (
        top["highlights"][0]["start"].as_u64().expect("a highlight") as usize,
        top["highlights"][0]["end"].as_u64().expect("end") as usize,
    );
    let lit: String = slice.chars().skip(ha).take(hb - ha).collect();
    assert_eq!(lit, "Vitamin D helps the body absorb calcium and keeps bones strong.", "{top}");
    // Asked for, a result that shares no word with the query is highlighted by meaning: the
    // sentence nearest the query's embedding. By default it has no highlight.
    let (_, plain) = search(&s, json!({"query": "skeletal health", "mode": "semantic", "top_k": 1}));
    assert_eq!(plain["results"][0]["highlights"], json!([]), "{plain}");
    let (_, r) =
        search(&s, json!({"query": "skeletal health", "mode": "semantic", "top_k": 1, "semantic_highlights": true}));
    let top = &r["results"][0];
    let said = |h: &Value| -> String {
        let t: Vec<char> = top["text"].as_str().unwrap_or_default().chars().collect();
        t[h["start"].as_u64().unwrap_or(0) as usize..h["end"].as_u64().unwrap_or(0) as usize].iter().collect()
    };
    assert_eq!(keys(&r), ["bones.txt"], "{r}");
    assert_eq!(
        top["highlights"].as_array().map(|a| a.iter().map(said).collect::<Vec<_>>()),
        Some(vec!["Vitamin D helps the body absorb calcium and keeps bones strong.".to_owned()]),
        "{top}"
    );

    // Modes: keyword finds the literal word; semantic and hybrid (the default) find meaning.
    let (st, r) = search(&s, json!({"query": "sodium", "mode": "keyword"}));
    assert_eq!((st, keys(&r)), (200, vec!["heart.md".to_owned()]), "{r}");
    let (_, r) = search(&s, json!({"query": "sunlight skin", "mode": "semantic", "top_k": 1}));
    assert_eq!(keys(&r), ["bones.txt"], "{r}");
    let (_, r) = search(&s, json!({"query": "salmon", "top_k": 1}));
    assert_eq!(keys(&r), ["fish.txt"], "hybrid by default: {r}");
    assert!(r["results"][0]["score"].as_f64().is_some_and(|x| x > 0.0 && x <= 1.0), "{r}");
    let (_, all) = search(&s, json!({"query": "salmon", "mode": "semantic", "top_k": 10}));
    let (_, high) = search(&s, json!({"query": "salmon", "mode": "semantic", "top_k": 10, "min_score": 0.6}));
    let n = |v: &Value| v["results"].as_array().map_or(0, Vec::len);
    assert!(n(&high) < n(&all) && n(&high) >= 1, "min_score cuts the tail: {high}");
    assert!(high["results"].as_array().into_iter().flatten().all(|h| h["score"].as_f64().is_some_and(|x| x >= 0.6)));

    // A filter runs inside the search: the best markdown chunk for a query about bones is heart.md.
    let (st, r) = search(
        &s,
        json!({"query": "calcium and bones", "top_k": 3, "mode": "semantic", "filter": {"format": "markdown"}}),
    );
    assert_eq!((st, keys(&r)), (200, vec!["heart.md".to_owned()]), "{r}");
    let (_, r) = search(
        &s,
        json!({"query": "calcium and bones", "filter": {"format": {"$in": ["text"]}, "key": {"$startsWith": "b"}}}),
    );
    assert_eq!(keys(&r), ["bones.txt"], "{r}");

    // Pagination: a cursor leads to the next page; a changed cursor or query is refused.
    let (_, p1) = search(&s, json!({"query": "nutrition", "top_k": 1}));
    let cursor = p1["next_cursor"].as_str().expect("a next page").to_owned();
    let (st, p2) = search(&s, json!({"query": "nutrition", "top_k": 1, "cursor": cursor}));
    assert_eq!(st, 200, "{p2}");
    assert_ne!(p1["results"][0]["chunk_id"], p2["results"][0]["chunk_id"], "page 2 is not page 1");
    // Page 2 repeated the query: its vector came from the query cache. Both exports say so.
    let (st, m) = call(&s, "GET", "/metrics", None, &[]);
    let m = m.as_str().unwrap_or_default().to_owned();
    let prom = |name: &str| -> f64 {
        m.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    };
    assert!(st == 200 && prom("quarry_query_cache{result=\"hit\"} ") >= 1.0, "{m}");
    assert!(prom("quarry_search_requests{mode=\"hybrid\",status=\"ok\"} ") >= 3.0, "{m}");
    assert!(prom("quarry_search_latency_count{mode=\"hybrid\"} ") >= 3.0, "a latency histogram: {m}");
    let (st, j) = call(&s, "GET", "/metrics.json", None, &[]);
    let series = j["metrics"].as_array().cloned().unwrap_or_default();
    let latency = series
        .iter()
        .find(|x| x["name"] == "search_latency" && x["labels"]["mode"] == "hybrid")
        .unwrap_or_else(|| panic!("no search_latency in {j}"));
    assert_eq!(st, 200);
    assert!(
        latency["window"]["count"].as_u64() >= Some(3) && latency["window"]["p95"].as_f64() > Some(0.0),
        "{latency}"
    );
    assert_eq!(latency["unit"], "Milliseconds");
    assert_eq!(j["window_seconds"], 300.0);
    let mut tampered = cursor.clone().into_bytes();
    tampered[3] = if tampered[3] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    for (body, code) in [
        (json!({"query": "nutrition", "top_k": 1, "cursor": tampered}), "invalid_cursor"),
        (json!({"query": "other query", "top_k": 1, "cursor": cursor}), "invalid_cursor"),
        (json!({"query": "   "}), "empty_query"),
        (json!({"query": "x", "top_k": 0}), "invalid_top_k"),
        (json!({"query": "x", "top_k": 101}), "invalid_top_k"),
        (json!({"query": "x".repeat(2001)}), "query_too_long"),
        (json!({"query": "x", "filter": {"format": {"$gtx": 1}}}), "filter_unknown_operator"),
        (json!({"query": "x", "filter": {"year": {"$gt": "2020"}}}), "filter_wrong_type"),
        (json!({"query": "x", "filter": "pdf"}), "filter_wrong_type"),
        (json!({"query": "x", "mode": "fuzzy"}), "invalid_request"),
        (json!({"query": "x", "min_score": 1.5}), "invalid_min_score"),
        (json!({"query": "x", "topk": 3}), "invalid_request"),
        (json!({"top_k": 3}), "invalid_request"),
    ] {
        let (st, e) = search(&s, body.clone());
        assert_eq!((st, e["error"]["code"].as_str()), (400, Some(code)), "{body} -> {e}");
        assert!(e["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    let (st, e) = call(&s, "POST", "/v1/search", Some("{not json"), &[]);
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("invalid_request")), "{e}");
    let big = json!({"query": "y".repeat(70_000)}).to_string();
    let (st, e) = call(&s, "POST", "/v1/search", Some(&big), &[]);
    assert_eq!((st, e["error"]["code"].as_str()), (413, Some("request_too_large")), "{e}");
    let (st, spec) = call(&s, "GET", "/openapi.json", None, &[]);
    assert_eq!(st, 200);
    assert!(spec["paths"]["/v1/search"]["post"].is_object(), "{spec}");
    assert!(spec["paths"]["/v1/fields"]["get"].is_object(), "{spec}");
    // The filters a page can offer: the indexed documents' formats (the broken PDF is not indexed).
    let (st, f) = call(&s, "GET", "/v1/fields", None, &[]);
    assert_eq!((st, &f["available"]), (200, &json!(true)), "{f}");
    let format = f["fields"].as_array().and_then(|a| a.iter().find(|x| x["name"] == "format")).expect("format");
    assert_eq!(format["documents"], 3, "{f}");
    assert_eq!(format["values"][0], json!({"value": "text", "documents": 2}), "{f}");
    assert!(f["fields"].as_array().is_some_and(|a| a.iter().all(|x| x["name"] != "key")), "{f}");
    for bad in ["0", "101", "abc", "-1"] {
        let (st, e) = call(&s, "GET", &format!("/v1/fields?values={bad}"), None, &[]);
        assert_eq!((st, e["error"]["code"].as_str()), (400, Some("invalid_values")), "{bad}: {e}");
    }
    let (st, e) = call(&s, "GET", "/v1/nothing-here", None, &[]);
    assert_eq!((st, e["error"]["code"].as_str()), (404, Some("not_found")), "{e}");

    // A page sequence begun before a write is cut from the ranking its first page saw.
    let q = json!({"query": "heart health antioxidants", "mode": "semantic", "top_k": 1});
    let (_, before) = search(&s, json!({"query": "heart health antioxidants", "mode": "semantic", "top_k": 3}));
    let (_, first) = search(&s, q.clone());
    let sequence = first["next_cursor"].as_str().expect("more pages").to_owned();

    // A dropped file becomes searchable; a deleted one leaves.
    write(&dir, "tea.txt", "Green tea contains catechins, antioxidants studied for heart health.");
    wait_for("tea.txt to be searchable", || {
        keys(&search(&s, json!({"query": "green tea catechins"})).1).first().map(String::as_str) == Some("tea.txt")
    });
    let (_, fresh) = search(&s, q.clone());
    assert_eq!(keys(&fresh), ["tea.txt"], "a new sequence ranks the new file first: {fresh}");
    let mut next = q.clone();
    next["cursor"] = json!(sequence);
    let (st, second) = search(&s, next);
    assert_eq!(st, 200, "{second}");
    assert_eq!(
        second["results"][0]["chunk_id"], before["results"][1]["chunk_id"],
        "page 2 of the old sequence is its second result, not the new file and not page 1 again: {second}"
    );
    std::fs::remove_file(dir.join("fish.txt")).expect("rm");
    wait_for("fish.txt to leave", || {
        !keys(&search(&s, json!({"query": "omega-3 salmon", "top_k": 10})).1).contains(&"fish.txt".to_owned())
    });

    // Documents: read, delete, and gone.
    let id = top["document_id"].as_str().expect("id").to_owned();
    let (st, d) = call(&s, "GET", &format!("/v1/documents/{id}"), None, &[]);
    assert_eq!((st, d["status"].as_str(), d["key"].as_str()), (200, Some("indexed"), Some("bones.txt")), "{d}");
    let broken = quarry_core::DocumentId::for_key(&quarry_core::DocumentKey::new("broken.pdf"));
    let (st, d) = call(&s, "GET", &format!("/v1/documents/{}", broken.as_str()), None, &[]);
    assert_eq!(
        (st, d["status"].as_str(), d["failure"]["code"].as_str()),
        (200, Some("failed"), Some("corrupt_pdf")),
        "{d}"
    );
    let (st, d) = call(&s, "DELETE", &format!("/v1/documents/{id}"), None, &[]);
    assert_eq!(st, 200, "{d}");
    assert!(d["removed_chunks"].as_u64().is_some_and(|n| n > 0), "{d}");
    assert_eq!(call(&s, "GET", &format!("/v1/documents/{id}"), None, &[]).0, 404);
    assert_eq!(call(&s, "DELETE", &format!("/v1/documents/{id}"), None, &[]).0, 404);
    let (st, e) = call(&s, "GET", "/v1/documents/not-an-id", None, &[]);
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("invalid_document_id")), "{e}");

    // Batches: a missing key is reported up front and recorded as failed; the rest are indexed.
    let (st, b) = call(&s, "POST", "/v1/batches", Some(r#"{"keys": ["bones.txt", "nope.txt"]}"#), &[]);
    assert_eq!(st, 202, "{b}");
    assert_eq!(b["missing"], json!(["nope.txt"]), "{b}");
    let batch = b["batch"].as_str().expect("batch id").to_owned();
    let mut view = Value::Null;
    wait_for("the batch to finish", || {
        view = call(&s, "GET", &format!("/v1/batches/{batch}"), None, &[]).1;
        view["status"] == "done"
    });
    assert_eq!(view["documents"]["total"], 2, "{view}");
    assert_eq!(view["documents"]["indexed"], 1, "{view}");
    assert_eq!(view["failures"][0]["key"], "nope.txt", "{view}");
    assert_eq!(call(&s, "GET", &format!("/v1/documents/{id}"), None, &[]).0, 200, "the batch re-indexed bones.txt");
    let (st, e) = call(&s, "POST", "/v1/batches", Some("{}"), &[]);
    assert_eq!((st, e["error"]["code"].as_str()), (400, Some("empty_batch")), "{e}");
    assert_eq!(call(&s, "GET", "/v1/batches/b-nope", None, &[]).0, 404);
}

#[test]
fn api_key_and_concurrency_cap() {
    let dir = common::scratch("serve", "auth");
    write(&dir, "a.txt", "Lentils are a good source of plant protein and iron.");
    let ingest = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["ingest", dir.to_str().expect("utf-8"), "--quiet"])
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .env_remove("QUARRY_CONFIG")
        .output()
        .expect("ingest");
    assert!(ingest.status.success(), "{}", String::from_utf8_lossy(&ingest.stderr));

    // Anything but loopback without a key: refused at start, with the way out in the message.
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["serve", "--dir", dir.to_str().expect("utf-8"), "--bind", "0.0.0.0:0"])
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .env_remove("QUARRY_API_KEY")
        .output()
        .expect("serve");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("QUARRY_API_KEY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let key = "k3y-for-tests-0123456789";
    let mut s = start(
        &["--dir", dir.to_str().expect("utf-8"), "--bind", "0.0.0.0:0"],
        &[("QUARRY_API_KEY", key), ("QUARRY_MAX_CONCURRENCY", "1")],
    );
    s.addr = s.addr.replace("0.0.0.0", "127.0.0.1");
    let body = json!({"query": "protein"}).to_string();
    let (st, e) = call(&s, "POST", "/v1/search", Some(&body), &[]);
    assert_eq!((st, e["error"]["code"].as_str()), (401, Some("unauthorized")), "{e}");
    let (st, _) = call(&s, "POST", "/v1/search", Some(&body), &[("Authorization", "Bearer wrong-key-0123456789")]);
    assert_eq!(st, 401);
    assert_eq!(call(&s, "GET", "/health/live", None, &[]).0, 200, "probes need no key");
    let bearer = format!("Bearer {key}");
    let (st, r) = call(&s, "POST", "/v1/search", Some(&body), &[("Authorization", &bearer)]);
    assert_eq!((st, keys(&r)), (200, vec!["a.txt".to_owned()]), "{r}");

    // With one slot, a request arriving while another is in flight gets 503 and Retry-After.
    // The first holds its slot while its body trickles in.
    let mut slow = TcpStream::connect(&s.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let head = format!(
        "POST /v1/search HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).expect("send head");
    std::thread::sleep(Duration::from_millis(300));
    let (st, e) = call(&s, "POST", "/v1/search", Some(&body), &[("Authorization", &bearer)]);
    assert_eq!((st, e["error"]["code"].as_str()), (503, Some("overloaded")), "{e}");
    slow.write_all(body.as_bytes()).expect("send body");
    let mut reply = String::new();
    let _ = slow.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // SIGTERM (a service manager stopping it): the request in flight is finished, then the
    // process exits cleanly.
    let mut slow = TcpStream::connect(&s.addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    slow.write_all(head.as_bytes()).expect("send head");
    std::thread::sleep(Duration::from_millis(300));
    let finishing = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        slow.write_all(body.as_bytes()).expect("send body after SIGTERM");
        let mut reply = String::new();
        let _ = slow.read_to_string(&mut reply);
        reply
    });
    let status = s.terminate(Duration::from_secs(60)).expect("stopped within a minute of SIGTERM");
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
    let reply = finishing.join().expect("the slow client");
    assert!(reply.starts_with("HTTP/1.1 200"), "the request in flight is answered: {reply}");
}

/// A Slack webhook on loopback: each request's body, answered `ok`.
fn slack() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then as many body bytes as Content-Length says.
            let body = loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break Some(String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned());
                    }
                }
            };
            if let Some(body) = body {
                keep.lock().expect("lock").push(body);
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (url, seen)
}

#[test]
fn the_embedded_default_pages_from_its_own_metrics() {
    let dir = common::scratch("serve", "alerts");
    write(&dir, "a.txt", "Calcium keeps bones strong.");
    write(&dir, "b.txt", "Sodium raises blood pressure.");
    write(&dir, "c.txt", "Salmon is rich in omega-3.");
    write(&dir, "broken.pdf", "%PDF-1.7 truncated");
    let (url, seen) = slack();
    let routes = json!({"group_wait_seconds": 0.5, "group_interval_seconds": 1,
        "receivers": {"chat": {"type": "slack", "webhook_url": url}}, "routes": [{"receivers": ["chat"]}]});
    let s = start(
        &["--watch", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0", "--poll", "0.2"],
        &[("QUARRY_ALERT_ROUTES", &routes.to_string())],
    );
    wait_for("start-up sync", || call(&s, "GET", "/health/startup", None, &[]).0 == 200);
    // One of four documents failed: 25 %, over the 5 % of the error-rate rule, at the next tick.
    let t = Instant::now();
    while seen.lock().expect("lock").is_empty() && t.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let messages = seen.lock().expect("lock").clone();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let v: Value = serde_json::from_str(&messages[0]).expect("Slack JSON");
    let text = v["text"].as_str().unwrap_or_default();
    assert!(text.contains("quarry-local-ingest-error-rate") && text.contains("1 of 4 documents failed"), "{text}");

    // A batch that ends with failures is routed as an event, once.
    let (st, b) = call(&s, "POST", "/v1/batches", Some(r#"{"keys": ["broken.pdf", "nope.txt"]}"#), &[]);
    assert_eq!(st, 202, "{b}");
    let t = Instant::now();
    while seen.lock().expect("lock").len() < 2 && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let messages = seen.lock().expect("lock").clone();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let v: Value = serde_json::from_str(&messages[1]).expect("Slack JSON");
    let text = v["text"].as_str().unwrap_or_default();
    assert!(text.contains("batch_failed") && text.contains("of 2 documents failed"), "{text}");
    assert!(!text.contains("broken.pdf"), "no document keys in alerts: {text}");
}
