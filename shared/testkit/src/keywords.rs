//! In-memory fakes of the published keyword index's ports ([`quarry_core::keywords`]), with the
//! semantics of their AWS adapters: a manifest replaced only by a conditional write naming the tag
//! it replaces, files that a get must find.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use quarry_core::PortError;
use quarry_core::keywords::{ChangeFeed, ChunkChange, IndexFiles, ManifestRead};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct Bucket {
    manifest: Option<(Vec<u8>, String)>,
    files: BTreeMap<String, Vec<u8>>,
    /// When each file was written, in milliseconds since the Unix epoch.
    written: BTreeMap<String, i64>,
    publishes: u64,
    conflicts: u64,
    gets: u64,
    /// Every publish fails as throttled.
    refuse_publishes: bool,
    /// How long a manifest read takes.
    #[cfg(feature = "keywords")]
    manifest_delay: std::time::Duration,
}

/// Gives other tasks a turn, as a real request would: concurrent writers interleave.
async fn yield_once() {
    struct Once(bool);
    impl std::future::Future for Once {
        type Output = ();
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
            if self.0 {
                return std::task::Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
    Once(false).await;
}

/// An index's files and manifest in memory. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryIndexFiles {
    bucket: Arc<Mutex<Bucket>>,
}

impl MemoryIndexFiles {
    /// Names of the files stored.
    pub fn files(&self) -> Vec<String> {
        lock(&self.bucket).files.keys().cloned().collect()
    }

    /// Makes every file stored now look `by` older (a file left behind long ago).
    pub fn backdate(&self, by: std::time::Duration) {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        lock(&self.bucket).written.values_mut().for_each(|t| *t = t.saturating_sub(by));
    }

    /// Successful publishes so far.
    pub fn publishes(&self) -> u64 {
        lock(&self.bucket).publishes
    }

    /// From now on every publish fails as throttled (a retryable failure), after any uploads.
    pub fn refuse_publishes(&self) {
        lock(&self.bucket).refuse_publishes = true;
    }

    /// From now on every manifest read takes `delay` (a slow S3 at a cold start).
    #[cfg(feature = "keywords")]
    pub fn delay_manifest(&self, delay: std::time::Duration) {
        lock(&self.bucket).manifest_delay = delay;
    }

    /// Publishes refused because another writer's landed first.
    pub fn conflicts(&self) -> u64 {
        lock(&self.bucket).conflicts
    }

    /// File reads so far.
    pub fn gets(&self) -> u64 {
        lock(&self.bucket).gets
    }
}

impl IndexFiles for MemoryIndexFiles {
    async fn manifest(&self, known: Option<&str>) -> Result<ManifestRead, PortError> {
        yield_once().await;
        #[cfg(feature = "keywords")]
        {
            let delay = lock(&self.bucket).manifest_delay;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        Ok(match &lock(&self.bucket).manifest {
            None => ManifestRead::Missing,
            Some((_, tag)) if Some(tag.as_str()) == known => ManifestRead::Unchanged,
            Some((bytes, tag)) => ManifestRead::Found { bytes: bytes.clone(), tag: tag.clone() },
        })
    }

    async fn publish(&self, bytes: &[u8], replaces: Option<&str>) -> Result<String, PortError> {
        yield_once().await;
        let mut b = lock(&self.bucket);
        if b.refuse_publishes {
            return Err(PortError::Throttled { operation: "keywords.publish", retry_after: None, source: None });
        }
        if b.manifest.as_ref().map(|(_, t)| t.as_str()) != replaces {
            b.conflicts += 1;
            return Err(PortError::Conflict { operation: "keywords.publish" });
        }
        b.publishes += 1;
        let tag = format!("\"{}\"", b.publishes);
        b.manifest = Some((bytes.to_vec(), tag.clone()));
        Ok(tag)
    }

    async fn get(&self, name: &str) -> Result<Vec<u8>, PortError> {
        let mut b = lock(&self.bucket);
        b.gets += 1;
        b.files.get(name).cloned().ok_or_else(|| PortError::NotFound { what: name.to_owned() })
    }

    async fn put(&self, name: &str, bytes: &[u8]) -> Result<(), PortError> {
        yield_once().await;
        let mut b = lock(&self.bucket);
        b.files.insert(name.to_owned(), bytes.to_vec());
        b.written.insert(name.to_owned(), crate::fakes::now_ms());
        Ok(())
    }

    async fn delete(&self, names: &[String]) -> Result<(), PortError> {
        let mut b = lock(&self.bucket);
        for n in names {
            b.files.remove(n);
            b.written.remove(n);
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<(String, i64)>, PortError> {
        Ok(lock(&self.bucket).written.iter().map(|(n, t)| (n.clone(), *t)).collect())
    }
}

/// Changes sent to the keyword index's writer, kept in order. Clones share them.
#[derive(Debug, Clone, Default)]
pub struct MemoryChanges {
    sent: Arc<Mutex<Vec<ChunkChange>>>,
}

impl MemoryChanges {
    /// Takes what was sent so far.
    pub fn drain(&self) -> Vec<ChunkChange> {
        std::mem::take(&mut *lock(&self.sent))
    }
}

impl ChangeFeed for MemoryChanges {
    async fn changed(&self, change: &ChunkChange) -> Result<(), PortError> {
        lock(&self.sent).push(change.clone());
        Ok(())
    }
}

/// A vector store whose keyword search is the published index: every write is followed, as in
/// the deployment, by the change reaching the single writer (which reads the chunks back from the
/// vector store and publishes) and a searcher refreshing from the files. For the `KeywordSearcher`
/// contract suite over the published path (fakes, or S3 Vectors and S3 on moto).
#[cfg(feature = "keywords")]
#[derive(Debug)]
pub struct PublishedStore<V, F> {
    pub vectors: V,
    pub indexer: quarry_keyword::KeywordIndexer<V, F>,
    pub replica: quarry_keyword::KeywordReplica<F>,
    /// Each document's chunk count as written so far (a bare upsert does not say it).
    counts: Mutex<BTreeMap<quarry_core::DocumentId, u32>>,
}

#[cfg(feature = "keywords")]
impl<V, F> PublishedStore<V, F>
where
    V: quarry_core::keywords::ChunkReader + Clone,
    F: IndexFiles + Clone,
{
    pub fn new(vectors: V, files: F) -> Self {
        PublishedStore {
            indexer: quarry_keyword::KeywordIndexer::new(vectors.clone(), files.clone()),
            replica: quarry_keyword::KeywordReplica::new(files, std::time::Duration::ZERO),
            vectors,
            counts: Mutex::default(),
        }
    }

    async fn publish(&self, changes: Vec<ChunkChange>) -> Result<(), PortError> {
        self.indexer.apply(&changes).await.map(drop)
    }
}

#[cfg(feature = "keywords")]
impl<V, F> quarry_core::ports::VectorWriter for PublishedStore<V, F>
where
    V: quarry_core::ports::VectorWriter + quarry_core::keywords::ChunkReader + Clone,
    F: IndexFiles + Clone,
{
    async fn upsert(&self, records: &[quarry_core::ports::VectorRecord]) -> Result<(), PortError> {
        self.vectors.upsert(records).await?;
        let changes: Vec<ChunkChange> = {
            let mut counts = lock(&self.counts);
            for r in records {
                let next = r.id.parts().map_or(0, |(_, ordinal)| ordinal + 1);
                let count = counts.entry(r.document.clone()).or_insert(0);
                *count = (*count).max(next);
            }
            let mut docs: Vec<_> = records.iter().map(|r| r.document.clone()).collect();
            docs.dedup();
            docs.into_iter().map(|d| ChunkChange { chunks: counts[&d], document: d }).collect()
        };
        self.publish(changes).await
    }

    async fn delete_from(&self, document: &quarry_core::DocumentId, keep: u32) -> Result<u64, PortError> {
        let removed = self.vectors.delete_from(document, keep).await?;
        lock(&self.counts).insert(document.clone(), keep);
        self.publish(vec![ChunkChange { document: document.clone(), chunks: keep }]).await?;
        Ok(removed)
    }
}

#[cfg(feature = "keywords")]
impl<V: Send + Sync, F: IndexFiles> quarry_core::ports::KeywordSearcher for PublishedStore<V, F> {
    async fn keyword_search(
        &self,
        query: &quarry_core::ports::KeywordQuery,
    ) -> Result<Vec<quarry_core::ports::VectorHit>, PortError> {
        self.replica.keyword_search(query).await
    }
}
