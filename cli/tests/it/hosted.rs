//! OpenAI's vector stores as the store (`QUARRY_STORE=openai`), as a user meets it: the real
//! `quarry` binary, `ingest`, `search` and `serve`, against a local server that speaks OpenAI's
//! files, vector stores, file batches and search wire format. Quarry extracts and redacts; the
//! store holds one file per document with its metadata as attributes; a replaced document's old
//! file and a deleted document's file leave it; searches are the store's, semantic only, with
//! Quarry's filters translated or refused.

#![allow(clippy::print_stdout)]

use crate::common;
use std::path::Path;
use std::process::Output;

use quarry_core::ports::{CheckpointStore, DocumentReader};
use quarry_core::{DocumentId, DocumentKey, DocumentStatus};
use quarry_local::SqliteStore;
use quarry_testkit::http::Server;
use quarry_testkit::openai::{FakeOpenAi, Faults, KEY};
use serde_json::{Value, json};

fn env(fake: &FakeOpenAi) -> Vec<(&'static str, String)> {
    vec![
        ("QUARRY_STORE", "openai".to_owned()),
        ("QUARRY_OPENAI_BASE_URL", fake.url.clone()),
        ("QUARRY_OPENAI_API_KEY", KEY.to_owned()),
        ("QUARRY_OPENAI_MAX_RETRIES", "10".to_owned()),
        ("QUARRY_MODEL_DIR", quarry_testkit::model_dir().display().to_string()),
    ]
}

fn quarry(fake: &FakeOpenAi, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(args)
        .env_remove("QUARRY_CONFIG")
        .envs(env(fake))
        .output()
        .expect("run quarry")
}

fn text(o: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ingest(fake: &FakeOpenAi, dir: &Path) -> Output {
    quarry(fake, &["ingest", dir.to_str().expect("utf-8"), "--quiet"])
}

/// The files the store holds, attached: (filename, text, attributes).
fn attached(fake: &FakeOpenAi) -> Vec<(String, String, serde_json::Map<String, Value>)> {
    fake.files().into_iter().filter_map(|f| Some((f.name, f.text, f.attributes?))).collect()
}

fn id(key: &str) -> DocumentId {
    DocumentId::for_key(&DocumentKey::new(key))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime")
}

#[test]
fn an_openai_vector_store_takes_the_documents_and_answers_the_searches() {
    let rt = runtime();
    let fake = rt.block_on(FakeOpenAi::start(Faults { processing_polls: 1, ..Faults::default() }));
    let dir = common::scratch("hosted", "lifecycle");
    std::fs::write(
        dir.join("pump.md"),
        "# Pump\n\nThe pump station restarts at dawn after the pressure check. Write to jane.doe@example.com.",
    )
    .expect("write");
    std::fs::write(dir.join("budget.txt"), "The budget for the pump replacement was approved in March.")
        .expect("write");
    // The fake fails a file whose text says UNSUPPORTED, as OpenAI fails one it cannot parse.
    std::fs::write(dir.join("odd.txt"), "UNSUPPORTED layout that the store cannot parse.").expect("write");

    let out = ingest(&fake, &dir);
    let log = text(&out);
    assert!(log.contains("2 indexed") && log.contains("1 failed"), "{log}");
    assert!(log.contains("hosted_store_refused"), "the store's refusal is the document's reason: {log}");

    // One file per document, redacted, with the document's metadata; nothing was embedded by Quarry.
    let files = attached(&fake);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(fake.files().len(), 2, "the refused document's file was deleted, not left behind");
    assert_eq!(fake.embedded_inputs(), 0, "the store embeds; Quarry sends nothing to the embeddings endpoint");
    let (_, pump, attrs) = files.iter().find(|(_, _, a)| a["key"] == "pump.md").expect("pump.md stored");
    assert!(pump.contains("restarts at dawn") && !pump.contains("jane.doe@example.com"), "redacted: {pump}");
    assert_eq!(attrs["format"], "markdown");
    assert_eq!(attrs["document_id"], id("pump.md").as_str());

    let store = SqliteStore::open(&dir.join(".quarry/state.db"), 384).expect("state");
    let record = rt.block_on(store.document(&id("pump.md"))).expect("read").expect("known");
    assert_eq!(record.model.as_deref(), Some("openai-vector-store:quarry"));
    let first = rt.block_on(store.handle(&id("pump.md"))).expect("handle").expect("a handle");
    match rt.block_on(store.document(&id("odd.txt"))).expect("read").map(|d| d.status) {
        Some(DocumentStatus::Failed { failure }) => {
            assert_eq!(failure.code, "hosted_store_refused");
            assert!(failure.message.contains("unsupported_file"), "{}", failure.message);
        }
        other => panic!("odd.txt should have failed: {other:?}"),
    }

    // Unchanged: nothing uploaded again (the refused one is tried again, and refused again).
    let log = text(&ingest(&fake, &dir));
    assert!(log.contains("2 unchanged"), "{log}");
    assert_eq!(fake.files().len(), 2);
    assert_eq!(rt.block_on(store.handle(&id("pump.md"))).expect("handle").as_deref(), Some(first.as_str()));

    // Replaced: the new text is stored, the old file is gone, the handle moved.
    std::fs::write(dir.join("pump.md"), "# Pump\n\nThe pump station now restarts at noon, after lunch.")
        .expect("write");
    let log = text(&ingest(&fake, &dir));
    assert!(log.contains("1 indexed"), "{log}");
    let files = attached(&fake);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|(_, t, _)| !t.contains("dawn")), "the old text never comes back: {files:?}");
    assert_ne!(rt.block_on(store.handle(&id("pump.md"))).expect("handle").as_deref(), Some(first.as_str()));

    // `quarry search`: the store's ranking, semantic by default; keyword needs Quarry's own index.
    let out = quarry(&fake, &["search", "pump station restarts", "--dir", dir.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out));
    let first_line = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned();
    assert!(first_line.contains("pump.md"), "{}", text(&out));
    let out = quarry(&fake, &["search", "pump", "--dir", dir.to_str().expect("utf-8"), "--mode", "keyword"]);
    assert!(!out.status.success() && text(&out).contains("full-text index"), "{}", text(&out));

    // The API over the same store.
    let folder = dir.display().to_string();
    let env = env(&fake);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let args = ["--dir", folder.as_str(), "--bind", "127.0.0.1:0"];
    let server = Server::start(env!("CARGO_BIN_EXE_quarry"), &args, &env);
    let (status, ready) = server.call("GET", "/health/ready", None, &[]);
    assert_eq!(status, 200, "{ready}");
    assert!(ready["dependencies"].as_array().is_some_and(|d| d.iter().any(|d| d["name"] == "vector_store")), "{ready}");
    let search = |body: Value| server.call("POST", "/v1/search", Some(&body.to_string()), &[]);
    let (status, r) = search(json!({"query": "pump station restarts", "top_k": 5}));
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["results"][0]["metadata"]["key"], "pump.md", "{r}");
    assert_eq!(r["results"][0]["document_id"], id("pump.md").as_str(), "{r}");
    assert!(r["results"][0]["text"].as_str().is_some_and(|t| t.contains("noon")), "{r}");
    let (status, r) = search(json!({"query": "pump", "filter": {"format": "text"}}));
    assert_eq!(status, 200, "{r}");
    let keys: Vec<&Value> = r["results"].as_array().expect("results").iter().map(|h| &h["metadata"]["key"]).collect();
    assert_eq!(keys, [&json!("budget.txt")], "filters are applied inside the store's search: {r}");
    let (status, r) = search(json!({"query": "pump", "mode": "hybrid"}));
    assert_eq!((status, &r["error"]["code"]), (400, &json!("unsupported_mode")), "{r}");
    let (status, r) = search(json!({"query": "pump", "filter": {"format": {"$exists": true}}}));
    assert_eq!(status, 400, "what OpenAI's filters cannot say is refused, not applied afterwards: {r}");
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("$exists")), "{r}");

    // Deleted over the API: its file leaves the store.
    let path = format!("/v1/documents/{}", id("budget.txt"));
    let (status, r) = server.call("DELETE", &path, None, &[]);
    assert_eq!(status, 200, "{r}");
    assert_eq!(attached(&fake).iter().map(|(_, _, a)| a["key"].clone()).collect::<Vec<_>>(), [json!("pump.md")]);
    drop(server);

    // The same index with Quarry's own store: refused (its documents would read as unchanged and
    // never reach SQLite), saying how to go on.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["ingest", dir.to_str().expect("utf-8"), "--quiet"])
        .env_remove("QUARRY_CONFIG")
        .envs(env.iter().copied())
        .env("QUARRY_STORE", "native")
        .output()
        .expect("run quarry");
    assert!(!out.status.success() && text(&out).contains("cannot be mixed"), "{}", text(&out));
    assert!(text(&out).contains("QUARRY_STORE"), "{}", text(&out));

    // Deleted from the folder: the next ingest removes its file (and indexes budget.txt again,
    // whose file is still there).
    std::fs::remove_file(dir.join("pump.md")).expect("rm");
    let log = text(&ingest(&fake, &dir));
    assert!(log.contains("1 removed"), "{log}");
    let keys: Vec<Value> = attached(&fake).into_iter().map(|(_, _, a)| a["key"].clone()).collect();
    assert_eq!(keys, [json!("budget.txt")], "{:?}", fake.files());
    assert_eq!(rt.block_on(store.handle(&id("pump.md"))).expect("handle"), None);
}

/// 30 % of calls failing (429 with `Retry-After`, 500, 503) and batches that stay in progress a
/// while: every document ends in the store exactly once, and no file is left that no document
/// points at.
#[test]
fn with_a_third_of_calls_failing_every_document_is_stored_once() {
    let rt = runtime();
    let faults = Faults { fail_percent: 30, seed: 7, processing_polls: 2, ..Faults::default() };
    let fake = rt.block_on(FakeOpenAi::start(faults));
    let dir = common::scratch("hosted", "faults");
    let n = 16;
    for i in 0..n {
        std::fs::write(dir.join(format!("note-{i:02}.txt")), format!("Note {i}: sample {} was measured.", i * 7))
            .expect("write");
    }
    let out = quarry(&fake, &["ingest", dir.to_str().expect("utf-8"), "--quiet", "--workers", "8"]);
    let log = text(&out);
    assert!(out.status.success() && log.contains(&format!("{n} indexed")), "{log}");
    assert!(fake.failed_calls() > 0, "faults were injected");
    let files = attached(&fake);
    assert_eq!(files.len(), n, "one file per document: {files:?}");
    assert_eq!(fake.files().len(), n, "no file left behind by a failed attempt");
    let mut keys: Vec<String> =
        files.iter().map(|(_, _, a)| a["key"].as_str().unwrap_or_default().to_owned()).collect();
    keys.dedup();
    assert_eq!(keys.len(), n);
    let store = SqliteStore::open(&dir.join(".quarry/state.db"), 384).expect("state");
    for (_, _, a) in &files {
        let key = a["key"].as_str().expect("key");
        let handle = rt.block_on(store.handle(&id(key))).expect("handle");
        assert!(handle.is_some(), "{key} is checkpointed with its file");
    }
    println!("hosted store under faults: {n} documents, {} calls, {} failed", fake.calls(), fake.failed_calls());
}
