//! Money under control, as a user meets it: the real `quarry` binary embedding with OpenAI (the
//! real client against a local server that speaks its wire format and counts what it bills), eight
//! documents in flight, real SQLite. A batch budget pauses the batch before it is passed, and a
//! raised budget resumes it to the end with nothing lost or embedded twice; with 30 % of calls
//! failing, every document is indexed and billed once. The figures measured are printed for the
//! run's log (`-- --nocapture`).

#![allow(clippy::print_stdout)]

use crate::common;
use std::path::Path;
use std::process::Output;

use quarry_core::BatchId;
use quarry_core::ports::BatchTracker;
use quarry_core::spend::{SpendLedger, SpendScope};
use quarry_local::SqliteStore;
use quarry_testkit::openai::{FakeOpenAi, Faults, KEY};

const DOCUMENTS: usize = 40;
/// `text-embedding-3-small`: $0.02 per million tokens.
const NANODOLLARS_PER_TOKEN: u64 = 20;

/// Forty short notes, each its own text (nothing shared through the cache).
fn corpus(dir: &Path) {
    for i in 0..DOCUMENTS {
        let body: String = (0..6)
            .map(|p| {
                format!("Note {i}, paragraph {p}: measurement {} of sample {} was recorded.\n\n", i * 31 + p, i * 7)
            })
            .collect();
        std::fs::write(dir.join(format!("note-{i:02}.txt")), body).expect("write");
    }
}

/// Runs `quarry` against the fake, off the runtime that serves it.
async fn quarry(fake: &FakeOpenAi, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_quarry"));
    c.args(args)
        .env_remove("QUARRY_CONFIG")
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .env("QUARRY_EMBEDDER", "openai")
        .env("QUARRY_OPENAI_BASE_URL", &fake.url)
        .env("QUARRY_OPENAI_API_KEY", KEY)
        .env("QUARRY_OPENAI_MAX_RETRIES", "10");
    for (k, v) in env {
        c.env(k, v);
    }
    tokio::task::spawn_blocking(move || c.output().expect("run quarry")).await.expect("join")
}

fn ok(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "stdout: {out}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    out
}

fn batch_of(out: &str) -> BatchId {
    let id = out.lines().find_map(|l| l.strip_prefix("batch ")?.split(':').next()).expect("a batch line");
    BatchId::new(id)
}

fn store(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join(".quarry/state.db"), 384).expect("open state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_budget_pauses_eight_workers_before_it_is_passed_and_a_raised_one_resumes() {
    // What the whole corpus costs, measured on a copy with no budget.
    let reference = FakeOpenAi::start(Faults::default()).await;
    let whole = common::scratch("budget", "reference");
    corpus(&whole);
    ok(&quarry(&reference, &["ingest", whole.to_str().expect("utf-8"), "--workers", "8", "--quiet"], &[]).await);
    let total = reference.billed_tokens();
    assert!(total > 2_000, "a corpus worth limiting: {total} tokens");

    // A batch budget of 40 % of that, with eight documents in flight at once.
    let fake = FakeOpenAi::start(Faults { latency: std::time::Duration::from_millis(20), ..Faults::default() }).await;
    let dir = common::scratch("budget", "paused");
    corpus(&dir);
    let limit_tokens = total * 4 / 10;
    let budget = format!("{}", (limit_tokens * NANODOLLARS_PER_TOKEN) as f64 / 1e9);
    let budget_env = [("QUARRY_BUDGET_BATCH_USD", budget.clone())];
    let out =
        ok(&quarry(&fake, &["ingest", dir.to_str().expect("utf-8"), "--workers", "8", "--quiet"], &budget_env).await);
    let batch = batch_of(&out);
    assert!(out.contains("paused") && out.contains(&format!("quarry retry {batch}")), "{out}");

    // Never passed: reservations are taken before sending, so no request goes over the limit.
    let billed = fake.billed_tokens();
    assert!(billed <= limit_tokens, "billed {billed} tokens over a budget of {limit_tokens}");
    assert!(billed >= limit_tokens / 2, "the budget was used, not refused early: {billed} of {limit_tokens}");
    println!("budget: corpus {total} tokens, limit {limit_tokens}, billed before the pause {billed}");
    let s = store(&dir);
    let spent = s.spent(&SpendScope::Batch(batch.clone())).await.expect("spent");
    assert_eq!(spent.used.tokens, billed, "the ledger counts exactly what the server billed");
    assert_eq!(spent.used.nanodollars, billed * NANODOLLARS_PER_TOKEN);
    assert_eq!(spent.reserved_nanodollars, 0, "nothing left reserved");
    let c = s.counters(&batch).await.expect("counters");
    assert_eq!((c.total, c.failed), (DOCUMENTS as u64, 0), "paused, never failed: {c:?}");
    assert!(c.paused > 0 && c.paused == c.pending && c.done + c.paused == c.total, "{c:?}");
    drop(s);

    let shown = ok(&quarry(&fake, &["batches", batch.as_str(), "--dir", dir.to_str().expect("utf-8")], &[]).await);
    assert!(shown.contains("paused") && shown.contains(&format!("{billed} tokens embedded")), "{shown}");

    // Still over budget: a retry pauses again and spends nothing more.
    let again =
        ok(&quarry(&fake, &["retry", batch.as_str(), "--dir", dir.to_str().expect("utf-8")], &budget_env).await);
    assert!(again.contains("still paused"), "{again}");
    assert!(fake.billed_tokens() <= limit_tokens, "a paused batch stays within its budget");

    // Raised (here: lifted), the batch resumes to the end under its own id.
    let resumed = ok(&quarry(&fake, &["retry", batch.as_str(), "--dir", dir.to_str().expect("utf-8")], &[]).await);
    assert!(resumed.contains(", 0 still failing or paused"), "{resumed}");
    let s = store(&dir);
    let c = s.counters(&batch).await.expect("counters");
    assert_eq!((c.done, c.pending, c.paused, c.failed), (DOCUMENTS as u64, 0, 0, 0), "{c:?}");
    assert_eq!(fake.billed_tokens(), total, "every chunk embedded exactly once across pause and resume");
    assert_eq!(s.spent(&SpendScope::Batch(batch)).await.expect("spent").used.tokens, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_thirty_percent_of_calls_failing_every_document_is_indexed_and_billed_once() {
    let fake = FakeOpenAi::start(Faults { fail_percent: 30, seed: 7, ..Faults::default() }).await;
    let dir = common::scratch("budget", "faults");
    corpus(&dir);
    let out = ok(&quarry(&fake, &["ingest", dir.to_str().expect("utf-8"), "--workers", "8", "--quiet"], &[]).await);
    let batch = batch_of(&out);
    println!(
        "faults: {} of {} calls failed, {} tokens billed",
        fake.failed_calls(),
        fake.calls(),
        fake.billed_tokens()
    );
    assert!(fake.failed_calls() > 0, "faults were injected: {} of {} calls", fake.failed_calls(), fake.calls());
    let s = store(&dir);
    let c = s.counters(&batch).await.expect("counters");
    assert_eq!((c.done, c.failed, c.pending), (DOCUMENTS as u64, 0, 0), "{out}");
    let used = s.spent(&SpendScope::Batch(batch.clone())).await.expect("spent").used;
    assert_eq!(used.tokens, fake.billed_tokens(), "recorded usage is what the server billed for its successes");
    let day = s.spent(&SpendScope::today()).await.expect("spent").used;
    assert!(day.tokens >= used.tokens, "the day counts the batch: {day:?} {used:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_paragraph_in_many_documents_is_embedded_and_billed_once() {
    let fake = FakeOpenAi::start(Faults { latency: std::time::Duration::from_millis(20), ..Faults::default() }).await;
    let dir = common::scratch("budget", "shared");
    let notice = "This notice applies to every report in the archive and is repeated word for word.";
    for i in 0..12 {
        std::fs::write(dir.join(format!("report-{i:02}.txt")), notice).expect("write");
    }
    for i in 0..4 {
        std::fs::write(dir.join(format!("note-{i}.txt")), format!("A note of its own, number {i}.")).expect("write");
    }
    let out = ok(&quarry(&fake, &["ingest", dir.to_str().expect("utf-8"), "--quiet"], &[]).await);
    let batch = batch_of(&out);
    assert_eq!(fake.embedded_inputs(), 5, "twelve documents in flight at once share one embedding of the notice");
    let used = store(&dir).spent(&SpendScope::Batch(batch)).await.expect("spent").used;
    assert_eq!(used.tokens, fake.billed_tokens(), "and it is recorded once, as billed: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_estimate_is_what_ingest_then_bills_and_it_sends_nothing() {
    let fake = FakeOpenAi::start(Faults::default()).await;
    let dir = common::scratch("budget", "estimate");
    corpus(&dir);
    let path = dir.to_str().expect("utf-8");
    let tokens = |out: &str| -> u64 {
        let after = out.split("to embed: ").nth(1).expect("an estimate line");
        after.split(' ').next().and_then(|n| n.parse().ok()).expect("a token count")
    };
    let before = ok(&quarry(&fake, &["ingest", path, "--estimate"], &[]).await);
    assert_eq!(fake.calls(), 0, "an estimate sends nothing");
    assert!(!dir.join(".quarry").exists(), "and writes nothing");
    assert!(before.contains(&format!("estimate: {DOCUMENTS} documents (0 unchanged, 0 would fail)")), "{before}");
    let estimated = tokens(&before);

    ok(&quarry(&fake, &["ingest", path, "--quiet"], &[]).await);
    assert_eq!(fake.billed_tokens(), estimated, "the estimate is what ingest was billed: {before}");

    // Indexed now: nothing would be sent again, and an edited note costs only its changed chunk.
    std::fs::write(dir.join("note-03.txt"), "A new note, short and different.\n").expect("write");
    let after = ok(&quarry(&fake, &["ingest", path, "--estimate"], &[]).await);
    assert!(after.contains(&format!("({} unchanged, 0 would fail)", DOCUMENTS - 1)), "{after}");
    let edited = tokens(&after);
    assert!(edited > 0 && edited < 20, "one short chunk: {after}");
    let calls = fake.calls();
    ok(&quarry(&fake, &["ingest", path, "--quiet"], &[]).await);
    assert_eq!(fake.billed_tokens(), estimated + edited, "and that is what the edit cost");
    assert!(fake.calls() > calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_batch_over_the_api_prices_what_the_batch_then_bills_and_records_nothing() {
    let fake = FakeOpenAi::start(Faults::default()).await;
    let dir = common::scratch("budget", "dry-run");
    corpus(&dir);
    let (path, url) = (dir.to_str().expect("utf-8").to_owned(), fake.url.clone());
    let calls = || fake.calls();
    let server = tokio::task::spawn_blocking(move || {
        quarry_testkit::http::Server::start(
            env!("CARGO_BIN_EXE_quarry"),
            &["--dir", &path, "--bind", "127.0.0.1:0"],
            &[("QUARRY_EMBEDDER", "openai"), ("QUARRY_OPENAI_BASE_URL", &url), ("QUARRY_OPENAI_API_KEY", KEY)],
        )
    })
    .await
    .expect("join");
    let server = std::sync::Arc::new(server);
    let post = |body: serde_json::Value| {
        let s = server.clone();
        tokio::task::spawn_blocking(move || s.call("POST", "/v1/batches", Some(&body.to_string()), &[]))
    };
    let get = |path: String| {
        let s = server.clone();
        tokio::task::spawn_blocking(move || s.call("GET", &path, None, &[]))
    };

    // The readiness probe embeds a word at start: let it land before counting.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while get("/health/ready".to_owned()).await.expect("join").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the server never became ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (probes, probe_tokens) = (calls(), fake.billed_tokens());
    let (status, e) =
        post(serde_json::json!({"prefix": "", "keys": ["gone.txt"], "dry_run": true})).await.expect("join");
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["dry_run"], true);
    assert_eq!(e["documents"], DOCUMENTS as u64 + 1, "{e}");
    assert_eq!((e["failing"].as_u64(), e["missing"].clone()), (Some(1), serde_json::json!(["gone.txt"])), "{e}");
    assert_eq!((e["unchanged"].as_u64(), e["cached"].as_u64()), (Some(0), Some(0)), "{e}");
    assert_eq!(e["to_embed"], e["chunks"]);
    assert_eq!(e["model"], "openai/text-embedding-3-small");
    let tokens = e["usage"]["tokens"].as_u64().expect("tokens");
    assert!(tokens > 0, "{e}");
    assert_eq!(e["usage"]["cost_usd"].as_f64(), Some((tokens * NANODOLLARS_PER_TOKEN) as f64 / 1e9), "{e}");
    assert_eq!(calls(), probes, "a dry run sends nothing");
    let (_, listed) = get("/v1/batches".to_owned()).await.expect("join");
    assert_eq!(listed["batches"], serde_json::json!([]), "and records no batch");

    // The same request for real: billed exactly what the dry run said.
    let (status, started) = post(serde_json::json!({"prefix": ""})).await.expect("join");
    assert_eq!(status, 202, "{started}");
    let batch = started["batch"].as_str().expect("batch id").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (_, view) = get(format!("/v1/batches/{batch}")).await.expect("join");
        if view["status"] == "done" {
            assert_eq!(view["documents"]["indexed"], DOCUMENTS as u64, "{view}");
            assert_eq!(view["usage"]["tokens"].as_u64(), Some(tokens), "{view}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the batch did not end: {view}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(fake.billed_tokens() - probe_tokens, tokens, "the server billed what the dry run priced");

    // Now indexed: a second dry run would send nothing.
    let (_, again) = post(serde_json::json!({"prefix": "", "dry_run": true})).await.expect("join");
    assert_eq!(
        (again["unchanged"].as_u64(), again["usage"]["tokens"].as_u64()),
        (Some(DOCUMENTS as u64), Some(0)),
        "{again}"
    );
}
