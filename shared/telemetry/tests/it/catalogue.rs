//! The catalogue against the code and the docs: every metric it lists is recorded somewhere
//! (outside tests), and docs/MONITORING.md's table is the catalogue's, generated from it.
//! `QUARRY_BLESS=1 cargo test -p quarry-telemetry --test it catalogue` rewrites the table.

use std::path::{Path, PathBuf};

use quarry_core::metric::{CATALOGUE, Def, Kind};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The non-test Rust source of the workspace: files under `tests/` and `benches/` are left out,
/// and so is everything after a file's `#[cfg(test)]`.
fn sources(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "tests" | "benches" | "target" | "testkit") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && !path.ends_with("core/src/metric.rs") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.push_str(text.split("#[cfg(test)]").next().unwrap_or_default());
        }
    }
}

#[test]
fn every_metric_is_recorded_by_the_code() {
    let mut code = String::new();
    for dir in ["shared", "functions", "cli"] {
        sources(&root().join(dir), &mut code);
    }
    assert!(code.len() > 100_000, "the workspace's sources were not found");
    for d in CATALOGUE {
        let constant = format!("metric::{}", d.name.to_uppercase());
        let used = code.match_indices(&constant).any(|(i, _)| {
            // `metric::DOCUMENTS` must not count as a use of `metric::DOCUMENT`.
            !code[i + constant.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        });
        assert!(used, "{} is in the catalogue, but nothing records it ({constant})", d.name);
    }
}

fn kind(d: &Def) -> &'static str {
    match d.kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    }
}

/// The catalogue as docs/MONITORING.md shows it.
fn table() -> String {
    let mut t = String::from("| Metric | Kind | Unit | Dimensions | Meaning |\n|---|---|---|---|---|\n");
    for d in CATALOGUE {
        let dims = if d.dimensions.is_empty() {
            "none".to_owned()
        } else {
            d.dimensions.iter().map(|x| format!("`{x}`")).collect::<Vec<_>>().join(", ")
        };
        t.push_str(&format!("| `{}` | {} | {} | {} | {} |\n", d.name, kind(d), d.unit.cloudwatch(), dims, d.help));
    }
    t
}

#[test]
fn the_monitoring_doc_lists_the_catalogue() {
    const BEGIN: &str = "<!-- metrics:begin (generated from quarry_core::metric; see tests/it/catalogue.rs) -->\n";
    const END: &str = "<!-- metrics:end -->";
    let path = root().join("docs/MONITORING.md");
    let doc = std::fs::read_to_string(&path).expect("docs/MONITORING.md");
    let (Some(b), Some(e)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("docs/MONITORING.md has no generated metrics table between {BEGIN:?} and {END:?}")
    };
    let current = &doc[b + BEGIN.len()..e];
    let want = table();
    if current != want {
        if std::env::var_os("QUARRY_BLESS").is_some() {
            let fresh = format!("{}{BEGIN}{want}{}", &doc[..b], &doc[e..]);
            std::fs::write(&path, fresh).expect("write docs/MONITORING.md");
        } else {
            panic!("docs/MONITORING.md's metrics table is stale; rerun with QUARRY_BLESS=1. Want:\n{want}");
        }
    }
}
