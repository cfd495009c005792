//! Indexing with OpenAI against a local server that answers every call after 200 ms (the fake in
//! `quarry-testkit`, which speaks the embeddings wire format and counts what it bills):
//!
//! 1. a sequential loop, as a script would do it: each document read, prepared (the same
//!    extraction, redaction and cl100k chunking) and embedded in one request, one after another;
//! 2. Quarry's pipeline: `quarry ingest` (documents in flight, their requests merged);
//! 3. the embedding cache on a second run: every document forgotten from the index (chunks and
//!    checkpoints; the cache kept), then ingested again;
//! 4. the cache with 30 % of the documents edited (one paragraph each).
//!
//!     cargo bench -p quarry-cli --bench openai
//!
//! Prints a table: wall times in one run, their ratio, and cache hit rates (chunks not sent over
//! chunks prepared, from the server's own count).

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use quarry_core::config::{EmbedderKind, Secret};
use quarry_core::ports::{BlobSource, Embedder};
use quarry_core::{Config, DocumentId};
use quarry_local::{FolderSource, SqliteStore};
use quarry_openai::{Cl100k, OpenAiEmbedder, Options};
use quarry_testkit::openai::{FakeOpenAi, Faults, KEY};
use quarry_text::Preparer;

const DOCUMENTS: usize = 100;
const LATENCY: Duration = Duration::from_millis(200);

fn document(i: usize, edited: bool) -> String {
    (0..24)
        .map(|p| {
            let edit = if edited && p == 5 { " (revised)" } else { "" };
            format!(
                "Report {i}, section {p}: the survey counted {} nests along transect {}, {} more than the year before{edit}. \
                 Observers noted weather, tide and the time of each count.\n\n",
                i * 17 + p,
                p % 7,
                p * 3
            )
        })
        .collect()
}

fn quarry_ingest(fake: &FakeOpenAi, dir: &Path) -> f64 {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["ingest", dir.to_str().unwrap(), "--quiet"])
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .env("QUARRY_EMBEDDER", "openai")
        .env("QUARRY_OPENAI_BASE_URL", &fake.url)
        .env("QUARRY_OPENAI_API_KEY", KEY)
        .output()
        .expect("quarry runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let fake = FakeOpenAi::start(Faults { latency: LATENCY, ..Faults::default() }).await;
        let dir = std::env::temp_dir().join(format!("quarry-bench-openai-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..DOCUMENTS {
            std::fs::write(dir.join(format!("report-{i:03}.txt")), document(i, false)).unwrap();
        }

        // 1. The sequential loop.
        let mut config = Config::default();
        config.embedder.kind = EmbedderKind::Openai;
        let preparer = Preparer::new(&config, Cl100k);
        let options = Options { api_base: Some(fake.url.clone()), ..Options::default() };
        let embedder = OpenAiEmbedder::new(&Secret::new(KEY), options).unwrap();
        let source = FolderSource::new(&dir);
        let t = Instant::now();
        let mut chunks = 0;
        for info in source.list("").await.unwrap() {
            let blob = source.get(&info.key).await.unwrap();
            let prepared = preparer.prepare(Some(info.key.as_str()), &blob.bytes).unwrap();
            let texts: Vec<String> = prepared.chunks.into_iter().map(|c| c.text).collect();
            chunks += texts.len();
            embedder.embed(&texts).await.unwrap();
        }
        let sequential = t.elapsed().as_secs_f64();
        let calls_sequential = fake.calls();

        // 2. Quarry's pipeline.
        let pipeline = quarry_ingest(&fake, &dir);
        let calls_pipeline = fake.calls() - calls_sequential;

        // 3. Everything forgotten from the index but the embedding cache, then ingested again.
        {
            let store = SqliteStore::open(&dir.join(".quarry/state.db"), 384).unwrap();
            for key in store.indexed_keys().unwrap() {
                quarry_pipeline::forget(&store, &store, None, &DocumentId::for_key(&key)).await.unwrap();
            }
        }
        let before = fake.embedded_inputs();
        let second = quarry_ingest(&fake, &dir);
        let sent_second = fake.embedded_inputs() - before;

        // 4. 30 % of the documents edited in one paragraph.
        let changed = DOCUMENTS * 3 / 10;
        for i in 0..changed {
            std::fs::write(dir.join(format!("report-{i:03}.txt")), document(i, true)).unwrap();
        }
        let before = fake.embedded_inputs();
        let edited = quarry_ingest(&fake, &dir);
        let sent_edited = fake.embedded_inputs() - before;
        let per_doc = chunks / DOCUMENTS;
        let _ = std::fs::remove_dir_all(&dir);

        let hit = |sent: u64, of: usize| 100.0 * (1.0 - sent as f64 / of as f64);
        println!("{DOCUMENTS} documents, {chunks} chunks, {} ms per call", LATENCY.as_millis());
        println!("{:<44} {:>8} {:>7}", "run", "wall s", "calls");
        println!("{:<44} {sequential:>8.2} {calls_sequential:>7}", "sequential loop (one request per document)");
        println!("{:<44} {pipeline:>8.2} {calls_pipeline:>7}", "quarry ingest");
        println!("speed-up: {:.1}x", sequential / pipeline);
        println!(
            "second run, index forgotten, cache kept: {second:.2} s, {sent_second} of {chunks} chunks sent, hit rate {:.1}%",
            hit(sent_second, chunks)
        );
        println!(
            "{changed} documents edited ({} chunks): {edited:.2} s, {sent_edited} chunks sent, hit rate {:.1}% of their chunks, {:.1}% of the corpus",
            changed * per_doc,
            hit(sent_edited, changed * per_doc),
            hit(sent_edited, chunks)
        );
    });
}
