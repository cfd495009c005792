//! Throughput of the first pipeline stage (extract + redact + chunk) on one core, in MB/s of input.
//! Target: 50 MB/s on plain text and markdown, so that this stage stays negligible next to
//! embedding. The input is real English prose: the NFCorpus abstracts when the evaluation data sits
//! beside the checkout (`QUARRY_BENCH_CORPUS` overrides the path), else generated text with a
//! Zipfian vocabulary; either way with PII sprinkled in so the redactor does real work.
//!
//!     cargo bench -p quarry-text --bench pipeline

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stderr)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quarry_core::Config;
use quarry_text::{ChunkOptions, Chunker, Extractor, Preparer, Redactor, WordPiece};

const TARGET_BYTES: usize = 4 << 20;

fn corpus_paragraphs() -> (Vec<String>, &'static str) {
    let path = std::env::var_os("QUARRY_BENCH_CORPUS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval/nfcorpus/corpus.jsonl")
    });
    if let Ok(text) = std::fs::read_to_string(&path) {
        let paras = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| format!("{}\n\n{}", v["title"].as_str().unwrap_or(""), v["text"].as_str().unwrap_or("")))
            .collect();
        return (paras, "NFCorpus abstracts");
    }
    // Zipf over a fixed vocabulary, sentences of 8-30 words.
    let vocab: Vec<String> = "the of and to in a is that for it as with was on be by this are or from at which an \
        have not were has been their more can its also all these other two may than between most such only after \
        protein vitamin cancer risk dietary intake study patients acid cholesterol breast cardiovascular mortality \
        association supplementation randomized trial women men children higher lower levels associated increased \
        reduced effects consumption fat fiber sugar sodium potassium calcium iron zinc magnesium omega fatty"
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut rng = quarry_testkit::XorShift::new(0x2545_f491_4f6c_dd1d);
    let mut rnd = move || rng.next();
    let mut paras = Vec::new();
    for _ in 0..4000 {
        let mut p = String::new();
        for _ in 0..(3 + rnd() % 6) {
            let n = 8 + rnd() % 23;
            for w in 0..n {
                let r = (rnd() % 1000) as f64 / 1000.0;
                let idx = ((vocab.len() as f64).powf(r) as usize).saturating_sub(1).min(vocab.len() - 1);
                let word = &vocab[idx];
                if w == 0 {
                    let mut c = word.chars();
                    p.extend(c.next().map(|f| f.to_ascii_uppercase()));
                    p.push_str(c.as_str());
                } else {
                    p.push(' ');
                    p.push_str(word);
                }
            }
            p.push_str(". ");
        }
        paras.push(p);
    }
    (paras, "generated Zipfian prose")
}

/// About 4 MiB of prose, with an email, a phone number and an IP address every ~20 paragraphs.
fn build(paras: &[String], markdown: bool) -> String {
    let mut out = String::with_capacity(TARGET_BYTES + 4096);
    let mut i = 0;
    while out.len() < TARGET_BYTES {
        let p = &paras[i % paras.len()];
        if markdown {
            if i % 7 == 0 {
                out.push_str("## Section ");
                out.push_str(&i.to_string());
                out.push_str("\n\n");
            }
            if i % 5 == 0 {
                out.push_str("- a *list* item with `code`\n- another [link](https://example.org)\n\n");
            }
        }
        out.push_str(p);
        if i % 20 == 0 {
            out.push_str(" Contact jane.doe@example.org or +44 20 7946 0958 from 10.1.2.3.");
        }
        out.push_str("\n\n");
        i += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let model = quarry_testkit::model_dir();
    let wp = WordPiece::from_file(&model.join("tokenizer.json")).expect("tokenizer");
    let config = Config::default();
    let preparer = Preparer::new(&config, wp);
    let (paras, source) = corpus_paragraphs();
    eprintln!("bench input: {source}");
    let text = build(&paras, false);
    let md = build(&paras, true);

    let mut g = c.benchmark_group("prepare");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("txt: extract+redact+chunk", |b| {
        b.iter(|| black_box(preparer.prepare(Some("doc.txt"), black_box(text.as_bytes())).expect("ok")))
    });
    g.throughput(Throughput::Bytes(md.len() as u64));
    g.bench_function("md: extract+redact+chunk", |b| {
        b.iter(|| black_box(preparer.prepare(Some("doc.md"), black_box(md.as_bytes())).expect("ok")))
    });
    g.finish();

    // Stage by stage, on the plain text, to show where the time goes.
    let mut g = c.benchmark_group("stage");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(text.len() as u64));
    let ex = Extractor::default();
    g.bench_function("extract", |b| b.iter(|| black_box(ex.extract(Some("doc.txt"), text.as_bytes()).expect("ok"))));
    let red = Redactor::all();
    g.bench_function("redact", |b| b.iter(|| black_box(red.redact(black_box(&text)))));
    let doc = ex.extract(Some("doc.txt"), text.as_bytes()).expect("ok");
    let chunker = Chunker::new(preparer.counter(), ChunkOptions::for_config(&config));
    g.bench_function("chunk", |b| b.iter(|| black_box(chunker.chunk(black_box(&doc)))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
