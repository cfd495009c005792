//! A keyword index published on object storage ([`quarry_core::keywords::IndexFiles`]): the AWS
//! deployment's, where no database sits beside the searchers.
//!
//! One writer (the keyword-indexer function, reserved concurrency 1) applies [`ChunkChange`]s: it
//! brings its in-memory copy up to the published manifest, deletes each changed document's chunks
//! and adds the ones the vector store holds now, commits (tantivy writes a new immutable segment,
//! and a new alive-bitset file for each older segment that lost chunks), lets tantivy's log merge
//! policy merge, uploads the files the manifest does not name yet, and publishes a manifest naming
//! them with a conditional write. Searchers load the files a manifest names into memory and poll
//! for a newer manifest, fetching only the files they lack.
//!
//! Every uploaded object's name carries the writer's generation and a nonce, so two writers racing
//! never overwrite each other's files: the one whose manifest lands wins, and the other starts over
//! from it. Files a manifest stops naming are retired and deleted a grace period later, once no
//! searcher can still be loading the manifest that named them.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use quarry_core::census::StoredChunks;
use quarry_core::keywords::{ChunkChange, IndexFiles, ManifestRead};
use quarry_core::meta::{ChunkMeta, Metadata};
use quarry_core::ports::VectorHit;
use quarry_core::{CharSpan, ChunkId, DocumentId, Filter, PageRange, PortError};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tantivy::directory::{Directory, RamDirectory};
use tantivy::index::SegmentComponent;
use tantivy::schema::Value as _;

use crate::filter::FilterMemos;
use crate::index::{KeywordError, KeywordIndex};

/// Files fetched at once, a new one starting as each ends. S3 serves each connection at about
/// 85 MB/s after 100-200 ms to the first byte (AWS's performance guidelines), so a cold start's
/// time is set by its waits, not its bytes, unless it asks for many files at once. With S3's
/// published figures modelled (`cargo bench -p quarry-e2e --bench keywords`, 100,000 chunks, 48
/// files, 82 MB, 100 ms to the first byte): 1,573 ms in waves of 8, 586 ms with 32 in flight.
const FETCHES: usize = 32;

/// How long a file a manifest stopped naming stays, for searchers still loading an older one.
pub const RETIRE_AFTER: Duration = Duration::from_secs(15 * 60);

/// What a manifest says: the tantivy `meta.json` of the published commit and where each file it
/// needs is stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Counts publishes: 1 for the first.
    pub generation: u64,
    /// When it was published, in milliseconds since the Unix epoch (freshness is measured from it).
    pub published_ms: i64,
    /// Live chunks.
    pub chunks: u64,
    pub segments: usize,
    /// Total size of the files, in bytes.
    pub bytes: u64,
    /// tantivy's `meta.json` for this commit.
    pub meta: String,
    /// Each file tantivy needs, by its name in the index, to the object that holds it.
    pub files: BTreeMap<String, Stored>,
    /// Objects no longer named, with when they stopped being: deleted after [`RETIRE_AFTER`].
    #[serde(default)]
    pub retired: Vec<Retired>,
}

impl Manifest {
    /// Milliseconds since it was published (0 for none).
    pub fn age_ms(&self) -> i64 {
        if self.generation == 0 { 0 } else { (now_ms() - self.published_ms).max(0) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    pub object: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub object: String,
    pub since_ms: i64,
}

/// A manifest read and its files fetched, ready to [`PublishedIndex::install`].
#[derive(Debug)]
pub struct Fetched {
    manifest: Manifest,
    tag: String,
}

/// What search shows of a chunk, stored beside it in the index.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    document: DocumentId,
    text: String,
    pages: Option<PageRange>,
    span: CharSpan,
    meta: ChunkMeta,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Port(#[from] PortError),
    #[error(transparent)]
    Index(#[from] KeywordError),
    #[error("the published keyword manifest cannot be read")]
    Manifest(#[source] serde_json::Error),
    #[error("the published keyword index cannot be loaded into memory")]
    Load(#[source] std::io::Error),
}

impl quarry_core::Classify for PublishError {
    fn class(&self) -> quarry_core::ErrorClass {
        match self {
            PublishError::Port(e) => e.class(),
            PublishError::Index(e) => e.class(),
            PublishError::Manifest(_) | PublishError::Load(_) => quarry_core::ErrorClass::Permanent,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            PublishError::Port(e) => e.code(),
            _ => "keyword_index",
        }
    }
}

impl From<PublishError> for PortError {
    fn from(e: PublishError) -> PortError {
        match e {
            PublishError::Port(p) => p,
            other => {
                let retry = matches!(quarry_core::Classify::class(&other), quarry_core::ErrorClass::Retryable);
                let operation = "keywords.published";
                if retry {
                    PortError::Transient { operation, source: Box::new(other) }
                } else {
                    PortError::Permanent { operation, source: Box::new(other) }
                }
            }
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A copy in memory of the published index: what a searcher searches and the writer writes.
pub struct PublishedIndex {
    directory: RamDirectory,
    index: Option<KeywordIndex>,
    manifest: Manifest,
    /// The manifest's tag, for a conditional read or publish.
    tag: Option<String>,
    /// Each document's metadata, for filters: read once per segment from a stored payload.
    metas: FxHashMap<DocumentId, Metadata>,
    scanned: HashSet<tantivy::index::SegmentId>,
    /// Filters' answers by segment, kept across publishes: a changed document's chunks go to a new
    /// segment with its new metadata, and its rows in older ones are deleted.
    memos: FilterMemos,
}

impl std::fmt::Debug for PublishedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedIndex").field("generation", &self.manifest.generation).finish_non_exhaustive()
    }
}

impl Default for PublishedIndex {
    fn default() -> Self {
        PublishedIndex {
            directory: RamDirectory::create(),
            index: None,
            manifest: Manifest::default(),
            tag: None,
            metas: FxHashMap::default(),
            scanned: HashSet::new(),
            memos: FilterMemos::default(),
        }
    }
}

impl PublishedIndex {
    /// The manifest this copy holds (generation 0: nothing published yet, or not yet loaded).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Brings this copy up to the published manifest, fetching only the files it lacks. Returns
    /// whether anything changed.
    pub async fn sync<F: IndexFiles>(&mut self, files: &F) -> Result<bool, PublishError> {
        match self.fetch(files).await? {
            Some(fetched) => {
                self.install(fetched)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The newer manifest, if there is one, with the files this copy lacks written into its
    /// directory. Searches go on meanwhile (they see the directory only through the reader, which
    /// [`PublishedIndex::install`] reloads), so a searcher downloads under a shared lock.
    pub async fn fetch<F: IndexFiles>(&self, files: &F) -> Result<Option<Fetched>, PublishError> {
        let (bytes, tag) = match files.manifest(self.tag.as_deref()).await? {
            ManifestRead::Missing | ManifestRead::Unchanged => return Ok(None),
            ManifestRead::Found { bytes, tag } => (bytes, tag),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(PublishError::Manifest)?;
        let wanted: Vec<(&String, &Stored)> = manifest
            .files
            .iter()
            .filter(|(name, stored)| {
                let current = self.manifest.files.get(*name).is_some_and(|s| s.object == stored.object);
                !current || !self.directory.exists(Path::new(name)).unwrap_or(false)
            })
            .collect();
        // A cold start fetches every file (48 at 100,000 chunks), each written as it arrives.
        // Made first: a stream over a closure's futures is not `Send` to the compiler (its
        // higher-ranked lifetimes), and a search function's refresh runs on a spawned task.
        let gets: Vec<_> = wanted
            .iter()
            .map(|&(name, stored)| async move { files.get(&stored.object).await.map(|data| (name, data)) })
            .collect();
        let mut arriving = futures::stream::iter(gets).buffer_unordered(FETCHES);
        while let Some(got) = arriving.next().await {
            let (name, data) = got?;
            self.directory.atomic_write(Path::new(name), &data).map_err(PublishError::Load)?;
        }
        drop(arriving);
        Ok(Some(Fetched { manifest, tag }))
    }

    /// Makes a fetched manifest the one searched.
    pub fn install(&mut self, fetched: Fetched) -> Result<(), PublishError> {
        let Fetched { manifest, tag } = fetched;
        if self.tag.as_deref() == Some(tag.as_str()) {
            return Ok(());
        }
        self.directory.atomic_write(Path::new("meta.json"), manifest.meta.as_bytes()).map_err(PublishError::Load)?;
        for name in self.manifest.files.keys() {
            if !manifest.files.contains_key(name) {
                // Memory only: a file no manifest names any more.
                let _ = self.directory.delete(Path::new(name));
            }
        }
        match &self.index {
            Some(index) => index.reload()?,
            None => {
                let opened = KeywordIndex::published(self.directory.clone(), false)
                    .map_err(|source| KeywordError::Index { operation: "open published", source })?;
                self.index = Some(opened);
            }
        }
        self.manifest = manifest;
        self.tag = Some(tag);
        self.scan_metadata()?;
        Ok(())
    }

    /// Reads each new segment's documents' metadata (one stored payload per document).
    fn scan_metadata(&mut self) -> Result<(), PublishError> {
        let Some(index) = &self.index else { return Ok(()) };
        let searcher = index.searcher();
        let mut current = HashSet::new();
        let failed = |source| KeywordError::Index { operation: "read payloads", source };
        for segment in searcher.segment_readers() {
            let id = segment.segment_id();
            current.insert(id);
            if self.scanned.contains(&id) {
                continue;
            }
            let Some(column) = segment.fast_fields().str("doc").map_err(failed)? else { continue };
            let store = segment.get_store_reader(4).map_err(|e| failed(e.into()))?;
            let mut seen = vec![false; column.dictionary().num_terms()];
            for doc in segment.doc_ids_alive() {
                let Some(ord) = column.term_ords(doc).next() else { continue };
                let Some(first) = seen.get_mut(ord as usize).filter(|s| !**s) else { continue };
                *first = true;
                let stored: tantivy::TantivyDocument = store.get(doc).map_err(failed)?;
                if let Some((document, payload)) = payload_of(index, &stored) {
                    self.metas.insert(document, payload.meta.to_metadata());
                }
            }
        }
        self.scanned = current;
        Ok(())
    }

    /// Every document this copy holds, with its live chunks' ordinals (`quarry verify`
    /// compares them with the vector store's), from the chunk id column.
    pub fn census(&self) -> Result<Vec<StoredChunks>, PublishError> {
        let Some(index) = &self.index else { return Ok(Vec::new()) };
        let failed = |source| KeywordError::Index { operation: "census", source };
        let mut ids: Vec<(DocumentId, u32)> = Vec::new();
        for segment in index.searcher().segment_readers() {
            let Some(column) = segment.fast_fields().str("chunk").map_err(failed)? else { continue };
            let rows: Vec<tantivy::DocId> = segment.doc_ids_alive().collect();
            let chunks = crate::index::strings_of(&column, &rows).map_err(|e| failed(e.into()))?;
            ids.extend(chunks.into_iter().flatten().filter_map(|c| ChunkId::from_stored(c).parts()));
        }
        Ok(StoredChunks::group(ids))
    }

    /// The `k` best chunks for `terms` among those `filter` takes, as search answers them
    /// (scores in [0, 1] over the query's ceiling).
    pub fn search(
        &self,
        terms: &[Box<str>],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<VectorHit>, PublishError> {
        let Some(index) = &self.index else { return Ok(Vec::new()) };
        let accept = filter.map(|f| move |d: &DocumentId| self.metas.get(d).is_some_and(|m| f.matches(m)));
        let memo = filter.map(|f| self.memos.of(f));
        let (hits, ceiling) =
            index.search_at(terms, k, accept.as_ref().map(|f| f as &dyn Fn(&DocumentId) -> bool), memo.as_deref())?;
        let searcher = index.searcher();
        let ceiling = ceiling.max(f32::MIN_POSITIVE);
        let mut out = Vec::with_capacity(hits.len());
        for (hit, address) in hits {
            let stored: tantivy::TantivyDocument =
                searcher.doc(address).map_err(|source| KeywordError::Index { operation: "read payload", source })?;
            let Some((_, p)) = payload_of(index, &stored) else { continue };
            out.push(VectorHit {
                id: hit.chunk,
                document: hit.document,
                score: (hit.score / ceiling).clamp(0.0, 1.0),
                text: p.text,
                pages: p.pages,
                span: p.span,
                meta: p.meta,
            });
        }
        Ok(out)
    }

    /// Applies `changes` (each document's chunks as the vector store holds them now) on top of
    /// the published index and publishes the result. [`PortError::Conflict`] when another
    /// writer published first: this copy is then dropped, and the caller starts over.
    pub async fn publish<F: IndexFiles>(
        &mut self,
        files: &F,
        changes: &[(ChunkChange, Vec<VectorHit>)],
    ) -> Result<&Manifest, PublishError> {
        self.sync(files).await?;
        let index = match &self.index {
            Some(index) => index,
            None => {
                let created = KeywordIndex::published(self.directory.clone(), true)
                    .map_err(|source| KeywordError::Index { operation: "create published", source })?;
                self.index.insert(created)
            }
        };
        let generation = self.manifest.generation + 1;
        for (change, chunks) in changes {
            index.remove_document(&change.document)?;
            for c in chunks {
                let payload = Payload {
                    document: c.document.clone(),
                    text: c.text.clone(),
                    pages: c.pages,
                    span: c.span,
                    meta: c.meta.clone(),
                };
                let payload = serde_json::to_string(&payload).map_err(PublishError::Manifest)?;
                index.add(&c.id, &c.document, c.meta.search_title(), &c.text, &payload)?;
            }
        }
        index.set_stamp(generation);
        index.finish()?;
        let next = self.next_manifest(generation)?;
        let fresh: Vec<(&String, &Stored)> =
            next.files.iter().filter(|(name, s)| self.manifest.files.get(*name) != Some(*s)).collect();
        for (name, stored) in &fresh {
            let data = self
                .directory
                .atomic_read(Path::new(name))
                .map_err(|e| PublishError::Load(std::io::Error::other(e)))?;
            if let Err(e) = files.put(&stored.object, &data).await {
                // This copy now holds a commit no manifest names: start the next attempt afresh.
                *self = PublishedIndex::default();
                return Err(e.into());
            }
        }
        let bytes = serde_json::to_vec(&next).map_err(PublishError::Manifest)?;
        match files.publish(&bytes, self.tag.as_deref()).await {
            Ok(tag) => {
                let expired: Vec<String> = self
                    .manifest
                    .retired
                    .iter()
                    .filter(|r| !next.retired.contains(r))
                    .map(|r| r.object.clone())
                    .collect();
                self.manifest = next;
                self.tag = Some(tag);
                self.scan_metadata()?;
                if !expired.is_empty() {
                    // Best effort: an object left behind costs storage, not correctness.
                    if let Err(e) = files.delete(&expired).await {
                        tracing::warn!(error = %quarry_core::error::chain(&e), "retired keyword index files were not deleted");
                    }
                }
                Ok(&self.manifest)
            }
            Err(e) => {
                // Lost the race: what was uploaded is named by no manifest.
                let orphans: Vec<String> = fresh.iter().map(|(_, s)| s.object.clone()).collect();
                let _ = files.delete(&orphans).await;
                *self = PublishedIndex::default();
                Err(e.into())
            }
        }
    }

    /// The manifest of what the directory holds now, at `generation`.
    fn next_manifest(&self, generation: u64) -> Result<Manifest, PublishError> {
        let Some(index) = &self.index else { return Ok(Manifest::default()) };
        let metas = index
            .tantivy()
            .searchable_segment_metas()
            .map_err(|source| KeywordError::Index { operation: "list segments", source })?;
        let nonce = uuid_nonce();
        let mut files = BTreeMap::new();
        for meta in &metas {
            for component in [
                SegmentComponent::Postings,
                SegmentComponent::Positions,
                SegmentComponent::FastFields,
                SegmentComponent::FieldNorms,
                SegmentComponent::Terms,
                SegmentComponent::Store,
                SegmentComponent::Delete,
            ] {
                if component == SegmentComponent::Delete && !meta.has_deletes() {
                    continue;
                }
                let path = meta.relative_path(component);
                let Ok(len) = self.directory.open_read(&path).map(|f| tantivy::HasLen::len(&f) as u64) else {
                    continue;
                };
                let name = path.to_string_lossy().into_owned();
                let stored = match self.manifest.files.get(&name) {
                    Some(s) => s.clone(),
                    None => Stored { object: format!("files/{generation:012}-{nonce}/{name}"), bytes: len },
                };
                files.insert(name, stored);
            }
        }
        let meta = self
            .directory
            .atomic_read(Path::new("meta.json"))
            .map_err(|e| PublishError::Load(std::io::Error::other(e)))?;
        let now = now_ms();
        let cutoff = now - i64::try_from(RETIRE_AFTER.as_millis()).unwrap_or(i64::MAX);
        let named: HashSet<&str> = files.values().map(|s| s.object.as_str()).collect();
        let mut retired: Vec<Retired> = self.manifest.retired.iter().filter(|r| r.since_ms > cutoff).cloned().collect();
        retired.extend(
            self.manifest
                .files
                .values()
                .filter(|s| !named.contains(s.object.as_str()))
                .map(|s| Retired { object: s.object.clone(), since_ms: now }),
        );
        Ok(Manifest {
            generation,
            published_ms: now,
            chunks: metas.iter().map(|m| u64::from(m.num_docs())).sum(),
            segments: metas.len(),
            bytes: files.values().map(|s| s.bytes).sum(),
            meta: String::from_utf8_lossy(&meta).into_owned(),
            files,
            retired,
        })
    }
}

fn payload_of(index: &KeywordIndex, stored: &tantivy::TantivyDocument) -> Option<(DocumentId, Payload)> {
    let json = stored.get_first(index.fields().payload?)?.as_str()?;
    let payload: Payload = serde_json::from_str(json).ok()?;
    Some((payload.document.clone(), payload))
}

/// Unique enough that two writers never name an object alike: time and the process's address space.
fn uuid_nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms());
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}
