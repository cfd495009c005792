//! Log hygiene in Lambda: the embed-worker's real binary at `RUST_LOG=debug` (more than production
//! logs), over moto and the real model, indexing documents full of personal data and secrets, some
//! of which fail. Every line it writes (stdout, where CloudWatch Logs reads it, and stderr) is
//! captured, and none may hold any of them.

use std::time::Duration;

use quarry_aws::provision;
use quarry_testkit::pii;
use quarry_testkit::runtime::{invoke, sqs_event};
use serde_json::json;

#[test]
fn indexing_personal_data_logs_none_of_it() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = quarry_testkit::moto::endpoint();
    let text = pii::text();
    let files: Vec<(&str, String)> = vec![
        ("contacts.md", format!("# Contacts\n\n{text}\n")),
        ("people.csv", format!("name,contact\nJane,{}\nJoe,\"{}\"\n", pii::EMAIL, pii::CARD)),
        ("broken.json", format!("{{\"contact\": \"{}\", \"card\": {}", pii::EMAIL, pii::CARD)),
        ("scan.pdf", format!("%PDF-1.7\n{text}\nnot really a PDF")),
    ];
    let objects: Vec<(&str, &[u8])> = files.iter().map(|(k, b)| (*k, b.as_bytes())).collect();
    let name = quarry_testkit::moto::unique_name("logs");
    let mut env = rt
        .block_on(provision::emulated(endpoint, &name, quarry_embed::DIMENSION, &objects))
        .expect("a deployment on moto");
    env.extend([
        ("QUARRY_MODEL_DIR", quarry_testkit::model_dir().display().to_string()),
        ("RUST_LOG", "debug".to_owned()),
    ]);
    let jobs: Vec<_> =
        files.iter().map(|(key, _)| json!({"action": "index", "key": key, "version": null, "batch": null})).collect();
    // Each job twice: the second finds the document indexed (or failed) and stops at its lease.
    let run = invoke(
        env!("CARGO_BIN_EXE_embed-worker"),
        &env,
        vec![sqs_event(&jobs), sqs_event(&jobs)],
        Duration::from_secs(120),
    );
    assert!(run.answers.iter().all(|(_, ok, _)| *ok), "{:?}\n{}", run.answers, run.stderr);
    let logs = format!("{}\n{}", run.stdout, run.stderr);
    assert!(logs.contains("broken.json") && logs.contains("scan.pdf"), "failures are logged by key:\n{logs}");
    pii::assert_clean("the embed-worker", &logs, "\"level\":\"DEBUG\"", &[]);
}
