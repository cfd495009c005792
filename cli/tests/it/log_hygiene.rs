//! Log hygiene: every flow a user runs (ingest with documents that fail, search, verify, the HTTP
//! API's searches, reads, deletes, batches and refusals; OpenAI's embedder through injected
//! failures), with documents and queries full of personal data and secrets, and the deployment's
//! own secrets set, at `QUARRY_LOG=debug` (more than production logs). Every line written is
//! captured, and none may hold an email, a card, a phone number, an SSN, an AWS key, a JWT, an API
//! key or a secret of the deployment.

use crate::common;
use std::path::Path;
use std::process::Command;

use quarry_testkit::http::Server;
use quarry_testkit::openai::{FakeOpenAi, Faults, KEY};
use serde_json::{Value, json};

use quarry_testkit::pii::{self, API_KEY, AWS_ID, CARD, CURSOR_SECRET, EMAIL, JWT, SSN, TOKEN};

fn assert_clean(what: &str, logs: &str) {
    pii::assert_clean(what, logs, "DEBUG", &[("openai key", KEY)]);
}

/// The documents: a good one of each kind of PII, and ones that fail with PII in them.
fn documents(dir: &Path) {
    let pii = pii::text();
    std::fs::write(dir.join("contacts.md"), format!("# Contacts\n\n{pii}\n")).expect("write");
    std::fs::write(dir.join("notes.txt"), format!("Pruning notes. {pii}")).expect("write");
    std::fs::write(dir.join("people.csv"), format!("name,contact\nJane,{EMAIL}\nJoe,\"{CARD}\"\n")).expect("write");
    std::fs::write(dir.join("broken.json"), format!("{{\"contact\": \"{EMAIL}\", \"card\": {CARD}")).expect("write");
    std::fs::write(dir.join("scan.pdf"), format!("%PDF-1.7\n{pii}\nnot really a PDF")).expect("write");
}

/// Runs `quarry ARGS` at debug level: exit code, and everything it wrote.
fn logged(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(args)
        .current_dir(dir)
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .env("QUARRY_LOG", "debug")
        .env_remove("QUARRY_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("quarry runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn no_flow_logs_personal_data_or_secrets() {
    let dir = common::scratch("hygiene", "local");
    documents(&dir);
    let (code, ingest) = logged(&["ingest", "."], &dir, &[]);
    assert_eq!(code, 0, "{ingest}");
    assert!(ingest.contains("broken.json") && ingest.contains("scan.pdf"), "the failures are reported: {ingest}");
    assert_clean("quarry ingest", &ingest);

    let query = format!("who is {EMAIL} with card {CARD}");
    let (code, search) = logged(&["search", &query, "--mode", "hybrid"], &dir, &[]);
    assert_eq!(code, 0, "{search}");
    // The answer shows the stored text, redacted; the query is not echoed.
    assert_clean("quarry search", &search);
    let (code, verify) = logged(&["verify"], &dir, &[]);
    assert_eq!(code, 0, "{verify}");
    assert_clean("quarry verify", &verify);

    let s = Server::start_logged(
        env!("CARGO_BIN_EXE_quarry"),
        &["--dir", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0"],
        &[("QUARRY_LOG", "debug"), ("QUARRY_API_KEY", API_KEY), ("QUARRY_CURSOR_SECRET", CURSOR_SECRET)],
    );
    let bearer = format!("Bearer {API_KEY}");
    let auth = [("Authorization", bearer.as_str())];
    let call = |method: &str, path: &str, body: Option<Value>| {
        s.call(method, path, body.map(|b| b.to_string()).as_deref(), &auth)
    };
    for mode in ["semantic", "keyword", "hybrid"] {
        let (code, r) = call("POST", "/v1/search", Some(json!({"query": query, "mode": mode, "top_k": 2})));
        assert_eq!(code, 200, "{r}");
        if let Some(cursor) = r["next_cursor"].as_str() {
            let next =
                call("POST", "/v1/search", Some(json!({"query": query, "mode": mode, "top_k": 2, "cursor": cursor})));
            assert_eq!(next.0, 200, "{}", next.1);
        }
    }
    let filtered = json!({"query": TOKEN, "filter": {"user.contact": EMAIL}});
    assert_eq!(call("POST", "/v1/search", Some(filtered)).0, 200);
    let refused = json!({"query": format!("{EMAIL} {JWT}"), "top_k": 1000});
    assert_eq!(call("POST", "/v1/search", Some(refused)).0, 400);
    let bad_filter = json!({"query": SSN, "filter": {"$bogus": {"email": EMAIL}}});
    assert_eq!(call("POST", "/v1/search", Some(bad_filter)).0, 400);
    let wrong_key = s.call(
        "POST",
        "/v1/search",
        Some(&json!({"query": EMAIL}).to_string()),
        &[("Authorization", "Bearer ghp_Z8rL4cV2nQ9wE1tY6uI3oP5aS7dF0gH2jK4l")],
    );
    assert_eq!(wrong_key.0, 401, "a wrong key is refused: {}", wrong_key.1);
    let id = quarry_core::DocumentId::for_key(&quarry_core::DocumentKey::new("notes.txt"));
    assert_eq!(call("GET", &format!("/v1/documents/{id}"), None).0, 200);
    assert_eq!(call("DELETE", &format!("/v1/documents/{id}"), None).0, 200);
    let (code, batch) = call("POST", "/v1/batches", Some(json!({"keys": ["contacts.md", "notes.txt", "scan.pdf"]})));
    assert!(code == 200 || code == 202, "{batch}");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_clean("quarry serve", &s.logs());
    let audit: String = std::fs::read_dir(dir.join(".quarry/audit"))
        .expect("an audit log")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect();
    pii::assert_clean("the audit log", &audit, "\"route\":\"/v1/search\"", &[("openai key", KEY)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_calls_through_injected_failures_log_no_key_and_no_text() {
    // Seed 7 fails the very first call: failures are injected however the chunks are packed into
    // calls (under load, a few documents' chunks can share one call).
    let fake = FakeOpenAi::start(Faults { fail_percent: 30, seed: 7, ..Faults::default() }).await;
    let dir = common::scratch("hygiene", "openai");
    documents(&dir);
    let env = [
        ("QUARRY_EMBEDDER", "openai"),
        ("QUARRY_OPENAI_BASE_URL", fake.url.as_str()),
        ("QUARRY_OPENAI_API_KEY", KEY),
        ("QUARRY_OPENAI_MAX_RETRIES", "10"),
    ];
    let (code, ingest) = tokio::task::block_in_place(|| logged(&["ingest", "."], &dir, &env));
    assert_eq!(code, 0, "{ingest}");
    assert!(fake.failed_calls() > 0, "failures were injected");
    assert_clean("quarry ingest with OpenAI", &ingest);
    let query = format!("{EMAIL} {AWS_ID}");
    let (code, search) = tokio::task::block_in_place(|| logged(&["search", &query], &dir, &env));
    assert_eq!(code, 0, "{search}");
    assert_clean("quarry search with OpenAI", &search);
}
