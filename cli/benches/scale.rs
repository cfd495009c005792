//! The embedded default as the index grows: 10k, 100k and 1M chunks (issue 17). At each size:
//! how fast chunks went in (does it stay flat?), the time `quarry serve` takes to open the index
//! and to answer its first hybrid query, its resident memory, the size on disk, search p50/p95 per
//! mode over HTTP, and recall@10 of the vector index against exact search, with and without a
//! filter.
//!
//!     cargo bench -p quarry-cli --bench scale                          # 10k, 100k, 1M
//!     QUARRY_BENCH_SIZES=10000,100000 cargo bench -p quarry-cli --bench scale
//!     QUARRY_BENCH_KEEP=DIR QUARRY_BENCH_SIZES=100000 cargo bench -p quarry-cli --bench scale
//!         # leaves the last index in DIR, a `quarry serve --state DIR` (scripts/load.sh)
//!
//! The chunks: the first 2,000 NFCorpus chunks embedded by the real model, then copies. A copy's
//! vector is its seed's with noise (cosine ~0.9, as in `--bench search`); its text is the seed's
//! with one word in seven replaced by a word of another seed, so that copies are not identical to
//! keyword search either. One document in ten is Markdown, the rest text: the filtered figures
//! keep 10% of the index. Queries: the dataset's real queries, embedded by the server as a
//! client's would be, none of them a cache hit.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Instant;

use common::{pct, rss_mb};
use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{VectorQuery, VectorRecord, VectorSearcher, VectorWriter};
use quarry_core::{Chunk, ChunkId, DocumentId, DocumentKey, Filter, Format};
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_local::SqliteStore;
use quarry_testkit::XorShift;
use quarry_testkit::http::Server;

const SEED_CHUNKS: usize = 2_000;
/// Queries per mode over HTTP (NFCorpus has 323), and for recall.
const QUERIES: usize = 160;

/// The `copy`th copy of every seed, as records, with their vectors kept for exact search.
/// `words` are the seeds' texts split once, for every copy.
fn copies(
    seeds: &[(DocumentKey, Chunk)],
    vectors: &[Vec<f32>],
    words: &[Vec<&str>],
    copy: usize,
    exact: &mut Exact,
) -> Vec<VectorRecord> {
    let mut r = XorShift::new(copy as u64 + 1);
    let format = if copy.is_multiple_of(10) { Format::Markdown } else { Format::Text };
    seeds
        .iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, ((key, chunk), v))| {
            let key = DocumentKey::new(format!("{key}/copy-{copy}"));
            let document = DocumentId::for_key(&key);
            let vector = if copy == 0 { v.clone() } else { common::jittered(v, &mut r) };
            let text = if copy == 0 {
                chunk.text.clone()
            } else {
                let other = &words[(i + 1 + (r.next() as usize % (seeds.len() - 1))) % seeds.len()];
                let mut out: Vec<&str> = words[i].clone();
                for w in out.iter_mut() {
                    if r.next().is_multiple_of(7) {
                        *w = other[r.next() as usize % other.len()];
                    }
                }
                out.join(" ")
            };
            let id = ChunkId::new(&document, chunk.ordinal);
            exact.push(&id, &vector, format == Format::Markdown);
            VectorRecord {
                id,
                document,
                vector,
                text,
                pages: chunk.pages,
                span: chunk.span,
                meta: ChunkMeta::new(key, format),
            }
        })
        .collect()
}

/// Every vector stored, for exact search: the ground truth of recall.
#[derive(Default)]
struct Exact {
    vectors: Vec<f32>,
    ids: Vec<ChunkId>,
    markdown: Vec<bool>,
}

impl Exact {
    fn push(&mut self, id: &ChunkId, v: &[f32], markdown: bool) {
        self.vectors.extend_from_slice(v);
        self.ids.push(id.clone());
        self.markdown.push(markdown);
    }

    /// The exact 10 nearest, among Markdown chunks only when `markdown_only`.
    fn top10(&self, q: &[f32], markdown_only: bool) -> Vec<&ChunkId> {
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .chunks_exact(q.len())
            .enumerate()
            .filter(|(i, _)| !markdown_only || self.markdown[*i])
            .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        scored.select_nth_unstable_by(9, |a, b| b.0.total_cmp(&a.0));
        scored.truncate(10);
        scored.iter().map(|(_, i)| &self.ids[*i]).collect()
    }
}

/// The size of the files in `dir`, in MB.
/// Bytes under `dir`, in MB: the database and the keyword index's segments.
fn disk_mb(dir: &Path) -> f64 {
    fn bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .expect("state dir")
            .filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    bytes(dir) as f64 / 1e6
}

struct Row {
    chunks: usize,
    ingest: f64,
    open_ms: f64,
    first_ms: f64,
    /// Saving the vector snapshot after the growth, and opening the store from it in process.
    save_ms: f64,
    reopen_ms: f64,
    rss: f64,
    /// All of the state, and the keyword index's part of it, in MB.
    disk: (f64, f64),
    modes: Vec<(f64, f64)>,
    recall: (f64, f64),
}

fn main() {
    let sizes: Vec<usize> = std::env::var("QUARRY_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".to_owned())
        .split(',')
        .map(|s| s.trim().parse().expect("QUARRY_BENCH_SIZES: chunk counts, comma-separated"))
        .collect();
    let data = common::dataset();
    let corpus = data.join("corpus.jsonl");
    let queries = common::queries(&data);
    assert!(queries.len() >= 2 * QUERIES, "the dataset has too few queries");
    let (seeds, vectors) = common::seeds(&corpus, SEED_CHUNKS);
    let words: Vec<Vec<&str>> = seeds.iter().map(|(_, c)| c.text.split(' ').collect()).collect();
    let model_dir = quarry_testkit::model_dir();
    let embedder = LocalEmbedder::load(&model_dir, EmbedOptions::default()).expect("model");
    // Recall's queries, embedded once here (in process: no server cache to miss).
    let recall_queries: Vec<&str> = queries[..QUERIES].iter().map(String::as_str).collect();
    let recall_vectors = embedder.embed_blocking(&recall_queries).expect("embed");
    let markdown = Filter::parse(&serde_json::json!({"format": "markdown"})).expect("filter");

    let keep = std::env::var_os("QUARRY_BENCH_KEEP").map(std::path::PathBuf::from);
    let state =
        keep.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("quarry-bench-scale-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("mkdir");
    let empty = state.join("folder");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let open_store = || SqliteStore::open(&state.join("state.db"), quarry_embed::DIMENSION).expect("store");
    let mut store = open_store();
    let mut exact = Exact::default();
    let (mut copy, mut stored) = (0, 0);
    let mut rows = Vec::new();
    println!();
    println!("| chunks stored | chunks/s over the last step |");
    println!("| --- | --- |");
    for &size in &sizes {
        // 1. Grow the index to `size`, reporting the rate every tenth of the way.
        let step = (size - stored).div_ceil(10).max(SEED_CHUNKS);
        let (mut since, mut mark) = (Instant::now(), stored);
        let started = Instant::now();
        let from = stored;
        while stored < size {
            let records = copies(&seeds, &vectors, &words, copy, &mut exact);
            copy += 1;
            stored += records.len();
            rt.block_on(store.upsert(&records)).expect("upsert");
            if stored - mark >= step || stored >= size {
                println!("| {stored} | {:.0} |", (stored - mark) as f64 / since.elapsed().as_secs_f64());
                (since, mark) = (Instant::now(), stored);
            }
        }
        // What a clean exit of an ingest does: the keyword index committed with its stamp, so that
        // the server trusts it as it is, and the vector snapshot saved; then the store closes, as
        // the ingest's process would, letting go of the vectors' file for the server.
        store.warm_keywords().expect("commit the keyword index");
        let ingest = (stored - from) as f64 / started.elapsed().as_secs_f64();
        let t = Instant::now();
        store.save_vectors().expect("save the vector snapshot");
        let save_ms = t.elapsed().as_secs_f64() * 1e3;
        drop(store);

        // 2. `quarry serve` on it: open, first answer, memory, each mode over HTTP.
        let t = Instant::now();
        let server = Server::start(
            env!("CARGO_BIN_EXE_quarry"),
            &[
                "--dir",
                empty.to_str().expect("utf-8"),
                "--state",
                state.to_str().expect("utf-8"),
                "--bind",
                "127.0.0.1:0",
            ],
            &[],
        );
        let open_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut client = server.connect();
        let body = |q: &str, mode: &str| serde_json::json!({"query": q, "top_k": 10, "mode": mode}).to_string();
        assert_eq!(client.exchange("POST", "/v1/search", &body("first query", "hybrid")).status, 200);
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut modes = Vec::new();
        // Keyword mode embeds nothing, so it may reuse semantic's queries; hybrid gets its own.
        for (mode, from) in [("semantic", 0), ("keyword", 0), ("hybrid", QUERIES)] {
            let mut took = Vec::new();
            for q in &queries[from..from + QUERIES] {
                let r = client.exchange("POST", "/v1/search", &body(q, mode));
                assert_eq!(r.status, 200, "{}", r.body);
                took.push(r.took.as_secs_f64() * 1e3);
            }
            modes.push((pct(&took, 0.5), pct(&took, 0.95)));
        }
        let rss = rss_mb(Some(server.child.id()));
        drop(client);
        drop(server);
        let t = Instant::now();
        store = open_store();
        assert!(store.vectors_from_snapshot(), "the server closed cleanly: its snapshot is current");
        let reopen_ms = t.elapsed().as_secs_f64() * 1e3;

        // 3. Recall@10 of the store's vector search against exact search.
        let mut recall = (0.0, 0.0);
        for v in &recall_vectors {
            for (filter, markdown_only) in [(None, false), (Some(markdown.clone()), true)] {
                let want = exact.top10(v, markdown_only);
                let hits =
                    rt.block_on(store.search(&VectorQuery { vector: v.clone(), top_k: 10, filter })).expect("search");
                let got = hits.iter().filter(|h| want.contains(&&h.id)).count() as f64 / 10.0;
                if markdown_only {
                    recall.1 += got;
                } else {
                    recall.0 += got;
                }
            }
        }
        let n = recall_vectors.len() as f64;
        let row = Row {
            chunks: stored,
            ingest,
            open_ms,
            first_ms,
            save_ms,
            reopen_ms,
            rss,
            disk: (disk_mb(&state), disk_mb(&state.join("state.keywords"))),
            modes,
            recall: (recall.0 / n, recall.1 / n),
        };
        rows.push(row);
    }
    drop(store);
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&state);
    }

    println!();
    println!(
        "| chunks | stored/s | snapshot save / store open | serve: open / first hybrid answer | serve RSS | disk (keyword index) | semantic p50 / p95 | keyword p50 / p95 | hybrid p50 / p95 | recall@10 / filtered |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in &rows {
        let m = |i: usize| format!("{:.2} / {:.2} ms", r.modes[i].0, r.modes[i].1);
        println!(
            "| {} | {:.0} | {:.2} / {:.2} s | {:.2} / {:.2} s | {:.0} MB | {:.0} MB ({:.0} MB) | {} | {} | {} | {:.3} / {:.3} |",
            r.chunks,
            r.ingest,
            r.save_ms / 1e3,
            r.reopen_ms / 1e3,
            r.open_ms / 1e3,
            r.first_ms / 1e3,
            r.rss,
            r.disk.0,
            r.disk.1,
            m(0),
            m(1),
            m(2),
            r.recall.0,
            r.recall.1
        );
    }
    println!();
    println!(
        "bench process resident memory at the end: {:.0} MB (the exact vectors and the in-process store)",
        rss_mb(None)
    );
}
