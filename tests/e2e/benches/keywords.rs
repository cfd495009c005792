//! The published keyword index, the AWS deployment's (issue 16), measured in one run:
//!
//! 1. Relevance through the AWS path against the embedded default: the same stored chunks (an
//!    embedded index built by `quarry eval --state`) copied to S3 Vectors on moto and published as
//!    a keyword index on moto's S3; each query embedded once, then ranked by the pipeline's
//!    `retrieve` (what the search function's router calls) over both, at depth 100 (S3 Vectors'
//!    most); nDCG@10 per mode by trec_eval's definitions.
//! 2. The keyword side at scale, apart from moto's own speed: 100,000 chunks (the corpus's chunks,
//!    then copies with one word in seven swapped) published in batches on in-memory files; publish
//!    time per batch, segments and size; a cold searcher's load (in memory, with S3's published
//!    latency and throughput modelled, and from moto's S3);
//!    keyword search p50/p95 on a warm searcher; S3 requests per search at the default refresh.
//! 3. The search function's handler at that scale on moto: the chunks (copies' vectors their seed's
//!    with noise) in S3 Vectors and the index in the deployment's bucket; a cold start to its first
//!    hybrid answer, then warm p50/p95 per mode through API Gateway events, and moto's QueryVectors
//!    alone so that the handler's own share is known.
//!
//! Run by `scripts/bench_aws_keywords.sh`, which first builds the embedded index with
//! `quarry eval DATASET --state DIR`, then runs this with `QUARRY_BENCH_STATE=DIR`. `QUARRY_BENCH_CHUNKS` sets the scale (100000).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use quarry_aws::{Clients, S3IndexFiles, S3VectorStore, provision};
use quarry_cli::relevance::{documents, load_qrels, load_queries, metrics};
use quarry_core::keywords::{ChunkChange, IndexFiles, ManifestRead};
use quarry_core::ports::{
    Embedder, KeywordQuery, KeywordSearcher, VectorQuery, VectorRecord, VectorSearcher, VectorWriter,
};
use quarry_core::{ChunkId, DocumentId, DocumentKey, PortError};
use quarry_e2e::Stack;
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_keyword::{KeywordIndexer, KeywordReplica, Manifest, REFRESH_INTERVAL};
use quarry_local::SqliteStore;
use quarry_pipeline::Mode;
use quarry_pipeline::query::Fusion;
use quarry_testkit::XorShift;
use quarry_testkit::fakes::MemoryVectors;
use quarry_testkit::keywords::MemoryIndexFiles;
use quarry_testkit::lambda::api;
use serde_json::json;

/// S3 Vectors answers at most 100: both sides rank that deep.
const DEPTH: usize = 100;
/// Documents per publish while loading: a batching window's worth on a busy day.
const BATCH: usize = 1_000;
const QUERIES: usize = 160;

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len().saturating_sub(1)) as f64 * p).round() as usize).copied().unwrap_or(f64::NAN)
}

fn dataset() -> PathBuf {
    std::env::var_os("QUARRY_BENCH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval/nfcorpus"))
}

/// Every chunk of the embedded index, with its vector.
fn stored_records(db: &Path) -> Vec<VectorRecord> {
    SqliteStore::open(db, quarry_embed::DIMENSION).expect("the embedded index").records().expect("records")
}

/// Each document's chunk count: what the changes say.
fn changes(records: &[VectorRecord]) -> Vec<ChunkChange> {
    let mut counts: Vec<ChunkChange> = Vec::new();
    for r in records {
        match counts.last_mut() {
            Some(c) if c.document == r.document => c.chunks += 1,
            _ => counts.push(ChunkChange { document: r.document.clone(), chunks: 1 }),
        }
    }
    counts
}

/// Index files that count the requests a searcher makes.
#[derive(Debug, Clone)]
struct Counting<F> {
    inner: F,
    requests: std::sync::Arc<AtomicU64>,
}

impl<F: IndexFiles> IndexFiles for Counting<F> {
    async fn manifest(&self, known: Option<&str>) -> Result<ManifestRead, PortError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.manifest(known).await
    }
    async fn publish(&self, bytes: &[u8], replaces: Option<&str>) -> Result<String, PortError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.publish(bytes, replaces).await
    }
    async fn get(&self, name: &str) -> Result<Vec<u8>, PortError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.get(name).await
    }
    async fn put(&self, name: &str, bytes: &[u8]) -> Result<(), PortError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.put(name, bytes).await
    }
    async fn delete(&self, names: &[String]) -> Result<(), PortError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(names).await
    }
    async fn list(&self) -> Result<Vec<(String, i64)>, PortError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.inner.list().await
    }
}

/// Index files served as S3 serves them to a function in its region, by AWS's published figures
/// (its S3 performance guidelines): each request waits `first_byte` before its first byte, then
/// reads at 85 MB/s a connection. AWS publishes no network limit for a function: `link`, when
/// given, is one (bytes a second) that every transfer shares, first come first served.
#[derive(Debug, Clone)]
struct S3Like<F> {
    inner: F,
    first_byte: Duration,
    link: Option<(f64, std::sync::Arc<std::sync::Mutex<Instant>>)>,
}

/// S3's throughput per connection, bytes a second (AWS: "85-90 MB/s").
const S3_CONNECTION: f64 = 85e6;

impl<F: IndexFiles> IndexFiles for S3Like<F> {
    async fn manifest(&self, known: Option<&str>) -> Result<ManifestRead, PortError> {
        tokio::time::sleep(self.first_byte).await;
        self.inner.manifest(known).await
    }
    async fn publish(&self, bytes: &[u8], replaces: Option<&str>) -> Result<String, PortError> {
        self.inner.publish(bytes, replaces).await
    }
    async fn get(&self, name: &str) -> Result<Vec<u8>, PortError> {
        let data = self.inner.get(name).await?;
        tokio::time::sleep(self.first_byte).await;
        let started = Instant::now();
        let mut done = started + Duration::from_secs_f64(data.len() as f64 / S3_CONNECTION);
        if let Some((rate, free)) = &self.link {
            let mut free = free.lock().expect("link");
            *free = (*free).max(started) + Duration::from_secs_f64(data.len() as f64 / rate);
            done = done.max(*free);
        }
        tokio::time::sleep_until(done.into()).await;
        Ok(data)
    }
    async fn put(&self, name: &str, bytes: &[u8]) -> Result<(), PortError> {
        self.inner.put(name, bytes).await
    }
    async fn delete(&self, names: &[String]) -> Result<(), PortError> {
        self.inner.delete(names).await
    }
    async fn list(&self) -> Result<Vec<(String, i64)>, PortError> {
        self.inner.list().await
    }
}

/// Publishes `changes` a batch at a time: each batch's publish time in ms, and the last manifest.
async fn publish_all<R, F>(indexer: &KeywordIndexer<R, F>, changes: &[ChunkChange]) -> (Vec<f64>, Manifest)
where
    R: quarry_core::keywords::ChunkReader,
    F: IndexFiles,
{
    let (mut times, mut last) = (Vec::new(), Manifest::default());
    for batch in changes.chunks(BATCH) {
        let t = Instant::now();
        last = indexer.apply(batch).await.expect("publish");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (times, last)
}

async fn relevance(data: &Path, state: &Path) {
    let db = state.join("state.db");
    let records = stored_records(&db);
    let changes = changes(&records);
    println!("{} chunks of {} documents from {}", records.len(), changes.len(), db.display());

    let clients = Clients::emulator(quarry_testkit::moto::endpoint()).await;
    let created = provision::create(&clients, &quarry_testkit::moto::unique_name("kwbench"), quarry_embed::DIMENSION)
        .await
        .expect("provision");
    let r = &created.resources;
    let vectors = S3VectorStore::new(clients.s3vectors.clone(), &r.vector_bucket, &r.vector_index);
    let files = S3IndexFiles::new(clients.s3.clone(), r.index_bucket.as_deref().expect("provisioned"));
    let t = Instant::now();
    for group in records.chunks(500) {
        vectors.upsert(group).await.expect("upsert");
    }
    println!("copied to S3 Vectors on moto in {:.1}s", t.elapsed().as_secs_f64());
    let indexer = KeywordIndexer::new(vectors.clone(), files.clone());
    let (publishes, manifest) = publish_all(&indexer, &changes).await;
    println!(
        "published in {} batches of {BATCH} documents: {:.0} ms each at the median, {} segments, {:.1} MB",
        publishes.len(),
        pct(&publishes, 0.5),
        manifest.segments,
        manifest.bytes as f64 / 1e6
    );
    let replica = KeywordReplica::new(files.clone(), Duration::ZERO);
    let t = Instant::now();
    replica.warm().await.expect("load");
    println!("a cold searcher loaded it from moto's S3 in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);

    let local = SqliteStore::open(&db, quarry_embed::DIMENSION).expect("the embedded index");
    let keys: HashMap<DocumentId, String> = local
        .indexed_keys()
        .expect("keys")
        .into_iter()
        .map(|k| (DocumentId::for_key(&k), k.as_str().to_owned()))
        .collect();
    let qrels = load_qrels(&data.join("qrels.tsv")).expect("qrels");
    let queries = load_queries(&data.join("queries.jsonl"), &qrels).expect("queries");
    let embedder =
        LocalEmbedder::load(&quarry_testkit::model_dir(), EmbedOptions { batch_size: 1, ..EmbedOptions::default() })
            .expect("model");
    println!();
    println!("| mode | embedded nDCG@10 | AWS path nDCG@10 | difference | AWS path p50 ms | AWS path p95 ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut vectors_of = Vec::with_capacity(queries.len());
    for (_, text) in &queries {
        vectors_of.push(embedder.embed(std::slice::from_ref(text)).await.expect("embed").remove(0));
    }
    for mode in Mode::ALL {
        let (mut here, mut there, mut lat) = (0.0, 0.0, Vec::new());
        for ((id, text), v) in queries.iter().zip(&vectors_of) {
            let ready = || std::future::ready(Ok(v.clone()));
            let hits =
                quarry_pipeline::retrieve(&local, Some(&local), mode, text, ready(), DEPTH, None, Fusion::DEFAULT)
                    .await
                    .expect("embedded");
            here += metrics(&documents(&hits, &keys, 0.0), &qrels[id]).0;
            let t = Instant::now();
            let hits =
                quarry_pipeline::retrieve(&vectors, Some(&replica), mode, text, ready(), DEPTH, None, Fusion::DEFAULT)
                    .await
                    .expect("AWS path");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            there += metrics(&documents(&hits, &keys, 0.0), &qrels[id]).0;
        }
        let q = queries.len() as f64;
        println!(
            "| {} | {:.4} | {:.4} | {:+.4} | {:.1} | {:.1} |",
            mode.name(),
            here / q,
            there / q,
            there / q - here / q,
            pct(&lat, 0.5),
            pct(&lat, 0.95)
        );
    }
    println!("(AWS path latencies include moto's S3 Vectors, a Python emulator: compare the keyword side below.)");
}

/// The corpus's chunks, then copies with one word in seven swapped for another chunk's, to `n`;
/// a copy's vector is its seed's with a little noise (cosine about 0.99 to it).
fn scaled(seeds: &[VectorRecord], n: usize) -> Vec<VectorRecord> {
    let words: Vec<Vec<&str>> = seeds.iter().map(|r| r.text.split_whitespace().collect()).collect();
    let mut out = Vec::with_capacity(n);
    let mut rng = XorShift::new(7);
    let mut copy = 0;
    while out.len() < n {
        for (i, seed) in seeds.iter().enumerate() {
            if out.len() >= n {
                break;
            }
            let key = DocumentKey::new(format!("{}/copy-{copy}", seed.meta.key));
            let document = DocumentId::for_key(&key);
            let text = if copy == 0 {
                seed.text.clone()
            } else {
                let other = &words[(i + 1 + rng.next() as usize % (seeds.len() - 1)) % seeds.len()];
                words[i]
                    .iter()
                    .enumerate()
                    .map(|(j, w)| if j % 7 == 3 && !other.is_empty() { other[j % other.len()] } else { w })
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let mut meta = seed.meta.clone();
            meta.key = key;
            let ordinal = seed.id.parts().map_or(0, |(_, o)| o);
            let vector = if copy == 0 {
                seed.vector.clone()
            } else {
                seed.vector.iter().map(|x| x + 0.006 * rng.gauss()).collect()
            };
            out.push(VectorRecord {
                id: ChunkId::new(&document, ordinal),
                document,
                vector,
                text,
                pages: seed.pages,
                span: seed.span,
                meta,
            });
        }
        copy += 1;
    }
    out
}

async fn scale(data: &Path, state: &Path, n: usize) {
    let seeds = stored_records(&state.join("state.db"));
    let records = scaled(&seeds, n);
    let changes = changes(&records);
    let vectors = MemoryVectors::new(quarry_embed::DIMENSION);
    for group in records.chunks(5_000) {
        vectors.upsert(group).await.expect("upsert");
    }
    let files = MemoryIndexFiles::default();
    let indexer = KeywordIndexer::new(vectors, files.clone());
    let (publishes, manifest) = publish_all(&indexer, &changes).await;
    println!();
    println!("## The keyword side at {n} chunks ({} documents), in memory", changes.len());
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| publish of {BATCH} documents, ms (first / median / last) | {:.0} / {:.0} / {:.0} |",
        publishes.first().copied().unwrap_or(f64::NAN),
        pct(&publishes, 0.5),
        publishes.last().copied().unwrap_or(f64::NAN)
    );
    println!("| segments after {} publishes | {} |", publishes.len(), manifest.segments);
    println!("| index size, MB | {:.1} |", manifest.bytes as f64 / 1e6);
    println!("| files | {} |", manifest.files.len());
    let largest = manifest.files.values().map(|f| f.bytes).max().unwrap_or(0);
    println!("| largest file, MB | {:.1} |", largest as f64 / 1e6);

    let cold = KeywordReplica::new(files.clone(), REFRESH_INTERVAL);
    let t = Instant::now();
    cold.warm().await.expect("load");
    println!("| cold load from memory, ms | {:.0} |", t.elapsed().as_secs_f64() * 1e3);
    // S3 as AWS describes it, and a function whose network carries 100 MB/s in all.
    for (first_byte, link) in [(50, None), (100, None), (200, None), (100, Some(100e6))] {
        let link = link.map(|rate| (rate, std::sync::Arc::new(std::sync::Mutex::new(Instant::now()))));
        let network = link.as_ref().map_or(String::new(), |(rate, _)| format!(", {:.0} MB/s in all", rate / 1e6));
        let slowed = S3Like { inner: files.clone(), first_byte: Duration::from_millis(first_byte), link };
        let cold = KeywordReplica::new(slowed, REFRESH_INTERVAL);
        let t = Instant::now();
        cold.warm().await.expect("load");
        println!(
            "| cold load, S3 modelled ({first_byte} ms to the first byte, 85 MB/s a connection{network}), ms | {:.0} |",
            t.elapsed().as_secs_f64() * 1e3
        );
    }

    // The same files on moto's S3, in a deployment's index bucket: what a cold start fetches, over
    // loopback HTTP.
    let stack = Stack::new().await;
    let s3 = stack.files.clone();
    for stored in manifest.files.values() {
        s3.put(&stored.object, &files.get(&stored.object).await.expect("file")).await.expect("put");
    }
    s3.publish(&serde_json::to_vec(&manifest).expect("json"), None).await.expect("manifest");
    let requests = std::sync::Arc::new(AtomicU64::new(0));
    let counted = Counting { inner: s3, requests: requests.clone() };
    let from_s3 = KeywordReplica::new(counted, REFRESH_INTERVAL);
    let t = Instant::now();
    from_s3.warm().await.expect("load from S3");
    println!(
        "| cold load from moto's S3, ms ({} requests) | {:.0} |",
        requests.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64() * 1e3
    );

    let qrels = load_qrels(&data.join("qrels.tsv")).expect("qrels");
    let queries: Vec<String> = load_queries(&data.join("queries.jsonl"), &qrels)
        .expect("queries")
        .into_iter()
        .map(|(_, t)| t)
        .take(QUERIES)
        .collect();
    let before = requests.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut lat = Vec::new();
    for _ in 0..3 {
        for q in &queries {
            let t = Instant::now();
            let hits = from_s3
                .keyword_search(&KeywordQuery { text: q.clone(), top_k: 10, filter: None })
                .await
                .expect("search");
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(hits);
        }
    }
    let searches = lat.len() as f64;
    let made = (requests.load(Ordering::Relaxed) - before) as f64;
    println!("| keyword search top 10, warm, ms (p50 / p95) | {:.2} / {:.2} |", pct(&lat, 0.5), pct(&lat, 0.95));
    println!(
        "| S3 requests per search at a {} s refresh | {:.4} ({} in {:.1} s) |",
        REFRESH_INTERVAL.as_secs(),
        made / searches,
        made,
        started.elapsed().as_secs_f64()
    );
    handler(&stack, &records, data).await;
}

/// The search function's handler at scale on moto: the same chunks in S3 Vectors and the published
/// index in the stack's bucket; searches as API Gateway events through `lambda_http` into the
/// function's router. Each mode gets its own queries, so that no mode is answered from the query
/// embeddings another mode cached. moto's QueryVectors is timed alone, so the rest is known apart.
async fn handler(stack: &Stack, records: &[VectorRecord], data: &Path) {
    let t = Instant::now();
    let groups: Vec<&[VectorRecord]> = records.chunks(500).collect();
    futures::stream::iter(groups.into_iter().map(|g| stack.vectors.upsert(g)))
        .buffer_unordered(4)
        .for_each(|r| {
            r.expect("upsert");
            std::future::ready(())
        })
        .await;
    println!();
    println!("## The search function's handler at {} chunks on moto", records.len());
    println!();
    println!("(the chunks written to moto's S3 Vectors in {:.0} s)", t.elapsed().as_secs_f64());
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");

    let qrels = load_qrels(&data.join("qrels.tsv")).expect("qrels");
    let queries: Vec<String> =
        load_queries(&data.join("queries.jsonl"), &qrels).expect("queries").into_iter().map(|(_, t)| t).collect();
    let per_mode = queries.len() / (Mode::ALL.len() + 1);
    let search = |q: &str, mode: Mode| json!({"query": q, "mode": mode.name(), "top_k": 10});

    // moto builds its matrix of the index at the first query after a write: not the function's.
    let probe = records[0].vector.clone();
    stack.vectors.search(&VectorQuery { vector: probe, top_k: 1, filter: None }).await.expect("warm moto");
    // A cold start: the router built (the model loaded) and its first hybrid search answered, which
    // waits for the keyword index to load.
    let t = Instant::now();
    let router = stack.router_refreshing(REFRESH_INTERVAL);
    let (code, _) = api(&router, "POST", "/v1/search", Some(&search(&queries[0], Mode::Hybrid))).await;
    assert_eq!(code, 200, "the first search");
    println!("| cold start to the first hybrid answer, model and keyword index loaded, ms | {:.0} |", ms(t));

    let mut rows = Vec::new();
    for (m, mode) in Mode::ALL.into_iter().enumerate() {
        let mut lat = Vec::with_capacity(per_mode);
        for q in &queries[(m + 1) * per_mode..(m + 2) * per_mode] {
            let t = Instant::now();
            let (code, body) = api(&router, "POST", "/v1/search", Some(&search(q, mode))).await;
            lat.push(ms(t));
            assert_eq!(code, 200, "{body}");
        }
        rows.push((mode, lat));
    }
    // moto's share: QueryVectors alone, 100 deep as the semantic list asks, for the same queries.
    let embedder = LocalEmbedder::load(&quarry_testkit::model_dir(), EmbedOptions::default()).expect("model");
    let mut moto = Vec::with_capacity(per_mode);
    for q in &queries[..per_mode] {
        let vector = embedder.embed(std::slice::from_ref(q)).await.expect("embed").remove(0);
        let t = Instant::now();
        std::hint::black_box(
            stack.vectors.search(&VectorQuery { vector, top_k: DEPTH, filter: None }).await.expect("search"),
        );
        moto.push(ms(t));
    }
    for (mode, lat) in &rows {
        println!("| {} search, warm, ms (p50 / p95) | {:.1} / {:.1} |", mode.name(), pct(lat, 0.5), pct(lat, 0.95));
    }
    println!(
        "| moto's QueryVectors alone, top 100, ms (p50 / p95) | {:.1} / {:.1} |",
        pct(&moto, 0.5),
        pct(&moto, 0.95)
    );
    println!("({per_mode} queries per mode, each a first search of its text; top 10, no filter)");
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let data = dataset();
    let state = PathBuf::from(std::env::var_os("QUARRY_BENCH_STATE").expect(
        "QUARRY_BENCH_STATE: the --state folder of `quarry eval` on the dataset (scripts/bench_aws_keywords.sh)",
    ));
    let n: usize = std::env::var("QUARRY_BENCH_CHUNKS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        relevance(&data, &state).await;
        scale(&data, &state, n).await;
    });
}
