//! The ingest handler fed a real SQS event of S3 notifications, on the in-memory fakes of the
//! ports (the same flow runs on moto in `tests/e2e`).

use quarry_core::config::Limits;
use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{
    Checkpoint, CheckpointStore, DocumentReader, JobAction, VectorQuery, VectorRecord, VectorSearcher, VectorWriter,
};
use quarry_core::{CharSpan, ChunkId, ContentHash, DocumentId, DocumentKey, DocumentStatus, Format};
use quarry_ingest::Ingest;
use quarry_testkit::fakes::{MemoryQueue, MemoryState, MemoryVectors};

const BUCKET: &str = "quarry-documents-test";

fn event() -> aws_lambda_events::event::sqs::SqsEvent {
    serde_json::from_str(&quarry_testkit::event_fixture("sqs-s3-object-created.json", &[("BUCKET", BUCKET)]))
        .expect("a real SQS event")
}

#[tokio::test]
async fn created_objects_become_jobs_refused_ones_are_rejected_removed_ones_forgotten() {
    let (queue, state, vectors) = (MemoryQueue::default(), MemoryState::default(), MemoryVectors::new(2));
    // A document indexed earlier, whose removal event is in the fixture.
    let gone = DocumentKey::new("old/retired notes.md");
    let gone_id = DocumentId::for_key(&gone);
    let hash = ContentHash::of(b"x");
    state.acquire(&gone_id, &hash, std::time::Duration::from_secs(60)).await.expect("lease");
    let checkpoint = Checkpoint {
        document: gone_id.clone(),
        key: gone,
        content_hash: hash,
        chunks: 1,
        model: "m".into(),
        handle: None,
    };
    state.checkpoint(&checkpoint).await.expect("checkpoint");
    // And an earlier version of the image key that was once indexed (a text file renamed .png).
    let png = DocumentId::for_key(&DocumentKey::new("images/diagram.png"));
    let record = |key: &str| {
        let document = DocumentId::for_key(&DocumentKey::new(key));
        VectorRecord {
            id: ChunkId::new(&document, 0),
            document,
            vector: vec![1.0, 0.0],
            text: "old".into(),
            pages: None,
            span: CharSpan { start: 0, end: 3 },
            meta: ChunkMeta::new(DocumentKey::new(key), Format::Text),
        }
    };
    vectors.upsert(&[record("old/retired notes.md"), record("images/diagram.png")]).await.expect("upsert");

    let limits = Limits::default();
    let ingest =
        Ingest { queue: &queue, state: &state, writer: &vectors, limits: &limits, bucket: BUCKET, hosted: None };
    let response = ingest.handle(event()).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let jobs = queue.take();
    assert_eq!(jobs.len(), 1, "one job: the PNG is refused, the test event ignored, the removal handled: {jobs:?}");
    assert_eq!((jobs[0].action, jobs[0].key.as_str()), (JobAction::Index, "reports/Q1 2024 été+plan.txt"));
    assert_eq!((jobs[0].version.as_deref(), jobs[0].size), (Some("d41d8cd98f00b204e9800998ecf8427e"), Some(1024)));
    match state.document(&png).await.expect("read").map(|d| d.status) {
        Some(DocumentStatus::Failed { failure }) => assert_eq!(failure.code, "unsupported_type"),
        other => panic!("the PNG is rejected with its reason: {other:?}"),
    }
    assert_eq!(state.document(&gone_id).await.expect("read"), None, "the removed document is forgotten");
    let left = vectors.search(&VectorQuery { vector: vec![1.0, 0.0], top_k: 10, filter: None }).await.expect("search");
    assert!(left.is_empty(), "neither the removed document nor the refused one keeps a chunk: {left:?}");
}

#[tokio::test]
async fn events_from_another_bucket_and_bodies_that_are_no_event_are_dropped() {
    let (queue, state, vectors) = (MemoryQueue::default(), MemoryState::default(), MemoryVectors::new(2));
    let limits = Limits::default();
    let ingest = Ingest {
        queue: &queue,
        state: &state,
        writer: &vectors,
        limits: &limits,
        bucket: "another-bucket",
        hosted: None,
    };
    assert!(ingest.handle(event()).await.batch_item_failures.is_empty());
    assert!(queue.take().is_empty(), "events from a bucket that is not ours make no job");

    let mut bad = aws_lambda_events::event::sqs::SqsEvent::default();
    let mut m = aws_lambda_events::event::sqs::SqsMessage::default();
    m.message_id = Some("m-1".into());
    m.body = Some("{\"not\": \"an event\"".into());
    bad.records.push(m);
    assert!(ingest.handle(bad).await.batch_item_failures.is_empty(), "logged and dropped, not retried forever");
}

/// The real bootstrap, as Lambda runs it: configuration and SDK clients from the environment the
/// template sets (on moto), then one SQS event of S3 notifications through the Runtime API.
#[test]
fn the_bootstrap_turns_notifications_into_jobs_on_moto() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = quarry_testkit::moto::endpoint();
    let name = quarry_testkit::moto::unique_name("ingest-bin");
    let objects: [(&str, &[u8]); 2] =
        [("reports/Q1 2024 été+plan.txt", b"The plan for the first quarter."), ("images/diagram.png", b"\x89PNG")];
    let env = rt.block_on(quarry_aws::provision::emulated(endpoint, &name, 4, &objects)).expect("a deployment on moto");
    let setting = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).expect(k);
    let event: serde_json::Value = serde_json::from_str(&quarry_testkit::event_fixture(
        "sqs-s3-object-created.json",
        &[("BUCKET", &setting("QUARRY_BUCKET"))],
    ))
    .expect("a real SQS event");
    let run = quarry_testkit::runtime::invoke(
        env!("CARGO_BIN_EXE_ingest"),
        &env,
        vec![event],
        std::time::Duration::from_secs(60),
    );
    let [(_, ok, body)] = run.answers.as_slice() else { panic!("one answer: {:?}\n{}", run.answers, run.stderr) };
    assert!(ok, "{body}\n{}", run.stderr);
    let answer: serde_json::Value = serde_json::from_str(body).expect("an SQS batch response");
    assert_eq!(answer["batchItemFailures"], serde_json::json!([]), "{answer}");

    let clients = rt.block_on(quarry_aws::Clients::emulator(endpoint));
    let received = rt
        .block_on(
            clients.sqs.receive_message().queue_url(setting("QUARRY_QUEUE_URL")).max_number_of_messages(10).send(),
        )
        .expect("receive");
    let jobs: Vec<serde_json::Value> =
        received.messages().iter().filter_map(|m| m.body()).filter_map(|b| serde_json::from_str(b).ok()).collect();
    assert_eq!(jobs.len(), 1, "one job: the PNG is refused, the test event ignored: {jobs:?}");
    assert_eq!(
        (&jobs[0]["action"], &jobs[0]["key"]),
        (&serde_json::json!("index"), &serde_json::json!("reports/Q1 2024 été+plan.txt"))
    );
}
