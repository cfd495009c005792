//! The harness of the AWS end-to-end tests: a fresh stack on the tests' moto server (bucket with
//! notifications, queues, table, vector index), the real handlers over the real adapters, the real
//! model, and the API reached through API Gateway v2 events as `lambda_http` decodes them.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::Message;
use quarry_aws::provision::{self, Created};
use quarry_aws::{Clients, DynamoState, S3IndexFiles, S3Source, S3VectorStore, SnsEvents, SqsChanges, SqsQueue};
use quarry_core::Config;
use quarry_core::config::Limits;
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_embed_worker::Worker;
use quarry_ingest::Ingest;
use quarry_keyword::{KeywordIndexer, KeywordReplica};
use quarry_pipeline::{CoalescingEmbedder, Feeding, Indexer};
use quarry_search::{AwsBackend, AwsStarter};
use quarry_text::{Preparer, WordPiece};

/// One test's stack and the adapters over it, built once as a cold start would.
#[derive(Debug)]
pub struct Stack {
    pub clients: Clients,
    pub created: Created,
    pub source: S3Source,
    pub state: DynamoState,
    pub vectors: S3VectorStore,
    /// The vector store as the functions write it: each change sent to the keyword indexer.
    pub writer: Feeding<S3VectorStore, SqsChanges>,
    /// The published keyword index's files.
    pub files: S3IndexFiles,
    pub queue: SqsQueue,
    pub events: SnsEvents,
    pub limits: Limits,
    pub preparer: Preparer<WordPiece>,
    pub embedder: CoalescingEmbedder,
    /// The budgets the workers hold to (none by default); the state table keeps the spend.
    pub budget: quarry_core::config::Budget,
}

pub type TheWorker<'a> = Worker<
    'a,
    S3Source,
    DynamoState,
    CoalescingEmbedder,
    DynamoState,
    Feeding<S3VectorStore, SqsChanges>,
    Preparer<WordPiece>,
    DynamoState,
    SnsEvents,
    DynamoState,
>;

impl Stack {
    pub async fn new() -> Stack {
        Stack::named("e2e").await
    }

    /// A stack whose resources' names start with `prefix` (`faults30`: moto fails 30 % of their
    /// data-plane requests, tests/moto/launch.py).
    pub async fn named(prefix: &str) -> Stack {
        let clients = Clients::emulator(quarry_testkit::moto::endpoint()).await;
        let created = provision::create(&clients, &quarry_testkit::moto::unique_name(prefix), quarry_embed::DIMENSION)
            .await
            .expect("provision");
        let r = &created.resources;
        let config = Config::default();
        let model = quarry_testkit::model_dir();
        let embedder = LocalEmbedder::load(&model, EmbedOptions::default()).expect("model");
        let vectors = S3VectorStore::new(clients.s3vectors.clone(), &r.vector_bucket, &r.vector_index);
        let feed = r.keyword_queue_url.as_ref().map(|q| SqsChanges::new(clients.sqs.clone(), q));
        Stack {
            writer: Feeding { writer: vectors.clone(), feed },
            files: S3IndexFiles::new(clients.s3.clone(), r.index_bucket.as_deref().expect("provisioned")),
            source: S3Source::new(clients.s3.clone(), &r.bucket),
            state: DynamoState::new(clients.dynamodb.clone(), &r.table),
            vectors,
            queue: SqsQueue::new(clients.sqs.clone(), &r.queue_url),
            events: SnsEvents::new(clients.sns.clone(), r.events_topic.clone()),
            limits: config.limits.clone(),
            preparer: Preparer::new(&config, WordPiece::from_file(&model.join("tokenizer.json")).expect("tokenizer")),
            embedder: CoalescingEmbedder::new(embedder, 256),
            budget: config.budget.clone(),
            created,
            clients,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.created.resources.bucket
    }

    pub fn ingest(&self) -> Ingest<'_, SqsQueue, DynamoState, Feeding<S3VectorStore, SqsChanges>> {
        Ingest {
            queue: &self.queue,
            state: &self.state,
            writer: &self.writer,
            limits: &self.limits,
            bucket: self.bucket(),
            hosted: None,
        }
    }

    pub fn worker(&self) -> TheWorker<'_> {
        self.worker_with(&self.embedder)
    }

    /// A worker with its own embedder: another Lambda instance of the embed-worker.
    pub fn worker_with<'a>(&'a self, embedder: &'a CoalescingEmbedder) -> TheWorker<'a> {
        self.worker_through(embedder, &self.writer, Duration::from_secs(900))
    }

    /// A worker writing vectors through `writer` (a fault-injecting wrapper) and holding each
    /// document for `lease`.
    #[allow(clippy::type_complexity)]
    pub fn worker_through<'a, W: quarry_core::ports::VectorWriter>(
        &'a self,
        embedder: &'a CoalescingEmbedder,
        writer: &'a W,
        lease: Duration,
    ) -> Worker<
        'a,
        S3Source,
        DynamoState,
        CoalescingEmbedder,
        DynamoState,
        W,
        Preparer<WordPiece>,
        DynamoState,
        SnsEvents,
        DynamoState,
    > {
        Worker::new(
            Indexer {
                source: &self.source,
                state: &self.state,
                embedder,
                cache: &self.state,
                writer,
                preparer: &self.preparer,
                lease,
                spend: &self.state,
                budget: &self.budget,
                hosted: None,
            },
            &self.state,
            &self.events,
        )
    }

    /// The search function's router over this stack, as its `main` builds it, its keyword index
    /// refreshed at every search: the tests publish, then search at once.
    pub fn router(&self) -> axum::Router {
        self.router_refreshing(Duration::ZERO)
    }

    /// The search function's router, its keyword index refreshed at most every `refresh`.
    pub fn router_refreshing(&self, refresh: Duration) -> axum::Router {
        let embedder = LocalEmbedder::load(&quarry_testkit::model_dir(), EmbedOptions::default()).expect("model");
        let backend = AwsBackend {
            embedder,
            vectors: self.writer.clone(),
            state: self.state.clone(),
            starter: AwsStarter {
                source: self.source.clone(),
                state: self.state.clone(),
                vectors: self.writer.clone(),
                queue: self.queue.clone(),
                events: self.events.clone(),
                limits: self.limits.clone(),
                hosted: None,
            },
            bucket: self.bucket().to_owned(),
            keywords: Some(KeywordReplica::new(self.files.clone(), refresh)),
        };
        let secret = quarry_core::config::Secret::new("an e2e cursor secret of 32+ characters");
        quarry_api::router(backend, Config::default().server, quarry_search::cursor_key(Some(&secret)).expect("key"))
    }

    /// The keyword indexer function's indexer over this stack, as its `main` builds it.
    pub fn keyword_indexer(&self) -> KeywordIndexer<S3VectorStore, S3IndexFiles> {
        KeywordIndexer::new(self.vectors.clone(), self.files.clone())
    }

    pub async fn put(&self, key: &str, bytes: Vec<u8>, metadata: &[(&str, &str)]) {
        let mut req = self.clients.s3.put_object().bucket(self.bucket()).key(key).body(bytes.into());
        for (k, v) in metadata {
            req = req.metadata(*k, *v);
        }
        req.send().await.expect("put object");
    }

    pub async fn delete(&self, key: &str) {
        self.clients.s3.delete_object().bucket(self.bucket()).key(key).send().await.expect("delete object");
    }

    /// Sends one job to the jobs queue, as ingest or a batch would.
    pub async fn queue_send(&self, job: &quarry_core::ports::IndexJob) {
        use quarry_core::ports::JobQueue;
        self.queue.enqueue(std::slice::from_ref(job)).await.expect("enqueue");
    }

    /// Takes every job now on the jobs queue off it, as workers receiving them would.
    pub async fn take_jobs(&self) -> Vec<quarry_core::ports::IndexJob> {
        let url = self.created.resources.queue_url.clone();
        let mut jobs = Vec::new();
        loop {
            let messages = self.receive(&url).await;
            if messages.is_empty() {
                return jobs;
            }
            for m in messages {
                jobs.push(serde_json::from_str(m.body.as_deref().unwrap_or_default()).expect("a job"));
                let handle = m.receipt_handle.unwrap_or_default();
                self.clients.sqs.delete_message().queue_url(&url).receipt_handle(handle).send().await.expect("delete");
            }
        }
    }

    /// Up to ten messages now on `queue_url`.
    pub async fn receive(&self, queue_url: &str) -> Vec<Message> {
        self.clients
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }

    /// Delivers every message on `queue_url` to `handle`, `times` times each (a duplicate delivery
    /// when 2), deleting the ones it does not report as failed, as Lambda's SQS poller does; failed
    /// ones are made visible again at once. Returns every body delivered and the failures seen.
    pub async fn drain<F, Fut>(&self, queue_url: &str, times: usize, handle: F) -> (Vec<String>, usize)
    where
        F: Fn(SqsEvent) -> Fut,
        Fut: std::future::Future<Output = SqsBatchResponse>,
    {
        self.drain_with(queue_url, times, Duration::ZERO, handle).await
    }

    /// [`Stack::drain`], failed messages coming back only after `retry_after`, as a queue's
    /// visibility timeout brings them back (the template's outlasts a worker's lease).
    pub async fn drain_with<F, Fut>(
        &self,
        queue_url: &str,
        times: usize,
        retry_after: Duration,
        handle: F,
    ) -> (Vec<String>, usize)
    where
        F: Fn(SqsEvent) -> Fut,
        Fut: std::future::Future<Output = SqsBatchResponse>,
    {
        let (mut bodies, mut failures) = (Vec::new(), 0);
        let mut last_failure: Option<std::time::Instant> = None;
        for _ in 0..100 {
            let messages = self.receive(queue_url).await;
            if messages.is_empty() {
                // Failed messages may still be invisible: wait for them to come back.
                match last_failure {
                    Some(at) if at.elapsed() <= retry_after + Duration::from_millis(500) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    _ => return (bodies, failures),
                }
            }
            let mut failed = Vec::new();
            for _ in 0..times {
                let response = handle(sqs_event(&messages)).await;
                failed = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
            }
            failures += failed.len();
            for m in &messages {
                bodies.push(m.body.clone().unwrap_or_default());
                let handle = m.receipt_handle.clone().unwrap_or_default();
                if failed.iter().any(|f| Some(f) == m.message_id.as_ref()) {
                    last_failure = Some(std::time::Instant::now());
                    self.clients
                        .sqs
                        .change_message_visibility()
                        .queue_url(queue_url)
                        .receipt_handle(handle)
                        .visibility_timeout(i32::try_from(retry_after.as_secs()).unwrap_or(i32::MAX))
                        .send()
                        .await
                        .expect("release");
                } else {
                    self.clients
                        .sqs
                        .delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete message");
                }
            }
        }
        panic!("{queue_url} never drained");
    }

    /// Every vector key in the index (ListVectors).
    pub async fn vector_keys(&self) -> Vec<String> {
        let r = &self.created.resources;
        let out = self
            .clients
            .s3vectors
            .list_vectors()
            .vector_bucket_name(&r.vector_bucket)
            .index_name(&r.vector_index)
            .send()
            .await
            .expect("list vectors");
        let mut keys: Vec<String> = out.vectors().iter().map(|v| v.key().to_owned()).collect();
        keys.sort();
        keys
    }
}

/// An SQS event as Lambda's poller builds it from received messages.
pub fn sqs_event(messages: &[Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in messages {
        let mut s = SqsMessage::default();
        s.message_id = m.message_id.clone();
        s.receipt_handle = m.receipt_handle.clone();
        s.body = m.body.clone();
        s.event_source = Some("aws:sqs".into());
        event.records.push(s);
    }
    event
}

pub use quarry_testkit::event_fixture as fixture;
pub use quarry_testkit::lambda::api;
