//! The moto server for tests of the AWS adapters and Lambdas: one per test process, started on a
//! free loopback port by `tests/moto/launch.py` (which adds S3 Vectors' QueryVectors to moto) with
//! the Python the setup script installs moto into. Each test creates its own resources under a
//! random name, so tests share the server but never each other's state.
//!
//! The launcher serves until its standard input closes; the pipe is held here for the life of the
//! process, so the server goes when the tests go, however they end. A missing moto is a failure,
//! never a skip.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The Python that has moto: the setup script's tools folder.
pub fn python() -> PathBuf {
    crate::test_tool("aws-tools", "python")
}

struct Running {
    url: String,
    // Held, never written: closing it is what stops the server.
    _stdin: Mutex<ChildStdin>,
}

static SERVER: OnceLock<Running> = OnceLock::new();

/// The moto server's endpoint URL, starting it on first use.
pub fn endpoint() -> &'static str {
    &SERVER
        .get_or_init(|| {
            let launcher = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/moto/launch.py");
            let mut child = Command::new(python())
                .arg(&launcher)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start the moto server");
            let stdout = child.stdout.take().expect("moto's stdout");
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).expect("read moto's port");
            let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("moto did not print its port: {line:?}"));
            // The child is never waited on: it exits when our stdin handle closes at process exit.
            let stdin = child.stdin.take().expect("moto's stdin");
            std::mem::forget(child);
            Running { url: format!("http://127.0.0.1:{port}"), _stdin: Mutex::new(stdin) }
        })
        .url
}

/// A random resource name for one test: lower-case, S3- and S3 Vectors-safe.
pub fn unique_name(prefix: &str) -> String {
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
            ^ (std::process::id() as u64) << 32;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    seed ^= COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = crate::XorShift::new(seed | 1);
    let tail: String = (0..10).map(|_| char::from(b'a' + (rng.next() % 26) as u8)).collect();
    format!("{prefix}-{tail}")
}
