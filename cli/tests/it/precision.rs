//! `model.precision`, as a user meets it: an index built with the int8 model is searched with it,
//! and refused, with what to do, by the f32 model (and the other way round), through the real
//! binary, the real models and SQLite.

use crate::common;
use std::process::Output;

use quarry_local::SqliteStore;

fn quarry(args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_quarry"))
        .args(args)
        .env_remove("QUARRY_CONFIG")
        .env_remove("QUARRY_MODEL_PRECISION")
        .env("QUARRY_MODEL_DIR", quarry_testkit::model_dir())
        .envs(env.iter().copied())
        .output()
        .expect("run quarry")
}

fn text(o: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn an_int8_index_is_searched_with_the_int8_model_and_never_mixed_with_f32() {
    let dir = common::scratch("precision", "int8");
    std::fs::write(dir.join("bones.txt"), "Vitamin D helps the body absorb calcium and keeps bones strong.")
        .expect("write");
    std::fs::write(dir.join("fish.txt"), "Oily fish such as salmon are rich in omega-3 fatty acids.").expect("write");
    std::fs::write(dir.join("heart.md"), "# Salt\n\nEating less sodium lowers blood pressure.").expect("write");
    let d = dir.to_str().expect("utf-8");

    let out = quarry(&["ingest", d, "--precision", "int8", "--quiet"], &[]);
    assert!(out.status.success() && text(&out).contains("3 indexed"), "{}", text(&out));
    let store = SqliteStore::open(&dir.join(".quarry/state.db"), 384).expect("state");
    assert_eq!(store.indexed_models().expect("models"), [quarry_embed::MODEL_ID_INT8]);

    // Searched with the f32 model: refused, saying how to go on; nothing is mixed.
    let out = quarry(&["search", "how do bones get calcium", "--dir", d, "--mode", "semantic"], &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("QUARRY_MODEL_PRECISION") && text(&out).contains("--state"), "{}", text(&out));
    let out = quarry(&["ingest", d, "--quiet"], &[]);
    assert!(!out.status.success() && text(&out).contains("cannot be mixed"), "{}", text(&out));
    assert_eq!(store.indexed_models().expect("models"), [quarry_embed::MODEL_ID_INT8], "the index is untouched");

    // With the index's precision: found, and a rerun embeds nothing.
    let int8 = [("QUARRY_MODEL_PRECISION", "int8")];
    let out = quarry(&["search", "how do bones get calcium", "--dir", d, "--mode", "semantic"], &int8);
    assert!(out.status.success(), "{}", text(&out));
    let first = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_owned();
    assert!(first.contains("bones.txt"), "{}", text(&out));
    let out = quarry(&["ingest", d, "--quiet"], &int8);
    assert!(out.status.success() && text(&out).contains("3 unchanged"), "{}", text(&out));
    // Keyword search needs no model: any precision reads it.
    let out = quarry(&["search", "salmon", "--dir", d, "--mode", "keyword"], &[]);
    assert!(out.status.success() && text(&out).contains("fish.txt"), "{}", text(&out));
}
