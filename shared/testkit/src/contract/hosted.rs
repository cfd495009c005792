//! The contract of a store that embeds for itself ([`HostedStore`]).

use quarry_core::hosted::{HostedDocument, HostedQuery, HostedStore, Stored};
use quarry_core::meta::ChunkMeta;
use quarry_core::{ContentHash, DocumentId, DocumentKey, Filter, Format, PortError};
use serde_json::json;

fn handle(stored: Stored) -> String {
    match stored {
        Stored::Attached { handle } => handle,
        Stored::Refused(f) => panic!("a plain text document was refused: {f:?}"),
    }
}

/// Documents stored whole and found by their words with their document and metadata; filters
/// applied inside the search, and one the store cannot express refused as bad input; a removed
/// handle gone from results, removing it twice harmless; a document stored again gets a new
/// handle; the size reported grows with what is stored.
pub async fn hosted_store<H: HostedStore>(store: &H) {
    assert!(store.max_results() >= 10, "a store answers at least a page");
    assert!(!store.model().is_empty());
    let docs = [
        ("contract/pump.md", Format::Markdown, "The pump station restarts at dawn after the pressure check."),
        ("contract/budget.txt", Format::Text, "The budget for the replacement was approved in March."),
    ];
    let mut handles = Vec::new();
    for (key, format, text) in docs {
        let key = DocumentKey::new(key);
        let document = DocumentId::for_key(&key);
        let hash = ContentHash::of(text.as_bytes());
        let meta = ChunkMeta::new(key, format);
        handles.push(handle(
            store
                .put(HostedDocument { document: &document, content_hash: &hash, text, meta: &meta })
                .await
                .expect("put"),
        ));
    }
    assert_ne!(handles[0], handles[1], "each document has its own handle");
    assert!(store.usage_bytes().await.expect("size") > 0, "what is stored has a size");

    let query = |text: &str, filter: Option<Filter>| HostedQuery { text: text.to_owned(), top_k: 5, filter };
    let pump = DocumentId::for_key(&DocumentKey::new("contract/pump.md"));
    let hits = store.search(&query("pump station restarts", None)).await.expect("search");
    let top = hits.first().expect("a hit");
    assert_eq!(top.handle, handles[0], "a hit names the file it came from");
    let top = &top.hit;
    assert_eq!((&top.document, top.meta.key.as_str(), top.meta.format), (&pump, "contract/pump.md", Format::Markdown));
    assert!(top.text.contains("restarts at dawn"), "{}", top.text);
    assert!(hits.iter().all(|h| (0.0..=1.0).contains(&h.hit.score)), "scores in [0, 1]");
    assert!(hits.windows(2).all(|w| w[0].hit.score >= w[1].hit.score), "best first");

    let only_text = Filter::parse(&json!({"format": "text"})).expect("filter");
    let hits = store.search(&query("the replacement pump", Some(only_text))).await.expect("search");
    assert!(!hits.is_empty() && hits.iter().all(|h| h.hit.meta.format == Format::Text), "filtered inside: {hits:?}");
    let untranslatable = Filter::parse(&json!({"key": {"$startsWith": "contract/"}})).expect("filter");
    match store.search(&query("pump", Some(untranslatable))).await {
        Err(PortError::InvalidInput { .. }) => {}
        other => panic!("a filter the store cannot express is refused as bad input: {other:?}"),
    }

    // The same document stored again (a crash before its checkpoint, then the retry): a new
    // handle, and each copy's hits name their own, so the query half can keep the checkpointed one.
    let (key, format, text) = docs[0];
    let (key, hash) = (DocumentKey::new(key), ContentHash::of(text.as_bytes()));
    let meta = ChunkMeta::new(key, format);
    let doc = HostedDocument { document: &pump, content_hash: &hash, text, meta: &meta };
    let again = handle(store.put(doc).await.expect("put again"));
    assert!(!handles.contains(&again), "a new handle");
    let hits = store.search(&query("pump station restarts", None)).await.expect("search");
    let mut named: Vec<&str> = hits.iter().filter(|h| h.hit.document == pump).map(|h| h.handle.as_str()).collect();
    named.sort_unstable();
    let mut both = [handles[0].as_str(), again.as_str()];
    both.sort_unstable();
    assert_eq!(named, both, "{hits:?}");
    store.remove(&again).await.expect("remove");

    store.remove(&handles[0]).await.expect("remove");
    store.remove(&handles[0]).await.expect("removing twice is fine");
    let hits = store.search(&query("pump station restarts", None)).await.expect("search");
    assert!(hits.iter().all(|h| h.hit.document != pump), "a removed document is not found: {hits:?}");
    store.remove(&handles[1]).await.expect("remove");
}
