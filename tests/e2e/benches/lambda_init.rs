//! Lambda bootstraps: zipped size, and init time from process start to the first Runtime API poll.
//!
//! Needs the release bootstraps: `cargo lambda build --release -p quarry-ingest -p quarry-embed-worker
//! -p quarry-search` (scripts/bench_lambda.sh builds them and runs this). Each bootstrap is started
//! against a Runtime API played here on loopback, as `cargo lambda watch` plays it; init ends when the
//! function asks for its first event (`GET /2018-06-01/runtime/invocation/next`). The clock starts
//! just before the process is spawned, so it includes exec and the dynamic loader. Printed as a table;
//! figures are for comparison within one run on this machine, not absolute.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 30;

fn bootstrap(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("lambda").join(name).join("bootstrap");
    assert!(path.is_file(), "{} is missing: run `cargo lambda build --release` first", path.display());
    path
}

fn zipped_size(path: &PathBuf) -> u64 {
    let dir = std::env::temp_dir().join(format!("quarry-zip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let zip = dir.join("f.zip");
    let _ = std::fs::remove_file(&zip);
    let status = Command::new("zip")
        .args(["-q", "-9", "-j"])
        .arg(&zip)
        .arg(path)
        .status()
        .expect("zip (Debian package zip) is needed to measure deployment size");
    assert!(status.success());
    std::fs::metadata(&zip).unwrap().len()
}

/// One cold start: milliseconds from spawn to the first `/next` request.
fn init_once(exe: &PathBuf, model: &PathBuf) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut cmd = Command::new(exe);
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "quarry-bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/quarry-bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("RUST_LOG", "warn")
        .env("QUARRY_BUCKET", "bench-docs")
        .env("QUARRY_QUEUE_URL", "http://127.0.0.1:9/queue/bench-jobs")
        .env("QUARRY_TABLE", "bench-state")
        .env("QUARRY_VECTOR_BUCKET", "bench-vectors")
        .env("QUARRY_VECTOR_INDEX", "chunks")
        .env("QUARRY_CURSOR_SECRET", "a bench cursor secret of thirty-two+ chars")
        .env("QUARRY_MODEL_DIR", model)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("start the bootstrap");
    let (mut conn, _) = listener.accept().expect("the function never polled");
    let elapsed = start.elapsed();
    let mut buf = [0u8; 256];
    let n = conn.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("GET /2018-06-01/runtime/invocation/next"), "unexpected first request: {head}");
    // Stopped while it waits for its first event: no invocation is answered.
    let _ = child.kill();
    let _ = child.wait();
    drop(conn);
    elapsed.as_secs_f64() * 1000.0
}

fn main() {
    let model = quarry_testkit::model_dir();
    println!("| function | bootstrap | zipped | init p50 | init p95 | init min |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for name in ["ingest", "search", "embed-worker"] {
        let exe = bootstrap(name);
        let raw = std::fs::metadata(&exe).unwrap().len();
        let zipped = zipped_size(&exe);
        // One warm-up start: page cache, not cold-start work, is what the first run would measure.
        init_once(&exe, &model);
        let mut times: Vec<f64> = (0..RUNS).map(|_| init_once(&exe, &model)).collect();
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "| {name} | {:.1} MB | {:.1} MB | {:.1} ms | {:.1} ms | {:.1} ms |",
            raw as f64 / 1e6,
            zipped as f64 / 1e6,
            pct(0.5),
            pct(0.95),
            times[0]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
