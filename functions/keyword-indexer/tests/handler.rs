//! The keyword indexer's handler on the in-memory fakes of its ports (the same flow runs on moto
//! in `tests/e2e`): a batch of changes is one publish; duplicates change nothing; a message that
//! is not a change is reported for the DLQ without holding the rest back.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use quarry_core::keywords::ChunkChange;
use quarry_core::meta::ChunkMeta;
use quarry_core::ports::{KeywordQuery, KeywordSearcher, VectorRecord, VectorWriter};
use quarry_core::{CharSpan, ChunkId, DocumentId, DocumentKey, Format};
use quarry_keyword::{KeywordIndexer, KeywordReplica};
use quarry_testkit::fakes::MemoryVectors;
use quarry_testkit::keywords::MemoryIndexFiles;

fn message(id: &str, body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(body.to_owned());
    m
}

fn record(key: &str, ordinal: u32, text: &str) -> VectorRecord {
    let key = DocumentKey::new(key);
    let document = DocumentId::for_key(&key);
    VectorRecord {
        id: ChunkId::new(&document, ordinal),
        document,
        vector: vec![1.0, 0.0],
        text: text.to_owned(),
        pages: None,
        span: CharSpan { start: 0, end: text.len() },
        meta: ChunkMeta::new(key, Format::Text),
    }
}

#[tokio::test]
async fn a_batch_is_one_publish_duplicates_change_nothing_and_a_bad_message_goes_to_the_dlq() {
    let vectors = MemoryVectors::new(2);
    let files = MemoryIndexFiles::default();
    let indexer = KeywordIndexer::new(vectors.clone(), files.clone());
    let a = [record("a.txt", 0, "otters hold hands"), record("a.txt", 1, "while they sleep")];
    let b = record("b.txt", 0, "penguins propose with pebbles");
    vectors.upsert(&a).await.expect("upsert");
    vectors.upsert(std::slice::from_ref(&b)).await.expect("upsert");
    let change =
        |d: &DocumentId, chunks| serde_json::to_string(&ChunkChange { document: d.clone(), chunks }).expect("json");
    let mut event = SqsEvent::default();
    event.records = vec![
        message("1", &change(&a[0].document, 2)),
        message("2", &change(&b.document, 1)),
        message("3", &change(&b.document, 1)),
        message("4", &change(&b.document, 1)),
        message("5", "{\"not\": \"a change\"}"),
    ];
    let response = quarry_keyword_indexer::handle(&indexer, event).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["5"], "only the message that is not a change comes back");
    assert_eq!(files.publishes(), 1, "one batch, one publish");

    let replica = KeywordReplica::new(files.clone(), std::time::Duration::ZERO);
    let search = |text: &str| KeywordQuery { text: text.to_owned(), top_k: 10, filter: None };
    let hits = replica.keyword_search(&search("otters sleep pebbles")).await.expect("search");
    let mut ids: Vec<&ChunkId> = hits.iter().map(|h| &h.id).collect();
    ids.sort();
    let mut expected = vec![&a[0].id, &a[1].id, &b.id];
    expected.sort();
    assert_eq!(ids, expected, "each chunk once, however often its change came");
    assert_eq!(hits.iter().find(|h| h.id == b.id).map(|h| h.text.as_str()), Some("penguins propose with pebbles"));
}

#[tokio::test]
async fn a_failed_publish_hands_the_whole_batch_back() {
    let vectors = MemoryVectors::new(2);
    let r = record("c.txt", 0, "a refusal");
    vectors.upsert(std::slice::from_ref(&r)).await.expect("upsert");
    // Every publish fails retryably.
    let files = MemoryIndexFiles::default();
    files.refuse_publishes();
    let indexer = KeywordIndexer::new(vectors, files.clone());
    let body = serde_json::to_string(&ChunkChange { document: r.document.clone(), chunks: 1 }).expect("json");
    let mut event = SqsEvent::default();
    event.records = vec![message("x", &body), message("y", &body)];
    let response = quarry_keyword_indexer::handle(&indexer, event).await;
    let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["x", "y"]);
    assert!(files.files().is_empty(), "what a failed publish uploaded is not left behind: {:?}", files.files());
}

/// The real bootstrap, as Lambda runs it: configuration, SDK clients and the indexer from the
/// environment the template sets, on moto; a change through the Runtime API is published to S3,
/// where a searcher finds it.
#[test]
fn the_bootstrap_publishes_a_change_to_s3_on_moto() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let endpoint = quarry_testkit::moto::endpoint();
    let name = quarry_testkit::moto::unique_name("kw-bin");
    let env = rt.block_on(quarry_aws::provision::emulated(endpoint, &name, 2, &[])).expect("a deployment on moto");
    let setting = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()).expect(k);
    let clients = rt.block_on(quarry_aws::Clients::emulator(endpoint));
    let vectors = quarry_aws::S3VectorStore::new(
        clients.s3vectors.clone(),
        setting("QUARRY_VECTOR_BUCKET"),
        setting("QUARRY_VECTOR_INDEX"),
    );
    let a = [record("a.txt", 0, "otters hold hands"), record("a.txt", 1, "while they sleep")];
    rt.block_on(vectors.upsert(&a)).expect("upsert");
    let change = serde_json::to_value(ChunkChange { document: a[0].document.clone(), chunks: 2 }).expect("json");
    let run = quarry_testkit::runtime::invoke(
        env!("CARGO_BIN_EXE_keyword-indexer"),
        &env,
        vec![quarry_testkit::runtime::sqs_event(&[change])],
        std::time::Duration::from_secs(60),
    );
    let [(_, ok, body)] = run.answers.as_slice() else { panic!("one answer: {:?}\n{}", run.answers, run.stderr) };
    assert!(ok, "{body}\n{}", run.stderr);
    assert!(body.contains("\"batchItemFailures\":[]"), "{body}");

    let files = quarry_aws::S3IndexFiles::new(clients.s3.clone(), setting("QUARRY_INDEX_BUCKET"));
    let replica = KeywordReplica::new(files, std::time::Duration::ZERO);
    let search = KeywordQuery { text: "otters sleep".to_owned(), top_k: 10, filter: None };
    let hits = rt.block_on(replica.keyword_search(&search)).expect("search");
    let mut ids: Vec<&ChunkId> = hits.iter().map(|h| &h.id).collect();
    ids.sort();
    let mut expected = vec![&a[0].id, &a[1].id];
    expected.sort();
    assert_eq!(ids, expected, "both chunks published");
}
