//! Files added over the API, as the search page adds them: `POST /v1/uploads` screens and grants,
//! `PUT /v1/files/{name}` writes into the served folder and starts a one-file batch, and the file
//! becomes searchable; refused files, taken names and failed documents each get their clear
//! answer, and `GET /v1/batches` and `POST /v1/batches/{id}/retry` work on what came in.

use crate::common;
use std::time::{Duration, Instant};

use quarry_testkit::http::Server;
use serde_json::{Value, json};

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(90), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn post(s: &Server, path: &str, body: Value) -> (u16, Value) {
    s.call("POST", path, Some(&body.to_string()), &[])
}

fn put(s: &Server, path: &str, body: &str, content_type: &str) -> (u16, Value) {
    s.call("PUT", path, Some(body), &[("Content-Type", content_type)])
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The batch once nothing is pending.
fn finished(s: &Server, batch: &str) -> Value {
    let mut view = Value::Null;
    wait_for(&format!("batch {batch}"), || {
        let (status, v) = s.call("GET", &format!("/v1/batches/{batch}"), None, &[]);
        view = v;
        status == 200 && view["status"] == "done"
    });
    view
}

#[test]
fn files_added_over_the_api_are_screened_written_and_indexed() {
    let dir = common::scratch("uploads", "add");
    std::fs::write(dir.join("bones.txt"), "Vitamin D helps the body absorb calcium and keeps bones strong.")
        .expect("write");
    let s = Server::start(
        env!("CARGO_BIN_EXE_quarry"),
        &["--watch", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0", "--poll", "0.2"],
        &[("QUARRY_MAX_FILE_BYTES", "2000")],
    );
    wait_for("startup", || s.call("GET", "/health/startup", None, &[]).0 == 200);

    let (status, info) = s.call("GET", "/v1/uploads", None, &[]);
    assert_eq!((status, &info), (200, &json!({"available": true, "max_file_bytes": 2000})));

    // Granted, then sent where the grant says: the API's own route, the key one escaped segment.
    let text = "# Tidal power\n\nTidal lagoons store seawater behind a wall and release it through turbines.\n";
    let name = "tidal lagoons.md";
    let (status, grant) =
        post(&s, "/v1/uploads", json!({"name": name, "size": text.len(), "content_type": "text/markdown"}));
    assert_eq!(status, 200, "{grant}");
    assert_eq!((grant["method"].as_str(), grant["url"].as_str()), (Some("PUT"), Some("/v1/files/tidal%20lagoons.md")));
    assert_eq!(grant["headers"]["content-type"], "text/markdown");
    let (status, received) = put(&s, grant["url"].as_str().expect("url"), text, "text/markdown");
    assert_eq!(status, 201, "{received}");
    assert_eq!((received["key"].as_str(), &received["document_id"]), (Some(name), &grant["document_id"]));
    assert_eq!(std::fs::read_to_string(dir.join(name)).expect("written into the folder"), text);
    let batch = received["batch"]["batch"].as_str().expect("a batch").to_owned();
    let view = finished(&s, &batch);
    // The watcher may see the new file first: then the batch finds it already indexed.
    let d = &view["documents"];
    assert_eq!((d["total"].as_u64(), d["failed"].as_u64()), (Some(1), Some(0)), "{view}");
    assert_eq!(d["indexed"].as_u64().unwrap_or(0) + d["unchanged"].as_u64().unwrap_or(0), 1, "{view}");
    let (status, record) =
        s.call("GET", &format!("/v1/documents/{}", grant["document_id"].as_str().unwrap_or("")), None, &[]);
    assert_eq!((status, record["status"].as_str()), (200, Some("indexed")), "{record}");
    let (status, found) = post(&s, "/v1/search", json!({"query": "tidal lagoon turbines", "top_k": 1}));
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["results"][0]["metadata"]["key"], name, "{found}");

    // A taken name is refused at both steps, and the file is left as it was.
    let (status, e) = post(&s, "/v1/uploads", json!({"name": name, "size": 10}));
    assert_eq!((status, code(&e)), (409, "file_exists"), "{e}");
    let (status, e) = put(&s, "/v1/files/bones.txt", "replaced?", "text/plain");
    assert_eq!((status, code(&e)), (409, "file_exists"), "{e}");
    assert!(std::fs::read_to_string(dir.join("bones.txt")).expect("read").starts_with("Vitamin D"));

    // Screening: names, types, sizes, before a byte is written.
    for (body, want) in [
        (json!({"name": ".hidden.md", "size": 10}), (400, "invalid_name")),
        (json!({"name": "a/b.md", "size": 10}), (400, "invalid_name")),
        (json!({"name": "photo.png", "size": 10}), (400, "unsupported_type")),
        (json!({"name": "big.txt", "size": 2001}), (413, "file_too_large")),
        (json!({"name": "empty.txt", "size": 0}), (400, "empty_file")),
        (json!({"size": 10}), (400, "invalid_request")),
    ] {
        let (status, e) = post(&s, "/v1/uploads", body.clone());
        assert_eq!((status, code(&e)), want, "{body}: {e}");
    }
    for (path, bytes, want) in [
        ("/v1/files/a%2Fb.txt", "text".to_owned(), (400, "invalid_name")),
        ("/v1/files/media.txt", "OggS\0\0 not text".to_owned(), (400, "unsupported_type")),
        ("/v1/files/big.txt", "x".repeat(2001), (413, "file_too_large")),
        ("/v1/files/empty.txt", String::new(), (400, "empty_file")),
    ] {
        let (status, e) = put(&s, path, &bytes, "application/octet-stream");
        assert_eq!((status, code(&e)), want, "{path}: {e}");
    }
    // (`.quarry` is the index.)
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".quarry")
        .collect();
    names.sort();
    assert_eq!(names, ["bones.txt", name], "nothing refused was written, no temporary file is left");

    // A file that passes screening but cannot be read fails with its reason, in its batch; a retry
    // is a batch over the failed documents.
    let (status, received) = put(&s, "/v1/files/broken.pdf", "%PDF-1.7 truncated", "application/pdf");
    assert_eq!(status, 201, "{received}");
    let broken = received["batch"]["batch"].as_str().expect("a batch").to_owned();
    let view = finished(&s, &broken);
    assert_eq!(view["documents"]["failed"], 1, "{view}");
    let failure = &view["failures"][0];
    assert_eq!(failure["key"], "broken.pdf");
    assert!(
        !failure["code"].as_str().unwrap_or("").is_empty() && !failure["message"].as_str().unwrap_or("").is_empty()
    );

    let (status, list) = s.call("GET", "/v1/batches", None, &[]);
    assert_eq!(status, 200, "{list}");
    let ids: Vec<&str> =
        list["batches"].as_array().expect("batches").iter().filter_map(|b| b["batch_id"].as_str()).collect();
    assert_eq!(ids, [broken.as_str(), batch.as_str()], "newest first");
    let (status, one) = s.call("GET", "/v1/batches?limit=1", None, &[]);
    assert_eq!((status, one["batches"].as_array().map(Vec::len)), (200, Some(1)), "{one}");
    for bad in ["0", "101", "many"] {
        let (status, e) = s.call("GET", &format!("/v1/batches?limit={bad}"), None, &[]);
        assert_eq!((status, code(&e)), (400, "invalid_limit"), "{bad}: {e}");
    }

    let before = view["updated_ms"].as_i64().expect("an outcome was recorded");
    std::thread::sleep(Duration::from_millis(5));
    let (status, retried) = post(&s, &format!("/v1/batches/{broken}/retry"), json!({}));
    assert_eq!(status, 202, "{retried}");
    // Every document of the batch failed, so the retry is the same batch, run again.
    assert_eq!((retried["batch"].as_str(), retried["documents"].as_u64()), (Some(broken.as_str()), Some(1)));
    // Run again (a new outcome is recorded), and still broken: still failed, with its reason.
    let mut again = Value::Null;
    wait_for("the retry's outcome", || {
        again = s.call("GET", &format!("/v1/batches/{broken}"), None, &[]).1;
        again["updated_ms"].as_i64() > Some(before)
    });
    assert_eq!(
        (again["documents"]["failed"].as_u64(), again["failures"][0]["key"].as_str()),
        (Some(1), Some("broken.pdf"))
    );
    let (status, e) = s.call(
        "POST",
        &format!("/v1/batches/{broken}/retry"),
        Some("x=1"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!((status, code(&e)), (400, "invalid_request"), "a form cannot start a retry: {e}");
    let (status, e) = post(&s, &format!("/v1/batches/{batch}/retry"), json!({}));
    assert_eq!((status, code(&e)), (409, "nothing_to_retry"), "{e}");
    let (status, e) = post(&s, "/v1/batches/b-000000000000/retry", json!({}));
    assert_eq!((status, code(&e)), (404, "not_found"), "{e}");
    // Stopped first: a server whose folder goes first cannot save its vector snapshot as it exits.
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
