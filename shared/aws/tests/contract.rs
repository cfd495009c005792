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
async fn dynamodb_and_s3_vectors_census() {
    let (clients, c) = fresh(8).await;
    contract::state_census(&DynamoState::new(clients.dynamodb, c.resources.table)).await;
    let store = S3VectorStore::new(clients.s3vectors, c.resources.vector_bucket, c.resources.vector_index);
    contract::vector_census(&store, 8).await;
}

#[tokio::test]
async fn dynamodb_batch_tracker() {
    let (clients, c) = fresh(8).await;
    contract::batch_tracker(&DynamoState::new(clients.dynamodb, c.resources.table)).await;
}

#[tokio::test]
async fn dynamodb_spend_ledger() {
    let (clients, c) = fresh(8).await;
    contract::spend_ledger(&DynamoState::new(clients.dynamodb, c.resources.table)).await;
}

#[tokio::test]
async fn dynamodb_alert_ledger() {
    let (clients, c) = fresh(8).await;
    contract::alert_ledger(&DynamoState::new(clients.dynamodb, c.resources.table)).await;
}

#[tokio::test]
async fn dynamodb_embedding_cache() {
    let (clients, c) = fresh(8).await;
    let state = DynamoState::new(clients.dynamodb, c.resources.table);
    contract::embedding_cache(&state).await;
    contract::cache_admin(&state).await;
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
    let source = quarry_aws::S3Source::new(clients.s3.clone(), &c.resources.bucket);
    // Without an endpoint, the bucket's own in its region: what a page's CSP allows on AWS.
    assert_eq!(
        quarry_core::ports::UploadGranter::origin(&source),
        Some(format!("https://{}.s3.us-east-1.amazonaws.com", c.resources.bucket))
    );
    let source = source.with_endpoint(Some(moto::endpoint().to_owned()));
    let origin = quarry_core::ports::UploadGranter::origin(&source).expect("an origin");
    contract::blob_source(&source).await;
    // The presigned PUT, sent as the page sends it: the grant's method, URL and headers, no credentials.
    let http = reqwest::Client::new();
    contract::upload_granter(&source, |grant, bytes| {
        let (http, origin) = (&http, &origin);
        async move {
            assert_eq!(grant.expires_in_s, Some(quarry_aws::UPLOAD_URL_TTL.as_secs()));
            assert!(grant.url.contains("X-Amz-Signature="), "a presigned URL: {}", grant.url);
            assert!(grant.url.starts_with(&format!("{origin}/")), "{} is at {origin}", grant.url);
            assert_eq!(grant.headers.get("content-type").map(String::as_str), Some("text/markdown"));
            let mut request = http.put(&grant.url).body(bytes);
            for (name, value) in &grant.headers {
                request = request.header(name, value);
            }
            let response = request.send().await.expect("PUT");
            assert!(response.status().is_success(), "the presigned PUT: {}", response.status());
        }
    })
    .await;
    // The same URL again (an object now has the key): S3 refuses to write over it (If-None-Match).
    let key = quarry_core::DocumentKey::new("contract/twice.txt");
    let grant = quarry_core::ports::UploadGranter::grant(&source, &key, 5, Some("text/plain")).await.expect("grant");
    let send = || {
        let mut request = http.put(&grant.url).body("first");
        for (name, value) in &grant.headers {
            request = request.header(name, value);
        }
        request.send()
    };
    assert!(send().await.expect("PUT").status().is_success());
    assert_eq!(send().await.expect("PUT").status(), 412, "a second write is refused");
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

#[tokio::test]
async fn s3_keyword_index_files() {
    let (clients, c) = fresh(8).await;
    let bucket = c.resources.index_bucket.expect("provisioned");
    contract::index_files(&quarry_aws::S3IndexFiles::new(clients.s3, bucket)).await;
}

/// The keyword searcher contract over the published index on AWS: chunks read back from S3
/// Vectors, files and the conditional manifest on S3.
#[tokio::test]
async fn published_keyword_index_on_s3() {
    let (clients, c) = fresh(8).await;
    let vectors = S3VectorStore::new(clients.s3vectors, c.resources.vector_bucket, c.resources.vector_index);
    let files = quarry_aws::S3IndexFiles::new(clients.s3, c.resources.index_bucket.expect("provisioned"));
    contract::keyword_store(&quarry_testkit::keywords::PublishedStore::new(vectors, files), 8).await;
}
