//! Budgets on the AWS path, on moto: eight embed-workers at once, each with its own OpenAI client
//! (as eight Lambda instances would have), against a local server that speaks OpenAI's wire
//! format, and one ledger in DynamoDB. The batch budget stops them before it is passed; the batch
//! reads `paused`; raised, it resumes through the API to the end, every chunk embedded once.

use futures::StreamExt;
use quarry_core::BatchId;
use quarry_core::config::{Budget, Secret, Usd};
use quarry_core::ports::{BatchTracker, IndexJob};
use quarry_core::spend::{SpendLedger, SpendScope};
use quarry_e2e::{Stack, TheWorker, api};
use quarry_openai::{OpenAiEmbedder, Options};
use quarry_pipeline::CoalescingEmbedder;
use quarry_testkit::openai::{FakeOpenAi, Faults, KEY};
use serde_json::json;

const DOCUMENTS: usize = 24;
const WORKERS: usize = 8;

fn note(i: usize) -> String {
    (0..5)
        .map(|p| format!("Station {i}, reading {p}: the tide gauge showed {} cm at {}:00.\n\n", i * 13 + p, p + 6))
        .collect()
}

async fn run(workers: &[TheWorker<'_>], jobs: &[IndexJob]) {
    let results: Vec<_> = futures::stream::iter(jobs.iter().enumerate())
        .map(|(i, job)| workers[i % workers.len()].job(job))
        .buffer_unordered(WORKERS)
        .collect()
        .await;
    for r in results {
        r.expect("a paused document is acknowledged, not returned to the queue");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_embed_workers_stop_at_the_batch_budget_and_resume_when_it_is_raised() {
    let fake = FakeOpenAi::start(Faults { latency: std::time::Duration::from_millis(20), ..Faults::default() }).await;
    let mut stack = Stack::new().await;
    // What the whole batch costs: its chunks, as the preparer cuts them, in cl100k tokens.
    let mut total = 0u64;
    for i in 0..DOCUMENTS {
        let key = format!("docs/note-{i:02}.txt");
        let prepared = stack.preparer.prepare(Some(&key), note(i).as_bytes()).expect("prepare");
        total += prepared.chunks.iter().map(|c| quarry_openai::pack::tokens(&c.text) as u64).sum::<u64>();
        stack.put(&key, note(i).into_bytes(), &[]).await;
    }
    let limit = total * 4 / 10;
    stack.budget = Budget { batch_usd: Some(Usd(limit * 20)), ..Budget::default() };
    let options = Options { api_base: Some(fake.url.clone()), ..Options::default() };
    let embedders: Vec<CoalescingEmbedder> = (0..WORKERS)
        .map(|_| CoalescingEmbedder::new(OpenAiEmbedder::new(&Secret::new(KEY), options.clone()).expect("client"), 256))
        .collect();

    let router = stack.router();
    let (code, b) = api(&router, "POST", "/v1/batches", Some(&json!({"prefix": "docs/"}))).await;
    assert_eq!(code, 202, "{b}");
    let batch = BatchId::new(b["batch"].as_str().expect("batch id"));
    let jobs = stack.take_jobs().await;
    assert_eq!(jobs.len(), DOCUMENTS);
    {
        let workers: Vec<TheWorker<'_>> = embedders.iter().map(|e| stack.worker_with(e)).collect();
        run(&workers, &jobs).await;
    }

    let billed = fake.billed_tokens();
    assert!(billed <= limit, "billed {billed} tokens over a budget of {limit}");
    assert!(billed >= limit / 2, "the budget was used: {billed} of {limit}");
    let spent = stack.state.spent(&SpendScope::Batch(batch.clone())).await.expect("spent");
    assert_eq!((spent.used.tokens, spent.reserved_nanodollars), (billed, 0), "the ledger is what was billed");
    let c = stack.state.counters(&batch).await.expect("counters");
    let paused_items = stack.state.paused(&batch).await.expect("paused");
    assert_eq!(paused_items.len() as u64, c.paused, "{c:?} {paused_items:?}");
    assert_eq!((c.total, c.failed), (DOCUMENTS as u64, 0), "{c:?}");
    assert!(c.paused > 0 && c.paused == c.pending && c.done + c.paused == c.total, "{c:?}");
    let (code, g) = api(&router, "GET", &format!("/v1/batches/{}", batch.as_str()), None).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!((g["status"].as_str(), g["reason"].as_str()), (Some("paused"), Some("budget_exhausted")), "{g}");
    assert_eq!(g["usage"]["tokens"].as_u64(), Some(billed), "{g}");
    assert_eq!(g["documents"]["paused"].as_u64(), Some(c.paused), "{g}");

    // Raised: the API resumes the batch under its own id, and the workers finish it.
    stack.budget = Budget::default();
    let (code, r) = api(&router, "POST", &format!("/v1/batches/{}/retry", batch.as_str()), Some(&json!({}))).await;
    assert_eq!(code, 202, "{r}");
    assert_eq!((r["batch"].as_str(), r["documents"].as_u64()), (Some(batch.as_str()), Some(c.paused)), "{r}");
    let again = stack.take_jobs().await;
    assert!(again.iter().all(|j| j.batch.as_ref() == Some(&batch)), "resumed under the same batch");
    {
        let workers: Vec<TheWorker<'_>> = embedders.iter().map(|e| stack.worker_with(e)).collect();
        run(&workers, &again).await;
    }
    let c = stack.state.counters(&batch).await.expect("counters");
    assert_eq!((c.done, c.pending, c.paused, c.failed), (DOCUMENTS as u64, 0, 0, 0), "{c:?}");
    assert_eq!(fake.billed_tokens(), total, "every chunk billed once across the pause and the resume");
    assert_eq!(fake.embedded_inputs() as usize, stack.vector_keys().await.len(), "one embedding per stored chunk");
    let (_, g) = api(&router, "GET", &format!("/v1/batches/{}", batch.as_str()), None).await;
    assert_eq!((g["status"].as_str(), g["usage"]["tokens"].as_u64()), (Some("done"), Some(total)), "{g}");
}
