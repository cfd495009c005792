//! Embedding throughput of the local model: passages/s, tokens/s and peak RSS for 1 and 2 threads
//! and batches of 16, 32 and 64, each configuration in a fresh child process so that peak RSS is its
//! own. Also the cold load time (process start to a loaded model).
//!
//!     cargo bench -p quarry-embed --bench throughput                # 2,000 passages
//!     QUARRY_BENCH_PASSAGES=500 cargo bench -p quarry-embed --bench throughput
//!
//! Passages are ~200-word cuts of the NFCorpus abstracts when the evaluation data sits beside the
//! checkout (`QUARRY_BENCH_CORPUS` overrides), else generated prose. The passages used are written
//! to `QUARRY_BENCH_OUT` (default: target/embed-bench-passages.jsonl) so that
//! `scripts/bench_embed.sh` can run sentence-transformers on exactly the same ones in the same run.

#![allow(clippy::print_stdout, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use quarry_embed::{EmbedOptions, LocalEmbedder};

fn passages(n: usize) -> Vec<String> {
    let path = std::env::var_os("QUARRY_BENCH_CORPUS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval/nfcorpus/corpus.jsonl")
    });
    let mut out = Vec::with_capacity(n);
    if let Ok(text) = std::fs::read_to_string(&path) {
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("corpus line is JSON");
            let words: Vec<&str> = v["text"].as_str().unwrap_or("").split_whitespace().collect();
            if words.len() >= 200 {
                out.push(words[..200].join(" "));
            }
            if out.len() == n {
                return out;
            }
        }
    }
    let vocab =
        ["protein", "vitamin", "intake", "risk", "study", "patients", "cancer", "diet", "the", "of", "and", "in"];
    while out.len() < n {
        let i = out.len();
        out.push((0..200).map(|w| vocab[(i * 7 + w * 13 + w / 3) % vocab.len()]).collect::<Vec<_>>().join(" "));
    }
    out
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn child(threads: usize, batch: usize, n: usize) {
    let t0 = Instant::now();
    let e = LocalEmbedder::load(
        &quarry_testkit::model_dir(),
        EmbedOptions { threads, batch_size: batch, ..EmbedOptions::default() },
    )
    .expect("model loads");
    let load = t0.elapsed().as_secs_f64();
    let texts = passages(n);
    let ids: Vec<Vec<u32>> = texts.iter().map(|t| e.token_ids(t)).collect();
    let tokens: usize = ids.iter().map(Vec::len).sum();
    e.embed_ids(&ids[..batch.min(ids.len())]).expect("warm-up");
    let t = Instant::now();
    let v = e.embed_blocking(&texts).expect("embeds");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(v.len(), n);
    // threads batch passages/s tokens/s peak_rss_mib load_s mean_tokens
    println!(
        "{threads} {batch} {:.2} {:.0} {:.0} {load:.3} {:.1}",
        n as f64 / secs,
        tokens as f64 / secs,
        peak_rss_mib(),
        tokens as f64 / n as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = std::env::var("QUARRY_BENCH_PASSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args[i + 1].parse().unwrap(), args[i + 2].parse().unwrap(), n);
        return;
    }
    let out = std::env::var_os("QUARRY_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/embed-bench-passages.jsonl"));
    let texts = passages(n);
    let lines: Vec<String> = texts.iter().map(|t| serde_json::to_string(t).unwrap()).collect();
    std::fs::write(&out, lines.join("\n") + "\n").expect("write passages");
    let grid: Vec<(usize, usize)> = match std::env::var("QUARRY_BENCH_GRID").as_deref() {
        Ok("quick") => vec![(2, 32)],
        _ => vec![(1, 16), (1, 32), (1, 64), (2, 16), (2, 32), (2, 64)],
    };
    println!("local embedder: {n} passages of ~200 words; passages written to {}", out.display());
    println!("| threads | batch | passages/s | tokens/s | peak RSS (MiB) | cold load (s) |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let me = std::env::current_exe().unwrap();
    for (threads, batch) in grid {
        let o =
            Command::new(&me).args(["--child", &threads.to_string(), &batch.to_string()]).output().expect("child runs");
        let line = String::from_utf8_lossy(&o.stdout);
        let f: Vec<&str> = line.split_whitespace().collect();
        if !o.status.success() || f.len() < 7 {
            println!("| {threads} | {batch} | failed: {} |", String::from_utf8_lossy(&o.stderr).trim());
            continue;
        }
        println!("| {} | {} | {} | {} | {} | {} |", f[0], f[1], f[2], f[3], f[4], f[5]);
        if threads == 2 && batch == 32 {
            println!("<!-- mean tokens per passage: {} -->", f[6]);
        }
    }
}
