//! The HTTP API fuzzed from its own `/openapi.json` by schemathesis (installed by
//! `scripts/setup.sh --test-tools`), against the real `quarry serve` over a small folder: no 5xx,
//! every response as declared, and no request the description allows refused, so that a client
//! generated from the description never sends what the server turns down. A reduced run (fixed
//! seeds, few examples); `scripts/api_fuzz.sh` runs the long one. A missing schemathesis is a
//! failure, never a skip.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::Command;

fn schemathesis() -> PathBuf {
    quarry_testkit::test_tool("api-tools", "st")
}

/// Runs `st run` against the server's description with `args`, in `dir` (schemathesis keeps a
/// cache where it runs); fails the test with its report.
fn fuzz(dir: &std::path::Path, url: &str, args: &[&str]) {
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/api-fuzz");
    let out = Command::new(schemathesis())
        .args(["run", &format!("{url}/openapi.json"), "--mode", "positive", "--seed", "7"])
        .args(args)
        .env("SCHEMATHESIS_HOOKS", "quarry_hooks")
        .env("PYTHONPATH", hooks)
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .current_dir(dir)
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis {args:?} found failures:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{}", report.lines().rev().find(|l| l.contains("generated")).unwrap_or("").trim());
}

#[test]
fn the_api_holds_to_its_own_description() {
    let dir = std::env::temp_dir().join(format!("quarry-api-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).expect("mkdir");
    std::fs::write(docs.join("pumps.md"), "# Pumps\n\nThe pump station restarts at dawn.\n").expect("write");
    std::fs::write(docs.join("budget.txt"), "The budget for the pump was approved in March.\n").expect("write");
    // Indexed first, so that searches find something and their results' shapes are checked.
    let ingested = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["ingest", docs.to_str().expect("utf-8"), "--quiet"])
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .env_remove("QUARRY_CONFIG")
        .status()
        .expect("quarry ingest runs");
    assert!(ingested.success());
    let server = quarry_testkit::http::Server::start(
        env!("CARGO_BIN_EXE_quarry"),
        &["--dir", docs.to_str().expect("utf-8"), "--bind", "127.0.0.1:0"],
        &[],
    );
    let url = format!("http://{}", server.addr);
    // Boundaries of every declared constraint; a sealed cursor cannot be generated (see the hooks),
    // so here the server's refusals are not checked, only its errors and its responses' shapes.
    fuzz(&dir, &url, &["--phases", "coverage", "--exclude-checks", "positive_data_acceptance"]);
    // Random valid requests, alone and in sequences that follow the description's links. A file
    // uploaded is indexed by its own batch in the background, so a document deleted may come back
    // while a sequence runs: whether it is gone after a DELETE depends on timing, not on the API.
    let racy = "use_after_free,ensure_resource_availability";
    fuzz(&dir, &url, &["--phases", "fuzzing,stateful", "--max-examples", "40", "--exclude-checks", racy]);
}
