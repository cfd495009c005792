//! SIGKILL at random moments of one local batch of mixed formats (text, Markdown, HTML, CSV, JSON,
//! DOCX, PDF, and broken files), each run resumed by the next, against the same batch run
//! uninterrupted: the same documents, chunk ids and texts, vectors equal to cosine 0.9999, the same
//! batch counts, nothing lost and nothing doubled.
//!
//! CI runs a reduced form (60 documents, 8 kills). `scripts/kills.sh` runs the full one (1,000
//! documents, 20 kills) through `QUARRY_KILLS_DOCS`, `QUARRY_KILLS` and `QUARRY_KILLS_SEED`, and
//! prints the report this test prints with `--nocapture`.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::mixed::{batch_counts, corpus, cosine, index};

fn quarry(args: &[&str], dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarry"));
    c.args(args).arg(dir).env("QUARRY_MODEL_DIR", quarry_testkit::model_dir()).env_remove("QUARRY_CONFIG");
    // This test's own settings are not Quarry's, which refuses QUARRY_ names it does not know.
    for setting in ["QUARRY_KILLS_DOCS", "QUARRY_KILLS", "QUARRY_KILLS_SEED"] {
        c.env_remove(setting);
    }
    c
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "stdout: {out}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `n` documents, formats in turn, a few of them broken (each refused with its reason).
/// The batch line `quarry batches` prints: "N documents: D done, U unchanged, F failed".
fn counts(dir: &Path) -> String {
    batch_counts(&ok(&quarry(&["batches", "--dir"], dir).output().expect("runs")))
}

#[test]
fn a_batch_killed_at_random_moments_resumes_to_the_uninterrupted_index() {
    let docs = setting("QUARRY_KILLS_DOCS", 60) as usize;
    let kills = setting("QUARRY_KILLS", 8) as usize;
    let seed = setting("QUARRY_KILLS_SEED", 20_261_206);
    let reference = common::scratch("kills", "reference");
    corpus(&reference, docs);
    let t = Instant::now();
    let summary = ok(&quarry(&["ingest", "--quiet"], &reference).output().expect("runs"));
    let uninterrupted = t.elapsed();
    let want = index(&reference.join(".quarry"));
    let want_counts = counts(&reference);
    assert!(want_counts.contains(" failed") && !want.is_empty(), "{summary}");
    // A run with nothing to do: the start-up (model, database) every killed run pays first.
    let t = Instant::now();
    ok(&quarry(&["ingest", "--quiet"], &reference).output().expect("runs"));
    let startup = t.elapsed();

    let dir = common::scratch("kills", "killed");
    corpus(&dir, docs);
    // Each kill lands after the start-up, at a random moment of the work; together they cover
    // about the uninterrupted run's work, so the batch advances from kill to kill.
    let mut rng = fastrand::Rng::with_seed(seed);
    let work = uninterrupted.saturating_sub(startup).as_millis() as u64;
    let span = (work * 3 / kills.max(1) as u64).max(100);
    let (mut interrupted, mut moments) = (0, Vec::new());
    for _ in 0..kills {
        let at = startup + Duration::from_millis(rng.u64(0..span));
        let mut child = quarry(&["ingest", "--quiet"], &dir).spawn().expect("spawns");
        std::thread::sleep(at);
        let running = child.try_wait().expect("wait").is_none();
        // On Unix, Child::kill sends SIGKILL: nothing gets to clean up.
        let _ = child.kill();
        let _ = child.wait();
        interrupted += usize::from(running);
        moments.push(at.as_millis());
    }
    let before_resume = index(&dir.join(".quarry")).len();
    let t = Instant::now();
    ok(&quarry(&["ingest", "--quiet"], &dir).output().expect("runs"));
    let resume = t.elapsed();
    let got = index(&dir.join(".quarry"));
    let got_counts = counts(&dir);

    let documents = want.values().map(|(k, _, _)| k.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the same chunk ids");
    let mut lowest = 1.0f64;
    for (id, (key, text, vector)) in &want {
        let (k, t, v) = &got[id];
        assert_eq!((k, t), (key, text), "chunk {id}");
        lowest = lowest.min(cosine(vector, v));
    }
    assert!(lowest >= 0.9999, "a vector differs: cosine {lowest}");
    assert_eq!(got_counts, want_counts, "the batch's counts");
    println!(
        "kills: {docs} documents ({documents} with chunks, {} chunks), seed {seed}; uninterrupted run {:.1} s \
         (start-up {:.1} s); {kills} kills at {moments:?} ms, {interrupted} of them mid-run, {before_resume} chunks \
         written before the last run; resume {:.1} s; lowest cosine {lowest:.6}; batch {got_counts}",
        want.len(),
        uninterrupted.as_secs_f64(),
        startup.as_secs_f64(),
        resume.as_secs_f64(),
    );
    assert!(before_resume > 0, "the killed runs made progress");
    assert!(interrupted * 3 >= kills, "kills must land while the batch runs: {interrupted} of {kills}");
    let _ = std::fs::remove_dir_all(&reference);
    let _ = std::fs::remove_dir_all(&dir);
}
