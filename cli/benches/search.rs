//! Search latency at 100,000 chunks, end to end: `POST /v1/search` over HTTP to `quarry serve`
//! (query embedding, vector search, payload read, highlights, JSON) on kept-alive connections,
//! each query right after the same ranking in process, and where the HTTP time went (the server's
//! `Server-Timing` header); what a client's own waiting costs on this machine; then the parts
//! alone in process.
//!
//!     cargo bench -p quarry-cli --bench search                   # NFCorpus beside the checkout
//!     QUARRY_BENCH_DATA=path/to/beir-dataset cargo bench -p quarry-cli --bench search
//!     QUARRY_BENCH_INDEX=DIR cargo bench -p quarry-cli --bench search   # also: each mode over HTTP
//!         on the real NFCorpus index in DIR (from `quarry eval DATA --state DIR`)
//!
//! The store: the first 1,000 NFCorpus chunks embedded by the real model, then 100 jittered,
//! re-normalised copies of each (cosine ~0.9 to its source), so that 100k vectors keep the topical
//! clustering of real embeddings and every chunk has real text. Queries: the dataset's real queries,
//! embedded by the server as a client's would be. Latency does not depend on which chunks match.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Instant;

use common::{pct, rss_mb};

use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{KeywordQuery, KeywordSearcher, VectorQuery, VectorRecord, VectorSearcher, VectorWriter};
use quarry_core::{ChunkId, DocumentId, DocumentKey, Format};
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_local::SqliteStore;
use quarry_testkit::XorShift;
use quarry_testkit::http::Server;

const SEED_CHUNKS: usize = 1_000;
const COPIES: usize = 100;

/// p50 and p95 of each stage a `Server-Timing` header names, and of the client's wall time.
#[derive(Default)]
struct Timings {
    wall: Vec<f64>,
    stages: std::collections::BTreeMap<String, Vec<f64>>,
}

impl Timings {
    fn record(&mut self, wall: f64, header: Option<&str>) {
        self.wall.push(wall);
        for part in header.unwrap_or("").split(',') {
            let mut fields = part.trim().split(';');
            let name = fields.next().unwrap_or("").to_owned();
            if let Some(d) = fields.find_map(|f| f.trim().strip_prefix("dur=")).and_then(|d| d.parse().ok()) {
                self.stages.entry(name).or_default().push(d);
            }
        }
    }

    fn stage(&self, name: &str) -> (f64, f64) {
        self.stages.get(name).map_or((f64::NAN, f64::NAN), |v| (pct(v, 0.5), pct(v, 0.95)))
    }
}

/// What one query's query half costs in process, as the server runs it: the query embedded through
/// the port (a fresh cache: no hit), then the lists, fusion and payloads, to a first page's depth,
/// and the page's highlights. What the HTTP path adds to it is the HTTP crate's own cost.
struct InProcess<'a> {
    db: &'a std::path::Path,
    embedder: &'a LocalEmbedder,
    rt: &'a tokio::runtime::Runtime,
}

impl InProcess<'_> {
    /// The store, opened once the server has: the server holds the vectors' file (the product's
    /// path), and this second opener ranks from memory, as a second process would.
    fn open(&self) -> SqliteStore {
        let store = SqliteStore::open(self.db, quarry_embed::DIMENSION).expect("store");
        assert!(!store.vectors_on_disk(), "the server holds the vectors' file");
        store
    }

    fn query_half(
        &self,
        store: &SqliteStore,
        cache: &quarry_pipeline::query::QueryCache,
        mode: quarry_pipeline::Mode,
        q: &str,
    ) -> f64 {
        let t = Instant::now();
        let vector = quarry_pipeline::query::embed_query(self.embedder, cache, q);
        let depth = quarry_pipeline::query::HYBRID_DEPTH + 1;
        let fusion = quarry_pipeline::query::Fusion::DEFAULT;
        let r = quarry_pipeline::retrieve(store, Some(store), mode, q, vector, depth, None, fusion);
        let hits = self.rt.block_on(r).expect("retrieve");
        let page = &hits[..hits.len().min(10)];
        // Words alone, as the server's default (no `semantic_highlights`).
        let marks = quarry_pipeline::query::highlight_hits(self.embedder, q, None, page);
        std::hint::black_box(self.rt.block_on(marks).expect("highlights"));
        t.elapsed().as_secs_f64() * 1e3
    }
}

/// How a client waits for its response in [`wake_up_cost`]: asleep in `recv`, as HTTP clients do
/// (and the one measuring the server here), or polling its socket.
const CLIENTS: [&str; 2] = ["in recv", "polling"];

/// Every query in each mode over HTTP (one kept-alive connection, as a client's pool holds) and,
/// when `twin` is given, the same query half in process right before it, so that the machine's
/// noise falls on both alike. Prints where the HTTP time went, from the server's `Server-Timing`
/// header, and the HTTP path against the query half, with and without what the client's own
/// waking costs on this machine.
fn modes_over_http(corpus: &std::path::Path, index: &std::path::Path, queries: &[String], twin: Option<&InProcess>) {
    println!("{} queries over HTTP on the index in {}, top 10, one client", queries.len(), index.display());
    println!();
    println!("| mode | p50 ms | p95 ms | server total p50 / p95 | retrieve p50 / p95 | highlight p50 / p95 |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut ratios = Vec::new();
    let mut transport = None;
    for (mode, name) in [
        (quarry_pipeline::Mode::Semantic, "semantic"),
        (quarry_pipeline::Mode::Keyword, "keyword"),
        (quarry_pipeline::Mode::Hybrid, "hybrid"),
    ] {
        // A fresh server per mode: every measured query is a first-time query (no cache hit).
        let server = Server::start(
            env!("CARGO_BIN_EXE_quarry"),
            &[
                "--dir",
                corpus.to_str().expect("utf-8"),
                "--state",
                index.to_str().expect("utf-8"),
                "--bind",
                "127.0.0.1:0",
            ],
            &[],
        );
        let mut client = server.connect();
        let twin = twin.map(|t| (t, t.open()));
        let body = |q: &str| serde_json::json!({"query": q, "top_k": 10, "mode": name}).to_string();
        let cache = quarry_pipeline::query::QueryCache::new(8_192, std::time::Duration::from_secs(3_600));
        for i in 0..10 {
            let warm = format!("warm-up query {i}");
            assert_eq!(client.exchange("POST", "/v1/search", &body(&warm)).status, 200);
            if let Some((twin, store)) = &twin {
                twin.query_half(store, &cache, mode, &warm);
            }
        }
        let (mut t, mut alone) = (Timings::default(), Vec::new());
        for q in queries {
            if let Some((twin, store)) = &twin {
                alone.push(twin.query_half(store, &cache, mode, q));
            }
            let r = client.exchange("POST", "/v1/search", &body(q));
            assert_eq!(r.status, 200, "{}", r.body);
            t.record(r.took.as_secs_f64() * 1e3, r.header("server-timing"));
        }
        let (total, retrieve, highlight) = (t.stage("total"), t.stage("retrieve"), t.stage("highlight"));
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} / {:.2} |",
            pct(&t.wall, 0.5),
            pct(&t.wall, 0.95),
            total.0,
            total.1,
            retrieve.0,
            retrieve.1,
            highlight.0,
            highlight.1
        );
        if !alone.is_empty() {
            ratios.push((name, (pct(&alone, 0.5), pct(&alone, 0.95)), (pct(&t.wall, 0.5), pct(&t.wall, 0.95))));
        }
        if name == "keyword" {
            // The transport's floor: a request that does nothing, on a kept-alive and on a new connection.
            let (mut kept, mut fresh) = (Vec::new(), Vec::new());
            for _ in 0..queries.len() {
                let r = client.exchange("GET", "/health/live", "");
                assert_eq!(r.status, 200);
                kept.push(r.took.as_secs_f64() * 1e3);
                let r = server.exchange("GET", "/health/live", None, &[]);
                assert_eq!(r.status, 200);
                fresh.push(r.took.as_secs_f64() * 1e3);
            }
            transport = Some(((pct(&kept, 0.5), pct(&kept, 0.95)), (pct(&fresh, 0.5), pct(&fresh, 0.95))));
        }
    }
    println!();
    if let Some(((k50, k95), (f50, f95))) = transport {
        println!(
            "GET /health/live: kept-alive connection p50 {k50:.2} / p95 {k95:.2} ms; a new connection each {f50:.2} / {f95:.2} ms"
        );
        println!();
    }
    let work = std::time::Duration::from_millis(1);
    println!("What a client's waiting costs on this machine, with no Quarry behind it: a loopback server");
    println!("that works {} ms, then answers 16 KB (wall time less the work)", work.as_millis());
    println!();
    println!("| client | p50 ms | p95 ms |");
    println!("| --- | --- | --- |");
    let mut wake = [(0.0, 0.0); 2];
    for ((client, polling), w) in CLIENTS.into_iter().zip([false, true]).zip(&mut wake) {
        *w = wake_up_cost(work, polling);
        println!("| {client} | {:.3} | {:.3} |", w.0, w.1);
    }
    println!();
    if !ratios.is_empty() {
        let depth = quarry_pipeline::query::HYBRID_DEPTH + 1;
        println!(
            "The HTTP path against the same query half in process (a first page ranked {depth} deep, its 10 highlighted),"
        );
        println!("interleaved query by query; the last column takes the client's wake-up p95 above off the HTTP p95");
        println!();
        println!("| mode | in process p50 / p95 ms | over HTTP p50 / p95 ms | p95 ratio | less the client's wake-up |");
        println!("| --- | --- | --- | --- | --- |");
        let woken = wake[0].1;
        for (name, (p50, p95), (h50, h95)) in ratios {
            println!(
                "| {name} | {p50:.2} / {p95:.2} | {h50:.2} / {h95:.2} | {:.2} | {:.2} |",
                h95 / p95,
                (h95 - woken) / p95
            );
        }
        println!();
    }
}

/// The wall time a client sees beyond the server's `work`, per exchange (p50, p95 ms): a loopback
/// server thread that works (spinning) for `work`, then writes a response of a search's size. A
/// client asleep in `recv` meanwhile is woken by the VM in a fraction of a millisecond; the same
/// exchange with no work, or with a polling client, takes a few microseconds.
fn wake_up_cost(work: std::time::Duration, polling: bool) -> (f64, f64) {
    use std::io::{Read as _, Write as _};
    const ANSWER: usize = 16 * 1024;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().expect("accept");
        peer.set_nodelay(true).expect("nodelay");
        let answer = vec![b'x'; ANSWER];
        let mut request = [0u8; 256];
        while peer.read(&mut request).is_ok_and(|n| n > 0) {
            let t = Instant::now();
            while t.elapsed() < work {
                std::hint::spin_loop();
            }
            peer.write_all(&answer).expect("answer");
        }
    });
    let mut client = std::net::TcpStream::connect(addr).expect("connect");
    client.set_nodelay(true).expect("nodelay");
    client.set_nonblocking(polling).expect("non-blocking");
    let mut extra = Vec::new();
    let mut buf = vec![0u8; ANSWER];
    for _ in 0..500 {
        let t = Instant::now();
        client.write_all(&[b'q'; 100]).expect("ask");
        let mut got = 0;
        while got < ANSWER {
            match client.read(&mut buf) {
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("read: {e}"),
            }
        }
        extra.push((t.elapsed().saturating_sub(work)).as_secs_f64() * 1e3);
    }
    drop(client);
    server.join().expect("server thread");
    (pct(&extra, 0.5), pct(&extra, 0.95))
}

fn main() {
    let data = common::dataset();
    let corpus = data.join("corpus.jsonl");
    let queries = common::queries(&data);

    if let Some(index) = std::env::var_os("QUARRY_BENCH_INDEX") {
        modes_over_http(&corpus, &PathBuf::from(index), &queries, None);
    }

    // 1. Real chunks, real vectors.
    let (seeds, vectors) = common::seeds(&corpus, SEED_CHUNKS);
    let model_dir = quarry_testkit::model_dir();
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");

    // 2. 100k chunks in a fresh store.
    let state = std::env::temp_dir().join(format!("quarry-bench-search-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("mkdir");
    let t = Instant::now();
    {
        let store = SqliteStore::open(&state.join("state.db"), quarry_embed::DIMENSION).expect("store");
        let mut r = XorShift::new(7);
        for copy in 0..COPIES {
            let records: Vec<VectorRecord> = seeds
                .iter()
                .zip(&vectors)
                .map(|((key, chunk), v)| {
                    let key = DocumentKey::new(format!("{key}/copy-{copy}"));
                    let document = DocumentId::for_key(&key);
                    let v = common::jittered(v, &mut r);
                    VectorRecord {
                        id: ChunkId::new(&document, chunk.ordinal),
                        document,
                        vector: v,
                        text: chunk.text.clone(),
                        pages: chunk.pages,
                        span: chunk.span,
                        meta: ChunkMeta::new(key, Format::Text),
                    }
                })
                .collect();
            rt.block_on(store.upsert(&records)).expect("upsert");
        }
    }
    let n = SEED_CHUNKS * COPIES;
    println!("stored {n} chunks in {:.1}s", t.elapsed().as_secs_f64());

    // 4. The parts, in process: query embedding alone, and the store's search alone.
    let single = LocalEmbedder::load(&model_dir, EmbedOptions { threads: 0, batch_size: 1, ..EmbedOptions::default() })
        .expect("model");
    let one_thread =
        LocalEmbedder::load(&model_dir, EmbedOptions { threads: 1, batch_size: 1, ..EmbedOptions::default() })
            .expect("model");
    let store = SqliteStore::open(&state.join("state.db"), quarry_embed::DIMENSION).expect("store");
    // The keyword index the writes left behind is trusted as it is: nothing to build.
    assert!(store.keywords_current(), "the keyword index persisted");
    let (mut embed, mut embed1, mut scan, mut words) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut deep, mut hybrid) = (Vec::new(), Vec::new());
    // The depth a first page ranks to (the API's snapshot depth, plus one to know there is more).
    let first_page = quarry_pipeline::query::HYBRID_DEPTH + 1;
    for q in &queries {
        let t = Instant::now();
        let v = single.embed_blocking(&[q.as_str()]).expect("embed").remove(0);
        embed.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        one_thread.embed_blocking(&[q.as_str()]).expect("embed");
        embed1.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        rt.block_on(store.search(&VectorQuery { vector: v.clone(), top_k: first_page, filter: None })).expect("search");
        deep.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let ready = std::future::ready(Ok(v.clone()));
        let fusion = quarry_pipeline::query::Fusion::DEFAULT;
        let mode = quarry_pipeline::Mode::Hybrid;
        let r = quarry_pipeline::retrieve(&store, Some(&store), mode, q, ready, first_page, None, fusion);
        rt.block_on(r).expect("hybrid");
        hybrid.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let hits = rt.block_on(store.search(&VectorQuery { vector: v, top_k: 11, filter: None })).expect("search");
        scan.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(hits.len(), 11);
        let t = Instant::now();
        let kq = KeywordQuery { text: q.clone(), top_k: 100, filter: None };
        rt.block_on(store.keyword_search(&kq)).expect("keyword search");
        words.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // 3. Over HTTP, one client, one query at a time, each mode, beside the same ranking in process.
    drop(store);
    let db = state.join("state.db");
    modes_over_http(&corpus, &state, &queries, Some(&InProcess { db: &db, embedder: &single, rt: &rt }));
    // What a lost or stale keyword index costs to rebuild from the stored chunks, once.
    std::fs::remove_dir_all(state.join("state.keywords")).expect("remove the keyword index");
    let store = SqliteStore::open(&state.join("state.db"), quarry_embed::DIMENSION).expect("store");
    let rss_before = rss_mb(None);
    let t = Instant::now();
    store.warm_keywords().expect("keyword index");
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_grew = rss_mb(None) - rss_before;
    drop(store);
    let _ = std::fs::remove_dir_all(&state);

    println!("{} queries, top 10 of {n} chunks, in process", queries.len());
    println!();
    println!("| measure | p50 ms | p95 ms |");
    println!("| --- | --- | --- |");
    for (name, v) in [
        ("query embedding alone (in process)", &embed),
        ("query embedding alone, one intra-op thread (in process)", &embed1),
        ("store search alone: index + payload read (in process)", &scan),
        ("store search, a first page's depth (101) (in process)", &deep),
        ("hybrid retrieve at a first page's depth, vector given (in process)", &hybrid),
        ("keyword search alone, top 100: index + payload read (in process)", &words),
    ] {
        println!("| {name} | {:.2} | {:.2} |", pct(v, 0.5), pct(v, 0.95));
    }
    println!();
    println!(
        "keyword index: rebuilt from {n} stored chunks in {build_ms:.0} ms; resident memory grew {rss_grew:.0} MB"
    );
}
