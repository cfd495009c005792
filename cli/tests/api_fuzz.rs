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

/// Runs `st run` against the server's description with `args`; fails the test with its report.
fn fuzz(url: &str, args: &[&str]) {
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/api-fuzz");
    let out = Command::new(schemathesis())
        .args(["run", &format!("{url}/openapi.json"), "--mode", "positive", "--seed", "7"])
        .args(args)
        .env("SCHEMATHESIS_HOOKS", "quarry_hooks")
        .env("PYTHONPATH", hooks)
        .env("SCHEMATHESIS_TELEMETRY", "false")
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
    std::fs::write(dir.join("pumps.md"), "# Pumps\n\nThe pump station restarts at dawn.\n").expect("write");
    std::fs::write(dir.join("budget.txt"), "The budget for the pump was approved in March.\n").expect("write");
    let server = quarry_testkit::http::Server::start(
        env!("CARGO_BIN_EXE_quarry"),
        &["--watch", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0", "--poll", "0.2"],
        &[],
    );
    let url = format!("http://{}", server.addr);
    // Boundaries of every declared constraint; a sealed cursor cannot be generated (see the hooks),
    // so here the server's refusals are not checked, only its errors and its responses' shapes.
    fuzz(&url, &["--phases", "coverage", "--exclude-checks", "positive_data_acceptance"]);
    // Random valid requests, alone and in sequences that follow the description's links.
    fuzz(&url, &["--phases", "fuzzing,stateful", "--max-examples", "40"]);
}
