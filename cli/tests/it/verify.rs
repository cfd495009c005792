//! `quarry verify [--repair]` as a user meets it: the real binary, the real model and SQLite. Each
//! kind of drift is injected through the store's own ports (as a crash or a hand edit would leave
//! it), found, and repaired, and the repaired index equals the one indexing alone made: the same
//! chunk ids and text, vectors equal to cosine 0.9999.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{quarry, quarry_with};
use quarry_core::ports::{CheckpointStore, VectorRecord, VectorWriter};
use quarry_core::{ChunkId, DocumentId, DocumentKey};
use quarry_local::SqliteStore;
use serde_json::Value;

fn run(args: &[&str], dir: &Path) -> (i32, Value) {
    let (code, out, err) = quarry(args, dir);
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("quarry {args:?}: {e}\n{out}\n{err}"));
    (code, json)
}

fn id(key: &str) -> DocumentId {
    DocumentId::for_key(&DocumentKey::new(key))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

/// Every stored chunk by id: its text and vector.
fn chunks(dir: &Path) -> BTreeMap<ChunkId, (String, Vec<f32>)> {
    let store = SqliteStore::open(&dir.join(".quarry/state.db"), quarry_embed::DIMENSION).expect("open");
    store.records().expect("records").into_iter().map(|r| (r.id, (r.text, r.vector))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_drift_is_found_and_repaired_to_what_indexing_made() {
    let dir = common::scratch("verify", "kinds");
    let long: String = (0..120)
        .map(|i| format!("Sentence {i} of the orchard notes explains pruning, grafting and watering apple trees. "))
        .collect();
    std::fs::write(dir.join("a.md"), format!("# Orchard\n\n{long}\n")).expect("write");
    for (name, text) in [("b.txt", "Prime the pump."), ("c.txt", "Bees need clover."), ("d.txt", "Rust never sleeps.")]
    {
        std::fs::write(dir.join(name), text).expect("write");
    }
    let (code, _, err) = quarry(&["ingest", ".", "--quiet"], &dir);
    assert_eq!(code, 0, "{err}");
    let (code, clean) = run(&["verify", "--json"], &dir);
    assert_eq!(code, 0, "a fresh index is clean: {clean}");
    assert_eq!(clean["report"]["drift"], Value::Array(Vec::new()));
    let indexed = chunks(&dir);
    let a_chunks = indexed.keys().filter(|c| c.parts().is_some_and(|(d, _)| d == id("a.md"))).count();
    assert!(a_chunks >= 2, "a.md spans chunks: {a_chunks}");

    // The drift, through the store's ports.
    {
        let store = SqliteStore::open(&dir.join(".quarry/state.db"), quarry_embed::DIMENSION).expect("open");
        let records = store.records().expect("records");
        let like = |document: &DocumentId, ordinal: u32, text: &str| {
            let mut r: VectorRecord = records[0].clone();
            (r.id, r.document, r.text) = (ChunkId::new(document, ordinal), document.clone(), text.to_owned());
            r
        };
        // Checkpointed with all its chunks, holding one.
        store.delete_from(&id("a.md"), 1).await.expect("cut a.md");
        // A tail past its checkpoint: old words still answering.
        store.upsert(&[like(&id("b.txt"), 7, "stale words")]).await.expect("tail");
        // Chunks nothing tracks.
        store.upsert(&[like(&id("ghost.txt"), 0, "ghost words")]).await.expect("orphan");
        // A state lost: d.txt's chunks are orphans, and its file is unindexed.
        store.forget(&id("d.txt")).await.expect("forget d");
    }
    std::fs::remove_file(dir.join("c.txt")).expect("remove c");
    std::fs::write(dir.join("e.txt"), "Elderberries ripen in late summer.").expect("write e");

    let (code, found) = run(&["verify", "--json"], &dir);
    assert_eq!(code, 4, "drift found and left is exit 4: {found}");
    let counts = &found["counts"];
    assert_eq!(
        (
            &counts["missing_vectors"],
            &counts["stale_tail"],
            &counts["orphan_vectors"],
            &counts["unindexed"],
            &counts["object_gone"]
        ),
        (&Value::from(1), &Value::from(1), &Value::from(2), &Value::from(2), &Value::from(1)),
        "{found}"
    );
    let drift = found["report"]["drift"].as_array().expect("drift");
    let kind_of = |key: &str| {
        drift.iter().filter(|d| d["key"] == key).map(|d| d["kind"].as_str().unwrap_or("")).collect::<Vec<_>>()
    };
    assert_eq!(kind_of("a.md"), ["missing_vectors"]);
    assert_eq!(kind_of("b.txt"), ["stale_tail"]);
    assert_eq!(kind_of("c.txt"), ["object_gone"]);
    assert_eq!(kind_of("e.txt"), ["unindexed"]);
    assert_eq!(kind_of("d.txt"), ["unindexed"], "its orphaned chunks carry no key, as no state names them");
    // The same report as a person reads it: the count by kind, then one line per disagreement.
    let (code, text, _) = quarry(&["verify"], &dir);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains(&format!("{} disagreement(s): ", drift.len())), "{text}");
    let line = |kind: &str, key: &str| text.lines().any(|l| l.trim_start().starts_with(kind) && l.contains(key));
    assert!(line("missing_vectors", "a.md") && line("stale_tail", "b.txt") && line("object_gone", "c.txt"), "{text}");
    assert!(text.lines().any(|l| l.contains("b.txt") && l.contains("checkpointed")), "{text}");

    let (code, repaired) = run(&["verify", "--repair", "--json"], &dir);
    assert_eq!(code, 0, "{repaired}");
    assert_eq!(repaired["after"]["drift"], Value::Array(Vec::new()), "{repaired}");
    assert_eq!((&repaired["indexed"], &repaired["failed"]), (&Value::from(3), &Value::from(0)), "{repaired}");

    // What indexing alone made, less c.txt and plus e.txt.
    let now = chunks(&dir);
    let expected: Vec<&ChunkId> = indexed.keys().filter(|c| c.parts().is_none_or(|(d, _)| d != id("c.txt"))).collect();
    let got: Vec<&ChunkId> = now.keys().filter(|c| c.parts().is_none_or(|(d, _)| d != id("e.txt"))).collect();
    assert_eq!(got, expected, "the same chunk ids");
    for (chunk, (text, vector)) in &now {
        if let Some((before, v)) = indexed.get(chunk) {
            assert_eq!(text, before, "{chunk}: the same text");
            assert!(cosine(vector, v) >= 0.9999, "{chunk}: the same vector");
        }
    }
    assert!(now.keys().any(|c| c.parts().is_some_and(|(d, _)| d == id("e.txt"))), "e.txt indexed");

    // Idempotent: a second repair finds nothing and changes nothing.
    let (code, again) = run(&["verify", "--repair", "--json"], &dir);
    assert_eq!((code, &again["report"]["drift"]), (0, &Value::Array(Vec::new())), "{again}");
    assert_eq!(chunks(&dir).keys().collect::<Vec<_>>(), now.keys().collect::<Vec<_>>());
}

#[test]
fn a_folder_never_indexed_is_refused_with_the_command_that_indexes_it() {
    let dir = common::scratch("verify", "never");
    std::fs::write(dir.join("a.txt"), "text").expect("write");
    let (code, _, err) = quarry(&["verify"], &dir);
    // `verify` opens the index for writing (to hold the lock); an unindexed folder has no index.
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("quarry ingest"), "{err}");
}

/// `--aws`: the same comparison over S3, DynamoDB and S3 Vectors (moto), named by the environment
/// as the functions are; a repair deletes stray chunks (telling the keyword indexer) and queues
/// what was never indexed for the embed-workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aws_stores_are_verified_and_repaired_from_the_environment() {
    use quarry_aws::{Clients, S3VectorStore, provision};
    use quarry_core::census::VectorCensus;

    let endpoint = quarry_testkit::moto::endpoint();
    let clients = Clients::emulator(endpoint).await;
    let created = provision::create(&clients, &quarry_testkit::moto::unique_name("verify"), quarry_embed::DIMENSION)
        .await
        .expect("provision");
    let r = &created.resources;
    for key in ["notes/a.txt", "notes/b.txt", "other/c.txt"] {
        clients.s3.put_object().bucket(&r.bucket).key(key).body(b"text".to_vec().into()).send().await.expect("put");
    }
    let vectors = S3VectorStore::new(clients.s3vectors.clone(), &r.vector_bucket, &r.vector_index);
    let ghost = DocumentKey::new("notes/ghost.txt");
    let record = VectorRecord {
        id: ChunkId::new(&DocumentId::for_key(&ghost), 0),
        document: DocumentId::for_key(&ghost),
        vector: vec![0.05; quarry_embed::DIMENSION],
        text: "ghost words".into(),
        pages: None,
        span: quarry_core::CharSpan { start: 0, end: 11 },
        meta: quarry_core::meta::ChunkMeta::new(ghost.clone(), quarry_core::Format::Text),
    };
    vectors.upsert(&[record]).await.expect("orphan");

    let mut env = vec![
        ("QUARRY_AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ];
    env.extend(r.env());
    let dir = common::scratch("verify", "aws");
    let verify = |args: &[&str]| {
        let (code, out, err) = quarry_with(args, &dir, &env);
        (code, serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}\n{err}")))
    };
    // An upload no manifest names, written just now: a writer may be about to publish it.
    let index_bucket = r.index_bucket.clone().expect("an index bucket");
    let young = "keywords/files/000000000001-x/young.idx";
    clients.s3.put_object().bucket(&index_bucket).key(young).body(b"idx".to_vec().into()).send().await.expect("put");
    let (code, found) = verify(&["verify", "--aws", "--prefix", "notes/", "--json"]);
    assert_eq!(found["stray_index_files"], Value::Array(Vec::new()), "a young upload is not a stray: {found}");
    assert_eq!(code, 4, "{found}");
    assert_eq!((&found["counts"]["unindexed"], &found["counts"]["orphan_vectors"]), (&Value::from(2), &Value::from(1)));
    assert_eq!(found["report"]["objects"], 2, "only objects under the prefix: {found}");

    let (code, repaired) = verify(&["verify", "--aws", "--prefix", "notes/", "--repair", "--json"]);
    assert_eq!(code, 0, "{repaired}");
    assert_eq!((&repaired["queued"], &repaired["repaired"]["chunks_removed"]), (&Value::from(2), &Value::from(1)));
    assert!(vectors.stored().await.expect("census").is_empty(), "the orphan is deleted");
    clients.s3.head_object().bucket(&index_bucket).key(young).send().await.expect("the young upload is kept");

    let received = |url: String| {
        let sqs = clients.sqs.clone();
        async move {
            let out = sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await.expect("receive");
            out.messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect::<Vec<_>>()
        }
    };
    let mut keys: Vec<String> = received(r.queue_url.clone())
        .await
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).expect("a job")["key"].as_str().unwrap_or("").to_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["notes/a.txt", "notes/b.txt"], "the unindexed objects queued for the embed-workers");
    let changes = received(r.keyword_queue_url.clone().expect("a keyword queue")).await;
    assert!(
        changes.iter().any(|c| c.contains(DocumentId::for_key(&ghost).as_str())),
        "the keyword indexer is told of the deletion: {changes:?}"
    );
}
