//! Quarry's WordPiece must tokenise exactly as Hugging Face `tokenizers` does with the model's own
//! tokenizer.json: the chunker's sizes and the embedder's inputs depend on it. The fixture comes
//! from `scripts/gen_wordpiece_fixture.py`.

use quarry_tokenizer::WordPiece;

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    text: String,
    ids: Vec<u32>,
}

fn tokenizer() -> WordPiece {
    WordPiece::from_file(&quarry_testkit::model_dir().join("tokenizer.json")).expect("tokenizer.json loads")
}

#[test]
fn matches_hugging_face_tokenizers_on_every_reference_case() {
    let wp = tokenizer();
    let fixture: Fixture =
        serde_json::from_str(include_str!("fixtures/wordpiece_reference.json")).expect("fixture parses");
    assert!(fixture.cases.len() > 300);
    let mut failures = Vec::new();
    for (i, case) in fixture.cases.iter().enumerate() {
        let got = wp.encode(&case.text);
        if got != case.ids {
            failures.push(format!("case {i} {:?}\n  want {:?}\n  got  {:?}", case.text, case.ids, got));
        }
        assert_eq!(wp.count(&case.text), got.len());
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        fixture.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn words_carry_source_spans() {
    let wp = tokenizer();
    let text = "Café, déjà-vu!";
    let words: Vec<&str> = wp.words(text).iter().map(|w| &text[w.start..w.end]).collect();
    assert_eq!(words, ["Café", ",", "déjà", "-", "vu", "!"]);
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = WordPiece::from_file(std::path::Path::new("/nonexistent/tokenizer.json")).expect_err("missing");
    assert!(err.to_string().contains("/nonexistent/tokenizer.json"), "{err}");
}
