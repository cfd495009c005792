//! Log hygiene in Lambda: the embed-worker's real binary at `RUST_LOG=debug` (more than production
//! logs), over moto and the real model, indexing documents full of personal data and secrets, some
//! of which fail. Every line it writes (stdout, where CloudWatch Logs reads it, and stderr) is
//! captured, and none may hold any of them.

use std::time::Duration;

use quarry_aws::{Clients, provision};
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
    let created = rt.block_on(async {
        let clients = Clients::emulator(endpoint).await;
        let created = provision::create(&clients, &quarry_testkit::moto::unique_name("logs"), quarry_embed::DIMENSION)
            .await
            .expect("provision");
        for (key, body) in &files {
            let put = clients.s3.put_object().bucket(&created.resources.bucket).key(*key);
            put.body(body.as_bytes().to_vec().into()).send().await.expect("put");
        }
        created
    });
    let mut env = vec![("QUARRY_AWS_ENDPOINT_URL", endpoint.to_owned())];
    env.extend(created.resources.env());
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
