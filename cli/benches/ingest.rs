//! Ingest of a JSONL corpus end to end, against pure embedding of the same chunks.
//!
//!     cargo bench -p quarry-cli --bench ingest          # NFCorpus beside the checkout
//!     QUARRY_BENCH_CORPUS=path/to/corpus.jsonl cargo bench -p quarry-cli --bench ingest
//!     QUARRY_BENCH_PRECISION=int8 cargo bench -p quarry-cli --bench ingest   # the int8 model
//!
//! Three timings, one after the other in one process tree:
//! 1. `quarry ingest corpus.jsonl` into a fresh store: process wall time, model load included;
//! 2. the same command again over the unchanged corpus (should embed nothing);
//! 3. pure embedding: the same chunks (same extraction, redaction and chunking), all handed to the
//!    embedder in one call, which sorts them by length and pads least: the pipeline's floor.
//!
//! Overhead = (1) / (3) − 1. Prints a table and one JSON line (`scripts/bench_ingest.sh` puts it
//! beside the Python peer's figures from the same run).

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use quarry_core::Config;
use quarry_core::ports::BlobSource;
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_local::JsonlSource;
use quarry_text::{Preparer, WordPiece};

fn main() {
    let corpus = std::env::var_os("QUARRY_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval/nfcorpus/corpus.jsonl"));
    assert!(corpus.is_file(), "no corpus at {} (set QUARRY_BENCH_CORPUS)", corpus.display());
    let state = std::env::temp_dir().join(format!("quarry-bench-ingest-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let quarry = env!("CARGO_BIN_EXE_quarry");
    let precision = std::env::var("QUARRY_BENCH_PRECISION").unwrap_or_else(|_| "f32".into());
    let precision_setting =
        quarry_core::config::Precision::parse(&precision).expect("QUARRY_BENCH_PRECISION: f32 or int8");
    let ingest = |label: &str| {
        let t = Instant::now();
        let out = Command::new(quarry)
            .arg("ingest")
            .arg(&corpus)
            .arg("--state")
            .arg(&state)
            .arg("--quiet")
            .arg("--precision")
            .arg(&precision)
            // Quarry refuses QUARRY_* variables it does not know (a typo is an error, not a
            // silent default); the benchmark's own settings are not for it.
            .env_remove("QUARRY_BENCH_CORPUS")
            .env_remove("QUARRY_BENCH_PRECISION")
            .output()
            .expect("quarry runs");
        let secs = t.elapsed().as_secs_f64();
        assert!(out.status.success(), "{label}: {}", String::from_utf8_lossy(&out.stderr));
        let summary = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned();
        println!("{label:<8} {secs:>8.1} s   {summary}");
        secs
    };
    let first = ingest("ingest");
    let rerun = ingest("re-run");
    let _ = std::fs::remove_dir_all(&state);

    // The same chunks, embedded in one call.
    let model_dir = quarry_testkit::model_dir();
    let config = Config::default();
    let preparer = Preparer::new(&config, WordPiece::from_file(&model_dir.join("tokenizer.json")).expect("tokenizer"));
    let (source, _) = JsonlSource::open(&corpus).expect("corpus");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut chunks = Vec::new();
    let docs = source.len();
    for info in rt.block_on(source.list("")).expect("list") {
        let blob = rt.block_on(source.get(&info.key)).expect("get");
        if let Ok(p) = preparer.prepare_as(Some(info.key.as_str()), info.content_type.as_deref(), &blob.bytes) {
            chunks.extend(p.chunks.into_iter().map(|c| c.text));
        }
    }
    let options = EmbedOptions { precision: precision_setting, ..EmbedOptions::default() };
    let embedder = LocalEmbedder::load(&model_dir, options).expect("model");
    let tokens: usize = chunks.iter().map(|c| embedder.token_ids(c).len()).sum();
    embedder.embed_blocking(&chunks[..chunks.len().min(32)]).expect("warm-up");
    let t = Instant::now();
    embedder.embed_blocking(&chunks).expect("embeds");
    let pure = t.elapsed().as_secs_f64();
    println!("embed    {pure:>8.1} s   {} chunks, {tokens} tokens, {:.0} tokens/s", chunks.len(), tokens as f64 / pure);
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| documents / chunks / model tokens | {docs} / {} / {tokens} |", chunks.len());
    println!("| ingest wall (fresh store, model load included) | {first:.1} s |");
    println!("| pure embedding of the same chunks | {pure:.1} s |");
    println!("| pipeline overhead over pure embedding | {:+.1} % |", 100.0 * (first / pure - 1.0));
    println!("| re-run over the unchanged corpus | {rerun:.2} s ({:.1} % of the first run) |", 100.0 * rerun / first);
    println!(
        "{}",
        serde_json::json!({
            "precision": precision, "docs": docs, "chunks": chunks.len(), "model_tokens": tokens,
            "ingest_s": first, "rerun_s": rerun, "embed_s": pure,
        })
    );
}
