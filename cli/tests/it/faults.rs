//! The embedded store's own faults, on real SQLite and a real disk: a disk that fills mid-batch,
//! and a database another program holds locked (`SQLITE_BUSY`). Either way the run fails with an
//! error that names the fix, no document is blamed, and the next run ends with the index an
//! undisturbed run builds: the same chunk ids, texts and vectors, the same batch counts.
//!
//! The full disk is a small tmpfs mounted over the index's folder in a private mount namespace
//! (`unshare`, from util-linux: no privilege needed beyond a user namespace, and nothing outside the
//! test's own processes sees it).

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use crate::common;
use crate::common::mixed::{batch_counts, corpus, cosine, index};

const DOCUMENTS: usize = 64;

fn quarry(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarry"));
    c.args(args).env("QUARRY_MODEL_DIR", quarry_testkit::model_dir()).env_remove("QUARRY_CONFIG");
    c
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn ok(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(o.status.success(), "stdout: {out}\nstderr: {err}");
    out
}

fn ingest(dir: &Path, state: &Path) -> Output {
    let (d, s) = (dir.to_str().expect("utf-8"), state.to_str().expect("utf-8"));
    quarry(&["ingest", d, "--state", s, "--quiet"]).output().expect("quarry runs")
}

/// The batch's counts as `quarry batches` prints them ([`batch_counts`]).
fn counts(dir: &Path, state: &Path) -> String {
    let (d, s) = (dir.to_str().expect("utf-8"), state.to_str().expect("utf-8"));
    batch_counts(&ok(&quarry(&["batches", "--dir", d, "--state", s]).output().expect("runs")))
}

/// `(indexed, unchanged)` from an ingest's summary line.
fn indexed_unchanged(out: &str) -> (usize, usize) {
    let number = |after: &str| -> usize {
        let at = out.find(after).unwrap_or_else(|| panic!("no {after:?} in {out}"));
        out[..at].split_whitespace().last().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{out}"))
    };
    (number(" indexed ("), number(" unchanged"))
}

/// The same folder indexed without a fault: what every faulty run must end as.
struct Reference {
    chunks: BTreeMap<String, (String, String, Vec<f32>)>,
    counts: String,
}

impl Reference {
    fn build(area: &str) -> Reference {
        let root = common::scratch(area, "reference");
        let (dir, state) = (root.join("docs"), root.join("state"));
        corpus(&dir, DOCUMENTS);
        ok(&ingest(&dir, &state));
        Reference { chunks: index(&state), counts: counts(&dir, &state) }
    }

    fn matches(&self, dir: &Path, state: &Path) {
        let got = index(state);
        assert_eq!(
            got.iter().map(|(id, (key, text, _))| (id, key, text)).collect::<Vec<_>>(),
            self.chunks.iter().map(|(id, (key, text, _))| (id, key, text)).collect::<Vec<_>>(),
            "the same chunks, ids and texts"
        );
        for (id, (_, _, v)) in &got {
            let c = cosine(v, &self.chunks[id].2);
            assert!(c >= 0.9999, "{id}: cosine {c}");
        }
        assert_eq!(counts(dir, state), self.counts, "the batch's counts");
    }
}

#[test]
fn a_disk_that_fills_mid_batch_stops_the_run_and_the_next_resumes_it() {
    let reference = Reference::build("faults-disk");
    let root = common::scratch("faults-disk", "full");
    let (dir, state, copy) = (root.join("docs"), root.join("state"), root.join("copy"));
    corpus(&dir, DOCUMENTS);
    for d in [&state, &copy] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    // In the namespace: a 2 MB disk for the index, where the whole batch needs several; the same
    // run again once the disk has room; then the index copied out, the namespace's mount being
    // gone when it ends. The first run's exit code and streams are kept for the asserts.
    let script = r#"set -u
mount -t tmpfs -o size=2m tmpfs "$STATE" || exit 90
"$QUARRY" ingest "$DIR" --state "$STATE" --quiet >"$ROOT/full.out" 2>"$ROOT/full.err"
echo $? >"$ROOT/full.rc"
mount -o remount,size=256m "$STATE" || exit 91
"$QUARRY" ingest "$DIR" --state "$STATE" --quiet >"$ROOT/room.out" 2>"$ROOT/room.err"
echo $? >"$ROOT/room.rc"
cp -a "$STATE/." "$COPY/"
"#;
    let o = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "bash", "-c", script])
        .env("QUARRY", env!("CARGO_BIN_EXE_quarry"))
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .env_remove("QUARRY_CONFIG")
        .env("DIR", &dir)
        .env("STATE", &state)
        .env("COPY", &copy)
        .env("ROOT", &root)
        .output()
        .expect("unshare (util-linux) runs");
    assert!(o.status.success(), "the namespace with a small disk: {:?}", text(&o));
    let read = |name: &str| std::fs::read_to_string(root.join(name)).expect("written in the namespace");

    // The full disk: the run stops, says why and what to do, and panics nowhere.
    assert_ne!(read("full.rc").trim(), "0", "{}", read("full.out"));
    let err = read("full.err");
    assert!(err.contains("the disk that holds the index is full: free space"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // With room, the same command finishes the batch: some documents were indexed before the disk
    // filled (kept, and found unchanged), the rest now; none was recorded failed for the disk.
    assert_eq!(read("room.rc").trim(), "0", "{}", read("room.err"));
    let out = read("room.out");
    let (indexed, unchanged) = indexed_unchanged(&out);
    assert!(indexed > 0 && unchanged > 0, "the disk filled mid-batch: {out}");
    assert!(!out.contains("disk"), "a document blamed for the disk: {out}");
    println!("faults: full disk: {}; with room: {indexed} indexed, {unchanged} kept", err.lines().last().unwrap_or(""));
    reference.matches(&dir, &copy);
}

#[test]
fn a_database_held_locked_mid_batch_fails_documents_retryably_and_the_next_run_completes() {
    let reference = Reference::build("faults-busy");
    let root = common::scratch("faults-busy", "locked");
    let (dir, state) = (root.join("docs"), root.join("state"));
    corpus(&dir, DOCUMENTS);
    let run = quarry(&["ingest", dir.to_str().expect("utf-8"), "--state", state.to_str().expect("utf-8")])
        .arg("--quiet")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("quarry runs");

    // Another program (a backup, an sqlite3 shell; here Python's sqlite3) takes the write lock once
    // the run has checkpointed a few documents, and keeps it well past the store's 5 s busy
    // timeout: 15 s, so that every write the run starts in the first 10 s gives up. (7 s was too
    // short once in CI: the run's next writes came over 2 s into the hold, after its model had
    // embedded the documents in flight, so none waited the full 5 s.)
    let holder = r#"
import sqlite3, sys, time
db, started = sys.argv[1], time.time()
while True:
    assert time.time() - started < 120, "the run checkpointed nothing"
    try:
        c = sqlite3.connect(db, isolation_level=None, timeout=0)
        if c.execute("SELECT count(*) FROM documents WHERE status = 'indexed'").fetchone()[0] >= 4:
            break
        c.close()
    except sqlite3.Error:
        pass
    time.sleep(0.02)
c.close()
# The run may be mid-write itself: wait for its transaction to end, then take the lock.
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("BEGIN EXCLUSIVE")
time.sleep(15)
c.execute("COMMIT")
print("held")
"#;
    let held = Command::new("python3").args(["-c", holder]).arg(state.join("state.db")).output().expect("python3 runs");
    assert_eq!(text(&held).0.trim(), "held", "{:?}", text(&held));
    let o = run.wait_with_output().expect("the run ends");
    let (out, err) = text(&o);
    assert!(!err.contains("panicked"), "{err}");

    // The locked run either stopped with the lock named, or went on and recorded the documents it
    // could not write as failed, retryably, with the lock named: never as the documents' fault.
    let locked = "another program holds the index's write lock";
    if o.status.success() {
        let failed: Vec<&str> = out.lines().filter(|l| l.trim_start().starts_with("failed ")).collect();
        let busy: Vec<&&str> = failed.iter().filter(|l| l.contains(locked)).collect();
        assert!(!busy.is_empty(), "a document met the lock: {out}");
        assert!(busy.iter().all(|l| l.contains("(transient)")), "{out}");
        println!("faults: locked: {} documents failed retryably, e.g. {}", busy.len(), busy[0].trim());
    } else {
        assert!(err.contains(locked), "{err}");
        println!("faults: locked: the run stopped: {}", err.lines().last().unwrap_or(""));
    }
    // The next run, as the message says, finishes: the index an undisturbed run builds.
    let again = ok(&ingest(&dir, &state));
    assert!(!again.contains(locked), "{again}");
    reference.matches(&dir, &state);
}
