//! The embedding cache's contract: what every adapter (SQLite, DynamoDB, memory) keeps and
//! returns, and how it is reported on and cleared.

use quarry_core::ContentHash;
use quarry_core::ports::{EmbeddingCache, ModelInfo};

/// Cached vectors come back only for the same model, dimension and text.
pub async fn embedding_cache<S: EmbeddingCache>(store: &S) {
    let model = ModelInfo { id: "contract/model-a".into(), dimension: 3, max_tokens: 256 };
    let other = ModelInfo { id: "contract/model-b".into(), dimension: 3, max_tokens: 256 };
    let wider = ModelInfo { id: "contract/model-a".into(), dimension: 4, max_tokens: 256 };
    let (a, b, c) = (ContentHash::of_text("alpha"), ContentHash::of_text("beta"), ContentHash::of_text("gamma"));
    assert_eq!(store.get(&model, &[a.clone(), b.clone()]).await.expect("get"), vec![None, None]);
    store.put(&model, &[(a.clone(), vec![1.0, 0.0, 0.0]), (b.clone(), vec![0.0, 1.0, 0.0])]).await.expect("put");
    store.put(&model, &[(a.clone(), vec![1.0, 0.0, 0.0])]).await.expect("putting again is fine");
    assert_eq!(
        store.get(&model, &[b.clone(), c.clone(), a.clone()]).await.expect("get"),
        vec![Some(vec![0.0, 1.0, 0.0]), None, Some(vec![1.0, 0.0, 0.0])],
        "entries come back in the order asked, None where missing"
    );
    assert_eq!(
        store.get(&other, std::slice::from_ref(&a)).await.expect("get"),
        vec![None],
        "another model's vectors never mix in"
    );
    assert_eq!(store.get(&wider, &[a]).await.expect("get"), vec![None], "nor another dimension's");
    assert!(store.get(&model, &[]).await.expect("empty").is_empty());
    // Stored compactly (f16, int8) a vector comes back in its direction, at unit length.
    let d = ContentHash::of_text("delta");
    store.put(&model, &[(d.clone(), vec![0.6, 0.8, 0.0])]).await.expect("put");
    let back = store.get(&model, &[d]).await.expect("get").pop().flatten().expect("cached");
    let cosine = back[0] * 0.6 + back[1] * 0.8 + back[2] * 0.0;
    let norm = back.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(cosine > 0.999 && (norm - 1.0).abs() < 1e-4, "{back:?}");
}

/// The cache reported per model and cleared by model and by last use, and only what was asked.
pub async fn cache_admin<S: EmbeddingCache + quarry_core::cache::CacheAdmin>(store: &S) {
    use quarry_core::cache::CacheFilter;
    let a = ModelInfo { id: "contract/admin-a".into(), dimension: 3, max_tokens: 256 };
    let b = ModelInfo { id: "contract/admin-b".into(), dimension: 3, max_tokens: 256 };
    let h = |t: &str| ContentHash::of_text(t);
    let v = vec![1.0, 0.0, 0.0];
    store.put(&a, &[(h("one"), v.clone()), (h("two"), v.clone())]).await.expect("put");
    store.put(&b, &[(h("one"), v.clone())]).await.expect("put");
    let ours = |all: Vec<quarry_core::cache::CacheStats>| -> Vec<(String, u64)> {
        all.into_iter().filter(|s| s.model.starts_with("contract/admin-")).map(|s| (s.model, s.entries)).collect()
    };
    let stats = store.cache_stats().await.expect("stats");
    assert_eq!(ours(stats.clone()), [("contract/admin-a".into(), 2), ("contract/admin-b".into(), 1)], "{stats:?}");
    let sa = stats.iter().find(|s| s.model == "contract/admin-a").expect("a");
    assert!(sa.bytes > 2 * 32 && sa.dimension == 3 && sa.oldest_ms <= sa.newest_ms && sa.oldest_ms > 0, "{sa:?}");

    let removed = store.clear_cache(&CacheFilter { model: Some(b.id.clone()), unused_since_ms: None }).await;
    assert_eq!(removed.expect("clear"), 1, "one model's entries");
    assert_eq!(store.get(&b, &[h("one")]).await.expect("get"), vec![None]);
    assert_eq!(store.get(&a, &[h("one")]).await.expect("get"), vec![Some(v.clone())], "the other's stay");

    // Older than a moment: what was written (or used) before it goes, what came after stays.
    std::thread::sleep(std::time::Duration::from_millis(30));
    let cut = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    std::thread::sleep(std::time::Duration::from_millis(30));
    store.put(&a, &[(h("three"), v.clone())]).await.expect("put");
    let removed = store.clear_cache(&CacheFilter { model: Some(a.id.clone()), unused_since_ms: Some(cut) }).await;
    assert_eq!(removed.expect("clear"), 2, "the two written before");
    assert_eq!(store.get(&a, &[h("one"), h("three")]).await.expect("get"), vec![None, Some(v)]);
    let removed = store.clear_cache(&CacheFilter { model: Some(a.id.clone()), unused_since_ms: None }).await;
    assert_eq!(removed.expect("clear"), 1);
    assert_eq!(ours(store.cache_stats().await.expect("stats")), []);
}
