//! `quarry inspect` as a user runs it: the real binary on files the test writes.

use crate::common;

use std::process::Command;

use common::quarry;

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("quarry-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

#[test]
fn inspects_a_pdf_with_pages_redactions_and_chunks() {
    let dir = scratch("pdf");
    let pdf = quarry_testkit::pdf(
        &[
            quarry_testkit::PdfPage::Text(vec!["Contact ada@example.org about vitamin D.".into()]),
            quarry_testkit::PdfPage::Text(vec!["Page two covers protein intake.".into()]),
        ],
        Some("Notes"),
    );
    std::fs::write(dir.join("notes.pdf"), pdf).expect("write");
    let (code, out, err) = quarry(&["inspect", "notes.pdf"], &dir);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("type:       pdf (application/pdf)"), "{out}");
    assert!(out.contains("pages:      2"), "{out}");
    assert!(out.contains("redactions: email 1"), "{out}");
    assert!(out.contains("title:      Notes"), "{out}");
    assert!(out.contains("[EMAIL]") && !out.contains("ada@example.org"), "{out}");
    assert!(out.contains("p.1-2") || out.contains("p.1"), "{out}");

    let (code, json, _) = quarry(&["inspect", "--json", "notes.pdf"], &dir);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v["format"], "pdf");
    assert_eq!(v["redactions"]["email"], 1);
    let chunks = v["chunks"].as_array().expect("chunks");
    assert!(!chunks.is_empty());
    assert_eq!(chunks[0]["span"]["start"], 0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_is_one_line_and_a_non_zero_exit() {
    let dir = scratch("bad");
    std::fs::write(dir.join("empty.txt"), b"").expect("write");
    std::fs::write(dir.join("locked.pdf"), quarry_testkit::encrypted_pdf(&["secret"])).expect("write");
    std::fs::write(dir.join("junk.docx"), b"PK\x03\x04 not really").expect("write");
    for (file, needle) in [
        ("empty.txt", "the file is empty"),
        ("locked.pdf", "encrypted with a password"),
        ("junk.docx", "corrupt or truncated"),
        ("missing.txt", "cannot read missing.txt"),
    ] {
        let (code, out, err) = quarry(&["inspect", file], &dir);
        assert_ne!(code, 0, "{file}");
        assert!(out.is_empty(), "{file}: nothing on stdout");
        assert_eq!(err.trim_end().lines().count(), 1, "{file}: one line: {err}");
        assert!(err.starts_with("quarry: ") && err.contains(needle), "{file}: {err}");
        assert!(!err.contains("panicked"), "{file}: {err}");
    }
    for file in ["empty.txt", "missing.txt"] {
        let (code, _, err) = quarry(&["inspect", file], &dir);
        assert_eq!(code, 1, "{file}: bad input exits 1: {err}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn broken_setup_names_the_fix() {
    let dir = scratch("setup");
    std::fs::write(dir.join("a.txt"), b"hello").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["inspect", "a.txt"])
        .current_dir(&dir)
        .env("QUARRY_MODEL_DIR", dir.join("no-model-here"))
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3));
    assert!(err.contains("scripts/setup.sh"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(["inspect", "a.txt"])
        .current_dir(&dir)
        .env("QUARRY_MAX_FILE_BYTES", "huge")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3));
    assert!(err.contains("QUARRY_MAX_FILE_BYTES"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
