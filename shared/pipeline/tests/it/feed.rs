//! Every path of a document's lifecycle tells the published keyword index what changed, through
//! `Feeding` around the vector writer: indexed, replaced by a shorter version, rejected, forgotten.
//! The change names the document's new chunk count, so the single writer reads back exactly what
//! the vector store holds (docs/AWS.md, the keyword index).

use quarry_core::keywords::ChunkChange;
use quarry_core::ports::VectorWriter;
use quarry_core::{DocumentId, DocumentKey, Failure};
use quarry_pipeline::{Feeding, Outcome, forget, reject};
use quarry_testkit::fakes::MemoryVectors;
use quarry_testkit::keywords::MemoryChanges;

use crate::reconcile::{Stores, id, long_text};

fn sent(changes: &MemoryChanges) -> Vec<(DocumentId, u32)> {
    changes.drain().into_iter().map(|ChunkChange { document, chunks }| (document, chunks)).collect()
}

#[tokio::test]
async fn each_lifecycle_step_sends_the_documents_new_chunk_count() {
    let s = Stores::new();
    let changes = MemoryChanges::default();
    let feeding = Feeding { writer: s.vectors.clone(), feed: Some(changes.clone()) };
    let stored = |v: &MemoryVectors| u32::try_from(v.ids().len()).expect("few");

    s.source.put("doc.txt", long_text("rye").as_bytes(), None);
    let Outcome::Indexed { chunks, .. } = s.index_with(&feeding, "doc.txt").await else { panic!("indexed") };
    assert!(chunks > 1);
    assert_eq!(sent(&changes), [(id("doc.txt"), chunks)], "indexed: all its chunks");
    assert_eq!(stored(&s.vectors), chunks);

    s.source.put("doc.txt", b"Now one short paragraph about rye.", None);
    assert!(matches!(s.index_with(&feeding, "doc.txt").await, Outcome::Indexed { chunks: 1, .. }));
    assert_eq!(sent(&changes), [(id("doc.txt"), 1)], "replaced: the tail past the new count is dropped");
    assert_eq!(stored(&s.vectors), 1);

    // Unchanged content writes nothing, so it sends nothing.
    assert!(matches!(s.index_with(&feeding, "doc.txt").await, Outcome::Unchanged { .. }));
    assert!(sent(&changes).is_empty());

    let key = DocumentKey::new("doc.txt");
    let failure = Failure { code: "encrypted_pdf".into(), message: "the PDF is encrypted".into(), retryable: false };
    reject(&s.state, &feeding, None, &key, &failure).await.expect("reject");
    assert_eq!(sent(&changes), [(id("doc.txt"), 0)], "rejected: none of the old version answers");
    assert_eq!(stored(&s.vectors), 0);

    forget(&s.state, &feeding, None, &id("doc.txt")).await.expect("forget");
    assert_eq!(sent(&changes), [(id("doc.txt"), 0)], "forgotten: sent again, harmless to the writer");

    // No feed configured: the writes alone.
    let plain = Feeding { writer: s.vectors.clone(), feed: None::<MemoryChanges> };
    plain.delete_from(&id("doc.txt"), 0).await.expect("delete");
    assert!(sent(&changes).is_empty());
}
