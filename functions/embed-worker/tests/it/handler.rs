//! The embed-worker handler fed a real SQS event of jobs, on the in-memory fakes of the AWS ports
//! with the real preparer and the real local model (the same flow runs on moto in `tests/e2e`).

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use quarry_core::ports::{BatchTracker, CheckpointStore, DocumentReader, IndexJob, JobAction};
use quarry_core::spend::NoLedger;
use quarry_core::{BatchId, Config, ContentHash, DocumentId, DocumentKey, DocumentStatus};
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_embed_worker::Worker;
use quarry_pipeline::{CoalescingEmbedder, Indexer};
use quarry_testkit::fakes::{MemoryEvents, MemorySource, MemoryState, MemoryVectors};
use quarry_text::{Preparer, WordPiece};

/// The embed-worker over the fakes.
type TestWorker<'a> = Worker<
    'a,
    MemorySource,
    MemoryState,
    CoalescingEmbedder,
    MemoryState,
    MemoryVectors,
    Preparer<WordPiece>,
    MemoryState,
    MemoryEvents,
    NoLedger,
>;

struct Fixture {
    source: MemorySource,
    state: MemoryState,
    vectors: MemoryVectors,
    events: MemoryEvents,
    embedder: CoalescingEmbedder,
    preparer: Preparer<WordPiece>,
    budget: quarry_core::config::Budget,
}

impl Fixture {
    fn new() -> Self {
        let model = quarry_testkit::model_dir();
        let embedder =
            LocalEmbedder::load(&model, EmbedOptions { threads: 2, batch_size: 16, ..EmbedOptions::default() })
                .expect("model");
        let tokenizer = WordPiece::from_file(&model.join("tokenizer.json")).expect("tokenizer");
        Fixture {
            source: MemorySource::default(),
            state: MemoryState::default(),
            vectors: MemoryVectors::new(quarry_embed::DIMENSION),
            events: MemoryEvents::default(),
            embedder: CoalescingEmbedder::new(embedder, 64),
            preparer: Preparer::new(&Config::default(), tokenizer),
            budget: quarry_core::config::Budget::default(),
        }
    }

    fn worker(&self) -> TestWorker<'_> {
        self.worker_with(None)
    }

    /// A worker whose documents go to `hosted` (an OpenAI vector store) where one is given.
    fn worker_with<'a>(&'a self, hosted: Option<&'a dyn quarry_core::hosted::HostedStore>) -> TestWorker<'a> {
        let indexer = Indexer {
            source: &self.source,
            state: &self.state,
            embedder: &self.embedder,
            cache: &self.state,
            writer: &self.vectors,
            preparer: &self.preparer,
            lease: Duration::from_secs(900),
            spend: &NoLedger,
            budget: &self.budget,
            hosted,
        };
        Worker::new(indexer, &self.state, &self.events)
    }

    async fn status(&self, key: &str) -> Option<DocumentStatus> {
        self.state.document(&DocumentId::for_key(&DocumentKey::new(key))).await.expect("read").map(|d| d.status)
    }
}

fn jobs_event(key: &str) -> SqsEvent {
    serde_json::from_str(&quarry_testkit::event_fixture("sqs-index-jobs.json", &[("KEY", key)])).expect("a real event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_index_and_a_vanished_object_leaves_nothing_behind() {
    let f = Fixture::new();
    let key = "inbox/hello world.md";
    f.source.put(key, b"# Hello\n\nA short note about tide pools.", Some("text/markdown"));
    let response = f.worker().handle(jobs_event(key)).await;
    assert!(response.batch_item_failures.is_empty(), "a malformed job is not retried: {response:?}");
    assert_eq!(f.status(key).await, Some(DocumentStatus::Indexed { chunks: 1 }));
    assert_eq!(f.vectors.ids().len(), 1);

    // A job for an object that no longer exists leaves nothing behind and is not retried.
    f.source.delete(key);
    let job = IndexJob { action: JobAction::Index, key: DocumentKey::new(key), version: None, batch: None, size: None };
    f.worker().job(&job).await.expect("a vanished object is not an error to retry");
    assert_eq!(f.status(key).await, None);
    assert!(f.vectors.ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_document_comes_back_and_a_bad_one_is_rejected_with_its_batch_counted() {
    let f = Fixture::new();
    let (held, broken) = ("held/note.txt", "broken/scan.pdf");
    f.source.put(held, b"Some text another worker is holding.", None);
    f.source.put(broken, b"%PDF-1.7 truncated", None);
    let batch = BatchId::new("b-handler-test");
    f.state.create(&batch, &[(DocumentKey::new(held), 36), (DocumentKey::new(broken), 18)]).await.expect("create");
    f.state
        .acquire(
            &DocumentId::for_key(&DocumentKey::new(held)),
            &ContentHash::of(b"Some text another worker is holding."),
            Duration::from_secs(3600),
        )
        .await
        .expect("another worker's lease");

    let job = |key: &str| IndexJob {
        action: JobAction::Index,
        key: DocumentKey::new(key),
        version: None,
        batch: Some(batch.clone()),
        size: Some(10),
    };
    let busy = f.worker().job(&job(held)).await;
    assert!(busy.is_err_and(|e| quarry_core::Classify::class(&e).is_retryable()), "a busy document is redelivered");
    f.worker().job(&job(broken)).await.expect("a bad file is recorded, not retried");
    match f.status(broken).await {
        Some(DocumentStatus::Failed { failure }) => assert_eq!(failure.code, "corrupt_pdf"),
        other => panic!("the bad file is rejected with its reason: {other:?}"),
    }
    let c = f.state.counters(&batch).await.expect("counters");
    assert_eq!((c.total, c.pending, c.failed, c.bytes_done), (2, 1, 1, 18), "the busy one stays pending: {c:?}");
}

/// With `QUARRY_STORE=openai`, the embed-worker hands documents to OpenAI's vector store (the real
/// client against the local fake): a job delivered three times at once stores one file, a new
/// version replaces it, a deletion removes it, and nothing reaches Quarry's own vector store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_openai_vector_store_a_job_delivered_three_times_stores_one_file() {
    use quarry_testkit::openai::{FakeOpenAi, Faults};
    let fake = FakeOpenAi::start(Faults { processing_polls: 1, ..Faults::default() }).await;
    let config = fake.store_config();
    let store = quarry_openai::stores::OpenAiStore::from_config(&config).expect("client").expect("selected");
    let f = Fixture::new();
    let worker = f.worker_with(Some(&store));
    let key = "inbox/tides.md";
    let attached = || fake.files().into_iter().filter_map(|f| Some((f.text, f.attributes?))).collect::<Vec<_>>();

    f.source.put(key, b"# Tides\n\nTide pools hold anemones at low water.", Some("text/markdown"));
    let mut event = jobs_event(key);
    let mut delivered = false;
    for _ in 0..20 {
        let (a, b, c) =
            tokio::join!(worker.handle(event.clone()), worker.handle(event.clone()), worker.handle(event.clone()));
        // A delivery that found the document busy comes back, as SQS brings it back.
        if a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty() && c.batch_item_failures.is_empty() {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        event = jobs_event(key);
    }
    assert!(delivered, "the deliveries ended within twenty redeliveries");
    let files = attached();
    assert_eq!(files.len(), 1, "three deliveries, one file: {files:?}");
    assert_eq!(files[0].1["key"], key);
    assert!(matches!(f.status(key).await, Some(DocumentStatus::Indexed { .. })));
    assert!(f.vectors.ids().is_empty(), "nothing was embedded or written to Quarry's own store");

    f.source.put(key, b"# Tides\n\nAt high water the pools are gone.", Some("text/markdown"));
    let response = worker.handle(jobs_event(key)).await;
    assert!(response.batch_item_failures.is_empty(), "{response:?}");
    let files = attached();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].0.contains("high water") && !files[0].0.contains("anemones"), "{files:?}");

    let job =
        IndexJob { action: JobAction::Delete, key: DocumentKey::new(key), version: None, batch: None, size: None };
    worker.job(&job).await.expect("delete");
    assert!(fake.files().is_empty(), "{:?}", fake.files());
    assert_eq!(f.status(key).await, None);
}
