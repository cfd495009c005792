//! Several threads loading the local model at once in a fresh process all succeed. ONNX Runtime
//! allows one environment per process, and two embedders built together (parallel tests, a server
//! warming two pools) used to race to create it: the loser failed with "only one environment is
//! allowed per process". This file holds one test so that its process starts with no environment.

use std::sync::{Arc, Barrier};

use quarry_embed::{EmbedOptions, LocalEmbedder};

#[test]
fn embedders_loaded_at_once_from_several_threads_all_load() {
    const THREADS: usize = 8;
    let model = quarry_testkit::model_dir();
    let start = Arc::new(Barrier::new(THREADS));
    let loads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (model, start) = (model.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                LocalEmbedder::load(&model, EmbedOptions { threads: 1, batch_size: 4, ..EmbedOptions::default() })
                    .map(|_| ())
            })
        })
        .collect();
    let failures: Vec<String> = loads
        .into_iter()
        .filter_map(|load| load.join().expect("the loading thread does not panic").err())
        .map(|error| format!("{error:?}"))
        .collect();
    assert!(failures.is_empty(), "every concurrent load succeeds, got {failures:?}");
}
