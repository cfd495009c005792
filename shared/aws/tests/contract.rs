//! The port contract suites the embedded adapters pass, run against the AWS adapters on moto.

use quarry_aws::{Clients, DynamoState, S3VectorStore, provision};
use quarry_testkit::{contract, moto};

async fn fresh(dimension: usize) -> (Clients, provision::Created) {
    let clients = Clients::emulator(moto::endpoint()).await;
    let created = provision::create(&clients, &moto::unique_name("contract"), dimension).await.expect("provision");
    (clients, created)
}

#[tokio::test]
async fn dynamodb_checkpoint_store() {
    let (clients, c) = fresh(8).await;
    contract::checkpoint_store(&DynamoState::new(clients.dynamodb, c.resources.table)).await;
}

#[tokio::test]
async fn dynamodb_batch_tracker() {
    let (clients, c) = fresh(8).await;
    contract::batch_tracker(&DynamoState::new(clients.dynamodb, c.resources.table)).await;
}

#[tokio::test]
async fn dynamodb_embedding_cache() {
    let (clients, c) = fresh(8).await;
    contract::embedding_cache(&DynamoState::new(clients.dynamodb, c.resources.table)).await;
}

#[tokio::test]
async fn s3_vectors_store() {
    let (clients, c) = fresh(8).await;
    let store = S3VectorStore::new(clients.s3vectors, c.resources.vector_bucket, c.resources.vector_index);
    contract::vector_store(&store, 8).await;
}
