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
async fn dynamodb_alert_ledger() {
    let (clients, c) = fresh(8).await;
    contract::alert_ledger(&DynamoState::new(clients.dynamodb, c.resources.table)).await;
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

#[tokio::test]
async fn s3_blob_source() {
    let (clients, c) = fresh(8).await;
    for (key, bytes) in contract::BLOBS {
        clients
            .s3
            .put_object()
            .bucket(&c.resources.bucket)
            .key(*key)
            .body(bytes.to_vec().into())
            .send()
            .await
            .expect("put");
    }
    contract::blob_source(&quarry_aws::S3Source::new(clients.s3, c.resources.bucket)).await;
}

#[tokio::test]
async fn sqs_job_queue() {
    let (clients, c) = fresh(8).await;
    let queue = quarry_aws::SqsQueue::new(clients.sqs.clone(), &c.resources.queue_url);
    let url = c.resources.queue_url.clone();
    contract::job_queue(&queue, || {
        let (sqs, url) = (clients.sqs.clone(), url.clone());
        async move {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            let mut jobs = Vec::new();
            for m in out.messages.unwrap_or_default() {
                jobs.push(serde_json::from_str(m.body.as_deref().expect("a body")).expect("a job"));
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle.expect("receipt"))
                    .send()
                    .await
                    .expect("delete");
            }
            jobs
        }
    })
    .await;
}
