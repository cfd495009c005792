//! The search page in a real headless Chromium against a real `quarry serve` over the sample
//! folder: `tests/browser/page.test.mjs` (playwright-core) drives it; this harness starts the server
//! and the script. A missing browser, Node.js or playwright-core is a failure that names the setup
//! command, never a skip. The run refreshes the screenshots in docs/screenshots, and prints the
//! time to first result it measured (a figure, not a check: targets live in benchmarks).

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use quarry_testkit::http::Server;

const SETUP: &str = "bash scripts/setup.sh --test-tools";
/// What the script writes into docs/screenshots.
const SHOTS: [&str; 3] = ["search-desktop.png", "search-phone.png", "batches-desktop.png"];

/// The first of `names` on PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
}

#[test]
fn the_search_page_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromium", "chromium-browser"]))
        .unwrap_or_else(|| panic!("no Chromium on PATH (Debian's chromium package): run `{SETUP}`"));
    let node = on_path(&["node"]).unwrap_or_else(|| panic!("no Node.js on PATH: it drives the browser tests"));
    let script_dir = root.join("tests/browser");
    assert!(
        script_dir.join("node_modules/playwright-core/package.json").is_file(),
        "playwright-core is not installed in tests/browser: run `{SETUP}`"
    );

    let dir = std::env::temp_dir().join(format!("quarry-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch");
    for entry in std::fs::read_dir(root.join("samples")).expect("samples") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    let server = Server::start(
        env!("CARGO_BIN_EXE_quarry"),
        &["--watch", dir.to_str().expect("utf-8"), "--bind", "127.0.0.1:0", "--poll", "0.2"],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while server.call("GET", "/health/startup", None, &[]).0 != 200 {
        assert!(Instant::now() < deadline, "the sample folder was not indexed in time");
        std::thread::sleep(Duration::from_millis(100));
    }

    let shots = root.join("docs/screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots folder");
    // The committed screenshots go first, so that only this run's can pass the check below.
    for name in SHOTS {
        let _ = std::fs::remove_file(shots.join(name));
    }
    let out = Command::new(node)
        .arg("page.test.mjs")
        .arg(format!("http://{}/", server.addr))
        .arg(&shots)
        .current_dir(&script_dir)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    // The measurements (time to first result after typing stops, in ms), for the run's log.
    println!("browser: {}", stdout.trim());
    let measured: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the script's JSON line");
    assert!(measured["first_result_median_ms"].as_f64().is_some(), "{measured}");
    for name in SHOTS {
        let png = std::fs::read(shots.join(name)).expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    }
    // Stopped first: a server whose folder goes first cannot save its vector snapshot as it exits.
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
