//! Port contract suites: the behaviour every adapter of a port must show, whatever its backend.
//! The embedded adapters run them on SQLite; the AWS adapters run the same suites on moto.
//! Each suite takes a fresh, empty store.

use std::time::Duration;

use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{
    BatchOutcome, BatchTracker, Checkpoint, CheckpointStore, DocumentReader, FieldCatalog, KeywordQuery,
    KeywordSearcher, Lease, ValueCount, VectorQuery, VectorRecord, VectorSearcher, VectorWriter,
};
use quarry_core::{
    BatchCounters, BatchId, CharSpan, ChunkId, ContentHash, DocumentId, DocumentKey, DocumentStatus, Failure, Format,
    PageRange,
};

mod cache;
mod census;
mod hosted;
mod index_files;
mod spend;
pub use cache::{cache_admin, embedding_cache};
pub use census::{state_census, vector_census};
pub use hosted::hosted_store;
pub use index_files::index_files;
pub use spend::spend_ledger;

fn doc(name: &str) -> (DocumentKey, DocumentId) {
    let key = DocumentKey::new(name);
    let id = DocumentId::for_key(&key);
    (key, id)
}

fn acquired(l: &Lease) -> Option<u32> {
    match l {
        Lease::Acquired { attempt, .. } => Some(*attempt),
        _ => None,
    }
}

/// Leases, checkpoints, duplicate deliveries, changed content, failures, expiry and forgetting, as
/// the document reader sees them.
pub async fn checkpoint_store<S: CheckpointStore + DocumentReader>(store: &S) {
    let (key, id) = doc("contract/a.txt");
    let (h1, h2) = (ContentHash::of(b"version one"), ContentHash::of(b"version two"));
    let long = Duration::from_secs(60);

    let first = store.acquire(&id, &h1, long).await.expect("acquire");
    assert_eq!(acquired(&first), Some(1), "a new document is acquired on attempt 1: {first:?}");
    assert_eq!(store.acquire(&id, &h1, long).await.expect("acquire"), Lease::Busy, "a held lease is busy");

    let cp = Checkpoint {
        document: id.clone(),
        key: key.clone(),
        content_hash: h1.clone(),
        chunks: 3,
        model: "m".into(),
        handle: None,
    };
    assert_eq!(
        store.document(&id).await.expect("read").map(|d| d.status),
        Some(DocumentStatus::Processing { attempt: 1 })
    );
    store.checkpoint(&cp).await.expect("checkpoint");
    assert_eq!(store.checkpoint(&cp).await.map(|_| ()).ok(), Some(()), "checkpoints are idempotent");
    let read = store.document(&id).await.expect("read").expect("a checkpointed document is known");
    assert_eq!(
        (read.key.as_ref(), read.content_hash.as_ref(), read.model.as_deref(), &read.status),
        (Some(&key), Some(&h1), Some("m"), &DocumentStatus::Indexed { chunks: 3 })
    );
    assert_eq!(store.document(&doc("contract/never.txt").1).await.expect("read"), None, "an unknown id is None");
    assert_eq!(
        store.acquire(&id, &h1, long).await.expect("acquire"),
        Lease::AlreadyIndexed { chunks: 3, indexed_ms: read.updated_ms },
        "a duplicate delivery of indexed content does nothing, and says what was indexed when"
    );

    assert_eq!(store.handle(&id).await.expect("handle"), None, "a vector store's checkpoint has no handle");
    // A hosted store's handle: kept through the next lease and a failure (the file is still
    // there to remove), replaced by the next checkpoint, gone with the document.
    store.checkpoint(&Checkpoint { handle: Some("file-1".into()), ..cp.clone() }).await.expect("checkpoint");
    assert_eq!(store.handle(&id).await.expect("handle").as_deref(), Some("file-1"));
    let read = store.document(&id).await.expect("read").expect("known");
    assert_eq!(read.handle.as_deref(), Some("file-1"), "the reader sees the handle search results are checked against");
    assert_eq!(store.handle(&doc("contract/never.txt").1).await.expect("handle"), None);

    let changed = store.acquire(&id, &h2, long).await.expect("acquire");
    assert_eq!(store.handle(&id).await.expect("handle").as_deref(), Some("file-1"), "a lease keeps the handle");
    assert_eq!(acquired(&changed), Some(1), "changed content is processed again: {changed:?}");
    let failure = Failure { code: "corrupt_pdf".into(), message: "the PDF is corrupt".into(), retryable: false };
    store.fail(&id, &key, &failure).await.expect("fail");
    assert_eq!(store.handle(&id).await.expect("handle").as_deref(), Some("file-1"), "a failure keeps the handle");
    let read = store.document(&id).await.expect("read").expect("a failed document is known");
    assert_eq!((read.key.as_ref(), &read.status), (Some(&key), &DocumentStatus::Failed { failure: failure.clone() }));
    let retry = store.acquire(&id, &h2, long).await.expect("acquire");
    assert_eq!(acquired(&retry), Some(2), "a failed document can be retried, counting attempts: {retry:?}");
    // A lease given back (a budget ran out) leaves the document pending, free to take at once.
    store.release(&id).await.expect("release");
    assert_eq!(store.document(&id).await.expect("read").map(|d| d.status), Some(DocumentStatus::Pending));
    assert_eq!(acquired(&store.acquire(&id, &h2, long).await.expect("acquire")), Some(3), "released means free");

    // A worker that dies holding a lease delays the document only until the lease expires.
    let (_, crashed) = doc("contract/crashed.txt");
    let short = Duration::from_millis(300);
    assert_eq!(acquired(&store.acquire(&crashed, &h1, short).await.expect("acquire")), Some(1));
    assert_eq!(store.acquire(&crashed, &h1, short).await.expect("acquire"), Lease::Busy);
    // A blocking sleep keeps the suite independent of any async runtime.
    std::thread::sleep(Duration::from_millis(450));
    let after = store.acquire(&crashed, &h1, short).await.expect("acquire");
    assert_eq!(acquired(&after), Some(2), "an expired lease is taken over: {after:?}");

    store.forget(&id).await.expect("forget");
    store.forget(&id).await.expect("forgetting twice is fine");
    assert_eq!(store.document(&id).await.expect("read"), None, "a forgotten document is unknown");
    assert_eq!(store.handle(&id).await.expect("handle"), None, "a forgotten document has no handle");
    assert_eq!(acquired(&store.acquire(&id, &h1, long).await.expect("acquire")), Some(1), "forgotten means new");
}

fn record(id: &DocumentId, ordinal: u32, vector: Vec<f32>) -> VectorRecord {
    VectorRecord {
        id: ChunkId::new(id, ordinal),
        document: id.clone(),
        vector,
        text: format!("chunk {ordinal}"),
        pages: (ordinal > 0).then_some(PageRange { first: ordinal, last: ordinal + 1 }),
        span: CharSpan { start: 10 * ordinal as usize, end: 10 * ordinal as usize + 7 },
        meta: ChunkMeta::new(DocumentKey::new(format!("contract/{id}.md")), Format::Markdown),
    }
}

/// Upserts by chunk id, stale tails dropped by ordinal, similarity scores in [0, 1].
pub async fn vector_store<S: VectorWriter + VectorSearcher>(store: &S, dim: usize) {
    let axis = |i: usize| -> Vec<f32> { (0..dim).map(|j| if j == i { 1.0 } else { 0.01 }).collect() };
    let (_, a) = doc("contract/a.md");
    let (_, b) = doc("contract/b.md");
    let recs: Vec<VectorRecord> = (0..3)
        .map(|o| record(&a, o, axis(o as usize)))
        .chain((0..2).map(|o| record(&b, o, axis(3 + o as usize))))
        .collect();
    store.upsert(&recs).await.expect("upsert");
    store.upsert(&recs).await.expect("a duplicate delivery upserts the same ids");

    let search = |v: Vec<f32>, k: usize| VectorQuery { vector: v, top_k: k, filter: None };
    let hits = store.search(&search(axis(1), 100)).await.expect("search");
    assert_eq!(hits.len(), 5, "upserting twice does not duplicate: {hits:?}");
    assert_eq!(hits[0].id, ChunkId::new(&a, 1));
    assert_eq!(hits[0].document, a);
    let stored = record(&a, 1, Vec::new());
    assert_eq!(
        (&hits[0].text, hits[0].pages, hits[0].span, &hits[0].meta),
        (&stored.text, stored.pages, stored.span, &stored.meta),
        "a hit carries what was stored with its vector"
    );
    assert!((hits[0].score - 1.0).abs() < 1e-3, "identical vectors score 1: {}", hits[0].score);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "best first");
    assert!(hits.iter().all(|h| (0.0..=1.0).contains(&h.score)), "similarities in [0, 1]");
    assert_eq!(store.search(&search(axis(1), 2)).await.expect("search").len(), 2, "top_k is honoured");

    // Filters run inside the search: b's two chunks come back for k = 2 although a's are nearer.
    let as_txt: Vec<VectorRecord> = recs[3..]
        .iter()
        .cloned()
        .map(|mut r| {
            r.meta.format = Format::Text;
            r
        })
        .collect();
    store.upsert(&as_txt).await.expect("upsert b as txt");
    let filtered = |f: serde_json::Value, k: usize| VectorQuery {
        vector: axis(1),
        top_k: k,
        filter: Some(quarry_core::Filter::parse(&f).expect("valid filter")),
    };
    let hits = store.search(&filtered(serde_json::json!({"format": "text"}), 2)).await.expect("search");
    assert_eq!(hits.iter().map(|h| &h.document).collect::<Vec<_>>(), [&b, &b], "a filtered top-k stays full");
    let hits = store.search(&filtered(serde_json::json!({"format": {"$ne": "text"}}), 100)).await.expect("search");
    assert!(hits.len() == 3 && hits.iter().all(|h| h.document == a), "{hits:?}");
    let hits = store.search(&filtered(serde_json::json!({"format": {"$in": ["pdf"]}}), 10)).await.expect("search");
    assert!(hits.is_empty(), "nothing matches: {hits:?}");
    // The same filter, asked again after each write that changes its answer, follows it (a store
    // may keep a filter's answer between searches).
    let text = || filtered(serde_json::json!({"format": "text"}), 10);
    store.upsert(&recs[3..]).await.expect("b back to markdown");
    let hits = store.search(&text()).await.expect("search");
    assert!(hits.is_empty(), "a document whose metadata no longer matches is left out: {hits:?}");
    let (_, c) = doc("contract/c.md");
    let mut c0 = record(&c, 0, axis(0));
    c0.meta.format = Format::Text;
    store.upsert(&[c0]).await.expect("upsert c");
    let hits = store.search(&text()).await.expect("search");
    assert_eq!(hits.iter().map(|h| &h.document).collect::<Vec<_>>(), [&c], "a new matching document is found");
    store.delete_from(&c, 0).await.expect("delete c");
    assert!(store.search(&text()).await.expect("search").is_empty(), "a deleted document is not");

    // A new version of `a` with one chunk drops ordinals 1 and 2.
    assert_eq!(store.delete_from(&a, 1).await.expect("delete"), 2);
    assert_eq!(store.delete_from(&a, 1).await.expect("delete again"), 0, "deletes are idempotent");
    let left: Vec<ChunkId> =
        store.search(&search(axis(0), 100)).await.expect("search").into_iter().map(|h| h.id).collect();
    assert_eq!(left.len(), 3);
    assert!(left.contains(&ChunkId::new(&a, 0)) && !left.contains(&ChunkId::new(&a, 1)));
    assert_eq!(store.delete_from(&b, 0).await.expect("delete"), 2, "a deleted document loses every chunk");
    assert_eq!(store.search(&search(axis(0), 100)).await.expect("search").len(), 1);

    let bad = store.upsert(&[record(&a, 9, vec![1.0; dim + 1])]).await;
    assert!(bad.is_err(), "a vector of the wrong dimension is refused");
}

/// Counters that always add up, whatever the order or repetition of outcomes.
pub async fn batch_tracker<S: BatchTracker>(store: &S) {
    let batch = BatchId::new("contract-batch-1");
    let k = |n: &str| DocumentKey::new(format!("contract/{n}"));
    assert!(store.counters(&batch).await.is_err(), "an unknown batch is not found");
    let items = [(k("a.txt"), 100), (k("b.pdf"), 2_000), (k("c.md"), 300), (k("d.csv"), 40)];
    store.create(&batch, &items).await.expect("create");
    let want = |pending, done, failed, skipped, bytes_done| BatchCounters {
        total: 4,
        pending,
        done,
        failed,
        skipped,
        paused: 0,
        bytes_total: 2_440,
        bytes_done,
    };
    assert_eq!(store.counters(&batch).await.expect("counters"), want(4, 0, 0, 0, 0));
    let created = store.timing(&batch).await.expect("timing");
    assert!(created.created_ms > 0 && created.updated_ms.is_none(), "{created:?}");
    assert!(store.timing(&BatchId::new("contract-no-such-batch")).await.is_err(), "an unknown batch has no timing");

    let broken = Failure {
        code: "encrypted_pdf".into(),
        message: "the PDF is encrypted with a password".into(),
        retryable: false,
    };
    store.record(&batch, &k("a.txt"), &BatchOutcome::Indexed { chunks: 2, bytes: 100 }).await.expect("record");
    store.record(&batch, &k("a.txt"), &BatchOutcome::Indexed { chunks: 2, bytes: 100 }).await.expect("again");
    store
        .record(&batch, &k("b.pdf"), &BatchOutcome::Failed { failure: broken.clone(), bytes: 2_000 })
        .await
        .expect("record");
    store.record(&batch, &k("c.md"), &BatchOutcome::Unchanged { bytes: 300 }).await.expect("record");
    assert_eq!(store.counters(&batch).await.expect("counters"), want(1, 1, 1, 1, 2_400), "duplicates count once");
    let t = store.timing(&batch).await.expect("timing");
    assert!(t.created_ms == created.created_ms && t.updated_ms >= Some(t.created_ms), "{t:?}");
    assert_eq!(store.failures(&batch).await.expect("failures"), vec![(k("b.pdf"), broken)]);

    // Creating again (a resumed run) keeps what was recorded.
    store.create(&batch, &items).await.expect("create again");
    assert_eq!(store.counters(&batch).await.expect("counters"), want(1, 1, 1, 1, 2_400));

    // A budget ran out: the document stays pending, counted as paused, with why; resumed, it is done.
    let paused = BatchOutcome::Paused { reason: "budget_exhausted".into() };
    store.record(&batch, &k("d.csv"), &paused).await.expect("pause");
    store.record(&batch, &k("d.csv"), &paused).await.expect("pause again");
    assert_eq!(store.counters(&batch).await.expect("counters"), BatchCounters { paused: 1, ..want(1, 1, 1, 1, 2_400) });
    assert_eq!(store.paused(&batch).await.expect("paused"), vec![(k("d.csv"), "budget_exhausted".to_owned())]);
    assert_eq!(store.failures(&batch).await.expect("failures").len(), 1, "a paused document has not failed");

    // A retry that succeeds moves the document from failed to done.
    store.record(&batch, &k("b.pdf"), &BatchOutcome::Indexed { chunks: 9, bytes: 2_000 }).await.expect("retry");
    store.record(&batch, &k("d.csv"), &BatchOutcome::Indexed { chunks: 1, bytes: 40 }).await.expect("record");
    let c = store.counters(&batch).await.expect("counters");
    assert_eq!(c, want(0, 3, 0, 1, 2_440));
    assert_eq!(c.total, c.pending + c.done + c.failed + c.skipped);
    assert!(store.failures(&batch).await.expect("failures").is_empty());
    assert!(store.paused(&batch).await.expect("paused").is_empty());

    assert!(
        store.record(&batch, &k("not-in-batch.txt"), &BatchOutcome::Unchanged { bytes: 1 }).await.is_err(),
        "a document outside the batch is refused"
    );

    // The recent batches, newest first: a later batch leads, and the limit holds.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let later = BatchId::new("contract-batch-2");
    store.create(&later, &items[..1]).await.expect("create a second batch");
    let ours = |all: Vec<(BatchId, i64)>| -> Vec<BatchId> {
        all.into_iter().filter(|(b, _)| b.as_str().starts_with("contract-batch-")).map(|(b, _)| b).collect()
    };
    assert_eq!(ours(store.recent(10).await.expect("recent")), [later.clone(), batch.clone()], "newest first");
    let one = store.recent(1).await.expect("recent");
    assert_eq!(one.len(), 1, "the limit holds: {one:?}");
    let created_later = store.timing(&later).await.expect("timing").created_ms;
    assert_eq!(one, [(later, created_later)], "with when it was created");
}

/// Full-text ranking over chunk text and title, filters inside the ranking, scores in [0, 1],
/// deletes followed, and any user text accepted as words.
pub async fn keyword_store<S: VectorWriter + KeywordSearcher>(store: &S, dim: usize) {
    let (_, a) = doc("contract/kw-a.md");
    let (_, b) = doc("contract/kw-b.md");
    let mk = |d: &DocumentId, ordinal: u32, text: &str, title: &str, format: Format| {
        let mut r = record(d, ordinal, (0..dim).map(|j| if j == 0 { 1.0 } else { 0.0 }).collect());
        r.text = text.to_owned();
        r.meta.title = Some(title.to_owned());
        r.meta.format = format;
        r
    };
    store
        .upsert(&[
            mk(&a, 0, "Salmon and sardines are oily fish rich in omega-3 fatty acids.", "Oily fish", Format::Markdown),
            mk(&a, 1, "Walnuts and flaxseed also provide plant omega-3.", "Oily fish", Format::Markdown),
            mk(&b, 0, "Sodium raises blood pressure in salt-sensitive people.", "Salt and the heart", Format::Text),
        ])
        .await
        .expect("upsert");
    let q = |text: &str, k: usize, filter: Option<serde_json::Value>| KeywordQuery {
        text: text.to_owned(),
        top_k: k,
        filter: filter.map(|f| quarry_core::Filter::parse(&f).expect("valid filter")),
    };
    let hits = store.keyword_search(&q("salmon omega-3", 10, None)).await.expect("search");
    assert_eq!(hits.first().map(|h| &h.id), Some(&ChunkId::new(&a, 0)), "{hits:?}");
    assert!(hits.iter().all(|h| h.document == a), "only chunks with the words: {hits:?}");
    assert!(hits.iter().all(|h| (0.0..1.0).contains(&h.score) && h.score > 0.0), "{hits:?}");
    // Scores read the same across queries: the same chunk, asked for one of its words and for that
    // word beside another it lacks, scores less for the query it matches less of.
    let half = store.keyword_search(&q("salmon sodium", 10, None)).await.expect("search");
    let a0 = half.iter().find(|h| h.id == ChunkId::new(&a, 0)).expect("still found");
    let alone = store.keyword_search(&q("salmon", 10, None)).await.expect("search");
    assert_eq!(alone[0].id, a0.id);
    assert!(a0.score < alone[0].score, "{} {}", a0.score, alone[0].score);
    assert_eq!(hits[0].text, "Salmon and sardines are oily fish rich in omega-3 fatty acids.", "hits carry their text");
    // Stemming: "pressures" finds "pressure"; the title is searched too.
    let hits = store.keyword_search(&q("pressures", 10, None)).await.expect("search");
    assert_eq!(hits.iter().map(|h| &h.document).collect::<Vec<_>>(), [&b]);
    let hits = store.keyword_search(&q("heart", 10, None)).await.expect("search");
    assert_eq!(hits.iter().map(|h| &h.document).collect::<Vec<_>>(), [&b], "title words match");
    // A filter decides inside the ranking.
    let hits =
        store.keyword_search(&q("omega-3 salt", 1, Some(serde_json::json!({"format": "text"})))).await.expect("search");
    assert_eq!(hits.iter().map(|h| &h.document).collect::<Vec<_>>(), [&b], "{hits:?}");
    // Asked again after a write that changes its answer, the same filter follows it.
    let salt = || q("omega-3 salt", 1, Some(serde_json::json!({"format": "text"})));
    let b_as =
        |format| mk(&b, 0, "Sodium raises blood pressure in salt-sensitive people.", "Salt and the heart", format);
    store.upsert(&[b_as(Format::Markdown)]).await.expect("b as markdown");
    let hits = store.keyword_search(&salt()).await.expect("search");
    assert!(hits.is_empty(), "a document whose metadata no longer matches is left out: {hits:?}");
    store.upsert(&[b_as(Format::Text)]).await.expect("b as text again");
    let hits = store.keyword_search(&salt()).await.expect("search");
    assert_eq!(
        hits.iter().map(|h| &h.document).collect::<Vec<_>>(),
        [&b],
        "and one that matches again is back: {hits:?}"
    );
    // Whatever the user types is words, never query syntax.
    for odd in ["\"unbalanced", "AND OR NOT", "fish*", "(salt) NEAR/2", "col:umn", "   ", "!!!", "^salmon"] {
        let r = store.keyword_search(&q(odd, 5, None)).await;
        assert!(r.is_ok(), "{odd:?}: {r:?}");
    }
    assert!(store.keyword_search(&q("!!!", 5, None)).await.expect("search").is_empty());
    // Updates and deletes are followed.
    store.upsert(&[mk(&a, 1, "Chia seeds too.", "Oily fish", Format::Markdown)]).await.expect("update");
    let hits = store.keyword_search(&q("walnuts", 10, None)).await.expect("search");
    assert!(hits.is_empty(), "an updated chunk's old words are gone: {hits:?}");
    store.delete_from(&a, 0).await.expect("delete");
    let hits = store.keyword_search(&q("salmon chia", 10, None)).await.expect("search");
    assert!(hits.is_empty(), "a deleted document's chunks are gone: {hits:?}");
    store.delete_from(&b, 0).await.expect("delete");
}

/// The blobs [`blob_source`] expects its source to hold (put them there first): nested keys, a key
/// with spaces, `+` and a non-ASCII letter, and one outside the `contract/` prefix.
pub const BLOBS: &[(&str, &[u8])] = &[
    ("contract/a.txt", b"alpha: the first document"),
    ("contract/sub/b.md", b"# Beta\n\nThe second document, one folder down."),
    ("contract/c d+é.txt", b"gamma, named with spaces, a plus and an accent"),
    ("elsewhere/x.txt", b"outside the prefix"),
];

/// Fields summarised per document (not per chunk), by name; values commonest first and capped;
/// `key` left out, and fields of values mostly each document's own, past the cap (titles here);
/// a removed document no longer counted.
pub async fn field_catalog<S: VectorWriter + FieldCatalog>(store: &S, dim: usize) {
    assert!(store.fields(10, None).await.expect("fields").is_empty(), "an empty index has no fields");
    let mk = |name: &str, ordinal: u32, format: Format, team: &str| {
        let (key, d) = doc(name);
        let mut r = record(&d, ordinal, (0..dim).map(|j| if j == 0 { 1.0 } else { 0.5 }).collect());
        r.meta.key = key;
        r.meta.format = format;
        r.meta.title = Some(format!("title of {name}"));
        r.meta.user.insert("team".to_owned(), team.to_owned());
        r
    };
    let records = [
        mk("contract/f-a.md", 0, Format::Markdown, "search"),
        mk("contract/f-a.md", 1, Format::Markdown, "search"),
        mk("contract/f-b.md", 0, Format::Markdown, "search"),
        mk("contract/f-c.txt", 0, Format::Text, "ops"),
    ];
    store.upsert(&records).await.expect("upsert");
    let fields = store.fields(2, None).await.expect("fields");
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["format", "user.team"], "three distinct titles do not fit two values");
    let count = |v: &str, n: u64| ValueCount { value: serde_json::Value::from(v), documents: n };
    assert_eq!(fields[0].documents, 3, "documents, not chunks");
    assert_eq!(fields[0].values, [count(Format::Markdown.name(), 2), count(Format::Text.name(), 1)]);
    assert_eq!(fields[1].values, [count("search", 2), count("ops", 1)]);
    let capped = store.fields(1, None).await.expect("fields");
    assert_eq!(capped[1].values, [count("search", 2)]);
    let (_, b) = doc("contract/f-b.md");
    store.delete_from(&b, 0).await.expect("delete");
    let fields = store.fields(2, None).await.expect("fields");
    let teams: Vec<&ValueCount> = fields.iter().filter(|f| f.name == "user.team").flat_map(|f| &f.values).collect();
    assert_eq!(teams, [&count("ops", 1), &count("search", 1)], "b is no longer counted");
    // A tenant's menu counts its own documents alone.
    store.upsert(&[mk("tenants/t1/f-d.md", 0, Format::Markdown, "legal")]).await.expect("upsert");
    let t1 = quarry_core::tenant::Reach::Tenant("t1".into()).narrow(None);
    let own = store.fields(2, t1.as_ref()).await.expect("fields");
    let teams: Vec<&ValueCount> = own.iter().filter(|f| f.name == "user.team").flat_map(|f| &f.values).collect();
    assert_eq!(teams, [&count("legal", 1)], "{own:?}");
    let every = store.fields(3, None).await.expect("fields");
    assert!(every.iter().all(|f| f.name != "tenant"), "the tenant is not a menu: {every:?}");
    assert_eq!(every.iter().find(|f| f.name == "user.team").map(|f| f.documents), Some(3));
}

/// Reads what [`BLOBS`] put there: sizes, bytes, listings by prefix in key order, peeks that are a
/// prefix of the content, and a clear not-found for a key that names nothing.
pub async fn blob_source<S: quarry_core::ports::BlobSource>(source: &S) {
    for (key, bytes) in BLOBS {
        let key = DocumentKey::new(*key);
        let info = source.head(&key).await.expect("head");
        assert_eq!((&info.key, info.size), (&key, bytes.len() as u64), "head names the key and its size");
        let blob = source.get(&key).await.expect("get");
        assert_eq!((&blob.info.key, blob.bytes.as_slice()), (&key, *bytes), "get returns the bytes put");
        let head = source.peek(&key, 5).await.expect("peek");
        assert!(head.len() <= 5 && bytes.starts_with(&head), "a peek is a prefix of at most n bytes: {head:?}");
    }
    let listed: Vec<String> =
        source.list("contract/").await.expect("list").into_iter().map(|b| b.key.as_str().to_owned()).collect();
    assert_eq!(listed, ["contract/a.txt", "contract/c d+é.txt", "contract/sub/b.md"], "a prefix lists in key order");
    let all = source.list("").await.expect("list all");
    assert_eq!(all.len(), BLOBS.len(), "an empty prefix lists everything: {all:?}");
    assert!(all.iter().all(|b| BLOBS.iter().any(|(k, v)| b.key.as_str() == *k && b.size == v.len() as u64)));
    assert!(source.list("nothing-here/").await.expect("list").is_empty());
    let missing = DocumentKey::new("contract/missing.txt");
    assert!(
        matches!(source.head(&missing).await, Err(quarry_core::PortError::NotFound { .. })),
        "a missing key is NotFound on head"
    );
    assert!(
        matches!(source.get(&missing).await, Err(quarry_core::PortError::NotFound { .. })),
        "and on get, so that a job for a deleted object forgets it"
    );
}

/// Delivers what was sent: every job of a batch larger than one SQS call (10), each field intact,
/// an empty send is a no-op. `receive` returns what the queue holds now (and takes it away).
pub async fn job_queue<Q, R, F>(queue: &Q, receive: R)
where
    Q: quarry_core::ports::JobQueue,
    R: Fn() -> F,
    F: std::future::Future<Output = Vec<quarry_core::ports::IndexJob>>,
{
    use quarry_core::ports::{IndexJob, JobAction};
    let batch = BatchId::new("contract-queue-batch");
    let sent: Vec<IndexJob> = (0..25)
        .map(|i| IndexJob {
            action: if i % 5 == 4 { JobAction::Delete } else { JobAction::Index },
            key: DocumentKey::new(format!("contract/queued {i}.txt")),
            version: (i % 2 == 0).then(|| format!("v{i}")),
            batch: (i % 3 == 0).then(|| batch.clone()),
            size: (i % 3 != 1).then_some(100 + i),
        })
        .collect();
    queue.enqueue(&[]).await.expect("an empty send is fine");
    queue.enqueue(&sent).await.expect("enqueue");
    let mut got = Vec::new();
    for _ in 0..50 {
        got.extend(receive().await);
        if got.len() >= sent.len() {
            break;
        }
    }
    got.sort_by(|a, b| a.key.cmp(&b.key));
    let mut want = sent.clone();
    want.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(got, want, "every job arrives once, every field intact");
}

/// Claims that one caller holds until they expire or are given up, even when many race; group
/// members that join once and are taken by one drain, oldest first.
pub async fn alert_ledger<L: quarry_core::ports::AlertLedger>(ledger: &L) {
    let long = Duration::from_secs(3600);
    assert!(ledger.claim("k1", long).await.expect("claim"), "a free key is taken");
    assert!(!ledger.claim("k1", long).await.expect("claim"), "a held key is not");
    ledger.release("k1").await.expect("release");
    assert!(ledger.claim("k1", long).await.expect("claim"), "a released key is free again");
    ledger.release("never-claimed").await.expect("releasing a free key is fine");

    assert!(ledger.claim("short", Duration::from_millis(300)).await.expect("claim"));
    std::thread::sleep(Duration::from_millis(450));
    assert!(ledger.claim("short", long).await.expect("claim"), "an expired claim can be taken");

    // Racing callers: exactly one wins.
    let wins = racing_claims(ledger, "race").await;
    assert_eq!(wins, 1, "one of eight racing claims wins");

    assert!(!ledger.waiting("g").await.expect("waiting"));
    for (id, payload) in [("a", "first"), ("b", "second"), ("a", "first again"), ("c", "third")] {
        ledger.append("g", id, payload, long).await.expect("append");
        std::thread::sleep(Duration::from_millis(5));
    }
    ledger.append("other", "a", "elsewhere", long).await.expect("append");
    assert!(ledger.waiting("g").await.expect("waiting"));
    assert_eq!(ledger.drain("g").await.expect("drain"), ["first", "second", "third"], "once each, oldest first");
    assert!(ledger.drain("g").await.expect("drain").is_empty(), "a drained member is gone");
    assert!(!ledger.waiting("g").await.expect("waiting"));
    assert_eq!(ledger.drain("other").await.expect("drain"), ["elsewhere"], "groups are apart");
    ledger.append("g", "late", "late", Duration::from_millis(200)).await.expect("append");
    std::thread::sleep(Duration::from_millis(350));
    assert!(!ledger.waiting("g").await.expect("waiting"), "an expired member is not waiting");
    assert!(ledger.drain("g").await.expect("drain").is_empty(), "nor drained");
}

/// Eight claims of `key` at once; how many won.
async fn racing_claims<L: quarry_core::ports::AlertLedger>(ledger: &L, key: &str) -> usize {
    let claims = (0..8).map(|_| ledger.claim(key, Duration::from_secs(60)));
    futures::future::join_all(claims).await.into_iter().map(|c| usize::from(c.expect("claim"))).sum()
}

/// Grants an upload for a key that is free, refuses one that is taken (`Conflict`: a page never
/// replaces a document), and the bytes sent the way a client sends them to the grant (`send`)
/// become a blob the source reads. Run after [`BLOBS`] were put.
pub async fn upload_granter<S, F, Fut>(source: &S, send: F)
where
    S: quarry_core::ports::BlobSource + quarry_core::ports::UploadGranter,
    F: Fn(quarry_core::ports::UploadGrant, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let key = DocumentKey::new("contract/uploaded é+.md");
    let bytes = b"# Uploaded\n\nA note dropped on the page.\n".to_vec();
    let grant = source.grant(&key, bytes.len() as u64, Some("text/markdown")).await.expect("grant");
    assert_eq!(grant.key, key);
    assert_eq!(grant.document_id, quarry_core::DocumentId::for_key(&key), "the id search results will carry");
    assert_eq!(grant.method, "PUT");
    assert!(!grant.url.is_empty() && !grant.url.contains(' '), "one URL, escaped: {}", grant.url);
    assert!(
        !grant.headers.keys().any(|h| h == "host" || h == "content-length"),
        "no header a browser refuses to set: {:?}",
        grant.headers
    );
    send(grant, bytes.clone()).await;
    let blob = source.get(&key).await.expect("the upload is readable");
    assert_eq!(blob.bytes, bytes);
    for taken in [key, DocumentKey::new(BLOBS[0].0)] {
        assert!(
            matches!(source.grant(&taken, 10, None).await, Err(quarry_core::PortError::Conflict { .. })),
            "{taken} is taken"
        );
    }
}

/// Writes a new file whole and never over an existing one.
pub async fn blob_writer<S: quarry_core::ports::BlobSource + quarry_core::ports::BlobWriter>(source: &S) {
    let key = DocumentKey::new("contract/written/new.txt");
    source.put_new(&key, b"first").await.expect("put");
    assert_eq!(source.get(&key).await.expect("get").bytes, b"first");
    assert!(
        matches!(source.put_new(&key, b"second").await, Err(quarry_core::PortError::Conflict { .. })),
        "an existing file is not replaced"
    );
    assert_eq!(source.get(&key).await.expect("get").bytes, b"first", "and is left as it was");
    let listed = source.list("contract/written/").await.expect("list");
    assert_eq!(listed.len(), 1, "no temporary file is left to list: {listed:?}");
}
