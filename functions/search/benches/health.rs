//! `/health/ready` latency with every dependency answering, and with one that never answers.
//! Requests go through the router as API Gateway's events do, back to back for a few refresh
//! cycles; printed as a table (p50/p95/p99/max). Run: `cargo bench -p quarry-search --bench health`.

#![allow(clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use quarry_core::config::Limits;
use quarry_core::ports::{Embedder, ModelInfo};
use quarry_core::{Config, PortError};
use quarry_search::{AwsBackend, AwsStarter, cursor_key};
use quarry_testkit::fakes::{MemoryQueue, MemorySource, MemoryState, MemoryVectors};
use quarry_testkit::lambda::api;

/// Answers at once, or never.
struct Fake {
    info: ModelInfo,
    hung: bool,
}

impl Embedder for Fake {
    fn model(&self) -> &ModelInfo {
        &self.info
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        if self.hung {
            std::future::pending::<()>().await;
        }
        Ok(texts.iter().map(|_| vec![1.0, 0.0, 0.0, 0.0]).collect())
    }
}

fn router(hung: bool) -> axum::Router {
    let (state, vectors) = (MemoryState::default(), MemoryVectors::new(4));
    let backend = AwsBackend {
        embedder: Fake { info: ModelInfo { id: "fake".into(), dimension: 4, max_tokens: 256 }, hung },
        vectors: vectors.clone(),
        state: state.clone(),
        starter: AwsStarter {
            source: MemorySource::default(),
            state,
            vectors,
            queue: MemoryQueue::default(),
            events: quarry_core::ports::NoEvents,
            limits: Limits::default(),
            hosted: None,
        },
        bucket: "b".into(),
        keywords: None::<quarry_api::NoKeywords>,
    };
    let secret = quarry_core::config::Secret::new("a bench cursor secret of thirty-two+ characters");
    quarry_api::router(backend, Config::default().server, cursor_key(Some(&secret)).expect("key"))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let run = Duration::from_secs(12);
    println!("| dependencies | requests | p50 ms | p95 ms | p99 ms | max ms | not ready |");
    println!("|---|---|---|---|---|---|---|");
    for (label, hung) in [("all answer", false), ("embedder never answers", true)] {
        let (latencies, not_ready) = rt.block_on(async {
            let router = router(hung);
            let mut latencies = Vec::new();
            let mut not_ready = 0;
            let start = Instant::now();
            while start.elapsed() < run {
                let t = Instant::now();
                let (status, _) = api(&router, "GET", "/health/ready", None).await;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
                not_ready += usize::from(status == 503);
                // A probe every 2 ms: a load balancer's rate many times over.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (latencies, not_ready)
        });
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        println!(
            "| {label} | {} | {:.3} | {:.3} | {:.3} | {:.1} | {not_ready} |",
            sorted.len(),
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.95),
            percentile(&sorted, 0.99),
            sorted.last().copied().unwrap_or(0.0)
        );
    }
}
