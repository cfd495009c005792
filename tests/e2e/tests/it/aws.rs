//! The AWS deployment end to end on moto, and each handler fed real AWS event JSON.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use quarry_core::ports::{BatchTracker, Checkpoint, CheckpointStore, DocumentReader, IndexJob, JobAction};
use quarry_core::{BatchId, ContentHash, DocumentId, DocumentKey, DocumentStatus};
use quarry_e2e::{Stack, api, fixture, sqs_event};
use serde_json::{Value, json};

fn id(key: &str) -> DocumentId {
    DocumentId::for_key(&DocumentKey::new(key))
}

async fn status(stack: &Stack, key: &str) -> Option<DocumentStatus> {
    stack.state.document(&id(key)).await.expect("read state").map(|d| d.status)
}

/// The keys of the documents a search returns, best first.
fn keys(response: &Value) -> Vec<String> {
    response["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["metadata"]["key"].as_str().unwrap_or_default().to_owned())
        .collect()
}

const ORCHARD: &str = "# Orchard care\n\nApple trees need pruning in late winter. Remove crossing branches \
    and water young trees deeply during dry summers so the fruit sets well.";
const ENGINES: &str = "Quarterly report. The turbine engines passed their vibration tests; fuel efficiency \
    rose four percent after the compressor blades were replaced.";
const BREAD: &str = "dish,notes\nsourdough bread,a starter of flour and water ferments overnight before baking\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_to_search_on_moto() {
    let stack = Stack::new().await;
    let events = stack.created.events_url.clone();
    let jobs = stack.created.resources.queue_url.clone();

    // Mixed formats, user metadata, a key with spaces and '+', unicode, and two bad files.
    stack.put("notes/orchard care.md", ORCHARD.into(), &[("team", "garden")]).await;
    stack.put("reports/Q1 2024+engines.txt", ENGINES.into(), &[("team", "ops")]).await;
    stack.put("recettes/café/bread.csv", BREAD.into(), &[]).await;
    stack
        .put(
            "manuals/pump.docx",
            quarry_testkit::docx(&["Centrifugal pump manual.", "Prime the pump before starting the motor."], None),
            &[],
        )
        .await;
    stack.put("broken/scan.pdf", b"%PDF-1.7\nthis is not really a PDF".to_vec(), &[]).await;
    stack.put("images/photo.png", b"\x89PNG\r\n\x1a\n not a document".to_vec(), &[]).await;

    // S3 -> events queue (moto's notification, s3:TestEvent first) -> ingest, each message three times.
    let ingest = stack.ingest();
    let (bodies, failures) = stack.drain(&events, 3, |e| ingest.handle(e)).await;
    assert_eq!(failures, 0);
    assert!(bodies.iter().any(|b| b.contains("s3:TestEvent")), "moto sends a test event first; ingest ignores it");
    assert!(bodies.iter().any(|b| b.contains("Q1+2024%2Bengines")), "keys arrive URL-encoded: {bodies:?}");
    assert_eq!(
        status(&stack, "images/photo.png").await.map(|s| match s {
            DocumentStatus::Failed { failure } => failure.code,
            other => format!("{other:?}"),
        }),
        Some("unsupported_type".into()),
        "a PNG is refused by ingest, before any download"
    );

    // jobs queue -> embed-worker, every message delivered three times.
    let worker = stack.worker();
    // Ingest saw every event three times, so every document has three jobs; when two run at once, one
    // finds the other's lease and goes back to the queue (reported as a batch item failure), to
    // find the document indexed when it comes round again.
    let (job_bodies, _) = stack.drain(&jobs, 3, |e| worker.handle(e)).await;
    let sent: Vec<IndexJob> = job_bodies.iter().map(|b| serde_json::from_str(b).expect("a job")).collect();
    assert!(sent.iter().any(|j| j.key.as_str() == "reports/Q1 2024+engines.txt"), "decoded key: {sent:?}");
    assert!(!sent.iter().any(|j| j.key.as_str() == "images/photo.png"), "refused files are not queued");

    for key in ["notes/orchard care.md", "reports/Q1 2024+engines.txt", "recettes/café/bread.csv", "manuals/pump.docx"]
    {
        assert!(
            matches!(status(&stack, key).await, Some(DocumentStatus::Indexed { chunks }) if chunks >= 1),
            "{key} is indexed"
        );
    }
    match status(&stack, "broken/scan.pdf").await {
        Some(DocumentStatus::Failed { failure }) => assert_eq!(failure.code, "corrupt_pdf"),
        other => panic!("the broken PDF is recorded as failed with its reason: {other:?}"),
    }
    let vectors = stack.vector_keys().await;
    assert_eq!(vectors.len(), 4, "one chunk each for four small documents, none doubled: {vectors:?}");

    // Every job delivered once more: nothing changes.
    let again: Vec<IndexJob> = sent.clone();
    for job in &again {
        worker.job(job).await.expect("a duplicate job succeeds");
    }
    assert_eq!(stack.vector_keys().await, vectors, "redelivery writes nothing new");

    // Search through API Gateway v2 events.
    let router = stack.router();
    let search = |q: &str, filter: Option<Value>| {
        let mut body = json!({"query": q, "top_k": 3});
        if let Some(f) = filter {
            body["filter"] = f;
        }
        body
    };
    let (code, r) = api(&router, "POST", "/v1/search", Some(&search("when should I prune apple trees", None))).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(keys(&r)[0], "notes/orchard care.md", "{r}");
    let first = &r["results"][0];
    assert!(first["score"].as_f64().is_some_and(|s| (0.0..=1.0).contains(&s)));
    assert_eq!(first["source"]["uri"], format!("s3://{}/notes/orchard care.md", stack.bucket()));
    assert_eq!(first["metadata"]["user.team"], "garden", "S3 object metadata is document metadata");

    let (_, r) = api(&router, "POST", "/v1/search", Some(&search("turbine fuel efficiency", None))).await;
    assert_eq!(keys(&r)[0], "reports/Q1 2024+engines.txt");
    let (_, r) = api(&router, "POST", "/v1/search", Some(&search("how to start the pump motor", None))).await;
    assert_eq!(keys(&r)[0], "manuals/pump.docx");

    // Filters run inside S3 Vectors' query.
    let (_, r) =
        api(&router, "POST", "/v1/search", Some(&search("apple trees", Some(json!({"user.team": "ops"}))))).await;
    assert_eq!(keys(&r), ["reports/Q1 2024+engines.txt"], "only ops documents: {r}");
    let (_, r) = api(
        &router,
        "POST",
        "/v1/search",
        Some(&search("bread", Some(json!({"key": {"$startsWith": "recettes/café/"}})))),
    )
    .await;
    assert_eq!(keys(&r), ["recettes/café/bread.csv"]);
    let (_, r) =
        api(&router, "POST", "/v1/search", Some(&search("x", Some(json!({"format": {"$in": ["markdown", "docx"]}})))))
            .await;
    let mut got = keys(&r);
    got.sort();
    assert_eq!(got, ["manuals/pump.docx", "notes/orchard care.md"]);
    let (code, r) =
        api(&router, "POST", "/v1/search", Some(&search("x", Some(json!({"key": {"$startsWith": "rep"}}))))).await;
    assert_eq!(code, 400, "a filter S3 Vectors cannot run is refused, not run differently: {r}");

    // Keyword and hybrid: the workers' changes -> the keyword indexer (each batch delivered three
    // times) -> segments and a manifest on S3 -> the search function's copy.
    let changes = stack.created.resources.keyword_queue_url.clone().expect("provisioned");
    let indexer = stack.keyword_indexer();
    let (sent, failures) = stack.drain(&changes, 3, |e| quarry_keyword_indexer::handle(&indexer, e)).await;
    assert_eq!(failures, 0);
    assert!(!sent.is_empty(), "the workers sent their changes");
    for mode in ["keyword", "hybrid"] {
        let (code, r) =
            api(&router, "POST", "/v1/search", Some(&json!({"query": "prime the pump motor", "mode": mode}))).await;
        assert_eq!(code, 200, "{mode}: {r}");
        assert_eq!(keys(&r)[0], "manuals/pump.docx", "{mode}: {r}");
        let ids: Vec<&str> =
            r["results"].as_array().expect("results").iter().filter_map(|h| h["id"].as_str()).collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{mode}: no chunk twice though every event came three times: {r}");
    }
    let (_, r) = api(
        &router,
        "POST",
        "/v1/search",
        Some(&json!({"query": "turbine apple", "mode": "keyword", "filter": {"user.team": "garden"}})),
    )
    .await;
    assert_eq!(keys(&r), ["notes/orchard care.md"], "filters apply inside the keyword list: {r}");

    // A replaced file's old words never come back.
    stack.put("reports/Q1 2024+engines.txt", b"Quarterly report. The wind farm met its targets.".to_vec(), &[]).await;
    stack.drain(&events, 1, |e| ingest.handle(e)).await;
    stack.drain(&jobs, 1, |e| worker.handle(e)).await;
    stack.drain(&changes, 1, |e| quarry_keyword_indexer::handle(&indexer, e)).await;
    for mode in ["keyword", "hybrid"] {
        let (_, r) =
            api(&router, "POST", "/v1/search", Some(&json!({"query": "turbine compressor", "mode": mode}))).await;
        let texts: Vec<&str> =
            r["results"].as_array().expect("results").iter().filter_map(|h| h["text"].as_str()).collect();
        assert!(!texts.iter().any(|t| t.contains("turbine")), "{mode}: the replaced text is gone: {r}");
    }
    let (_, r) = api(&router, "POST", "/v1/search", Some(&json!({"query": "wind farm", "mode": "keyword"}))).await;
    assert_eq!(keys(&r)[0], "reports/Q1 2024+engines.txt", "{r}");

    // Documents through the API: indexed and failed, with the reason.
    let (code, d) = api(&router, "GET", &format!("/v1/documents/{}", id("broken/scan.pdf")), None).await;
    assert_eq!((code, d["status"].as_str(), d["failure"]["code"].as_str()), (200, Some("failed"), Some("corrupt_pdf")));

    // Deleting the object removes it from results.
    stack.delete("notes/orchard care.md").await;
    let (_, failures) = stack.drain(&events, 1, |e| ingest.handle(e)).await;
    assert_eq!(failures, 0);
    stack.drain(&changes, 2, |e| quarry_keyword_indexer::handle(&indexer, e)).await;
    let (_, r) = api(&router, "POST", "/v1/search", Some(&search("when should I prune apple trees", None))).await;
    assert!(!keys(&r).contains(&"notes/orchard care.md".to_owned()), "{r}");
    assert_eq!(status(&stack, "notes/orchard care.md").await, None);
    for mode in ["keyword", "hybrid"] {
        let (_, r) =
            api(&router, "POST", "/v1/search", Some(&json!({"query": "prune apple trees", "mode": mode}))).await;
        assert!(!keys(&r).contains(&"notes/orchard care.md".to_owned()), "{mode}: a deleted file is gone: {r}");
    }
    assert_eq!(stack.vector_keys().await.len(), 3);

    // A tracked batch over a prefix: the same jobs, progress in DynamoDB.
    stack.put("reports/Q2 2024.txt", "Second quarter: the engines ran cooler.".into(), &[]).await;
    let _ = stack.drain(&events, 1, |e| ingest.handle(e)).await; // the upload's own event
    let (code, b) =
        api(&router, "POST", "/v1/batches", Some(&json!({"prefix": "reports/", "keys": ["reports/missing.txt"]})))
            .await;
    assert_eq!(code, 202, "{b}");
    assert_eq!((b["documents"].as_u64(), b["missing"][0].as_str()), (Some(3), Some("reports/missing.txt")));
    // The upload's own job for Q2 is still queued beside the batch's: when both run at once, one
    // finds the other's lease, goes back to the queue (a retryable failure) and, redelivered,
    // finds Q2 indexed. Either way the batch's counts settle the same.
    let _ = stack.drain(&jobs, 1, |e| worker.handle(e)).await;
    let batch = BatchId::new(b["batch"].as_str().expect("batch id"));
    let c = stack.state.counters(&batch).await.expect("counters");
    assert_eq!((c.total, c.pending, c.done + c.skipped, c.failed), (3, 0, 2, 1), "{c:?}");
    let (code, g) = api(&router, "GET", &format!("/v1/batches/{}", batch.as_str()), None).await;
    assert_eq!(code, 200, "{g}");
    assert_eq!(g["failures"][0]["key"], "reports/missing.txt", "{g}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_handles_a_real_sqs_event_of_s3_notifications() {
    let stack = Stack::new().await;
    // A document indexed earlier, whose removal event is in the fixture.
    let gone = DocumentKey::new("old/retired notes.md");
    let gone_id = DocumentId::for_key(&gone);
    stack.state.acquire(&gone_id, &ContentHash::of(b"x"), std::time::Duration::from_secs(60)).await.expect("lease");
    stack
        .state
        .checkpoint(&Checkpoint {
            document: gone_id.clone(),
            key: gone.clone(),
            content_hash: ContentHash::of(b"x"),
            chunks: 1,
            model: "m".into(),
            handle: None,
        })
        .await
        .expect("checkpoint");

    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&fixture("sqs-s3-object-created.json", &[("BUCKET", stack.bucket())])).expect("fixture");
    let response = stack.ingest().handle(event).await;
    assert!(response.batch_item_failures.is_empty());

    let jobs = stack.receive(&stack.created.resources.queue_url).await;
    let jobs: Vec<IndexJob> = jobs.iter().map(|m| serde_json::from_str(m.body.as_deref().unwrap()).unwrap()).collect();
    assert_eq!(jobs.len(), 1, "one job: the PNG is refused, the test event ignored, the removal handled: {jobs:?}");
    assert_eq!((jobs[0].action, jobs[0].key.as_str()), (JobAction::Index, "reports/Q1 2024 été+plan.txt"));
    assert_eq!(jobs[0].version.as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"));
    assert!(matches!(status(&stack, "images/diagram.png").await, Some(DocumentStatus::Failed { .. })));
    assert_eq!(stack.state.document(&gone_id).await.expect("read"), None, "the removed document is forgotten");

    // A body that is no S3 notification is dropped (logged), not retried forever.
    let mut bad = sqs_event(&[]);
    let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
    m.message_id = Some("m-1".into());
    m.body = Some("{\"not\": \"an event\"".into());
    bad.records.push(m);
    assert!(stack.ingest().handle(bad).await.batch_item_failures.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_worker_handles_a_real_sqs_event_of_jobs() {
    let stack = Stack::new().await;
    stack.put("inbox/hello world.md", "# Hello\n\nA short note about tide pools.".into(), &[]).await;
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&fixture("sqs-index-jobs.json", &[("KEY", "inbox/hello world.md")])).expect("fixture");
    let response = stack.worker().handle(event).await;
    assert!(response.batch_item_failures.is_empty(), "a malformed job is not retried: {response:?}");
    assert!(matches!(status(&stack, "inbox/hello world.md").await, Some(DocumentStatus::Indexed { chunks: 1 })));

    // A job for an object that no longer exists leaves nothing behind and is not retried.
    stack.delete("inbox/hello world.md").await;
    let job = IndexJob {
        action: JobAction::Index,
        key: DocumentKey::new("inbox/hello world.md"),
        version: None,
        batch: None,
        size: None,
    };
    stack.worker().job(&job).await.expect("a vanished object is not an error to retry");
    assert_eq!(status(&stack, "inbox/hello world.md").await, None);
    assert!(stack.vector_keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_retryably_lands_in_the_dlq() {
    let stack = Stack::new().await;
    let key = "held/forever.txt";
    stack.put(key, "Some text that another worker is holding.".into(), &[]).await;
    // Another worker holds the document and never lets go (within this test): every delivery is
    // `Busy`, a retryable failure, so the message goes back each time until the redrive policy
    // moves it to the DLQ after its fifth receive.
    let held = stack
        .state
        .acquire(
            &id(key),
            &ContentHash::of(b"Some text that another worker is holding."),
            std::time::Duration::from_secs(3600),
        )
        .await
        .expect("lease");
    assert!(matches!(held, quarry_core::ports::Lease::Acquired { .. }));
    let job = IndexJob { action: JobAction::Index, key: DocumentKey::new(key), version: None, batch: None, size: None };
    stack.queue_send(&job).await;

    let worker = stack.worker();
    let (bodies, failures) = stack.drain(&stack.created.resources.queue_url, 1, |e| worker.handle(e)).await;
    assert_eq!(
        (bodies.len(), failures),
        (quarry_aws::provision::MAX_RECEIVES as usize, quarry_aws::provision::MAX_RECEIVES as usize)
    );
    let dead = stack.receive(&stack.created.dlq_url).await;
    assert_eq!(dead.len(), 1, "the message is in the DLQ");
    let dead_job: IndexJob = serde_json::from_str(dead[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(dead_job.key.as_str(), key);
    assert!(matches!(status(&stack, key).await, Some(DocumentStatus::Processing { .. })), "nothing was indexed");
}

/// Keyword and hybrid pages go past S3 Vectors' 100: the keyword list is as deep as the published
/// index, and the semantic list inside hybrid stays capped at 100 by QueryVectors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_and_hybrid_pages_go_past_one_hundred_on_aws() {
    use quarry_core::ports::{VectorRecord, VectorWriter};
    let stack = Stack::new().await;
    // 150 one-chunk documents sharing a word, written as the embed-workers write them.
    let mut records = Vec::new();
    for i in 0..150u32 {
        let key = DocumentKey::new(format!("deep/doc-{i:03}.txt"));
        let document = DocumentId::for_key(&key);
        let mut vector = vec![0.0f32; quarry_embed::DIMENSION];
        vector[i as usize % quarry_embed::DIMENSION] = 1.0;
        records.push(VectorRecord {
            id: quarry_core::ChunkId::new(&document, 0),
            document,
            vector,
            text: format!("lighthouse entry {i}: the lamp was lit at dusk"),
            pages: None,
            span: quarry_core::CharSpan { start: 0, end: 40 },
            meta: quarry_core::meta::ChunkMeta::new(key, quarry_core::Format::Text),
        });
    }
    stack.writer.upsert(&records).await.expect("upsert");
    for r in &records {
        stack.writer.delete_from(&r.document, 1).await.expect("count");
    }
    let changes = stack.created.resources.keyword_queue_url.clone().expect("provisioned");
    let indexer = stack.keyword_indexer();
    stack.drain(&changes, 1, |e| quarry_keyword_indexer::handle(&indexer, e)).await;

    let router = stack.router();
    for mode in ["keyword", "hybrid"] {
        let (mut seen, mut pages) = (std::collections::HashSet::new(), Vec::new());
        let mut cursor: Option<String> = None;
        for page in 0..2 {
            let mut body = json!({"query": "lighthouse lamp", "mode": mode, "top_k": 100});
            if let Some(c) = &cursor {
                body["cursor"] = json!(c);
            }
            let (code, r) = api(&router, "POST", "/v1/search", Some(&body)).await;
            assert_eq!(code, 200, "{mode} page {page}: {r}");
            let ids: Vec<String> = r["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|h| h["chunk_id"].as_str().unwrap_or_default().to_owned())
                .collect();
            pages.push(ids.len());
            seen.extend(ids);
            cursor = r["next_cursor"].as_str().map(str::to_owned);
            assert_eq!(cursor.is_some(), page == 0, "{mode}: a cursor after the first page only: {r}");
        }
        assert_eq!(pages, [100, 50], "{mode}: 150 results over two pages, past the 100 S3 Vectors returns");
        // Hybrid's deeper ranking for the second page moves results across the first page's
        // edge: the second page extends the first's snapshot rather than repeating them.
        assert_eq!(seen.len(), 150, "{mode}: every document once over the two pages");
    }
}

/// Two keyword indexers racing on the same bucket (reserved concurrency 1 should prevent it; the
/// conditional manifest makes it safe anyway): every publish lands as its own generation, and
/// nothing either of them applied is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keyword_indexers_racing_on_s3_lose_nothing() {
    use quarry_core::keywords::ChunkChange;
    use quarry_core::ports::{KeywordQuery, KeywordSearcher, VectorRecord, VectorWriter};
    let stack = Stack::new().await;
    let (first, second) = (stack.keyword_indexer(), stack.keyword_indexer());
    let mut changes = (Vec::new(), Vec::new());
    for i in 0..24u32 {
        let key = DocumentKey::new(format!("race/doc-{i:02}.txt"));
        let document = DocumentId::for_key(&key);
        let mut vector = vec![0.0f32; quarry_embed::DIMENSION];
        vector[i as usize] = 1.0;
        let record = VectorRecord {
            id: quarry_core::ChunkId::new(&document, 0),
            document: document.clone(),
            vector,
            text: format!("kestrel sighting number {i}"),
            pages: None,
            span: quarry_core::CharSpan { start: 0, end: 25 },
            meta: quarry_core::meta::ChunkMeta::new(key, quarry_core::Format::Text),
        };
        stack.vectors.upsert(&[record]).await.expect("upsert");
        let change = ChunkChange { document, chunks: 1 };
        if i % 2 == 0 { changes.0.push(change) } else { changes.1.push(change) }
    }
    let rounds = 6;
    for round in 0..rounds {
        let (a, b) = (&changes.0[round * 2..round * 2 + 2], &changes.1[round * 2..round * 2 + 2]);
        let (x, y) = tokio::join!(first.apply(a), second.apply(b));
        x.expect("the first indexer publishes, starting over if it lost");
        y.expect("the second indexer publishes, starting over if it lost");
    }
    let replica = quarry_keyword::KeywordReplica::new(stack.files.clone(), std::time::Duration::ZERO);
    let hits = replica
        .keyword_search(&KeywordQuery { text: "kestrel sighting".into(), top_k: 100, filter: None })
        .await
        .expect("search");
    assert_eq!(hits.len(), 24, "every document of both indexers is searchable");
    assert_eq!(replica.manifest().await.generation, 2 * rounds as u64, "each publish is one generation, none lost");
}
