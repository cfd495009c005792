//! An embedder told to give way (`EmbedOptions::nice`, what `quarry serve` gives its indexing
//! model) runs on threads of lowered priority, ONNX Runtime's pool included, answers as an
//! ordinary one does, and its thread ends with it. Linux only: the nice value per thread is read
//! from /proc.

use std::time::{Duration, Instant};

use quarry_core::ports::Embedder;
use quarry_embed::{EmbedOptions, LocalEmbedder};

/// (name, nice) of each of this process's threads.
fn threads() -> Vec<(String, i32)> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc");
    tasks
        .filter_map(|t| {
            let dir = t.ok()?.path();
            // A thread may end between the listing and the reads.
            let name = std::fs::read_to_string(dir.join("comm")).ok()?.trim().to_owned();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            // Fields after the name, which may hold spaces: state is the 3rd, nice the 19th.
            let nice = stat.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()?;
            Some((name, nice))
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_embedder_runs_every_model_thread_at_its_priority() {
    let dir = quarry_testkit::model_dir();
    let base = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
    let base: i32 = base.rsplit_once(')').and_then(|(_, f)| f.split_whitespace().nth(16)?.parse().ok()).expect("nice");
    let lowered_to = (base + 7).min(19);
    assert!(lowered_to > base, "the test runs at nice {base}: nothing left to lower");

    let options = EmbedOptions { threads: 2, batch_size: 8, ..EmbedOptions::default() };
    let lowered = LocalEmbedder::load(&dir, EmbedOptions { nice: 7, ..options }).expect("model");
    let plain = LocalEmbedder::load(&dir, options).expect("model");
    let texts = vec!["Vitamin D and bone density".to_owned(), "Oats lower LDL cholesterol".to_owned()];
    let got = lowered.embed(&texts).await.expect("embed");
    let want = plain.embed_blocking(&texts).expect("embed");
    for (g, w) in got.iter().zip(&want) {
        assert!(cosine(g, w) >= 0.9999, "the same vectors at any priority");
    }

    // The model's thread and the runtime's pool thread it started (two intra-op threads: the
    // caller's and one of the pool's), which takes its parent's name and priority.
    let seen = threads();
    let own: Vec<i32> = seen.iter().filter(|(n, _)| n == "quarry-embed-bg").map(|(_, v)| *v).collect();
    assert!(own.len() >= 2, "the model's thread and the runtime's pool thread: {seen:?}");
    assert!(own.iter().all(|&v| v == lowered_to), "all lowered to {lowered_to}: {seen:?}");

    // The model's own thread ends with the last embedder (the runtime keeps its pool's thread as it
    // sees fit: at least one of the two goes).
    drop(lowered);
    let named = || threads().iter().filter(|(n, _)| n == "quarry-embed-bg").count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while named() >= own.len() {
        assert!(Instant::now() < deadline, "the model's thread ends with its last embedder: {:?}", threads());
        std::thread::sleep(Duration::from_millis(20));
    }
}
