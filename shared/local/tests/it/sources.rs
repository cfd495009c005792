//! The local twins of S3 and SQS pass the same contract suites as the AWS adapters: a folder as the
//! blob source, a channel as the job queue.

use quarry_local::{ChannelQueue, FolderSource};

#[tokio::test]
async fn folder_source_contract() {
    let root = std::env::temp_dir().join(format!("quarry-folder-contract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (key, bytes) in quarry_testkit::contract::BLOBS {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }
    // Hidden files are not documents, and nothing outside the folder can be named.
    std::fs::write(root.join("contract/.hidden.txt"), b"hidden").expect("write");
    let source = FolderSource::new(&root);
    quarry_testkit::contract::blob_source(&source).await;
    quarry_testkit::contract::upload_granter(&source, |grant, bytes| {
        // Locally the grant is the API's own route; behind it, the folder's writer.
        assert!(grant.url.starts_with("/v1/files/"), "{}", grant.url);
        assert!(grant.url.ends_with("uploaded%20%C3%A9%2B.md"), "the key is one escaped segment: {}", grant.url);
        let source = &source;
        async move { quarry_core::ports::BlobWriter::put_new(source, &grant.key, &bytes).await.expect("put") }
    })
    .await;
    quarry_testkit::contract::blob_writer(&source).await;
    let hidden: Vec<_> = std::fs::read_dir(root.join("contract/written")).expect("dir").collect();
    assert_eq!(hidden.len(), 1, "no temporary file left behind: {hidden:?}");
    let outside = quarry_core::DocumentKey::new("../escape.txt");
    assert!(matches!(
        quarry_core::ports::BlobSource::get(&source, &outside).await,
        Err(quarry_core::PortError::InvalidInput { .. })
    ));
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn channel_queue_contract() {
    let (queue, rx) = ChannelQueue::new(64);
    let rx = tokio::sync::Mutex::new(rx);
    quarry_testkit::contract::job_queue(&queue, || async {
        let mut rx = rx.lock().await;
        let mut got = Vec::new();
        while let Ok(job) = rx.try_recv() {
            got.push(job);
        }
        got
    })
    .await;
    drop(rx);
    let closed = quarry_core::ports::JobQueue::enqueue(&queue, &one_job()).await;
    assert!(closed.is_err(), "a queue nobody works refuses jobs rather than losing them");
}

fn one_job() -> Vec<quarry_core::ports::IndexJob> {
    vec![quarry_core::ports::IndexJob {
        action: quarry_core::ports::JobAction::Index,
        key: quarry_core::DocumentKey::new("a.txt"),
        version: None,
        batch: None,
        size: None,
    }]
}
