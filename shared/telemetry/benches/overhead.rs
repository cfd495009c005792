//! What recording metrics costs: search requests through the API router and documents through the
//! job runner, with no recorder and with the local one (Prometheus + window), alternated in one
//! run (A B A B ...) and printed as a table with the ratio. The stores are in memory and the
//! embedder is a stub, so the pipeline's own work is all there is to compare against: with the real
//! model and stores the share is smaller still. Run: `cargo bench -p quarry-telemetry --bench overhead`.

#![allow(clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use quarry_core::config::Budget;
use quarry_core::config::Limits;
use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{Embedder, IndexJob, ModelInfo, NoEvents, VectorRecord, VectorWriter};
use quarry_core::spend::NoLedger;
use quarry_core::{CharSpan, ChunkId, Config, DocumentId, DocumentKey, Format, PortError};
use quarry_pipeline::{Indexer, Retries, Runner};
use quarry_search::{AwsBackend, AwsStarter, cursor_key};
use quarry_telemetry::local::{INTERVAL, INTERVALS, LocalMetrics};
use quarry_testkit::fakes::{MemoryQueue, MemorySource, MemoryState, MemoryVectors};
use quarry_testkit::lambda::api;
use quarry_text::{Preparer, WordPiece};

const DIM: usize = 64;

/// A vector from the text's bytes: no model, the same every time.
struct Stub(ModelInfo);

impl Embedder for Stub {
    fn model(&self) -> &ModelInfo {
        &self.0
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v: Vec<f32> = (0..DIM).map(|i| f32::from(t.as_bytes().get(i).copied().unwrap_or(1))).collect();
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= n);
                v
            })
            .collect())
    }
}

fn model() -> ModelInfo {
    ModelInfo { id: "stub".into(), dimension: DIM, max_tokens: 256 }
}

/// Searches per second over `d`.
async fn searches(router: &axum::Router, d: Duration) -> f64 {
    let (start, mut n) = (Instant::now(), 0u32);
    let body = serde_json::json!({"query": "orchard pruning in late winter", "top_k": 10});
    while start.elapsed() < d {
        let (status, _) = api(router, "POST", "/v1/search", Some(&body)).await;
        assert_eq!(status, 200);
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

/// Documents indexed per second over `d` (each job a new version of one of 50 files).
async fn documents<E: Embedder>(
    runner: &Runner<
        '_,
        MemorySource,
        MemoryState,
        E,
        MemoryState,
        MemoryVectors,
        Preparer<WordPiece>,
        MemoryState,
        NoEvents,
        NoLedger,
    >,
    source: &MemorySource,
    d: Duration,
    round: u32,
) -> f64 {
    let (start, mut n) = (Instant::now(), 0u32);
    while start.elapsed() < d {
        let key = format!("notes/{}.txt", n % 50);
        let text =
            format!("Round {round} version {n}: pumps are primed before the motor starts. {}", "Words. ".repeat(40));
        source.put(&key, text.as_bytes(), None);
        runner.run(&IndexJob::index(DocumentKey::new(&key), None, None)).await.expect("indexed");
        n += 1;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (recorder, _metrics) = LocalMetrics::build(INTERVAL, INTERVALS).expect("recorder");
    rt.block_on(async {
        // Search: 500 chunks in memory (a fast request, so that recording is a visible share).
        let vectors = MemoryVectors::new(DIM);
        let stub = Stub(model());
        for i in 0..500u32 {
            let key = DocumentKey::new(format!("d{i}.txt"));
            let document = DocumentId::for_key(&key);
            let text = format!("chunk {i} about orchards, pumps, calcium and winter number {}", i % 97);
            let vector = stub.embed(std::slice::from_ref(&text)).await.expect("embed").remove(0);
            let span = CharSpan { start: 0, end: text.len() };
            let record = VectorRecord { id: ChunkId::new(&document, 0), document, vector, text, pages: None, span, meta: ChunkMeta::new(key, Format::Text) };
            vectors.upsert(&[record]).await.expect("upsert");
        }
        let state = MemoryState::default();
        let backend = AwsBackend {
            embedder: Stub(model()),
            vectors: vectors.clone(),
            state: state.clone(),
            starter: AwsStarter { source: MemorySource::default(), state, vectors, queue: MemoryQueue::default(), events: NoEvents, hosted: None, limits: Limits::default() },
            bucket: "b".into(),
            keywords: None::<quarry_api::NoKeywords>,
        };
        let secret = quarry_core::config::Secret::new("a bench cursor secret of thirty-two+ characters");
        let router = quarry_api::router(backend, Config::default().server, cursor_key(Some(&secret)).expect("key"));

        // Ingest: the real preparer (extraction, redaction, chunking with the model's tokenizer).
        let dir = quarry_testkit::model_dir();
        let preparer = Preparer::new(&Config::default(), WordPiece::from_file(&dir.join("tokenizer.json")).expect("tokenizer"));
        let (source, store, index) = (MemorySource::default(), MemoryState::default(), MemoryVectors::new(DIM));
        let embedder = Stub(model());
        let runner = Runner {
            indexer: Indexer { source: &source, state: &store, embedder: &embedder, cache: &store, writer: &index, preparer: &preparer, lease: Duration::from_secs(60), spend: &NoLedger, budget: &Budget::default(), hosted: None },
            batches: &store,
            events: &NoEvents,
            retries: Retries::Record,
        };

        let d = Duration::from_secs(3);
        let (mut s_off, mut s_on, mut i_off, mut i_on) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        searches(&router, Duration::from_secs(1)).await; // warm-up
        for round in 0..4 {
            s_off.push(searches(&router, d).await);
            i_off.push(documents(&runner, &source, d, round * 2).await);
            {
                let _on = metrics::set_default_local_recorder(&recorder);
                s_on.push(searches(&router, d).await);
                i_on.push(documents(&runner, &source, d, round * 2 + 1).await);
            }
        }
        // Ingest as it runs: the same jobs through the real model.
        let real = quarry_embed::LocalEmbedder::load(&dir, quarry_embed::EmbedOptions { threads: 2, batch_size: 32, ..quarry_embed::EmbedOptions::default() })
            .expect("model");
        let (rsource, rstore, rindex) = (MemorySource::default(), MemoryState::default(), MemoryVectors::new(quarry_embed::DIMENSION));
        let real_runner = Runner {
            indexer: Indexer { source: &rsource, state: &rstore, embedder: &real, cache: &rstore, writer: &rindex, preparer: &preparer, lease: Duration::from_secs(60), spend: &NoLedger, budget: &Budget::default(), hosted: None },
            batches: &rstore,
            events: &NoEvents,
            retries: Retries::Record,
        };
        let (mut r_off, mut r_on) = (Vec::new(), Vec::new());
        for round in 0..4 {
            r_off.push(documents(&real_runner, &rsource, d, 100 + round * 2).await);
            let _on = metrics::set_default_local_recorder(&recorder);
            r_on.push(documents(&real_runner, &rsource, d, 101 + round * 2).await);
        }
        println!("| workload | no recorder (per s) | local recorder (per s) | recorder / none | recording cost per operation |");
        println!("|---|---|---|---|---|");
        let row = |name: &str, off: Vec<f64>, on: Vec<f64>| {
            let (a, b) = (median(off), median(on));
            println!("| {name} | {a:.0} | {b:.0} | {:.3} | {:.1} µs |", b / a, (1.0 / b - 1.0 / a) * 1e6);
        };
        row("search requests (500 chunks, stub embedder)", s_off, s_on);
        row("documents indexed (real preparer, stub embedder)", i_off, i_on);
        row("documents indexed (real preparer, real model)", r_off, r_on);
    });
}
