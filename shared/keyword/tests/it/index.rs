#![allow(clippy::unwrap_used, clippy::expect_used)]

use quarry_core::{ChunkId, DocumentId};
use quarry_keyword::{KeywordIndex, query_terms};

fn doc(n: u32) -> DocumentId {
    DocumentId::parse(&format!("{n:032x}")).expect("id")
}

fn chunk(n: u32) -> ChunkId {
    ChunkId::new(&doc(n / 100), n % 100)
}

fn ids(index: &KeywordIndex, q: &str, k: usize) -> Vec<ChunkId> {
    index.search(&query_terms(q), k, None, None).unwrap().hits.into_iter().map(|h| h.chunk).collect()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("quarry-keyword-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn scores_are_bm25_with_the_title_counted_twice() {
    let ix = KeywordIndex::in_memory();
    let rows: [(&str, &str); 4] =
        [("Apple", "apple banana cherry"), ("", "apple apple cherry"), ("", "kiwi lime date"), ("", "fig grape")];
    for (i, (title, body)) in rows.iter().enumerate() {
        ix.upsert(&chunk(i as u32), &doc(i as u32 / 100), title, body).unwrap();
    }
    let ranked = ix.search(&query_terms("apple"), 10, None, None).unwrap();
    // By hand (Lucene's BM25, k1 1.2, b 0.75): 4 chunks, 2 with "apple", 13 terms in all. Short
    // lengths are stored exactly.
    let idf = (1.0f32 + (4.0 - 2.0 + 0.5) / (2.0 + 0.5)).ln();
    let avg = 13.0f32 / 4.0;
    let bm25 = |tf: f32, len: f32| idf * 2.2 * tf / (tf + 1.2 * (0.25 + 0.75 * len / avg));
    // Chunk 0: "apple" twice from its title and once from its body, 5 terms; chunk 1: twice in 3.
    let want = [bm25(3.0, 5.0), bm25(2.0, 3.0)];
    assert_eq!(ranked.hits.len(), 2);
    assert_eq!(ranked.hits[0].chunk, chunk(0));
    for (got, want) in ranked.hits.iter().zip(want) {
        assert!((got.score - want).abs() < 1e-4, "{} vs {want}", got.score);
    }
    assert!((ranked.ceiling - idf * 2.2).abs() < 1e-4, "{}", ranked.ceiling);
    // A word no chunk holds adds nothing to the ceiling.
    let unknown = ix.search(&query_terms("apple zucchini"), 10, None, None).unwrap();
    assert!((unknown.ceiling - ranked.ceiling).abs() < 1e-6);
}

#[test]
fn rare_words_weigh_more_and_titles_count() {
    let ix = KeywordIndex::in_memory();
    for i in 0..20 {
        ix.upsert(&chunk(i), &doc(0), "", "common filler text about nothing in particular").unwrap();
    }
    ix.upsert(&chunk(50), &doc(0), "", "common words and one rare zebra").unwrap();
    ix.upsert(&chunk(51), &doc(0), "", "common common common common").unwrap();
    assert_eq!(ids(&ix, "common zebra", 3)[0], chunk(50));

    let ix = KeywordIndex::in_memory();
    ix.upsert(&chunk(1), &doc(0), "", "zebra facts and more words here").unwrap();
    ix.upsert(&chunk(2), &doc(0), "Zebra", "facts and more words here").unwrap();
    ix.upsert(&chunk(3), &doc(0), "", "nothing to see").unwrap();
    assert_eq!(ids(&ix, "zebra", 2)[0], chunk(2));
}

#[test]
fn upsert_replaces_and_remove_forgets() {
    let ix = KeywordIndex::in_memory();
    ix.upsert(&chunk(7), &doc(0), "", "old words").unwrap();
    ix.upsert(&chunk(7), &doc(0), "", "new words").unwrap();
    assert!(ids(&ix, "old", 10).is_empty());
    assert_eq!(ids(&ix, "new", 10), [chunk(7)]);
    assert_eq!(ix.len(), 1);
    ix.remove(&chunk(7)).unwrap();
    ix.remove(&chunk(7)).unwrap();
    assert!(ids(&ix, "words", 10).is_empty());
    assert!(ix.is_empty());
    ix.upsert(&chunk(8), &doc(0), "", "words").unwrap();
    ix.clear().unwrap();
    assert!(ids(&ix, "words", 10).is_empty());
    // After a clear, chunks go in without a delete each (what a rebuild does).
    ix.insert(&chunk(8), &doc(0), "", "words again").unwrap();
    assert_eq!(ids(&ix, "words", 10), [chunk(8)]);
}

#[test]
fn filters_decide_inside_the_scan_so_top_k_stays_full() {
    let ix = KeywordIndex::in_memory();
    for i in 0..10 {
        ix.upsert(&chunk(i * 100), &doc(i), "", if i < 8 { "otter otter otter" } else { "otter" }).unwrap();
    }
    let want = [doc(8), doc(9)];
    let accept = |d: &DocumentId| want.contains(d);
    let hits = ix.search(&query_terms("otter"), 2, Some(&accept), None).unwrap().hits;
    assert_eq!(hits.iter().map(|h| h.document.clone()).collect::<Vec<_>>(), want);
    let none = |_: &DocumentId| false;
    assert!(ix.search(&query_terms("otter"), 2, Some(&none), None).unwrap().hits.is_empty());
}

#[test]
fn a_committed_index_reopens_with_its_stamp_and_an_uncommitted_one_without() {
    let dir = scratch("reopen");
    {
        let ix = KeywordIndex::open(&dir).unwrap();
        assert_eq!(ix.stamp().unwrap(), None);
        ix.upsert(&chunk(1), &doc(0), "", "persisted words").unwrap();
        ix.set_stamp(41);
        ix.commit().unwrap();
        ix.upsert(&chunk(2), &doc(0), "", "more words").unwrap();
        ix.set_stamp(42);
        // Dropped: what is waiting is committed.
    }
    {
        let ix = KeywordIndex::open(&dir).unwrap();
        assert_eq!(ix.stamp().unwrap(), Some(42));
        assert_eq!(ids(&ix, "words", 10).len(), 2);
        // Another writer on the same folder is refused while this one holds the lock.
        ix.upsert(&chunk(3), &doc(0), "", "third").unwrap();
        let other = KeywordIndex::open(&dir).unwrap();
        let busy = other.upsert(&chunk(4), &doc(0), "", "fourth").expect_err("one writer");
        assert!(matches!(busy, quarry_keyword::KeywordError::Busy(_)), "{busy:?}");
        // A reader beside the writer searches what was committed.
        assert_eq!(ids(&other, "words", 10).len(), 2);
        // Left uncommitted by a crash (forgotten here, so no drop runs): the stamp stays 42.
        std::mem::forget(ix);
    }
    let _ = std::fs::remove_dir_all(&dir);

    // Damage: an index this build cannot read is replaced by an empty one, without a stamp.
    let dir = scratch("damaged");
    {
        let ix = KeywordIndex::open(&dir).unwrap();
        ix.upsert(&chunk(1), &doc(0), "", "words").unwrap();
        ix.set_stamp(7);
    }
    std::fs::write(dir.join("meta.json"), "{ not json").unwrap();
    let ix = KeywordIndex::open(&dir).unwrap();
    assert_eq!(ix.stamp().unwrap(), None);
    assert!(ix.is_empty());
    drop(ix);
    let _ = std::fs::remove_dir_all(&dir);
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(32))]
    /// Whatever the sequence of upserts, removals and commits, a word finds exactly the live
    /// chunks that hold it.
    #[test]
    fn finds_exactly_the_live_chunks_holding_a_word(
        ops in proptest::collection::vec((0u32..200, proptest::collection::vec(0usize..6, 0..4), 0u8..8), 1..400)
    ) {
        const WORDS: [&str; 6] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
        let ix = KeywordIndex::in_memory();
        let mut model: std::collections::BTreeMap<u32, Vec<usize>> = Default::default();
        for (n, words, op) in ops {
            match op {
                0 | 1 => {
                    ix.remove(&chunk(n)).unwrap();
                    model.remove(&n);
                }
                2 => ix.commit().unwrap(),
                _ => {
                    let body: Vec<&str> = words.iter().map(|&w| WORDS[w]).collect();
                    ix.upsert(&chunk(n), &doc(n / 100), "", &body.join(" ")).unwrap();
                    model.insert(n, words);
                }
            }
        }
        for (w, word) in WORDS.iter().enumerate() {
            let mut got = ids(&ix, word, usize::MAX);
            got.sort_unstable();
            let mut want: Vec<ChunkId> = model.iter().filter(|(_, ws)| ws.contains(&w)).map(|(n, _)| chunk(*n)).collect();
            want.sort_unstable();
            proptest::prop_assert_eq!(got, want);
        }
        proptest::prop_assert_eq!(ix.len(), model.len() as u64);
    }
}
