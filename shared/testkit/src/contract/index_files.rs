//! The contract of [`IndexFiles`]: what the published keyword index's single writer and its
//! searchers rely on, whatever holds the files.

use quarry_core::PortError;
use quarry_core::keywords::{IndexFiles, ManifestRead};

/// Conditional reads and publishes of the manifest (only the writer that names the tag it
/// replaces wins), files that come back as put, and deletes that tolerate what is gone.
pub async fn index_files<F: IndexFiles>(files: &F) {
    assert_eq!(files.manifest(None).await.expect("read"), ManifestRead::Missing, "nothing published yet");
    let first = files.publish(b"{\"generation\":1}", None).await.expect("the first publish");
    assert!(
        matches!(files.publish(b"{\"generation\":1}", None).await, Err(PortError::Conflict { .. })),
        "a second first publish loses"
    );
    match files.manifest(None).await.expect("read") {
        ManifestRead::Found { bytes, tag } => {
            assert_eq!(bytes, b"{\"generation\":1}");
            assert_eq!(tag, first);
        }
        other => panic!("expected the manifest, got {other:?}"),
    }
    assert_eq!(files.manifest(Some(&first)).await.expect("read"), ManifestRead::Unchanged);
    let second = files.publish(b"{\"generation\":2}", Some(&first)).await.expect("replace the first");
    assert_ne!(second, first);
    assert!(
        matches!(files.publish(b"{\"generation\":3}", Some(&first)).await, Err(PortError::Conflict { .. })),
        "a writer that read the older manifest loses"
    );
    match files.manifest(Some(&first)).await.expect("read") {
        ManifestRead::Found { bytes, tag } => {
            assert_eq!(bytes, b"{\"generation\":2}", "the loser changed nothing");
            assert_eq!(tag, second);
        }
        other => panic!("expected the newer manifest, got {other:?}"),
    }
    let data: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    files.put("files/000000000001-a/seg.idx", &data).await.expect("put");
    assert_eq!(files.get("files/000000000001-a/seg.idx").await.expect("get"), data, "bytes come back as put");
    let listed = files.list().await.expect("list");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    assert_eq!(
        listed.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["files/000000000001-a/seg.idx"],
        "the manifest is not a file"
    );
    assert!(listed.iter().all(|(_, t)| (now - t).abs() < 3_600_000), "written just now: {listed:?} at {now}");
    assert!(matches!(files.get("files/none").await, Err(PortError::NotFound { .. })), "a missing file is not found");
    files
        .delete(&["files/000000000001-a/seg.idx".to_owned(), "files/never-there".to_owned()])
        .await
        .expect("delete tolerates a missing file");
    assert!(matches!(files.get("files/000000000001-a/seg.idx").await, Err(PortError::NotFound { .. })));
    assert!(files.list().await.expect("list").is_empty(), "a deleted file is not listed");
    files.delete(&[]).await.expect("nothing to delete");
}
