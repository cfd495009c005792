//! Word highlights for a page of ten results: the part of every search response that is neither
//! ranking nor transport. NFCorpus abstracts (beside the checkout, or `QUARRY_BENCH_CORPUS`) as the
//! results, its queries as the queries.
//!
//!     cargo bench -p quarry-pipeline --bench highlight

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use quarry_pipeline::query::highlight::QueryTerms;

fn lines(name: &str, field: &str) -> Vec<String> {
    let dir = std::env::var_os("QUARRY_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/eval/nfcorpus"));
    let text = std::fs::read_to_string(dir.join(name))
        .unwrap_or_else(|e| panic!("{}: {e} (set QUARRY_BENCH_CORPUS to a BEIR dataset)", dir.join(name).display()));
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v[field].as_str().map(str::to_owned))
        .collect()
}

fn page(c: &mut Criterion) {
    let texts = lines("corpus.jsonl", "text");
    let queries = lines("queries.jsonl", "text");
    let mut i = 0;
    c.bench_function("word highlights, a page of 10 results", |b| {
        b.iter(|| {
            let q = &queries[i % queries.len()];
            let page = &texts[(i * 10) % (texts.len() - 10)..][..10];
            i += 1;
            let terms = QueryTerms::new(q);
            for t in page {
                black_box(terms.highlights(t));
            }
        });
    });
}

criterion_group!(benches, page);
criterion_main!(benches);
