//! Reconciliation and estimates in the pipeline itself, on the in-memory ports and the real
//! preparer: every kind of drift injected into indexed stores is found by `verify`, named by kind,
//! and settled by `repair` plus indexing what it hands back; an estimate counts what indexing
//! would send, no more. (The CLI's tests run the same over SQLite and a folder; these pin the
//! pipeline's own rules, which both deployments share.)

use std::time::Duration;

use quarry_core::keywords::ChunkReader;
use quarry_core::ports::{BatchRequest, CheckpointStore, Usage, VectorRecord, VectorWriter};
use quarry_core::{ChunkId, Config, ContentHash, DocumentId, DocumentKey};
use quarry_pipeline::estimate::Estimator;
use quarry_pipeline::verify::{DriftKind, repair, verify};
use quarry_pipeline::{Indexer, Outcome};
use quarry_testkit::fakes::{LengthEmbedder, MemorySource, MemoryState, MemoryVectors};
use quarry_testkit::keywords::MemoryChanges;
use quarry_text::{Preparer, WordPiece};

pub(crate) struct Stores {
    pub(crate) source: MemorySource,
    pub(crate) state: MemoryState,
    pub(crate) vectors: MemoryVectors,
    embedder: LengthEmbedder,
    preparer: Preparer<WordPiece>,
    budget: quarry_core::config::Budget,
}

impl Stores {
    pub(crate) fn new() -> Self {
        let model = quarry_testkit::model_dir();
        let tokenizer = WordPiece::from_file(&model.join("tokenizer.json")).expect("tokenizer");
        Stores {
            source: MemorySource::default(),
            state: MemoryState::default(),
            vectors: MemoryVectors::new(2),
            embedder: LengthEmbedder::default(),
            preparer: Preparer::new(&Config::default(), tokenizer),
            budget: quarry_core::config::Budget::default(),
        }
    }

    pub(crate) async fn index(&self, key: &str) -> Outcome {
        self.index_with(&self.vectors, key).await
    }

    /// Indexes `key` with `writer` in place of the vector store.
    pub(crate) async fn index_with<W: VectorWriter>(&self, writer: &W, key: &str) -> Outcome {
        let indexer = Indexer {
            source: &self.source,
            state: &self.state,
            embedder: &self.embedder,
            cache: &self.state,
            writer,
            preparer: &self.preparer,
            lease: Duration::from_secs(60),
            spend: &quarry_core::spend::NoLedger,
            budget: &self.budget,
            hosted: None,
        };
        indexer.index(&DocumentKey::new(key)).await.expect("index")
    }

    fn estimator<'a>(
        &'a self,
        price: &'a (dyn Fn(&[String]) -> Usage + Send + Sync),
    ) -> Estimator<'a, MemorySource, MemoryState, MemoryState, Preparer<WordPiece>> {
        Estimator {
            source: &self.source,
            reader: Some(&self.state),
            cache: Some(&self.state),
            preparer: &self.preparer,
            model: &self.embedder.0,
            price,
            hosted: None,
        }
    }
}

pub(crate) fn id(key: &str) -> DocumentId {
    DocumentId::for_key(&DocumentKey::new(key))
}

/// Many paragraphs: a document of several chunks.
pub(crate) fn long_text(topic: &str) -> String {
    (0..80)
        .map(|i| format!("Paragraph {i} on {topic}: fibre, oats, barley and the cholesterol they lower.\n\n"))
        .collect()
}

#[tokio::test]
async fn every_kind_of_drift_is_found_and_repair_settles_it() {
    let s = Stores::new();
    for (key, text) in [
        ("docs/a.txt", "Calcium keeps bones strong.".to_owned()),
        ("docs/b.txt", "Vitamin D is made in the skin under sunlight.".to_owned()),
        ("docs/c.txt", "Iron is carried in the blood by haemoglobin.".to_owned()),
        ("docs/long.txt", long_text("grains")),
        ("other/x.txt", "Outside the prefix verified.".to_owned()),
    ] {
        s.source.put(key, text.as_bytes(), None);
        assert!(matches!(s.index(key).await, Outcome::Indexed { .. }), "{key} indexed");
    }
    let none = None::<&MemoryVectors>;
    let clean = verify(&s.source, "docs/", &s.state, &s.vectors, none).await.expect("verify");
    assert!(clean.is_clean(), "{:?}", clean.drift);
    assert_eq!((clean.objects, clean.documents, clean.stored_documents), (4, 5, 5), "the prefix bounds objects only");
    let long_chunks =
        s.vectors.ids().iter().filter(|c| c.parts().is_some_and(|(d, _)| d == id("docs/long.txt"))).count();
    assert!(long_chunks >= 3, "the long document has several chunks ({long_chunks})");

    // One drift of each kind the vector store can have, and one document in flight.
    s.vectors.delete_from(&id("docs/long.txt"), 1).await.expect("cut"); // missing vectors
    let b = s.vectors.chunks(&id("docs/b.txt"), 1).await.expect("read").remove(0);
    let record = |document: &DocumentId, ordinal| VectorRecord {
        id: ChunkId::new(document, ordinal),
        document: document.clone(),
        vector: vec![1.0, 0.0],
        text: b.text.clone(),
        pages: b.pages,
        span: b.span,
        meta: b.meta.clone(),
    };
    s.vectors.upsert(&[record(&id("docs/b.txt"), 1)]).await.expect("tail"); // stale tail
    s.vectors.upsert(&[record(&id("docs/orphan.txt"), 0)]).await.expect("orphan"); // orphan vectors
    s.source.put("docs/new.txt", b"Zinc helps wounds heal.", None); // never indexed
    s.source.delete("docs/c.txt"); // object gone
    s.source.delete("other/x.txt"); // gone, but outside the prefix: not judged
    s.source.put("docs/busy.txt", b"Being indexed right now.", None);
    s.state
        .acquire(&id("docs/busy.txt"), &ContentHash::of(b"Being indexed right now."), Duration::from_secs(60))
        .await
        .expect("lease");

    let report = verify(&s.source, "docs/", &s.state, &s.vectors, none).await.expect("verify");
    let found: Vec<(DriftKind, DocumentId)> = report.drift.iter().map(|d| (d.kind, d.document.clone())).collect();
    assert_eq!(
        found,
        vec![
            (DriftKind::MissingVectors, id("docs/long.txt")),
            (DriftKind::StaleTail, id("docs/b.txt")),
            (DriftKind::OrphanVectors, id("docs/orphan.txt")),
            (DriftKind::Unindexed, id("docs/new.txt")),
            (DriftKind::ObjectGone, id("docs/c.txt")),
        ],
        "each drift once, by kind"
    );
    assert_eq!(report.in_flight, 1, "the leased document is left to its worker");
    let missing = &report.drift[0];
    assert_eq!((missing.checkpointed, missing.stored), (Some(u32::try_from(long_chunks).expect("few")), 1));
    assert_eq!(report.drift[1].checkpointed, Some(1));
    assert_eq!(report.drift[2].key, None, "no state names the orphan");
    assert_eq!(report.counts().values().sum::<usize>(), 5);
    assert_eq!(report.counts()["keywords_out_of_step"], 0, "every kind is named, found or not");

    let feed = None::<&MemoryChanges>;
    let repaired = repair(&report, &s.state, &s.vectors, None, feed).await.expect("repair");
    assert_eq!(repaired.forgotten, 2, "the gone object and the document to index afresh");
    // b's tail (1), the orphan (1), c's chunk (1) and what was left of the long document (1).
    assert_eq!(repaired.chunks_removed, 4);
    let reindex: Vec<&str> = repaired.reindex.iter().map(DocumentKey::as_str).collect();
    assert_eq!(reindex, ["docs/long.txt", "docs/new.txt"]);
    for key in &repaired.reindex {
        assert!(matches!(s.index(key.as_str()).await, Outcome::Indexed { .. }), "{key} indexed afresh");
    }

    let after = verify(&s.source, "docs/", &s.state, &s.vectors, none).await.expect("verify");
    assert!(after.is_clean(), "{:?}", after.drift);
    assert_eq!(after.in_flight, 1);
    // Nothing left to do: a repair of the clean report changes nothing.
    let again = repair(&after, &s.state, &s.vectors, None, feed).await.expect("repair");
    assert_eq!(again, quarry_pipeline::verify::Repaired::default());
}

#[tokio::test]
async fn a_keyword_index_out_of_step_is_sent_back_to_its_indexer() {
    let s = Stores::new();
    for key in ["a.txt", "b.txt"] {
        s.source.put(key, format!("{key}: magnesium relaxes muscles.").as_bytes(), None);
        assert!(matches!(s.index(key).await, Outcome::Indexed { .. }));
    }
    // The keyword index holds a's chunk and a chunk of a document the vector store has dropped;
    // b's is missing.
    let keywords = MemoryVectors::new(2);
    let a = s.vectors.chunks(&id("a.txt"), 1).await.expect("read").remove(0);
    let copy = |document: &DocumentId| VectorRecord {
        id: ChunkId::new(document, 0),
        document: document.clone(),
        vector: vec![1.0, 0.0],
        text: a.text.clone(),
        pages: a.pages,
        span: a.span,
        meta: a.meta.clone(),
    };
    keywords.upsert(&[copy(&id("a.txt")), copy(&id("dropped.txt"))]).await.expect("upsert");

    let report = verify(&s.source, "", &s.state, &s.vectors, Some(&keywords)).await.expect("verify");
    let found: Vec<(DriftKind, DocumentId, Option<u32>, u32)> =
        report.drift.iter().map(|d| (d.kind, d.document.clone(), d.keyword_chunks, d.stored)).collect();
    let mut expected = vec![
        (DriftKind::KeywordsOutOfStep, id("b.txt"), Some(0), 1),
        (DriftKind::KeywordsOutOfStep, id("dropped.txt"), Some(1), 0),
    ];
    expected.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(found, expected);

    let changes = MemoryChanges::default();
    let repaired = repair(&report, &s.state, &s.vectors, None, Some(&changes)).await.expect("repair");
    assert_eq!((repaired.keyword_changes, repaired.chunks_removed), (2, 0), "the vector store is left alone");
    let sent: Vec<(DocumentId, u32)> = changes.drain().into_iter().map(|c| (c.document, c.chunks)).collect();
    let mut want = vec![(id("b.txt"), 1), (id("dropped.txt"), 0)];
    want.sort();
    assert_eq!(sent, want, "the indexer reads back every stored chunk, or drops the document");
}

#[tokio::test]
async fn an_estimate_counts_what_indexing_would_send_and_nothing_is_written() {
    let s = Stores::new();
    let shared = long_text("oats");
    s.source.put("one.txt", shared.as_bytes(), None);
    // The same paragraphs again, and one more of its own: all but its last chunk are priced once.
    s.source.put("two.txt", format!("{shared}A last word on rye bread and its fibre.").as_bytes(), None);
    s.source.put("locked.pdf", &quarry_testkit::encrypted_pdf(&["secret"]), None);
    s.source.put("huge.txt", &vec![b'a'; 60 * 1024 * 1024], None);
    // A token per character, a nanodollar per token.
    let price = |texts: &[String]| {
        let tokens = texts.iter().map(|t| t.chars().count() as u64).sum();
        Usage { tokens, nanodollars: tokens }
    };
    let everything = BatchRequest { prefix: Some(String::new()), keys: Vec::new() };
    let first = s.estimator(&price).estimate_request(&everything).await.expect("estimate");
    assert_eq!(first.documents, 4);
    assert_eq!(first.failing, 2, "the encrypted PDF and the file over the size limit: {first:?}");
    assert_eq!((first.unchanged, first.model.as_str()), (0, "lengths"));
    assert!(first.chunks >= 6, "{first:?}");
    assert!(first.cached > 0 && first.cached < first.chunks, "two's repeated chunks are priced once: {first:?}");
    assert!(first.usage.tokens > 0 && first.usage.tokens == first.usage.nanodollars);
    assert!(s.vectors.ids().is_empty(), "an estimate writes nothing");

    // What indexing then sends is what was priced.
    let mut billed = 0;
    for key in ["one.txt", "two.txt"] {
        let Outcome::Indexed { chunks, .. } = s.index(key).await else { panic!("{key} indexed") };
        billed += u64::from(chunks);
    }
    assert_eq!(billed, first.chunks);

    // Indexed content costs nothing; a key that names nothing is counted failing and listed.
    let keys =
        BatchRequest { prefix: None, keys: ["one.txt", "two.txt", "nowhere.txt"].map(DocumentKey::new).to_vec() };
    let second = s.estimator(&price).estimate_request(&keys).await.expect("estimate");
    assert_eq!((second.documents, second.unchanged, second.failing), (3, 2, 1));
    assert_eq!(second.missing, [DocumentKey::new("nowhere.txt")]);
    assert_eq!((second.chunks, second.usage.tokens), (0, 0));

    // Changed content whose chunks are in the embedding cache: counted, cached, not priced.
    s.source.put("one.txt", format!("{shared}\n").as_bytes(), None);
    let third = s.estimator(&price).estimate_request(&keys).await.expect("estimate");
    assert_eq!(third.unchanged, 1);
    assert!(third.chunks > 0 && third.cached == third.chunks, "{third:?}");
    assert_eq!(third.usage.tokens, 0);
}
