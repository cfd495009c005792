//! The vector stores client against the local fake that speaks OpenAI's files, vector stores, file
//! batches and search wire format, with injected latency, 429s with `Retry-After`, 5xx, bodies cut
//! short and batches that stay in progress.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use quarry_core::config::Secret;
use quarry_core::{Classify, ErrorClass, Filter};
use quarry_openai::stores::filter::{attributes, translate};
use quarry_openai::stores::{FileId, StoreOptions, VectorStores};
use quarry_testkit::openai::{FakeOpenAi, Faults, KEY};
use serde_json::{Map, Value, json};

fn client(fake: &FakeOpenAi, key: &str, tweak: impl FnOnce(&mut StoreOptions)) -> VectorStores {
    let mut o = StoreOptions {
        api_base: Some(fake.url.clone()),
        retries: 10,
        backoff: Duration::from_millis(5),
        poll_every: Duration::from_millis(5),
        attach_timeout: Duration::from_secs(20),
        ..StoreOptions::default()
    };
    tweak(&mut o);
    VectorStores::new(&Secret::new(key), o).unwrap()
}

fn meta(key: &str, team: &str) -> (String, Map<String, Value>) {
    let mut m = quarry_core::meta::Metadata::new();
    m.insert("key".into(), json!(key));
    m.insert("format".into(), json!("markdown"));
    m.insert("user.team".into(), json!(team));
    let id = quarry_core::DocumentId::for_key(&quarry_core::DocumentKey::new(key));
    (id.as_str().to_owned(), attributes(id.as_str(), &m).0)
}

const DOCS: [(&str, &str, &str); 3] = [
    ("notes/pump.md", "ops", "The pump station restarts at dawn after the pressure check."),
    ("notes/budget.md", "finance", "The budget for the pump replacement was approved in March."),
    ("notes/scan.md", "ops", "UNSUPPORTED scanned page with no text layer"),
];

/// Uploads and attaches the three documents; returns their file ids.
async fn load(vs: &VectorStores, store: &quarry_openai::stores::StoreId) -> Vec<FileId> {
    let mut files = Vec::new();
    for (key, team, text) in DOCS {
        let (id, attrs) = meta(key, team);
        let file = vs.upload(&format!("{id}.md"), text).await.expect("upload");
        files.push((file, attrs));
    }
    let attached = vs.attach(store, &files).await.expect("attach");
    assert_eq!(attached.completed, vec![files[0].0.clone(), files[1].0.clone()]);
    assert_eq!(attached.failed.len(), 1, "{attached:?}");
    let (failed, code, message) = &attached.failed[0];
    assert_eq!((failed, code.as_str()), (&files[2].0, "unsupported_file"), "the reason is kept: {message}");
    files.into_iter().map(|(f, _)| f).collect()
}

#[tokio::test]
async fn a_store_is_found_by_name_filled_searched_with_filters_and_emptied() {
    let fake = FakeOpenAi::start(Faults { processing_polls: 3, ..Faults::default() }).await;
    let vs = client(&fake, KEY, |_| {});
    let store = vs.find_or_create("quarry-test").await.expect("create");
    assert_eq!(vs.find_or_create("quarry-test").await.expect("reuse"), store, "found again by name, not made twice");
    let other = vs.find_or_create("another").await.expect("create");
    assert_ne!(other, store);

    let files = load(&vs, &store).await;
    let hits = vs.search(&store, "pump pressure", None, 10).await.expect("search");
    assert_eq!(hits.len(), 2, "the failed file is not searchable: {hits:?}");
    assert_eq!(hits[0].attributes["key"], json!("notes/pump.md"), "best first: {hits:?}");
    assert!(hits[0].score > hits[1].score && hits[0].text.contains("pressure check"));
    assert!(hits[0].attributes["document_id"].as_str().is_some_and(|d| d.len() == 32));

    let filter = Filter::parse(&json!({"user.team": {"$in": ["finance"]}})).expect("filter");
    let hits = vs.search(&store, "pump", Some(&translate(&filter).expect("translates")), 10).await.expect("search");
    assert_eq!(hits.iter().map(|h| h.attributes["key"].clone()).collect::<Vec<_>>(), [json!("notes/budget.md")]);
    assert!(vs.usage_bytes(&store).await.expect("usage") > 0);

    vs.delete_file(&files[0]).await.expect("delete");
    vs.delete_file(&files[0]).await.expect("deleting again is fine");
    let hits = vs.search(&store, "pump pressure", None, 10).await.expect("search");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(vs.search(&other, "pump", None, 10).await.expect("search").is_empty(), "stores do not mix");
}

#[tokio::test]
async fn workers_that_create_a_store_at_once_end_up_using_the_same_one() {
    let fake = FakeOpenAi::start(Faults { latency: Duration::from_millis(5), ..Faults::default() }).await;
    let vs = client(&fake, KEY, |_| {});
    let ids = futures::future::join_all((0..4).map(|_| vs.find_or_create("shared-name"))).await;
    let ids: Vec<_> = ids.into_iter().map(|r| r.expect("find or create")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let (_, attrs) = meta("notes/a.md", "ops");
    let file = vs.upload("a.md", "pump station").await.expect("upload");
    vs.attach(&ids[0], &[(file, attrs)]).await.expect("attach");
    assert_eq!(vs.find_or_create("shared-name").await.expect("find"), ids[0], "and every later look finds it");
}

#[tokio::test]
async fn with_thirty_percent_of_calls_failing_every_step_still_completes() {
    let fake = FakeOpenAi::start(Faults {
        fail_percent: 30,
        seed: 11,
        latency: Duration::from_millis(2),
        processing_polls: 2,
        ..Faults::default()
    })
    .await;
    let vs = client(&fake, KEY, |_| {});
    let store = vs.find_or_create("faulty").await.expect("create");
    load(&vs, &store).await;
    let hits = vs.search(&store, "budget", None, 5).await.expect("search");
    assert_eq!(hits.len(), 1);
    assert!(fake.failed_calls() > 0, "faults were injected: {} of {}", fake.failed_calls(), fake.calls());
}

#[tokio::test]
async fn a_batch_still_in_progress_at_the_timeout_is_cancelled_and_the_attach_fails_transiently() {
    let fake = FakeOpenAi::start(Faults { processing_polls: u32::MAX, ..Faults::default() }).await;
    let vs = client(&fake, KEY, |o| o.attach_timeout = Duration::from_millis(200));
    let store = vs.find_or_create("slow").await.expect("create");
    let (_, attrs) = meta("notes/a.md", "ops");
    let file = vs.upload("a.md", "pump station").await.expect("upload");
    let e = vs.attach(&store, &[(file, attrs)]).await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Retryable, "{e}");
    let chain = quarry_core::error::chain(&e);
    assert!(chain.contains("still in progress") && chain.contains("cancelled"), "{chain}");
    assert!(vs.search(&store, "pump", None, 5).await.expect("search").is_empty(), "nothing half-attached stays");
}

#[tokio::test]
async fn a_bad_key_fails_at_once_and_a_cut_body_is_a_clear_error() {
    let fake = FakeOpenAi::start(Faults::default()).await;
    let e = client(&fake, "sk-wrong", |_| {}).find_or_create("x").await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(quarry_core::error::chain(&e).contains("Incorrect API key"), "{}", quarry_core::error::chain(&e));
    assert_eq!(fake.calls(), 1, "no retry of a bad key");

    let cut = FakeOpenAi::start(Faults { malformed_percent: 100, ..Faults::default() }).await;
    let e = client(&cut, KEY, |_| {}).find_or_create("x").await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(quarry_core::error::chain(&e).contains("not its response"), "{}", quarry_core::error::chain(&e));
}

#[test]
fn an_untranslatable_filter_is_refused_by_name() {
    let f = Filter::parse(&json!({"user.draft": {"$exists": true}})).expect("filter");
    assert!(translate(&f).unwrap_err().to_string().contains("$exists"));
}

/// The hosted store's contract, on OpenAI's vector stores (the fake) with a share of calls
/// failing and batches that stay in progress a while.
#[tokio::test]
async fn the_openai_store_keeps_the_hosted_store_contract() {
    let faults = Faults { processing_polls: 2, fail_percent: 20, seed: 3, ..Faults::default() };
    let fake = FakeOpenAi::start(faults).await;
    let mut config = fake.store_config();
    let store = quarry_openai::stores::OpenAiStore::from_config(&config).expect("client").expect("selected");
    quarry_testkit::contract::hosted_store(&store).await;
    assert!(fake.failed_calls() > 0, "faults were injected");
    assert!(fake.files().is_empty(), "every file stored was removed: {:?}", fake.files());
    config.store.backend = quarry_core::config::StoreBackend::Native;
    assert!(quarry_openai::stores::OpenAiStore::from_config(&config).expect("nothing to build").is_none());
}

/// A file no checkpoint names (a crash between storing and checkpointing, a second worker's
/// upload) is never shown: the query half keeps only hits from the document's checkpointed file,
/// and takes the key from the state.
#[tokio::test]
async fn search_shows_only_the_checkpointed_file_of_a_document() {
    use quarry_core::hosted::{HostedDocument, HostedStore, Stored};
    use quarry_core::ports::{Checkpoint, CheckpointStore};
    let fake = FakeOpenAi::start(Faults::default()).await;
    let config = fake.store_config();
    let store = quarry_openai::stores::OpenAiStore::from_config(&config).expect("client").expect("selected");
    let state = quarry_testkit::fakes::MemoryState::default();
    let key = quarry_core::DocumentKey::new("notes/pump.md");
    let document = quarry_core::DocumentId::for_key(&key);
    let meta = quarry_core::meta::ChunkMeta::new(key.clone(), quarry_core::Format::Markdown);
    let put = async |text: &str| {
        let hash = quarry_core::ContentHash::of(text.as_bytes());
        let doc = HostedDocument { document: &document, content_hash: &hash, text, meta: &meta };
        match store.put(doc).await.expect("put") {
            Stored::Attached { handle } => (hash, handle),
            Stored::Refused(f) => panic!("{f:?}"),
        }
    };
    let (hash, current) = put("The pump station restarts at dawn.").await;
    // The next version, stored and never checkpointed.
    let (_, _orphan) = put("The pump station restarts at noon.").await;
    state.acquire(&document, &hash, Duration::from_secs(60)).await.expect("lease");
    let cp = Checkpoint {
        document: document.clone(),
        key: key.clone(),
        content_hash: hash,
        chunks: 1,
        model: store.model().to_owned(),
        handle: Some(current),
    };
    state.checkpoint(&cp).await.expect("checkpoint");

    let mode = quarry_pipeline::Mode::Semantic;
    let hits = quarry_pipeline::retrieve_hosted(&store, &state, mode, "pump station restarts", 10, None)
        .await
        .expect("search");
    let texts: Vec<&str> = hits.iter().map(|h| h.text.as_str()).collect();
    assert_eq!(texts, ["The pump station restarts at dawn."], "only the checkpointed file: {hits:?}");
    assert_eq!(hits[0].meta.key, key);
    let refused =
        quarry_pipeline::retrieve_hosted(&store, &state, quarry_pipeline::Mode::Hybrid, "pump", 10, None).await;
    assert!(matches!(refused, Err(quarry_core::PortError::InvalidInput { .. })), "{refused:?}");
    // Forgotten: nothing of it shows, though the store still answers with its files.
    state.forget(&document).await.expect("forget");
    let hits = quarry_pipeline::retrieve_hosted(&store, &state, mode, "pump station restarts", 10, None)
        .await
        .expect("search");
    assert!(hits.is_empty(), "{hits:?}");
}
