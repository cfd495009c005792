//! `quarry ingest` and `quarry search` as a user runs them: the real binary, real files, the real
//! model, real SQLite; and a run killed with SIGKILL at several points, then resumed, must end
//! with exactly the index of an uninterrupted run.

use crate::common;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use quarry_core::{DocumentId, DocumentKey};
use quarry_local::SqliteStore;

fn quarry(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarry"));
    c.args(args).env("QUARRY_MODEL_DIR", quarry_testkit::model_dir()).env_remove("QUARRY_CONFIG");
    c
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "stdout: {out}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn corpus(dir: &Path, files: usize) {
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    let topics = [
        "vitamin D and bone health",
        "dietary fiber and cholesterol",
        "omega-3 fatty acids from fish",
        "sodium and blood pressure",
    ];
    for i in 0..files {
        let topic = topics[i % topics.len()];
        let body: String = (0..40).map(|p| format!("Paragraph {p} of note {i} is about {topic}.\n\n")).collect();
        let name = if i % 3 == 0 { format!("sub/note {i}.md") } else { format!("note-{i}.txt") };
        std::fs::write(dir.join(name), format!("# Note {i}: {topic}\n\n{body}")).expect("write");
    }
    std::fs::write(dir.join("broken.pdf"), b"%PDF-1.7 truncated").expect("write");
}

/// Every document's chunk ids, from the state database.
fn snapshot(dir: &Path) -> Vec<(String, Vec<String>)> {
    let store = SqliteStore::open(&dir.join(".quarry/state.db"), 384).expect("open state");
    let mut keys: Vec<DocumentKey> = store.indexed_keys().expect("keys");
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let ids = store.chunk_ids(&DocumentId::for_key(&k)).expect("chunks");
            (k.as_str().to_owned(), ids.iter().map(|c| c.as_str().to_owned()).collect())
        })
        .collect()
}

#[test]
fn ingest_search_rerun_change_and_delete() {
    let dir = common::scratch("ingest", "basic");
    corpus(&dir, 8);
    let out = ok(&quarry(&["ingest", "--quiet"]).arg(&dir).output().expect("runs"));
    assert!(out.contains("9 documents, 8 indexed"), "{out}");
    assert!(out.contains("1 failed") && out.contains("failed broken.pdf:") && out.contains("(corrupt_pdf)"), "{out}");

    // The batch is listed with its failure; fixing the file and retrying moves it to done.
    let batch = out.split_whitespace().nth(1).unwrap_or("").trim_end_matches(':').to_owned();
    assert!(batch.starts_with("b-"), "{out}");
    let listed = ok(&quarry(&["batches", "--dir"]).arg(&dir).output().expect("runs"));
    assert!(listed.contains(&batch) && listed.contains("9 documents: 8 done, 0 unchanged, 1 failed"), "{listed}");
    let shown = ok(&quarry(&["batches", &batch, "--dir"]).arg(&dir).output().expect("runs"));
    assert!(shown.contains("failed broken.pdf:") && shown.contains("(corrupt_pdf)"), "{shown}");
    let page = quarry_testkit::PdfPage::Text(vec!["A repaired report on potassium intake.".into()]);
    std::fs::write(dir.join("broken.pdf"), quarry_testkit::pdf(&[page], None)).expect("write");
    let retried = ok(&quarry(&["retry", &batch, "--dir"]).arg(&dir).output().expect("runs"));
    assert!(retried.contains("retried 1, 1 now indexed, 0 still failing"), "{retried}");
    let shown = ok(&quarry(&["batches", &batch, "--dir"]).arg(&dir).output().expect("runs"));
    assert!(shown.contains("done       9") && shown.contains("failed     0"), "{shown}");
    let nothing = ok(&quarry(&["retry", &batch, "--dir"]).arg(&dir).output().expect("runs"));
    assert!(nothing.contains("has no failed or paused documents"), "{nothing}");

    let hits = ok(&quarry(&["search", "--mode", "semantic", "-k", "3", "--dir"])
        .arg(&dir)
        .arg("salt intake and hypertension")
        .output()
        .expect("runs"));
    let first = hits.lines().next().unwrap_or("");
    assert!(first.contains("note-3.txt") || first.contains("note-7.txt"), "the sodium notes rank first: {hits}");
    // Each command committed the keyword index as it exited (the retry's document included): a
    // one-shot search trusts the index on disk as it is, with no rebuild.
    let keyword = quarry(&["search", "--mode", "keyword", "-k", "3", "--dir"])
        .arg(&dir)
        .arg("potassium")
        .env("QUARRY_LOG", "quarry_local=info")
        .env("NO_COLOR", "1")
        .output()
        .expect("runs");
    let hits = ok(&keyword);
    assert!(hits.lines().next().unwrap_or("").contains("broken.pdf"), "the repaired report: {hits}");
    let log = String::from_utf8_lossy(&keyword.stderr);
    assert!(log.contains("keywords_current=true") && !log.contains("keyword index rebuilt"), "{log}");

    let again = ok(&quarry(&["ingest", "--quiet"]).arg(&dir).output().expect("runs"));
    assert!(again.contains("0 indexed (0 chunks), 9 unchanged"), "a re-run embeds nothing: {again}");

    std::fs::write(dir.join("note-1.txt"), "Short now: oats.").expect("write");
    std::fs::remove_file(dir.join("note-2.txt")).expect("rm");
    let sync = ok(&quarry(&["ingest", "--quiet"]).arg(&dir).output().expect("runs"));
    assert!(sync.contains("1 indexed (1 chunks)") && sync.contains("1 removed"), "{sync}");
    let snap = snapshot(&dir);
    assert!(snap.iter().all(|(k, _)| k != "note-2.txt"), "the deleted file left the index");
    assert_eq!(snap.iter().find(|(k, _)| k == "note-1.txt").map(|(_, c)| c.len()), Some(1), "stale chunks dropped");

    // While another process holds the folder's lock, a second ingest is refused.
    let lock = std::fs::File::create(dir.join(".quarry/lock")).expect("lock file");
    lock.lock().expect("take the lock");
    let second = quarry(&["ingest", "--quiet"]).arg(&dir).output().expect("runs");
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("another `quarry ingest` is running"));
    drop(lock);

    let missing = quarry(&["search", "--dir"]).arg(dir.join("nowhere")).arg("x").output().expect("runs");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is neither a folder nor a .jsonl file"));
    let empty = common::scratch("ingest", "never-indexed");
    let never = quarry(&["search", "--dir"]).arg(&empty).arg("x").output().expect("runs");
    assert_eq!(never.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&never.stderr).contains("has no index yet"));
    let _ = std::fs::remove_dir_all(&empty);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_killed_run_resumes_to_the_same_index() {
    let reference = common::scratch("ingest", "reference");
    corpus(&reference, 24);
    ok(&quarry(&["ingest", "--quiet"]).arg(&reference).output().expect("runs"));
    let want = snapshot(&reference);
    // 24 notes, and the broken PDF: known (failed, with its key) but without chunks.
    assert_eq!(want.len(), 25);
    assert!(want.iter().any(|(k, chunks)| k == "broken.pdf" && chunks.is_empty()), "{want:?}");

    let dir = common::scratch("ingest", "killed");
    corpus(&dir, 24);
    // Kill at several points of one batch: each time SIGKILL, nothing gets to clean up.
    for delay_ms in [400, 900, 1500] {
        let mut child = quarry(&["ingest", "--quiet"]).arg(&dir).spawn().expect("spawns");
        std::thread::sleep(Duration::from_millis(delay_ms));
        // On Unix, Child::kill sends SIGKILL.
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = ok(&quarry(&["ingest", "--quiet"]).arg(&dir).output().expect("runs"));
    assert!(out.contains("0 failed") || out.contains("1 failed"), "{out}");
    let got = snapshot(&dir);
    assert_eq!(got, want, "same documents, same chunk ids, no duplicates");
    let _ = std::fs::remove_dir_all(&reference);
    let _ = std::fs::remove_dir_all(&dir);
}
