//! The indexing step end to end on the embedded adapters: real files in a folder, the real model,
//! real SQLite. Re-runs embed nothing, changes re-index and drop stale chunks, bad files are
//! recorded with their reason, deletions empty the index.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quarry_core::ports::{Embedder, ModelInfo, VectorQuery, VectorSearcher};
use quarry_core::{Config, DocumentId, DocumentKey, PortError};
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_local::{FolderSource, SqliteStore};
use quarry_pipeline::{Indexer, Outcome};
use quarry_text::{Preparer, WordPiece};

/// The real embedder, counting the texts it is asked to embed.
struct Counting {
    inner: LocalEmbedder,
    texts: AtomicUsize,
}

impl Embedder for Counting {
    fn model(&self) -> &ModelInfo {
        self.inner.model()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, PortError> {
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        self.inner.embed(texts).await
    }
}

async fn search(e: &LocalEmbedder, store: &SqliteStore, q: &str) -> Vec<quarry_core::ports::VectorHit> {
    let v = e.embed_blocking(&[q]).expect("embed").remove(0);
    store.search(&VectorQuery { vector: v, top_k: 3, filter: None }).await.expect("search")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_a_folder_and_follows_its_changes() {
    let root = std::env::temp_dir().join(format!("quarry-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let files = root.join("bucket");
    std::fs::create_dir_all(files.join("notes")).expect("mkdir");
    let long: String =
        (0..60).map(|i| format!("Paragraph {i} is about dietary fiber, oats and cholesterol.\n\n")).collect();
    std::fs::write(files.join("notes/fiber.md"), format!("# Fiber\n\n{long}")).expect("write");
    std::fs::write(
        files.join("vitamin d.txt"),
        "Vitamin D is made in the skin under sunlight and helps absorb calcium.",
    )
    .expect("write");
    std::fs::write(
        files.join("omega.html"),
        "<html><body><p>Omega-3 fatty acids come from fish and walnuts.</p></body></html>",
    )
    .expect("write");
    std::fs::write(files.join("locked.pdf"), quarry_testkit::encrypted_pdf(&["secret"])).expect("write");

    let model_dir = quarry_testkit::model_dir();
    let embedder = Counting {
        inner: LocalEmbedder::load(&model_dir, EmbedOptions { threads: 2, batch_size: 32, ..EmbedOptions::default() })
            .expect("model"),
        texts: AtomicUsize::new(0),
    };
    let config = Config::default();
    let preparer = Preparer::new(&config, WordPiece::from_file(&model_dir.join("tokenizer.json")).expect("tokenizer"));
    let store = SqliteStore::open(&root.join("state.db"), 384).expect("store");
    let source = FolderSource::new(&files);
    let indexer = Indexer {
        source: &source,
        state: &store,
        embedder: &embedder,
        cache: &store,
        writer: &store,
        preparer: &preparer,
        lease: Duration::from_secs(60),
        spend: &quarry_core::spend::NoLedger,
        budget: &config.budget,
        hosted: None,
    };
    let keys: Vec<DocumentKey> =
        quarry_core::ports::BlobSource::list(&source, "").await.expect("list").into_iter().map(|b| b.key).collect();
    assert_eq!(
        keys.iter().map(DocumentKey::as_str).collect::<Vec<_>>(),
        ["locked.pdf", "notes/fiber.md", "omega.html", "vitamin d.txt"]
    );

    // First run: three indexed, the encrypted PDF failed with its reason.
    let mut chunks = 0;
    for k in &keys {
        match indexer.index(k).await.expect("index") {
            Outcome::Indexed { chunks: n, .. } => chunks += n,
            Outcome::Failed { failure, .. } => {
                assert_eq!(k.as_str(), "locked.pdf");
                assert_eq!(failure.code, "encrypted_pdf");
                assert!(!failure.retryable);
            }
            other => panic!("{k}: {other:?}"),
        }
    }
    let fiber = DocumentId::for_key(&DocumentKey::new("notes/fiber.md"));
    let fiber_chunks = store.chunk_ids(&fiber).expect("chunks").len();
    assert!(fiber_chunks >= 3, "the long file spans several chunks: {fiber_chunks}");
    assert_eq!(embedder.texts.load(Ordering::SeqCst), chunks as usize);

    let vitamin = DocumentId::for_key(&DocumentKey::new("vitamin d.txt"));
    assert_eq!(search(&embedder.inner, &store, "sunlight and calcium absorption").await[0].document, vitamin);

    // Second run over the unchanged folder embeds nothing.
    let before = embedder.texts.load(Ordering::SeqCst);
    for k in keys.iter().filter(|k| k.as_str() != "locked.pdf") {
        assert!(matches!(indexer.index(k).await.expect("index"), Outcome::Unchanged { .. }), "{k}");
    }
    assert_eq!(embedder.texts.load(Ordering::SeqCst), before, "a re-run embeds 0 chunks");

    // Editing the end of a long file re-embeds only the chunks whose text changed.
    let edited = format!("# Fiber\n\n{long}A closing remark on whole grains, added later.\n");
    std::fs::write(files.join("notes/fiber.md"), &edited).expect("write");
    let before = embedder.texts.load(Ordering::SeqCst);
    let Outcome::Indexed { chunks: n, .. } = indexer.index(&DocumentKey::new("notes/fiber.md")).await.expect("index")
    else {
        panic!("the edited file is re-indexed");
    };
    let embedded = embedder.texts.load(Ordering::SeqCst) - before;
    assert!(
        embedded >= 1 && embedded < n as usize,
        "{embedded} of {n} chunks re-embedded; the rest came from the cache"
    );

    // A shorter new version drops the stale tail; a file replaced by a corrupt one loses its chunks.
    let shorter = "# Fiber\n\nOats are rich in soluble fiber.";
    std::fs::write(files.join("notes/fiber.md"), shorter).expect("write");
    assert_eq!(
        indexer.index(&DocumentKey::new("notes/fiber.md")).await.expect("index"),
        Outcome::Indexed { chunks: 1, bytes: shorter.len() as u64, usage: quarry_core::ports::Usage::default() }
    );
    assert_eq!(store.chunk_ids(&fiber).expect("chunks").len(), 1);
    std::fs::write(files.join("omega.html"), b"\x89PNG\r\n\x1a\nnot html any more").expect("write");
    assert!(matches!(indexer.index(&DocumentKey::new("omega.html")).await.expect("index"), Outcome::Failed { .. }));
    let omega = DocumentId::for_key(&DocumentKey::new("omega.html"));
    assert!(store.chunk_ids(&omega).expect("chunks").is_empty(), "no stale chunks of the old version");

    // Deleting a file removes it from results.
    std::fs::remove_file(files.join("vitamin d.txt")).expect("rm");
    assert_eq!(indexer.remove(&DocumentKey::new("vitamin d.txt")).await.expect("remove"), 1);
    assert!(
        search(&embedder.inner, &store, "sunlight and calcium absorption").await.iter().all(|h| h.document != vitamin)
    );
    assert!(matches!(indexer.index(&DocumentKey::new("vitamin d.txt")).await, Err(PortError::NotFound { .. })));
    let _ = std::fs::remove_dir_all(&root);
}
