//! The in-memory fakes pass the contract suites every real adapter passes: a handler test on them
//! is a test of the handler.

use quarry_testkit::contract;
use quarry_testkit::fakes::{MemoryQueue, MemorySource, MemoryState, MemoryVectors};

#[tokio::test]
async fn memory_state_is_a_checkpoint_store_a_batch_tracker_and_a_cache() {
    contract::checkpoint_store(&MemoryState::default()).await;
    contract::batch_tracker(&MemoryState::default()).await;
    contract::embedding_cache(&MemoryState::default()).await;
    contract::cache_admin(&MemoryState::default()).await;
    contract::spend_ledger(&MemoryState::default()).await;
    contract::state_census(&MemoryState::default()).await;
}

#[tokio::test]
async fn memory_vectors_is_a_vector_store() {
    contract::vector_store(&MemoryVectors::new(8), 8).await;
    contract::vector_census(&MemoryVectors::new(8), 8).await;
}

#[tokio::test]
async fn memory_source_is_a_blob_source() {
    let source = MemorySource::default();
    for (key, bytes) in contract::BLOBS {
        source.put(key, bytes, None);
    }
    contract::blob_source(&source).await;
}

#[tokio::test]
async fn memory_queue_is_a_job_queue() {
    let queue = MemoryQueue::default();
    contract::job_queue(&queue, || std::future::ready(queue.take())).await;
}
