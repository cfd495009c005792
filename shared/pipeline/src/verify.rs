//! Reconciliation (`quarry verify [--repair]`): the bucket or folder, the state store and the
//! vector store listed whole and compared, each disagreement reported by kind, and repaired
//! through the lifecycle's own steps ([`forget`], [`VectorWriter::delete_from`], a fresh index), so
//! a repair is what indexing would have done and running it twice changes nothing more.
//!
//! A document in flight (its lease held) is left out: its writes are not finished, and whatever
//! it leaves is the next run's to judge. So is a document kept by a hosted store, whose chunks are
//! not in the vector store.

use std::collections::{BTreeMap, BTreeSet};

use quarry_core::census::{StateCensus, StoredChunks, VectorCensus};
use quarry_core::hosted::HostedStore;
use quarry_core::keywords::{ChangeFeed, ChunkChange};
use quarry_core::ports::{BlobSource, CheckpointStore, DocumentRecord, VectorWriter};
use quarry_core::{DocumentId, DocumentKey, DocumentStatus, PortError};
use serde::Serialize;

use crate::forget;

/// How a document's stores disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// Checkpointed as indexed with N chunks, but fewer are stored: search misses part of it, and
    /// indexing it again stops at "unchanged". Repair: forget it and index it afresh.
    MissingVectors,
    /// Chunks stored past the checkpoint's count (a shorter version's write was cut before its
    /// tail was dropped): old text still answers. Repair: drop the tail.
    StaleTail,
    /// Chunks of a document the state store does not hold as indexed (forgotten, failed, or never
    /// checkpointed): search returns what nothing tracks. Repair: delete them.
    OrphanVectors,
    /// An object in the bucket or folder the state store has never seen. Repair: index it.
    Unindexed,
    /// A document whose object is gone: its chunks still answer. Repair: forget it.
    ObjectGone,
    /// The published keyword index holds other chunks of a document than the vector store (a
    /// change lost, a file restored): keyword search answers with what semantic search no longer
    /// has, or misses what it has. Repair: tell the keyword indexer the document changed, so it
    /// reads the document back from the vector store. Within the publishing interval of a write
    /// this is expected, and the next run no longer sees it.
    KeywordsOutOfStep,
}

impl DriftKind {
    pub const ALL: [DriftKind; 6] = [
        DriftKind::MissingVectors,
        DriftKind::StaleTail,
        DriftKind::OrphanVectors,
        DriftKind::Unindexed,
        DriftKind::ObjectGone,
        DriftKind::KeywordsOutOfStep,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DriftKind::MissingVectors => "missing_vectors",
            DriftKind::StaleTail => "stale_tail",
            DriftKind::OrphanVectors => "orphan_vectors",
            DriftKind::Unindexed => "unindexed",
            DriftKind::ObjectGone => "object_gone",
            DriftKind::KeywordsOutOfStep => "keywords_out_of_step",
        }
    }
}

/// One disagreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub kind: DriftKind,
    pub document: DocumentId,
    /// Unknown for chunks no state names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<DocumentKey>,
    /// Chunks the checkpoint counts (`None`: no checkpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpointed: Option<u32>,
    /// Chunks the vector store holds.
    pub stored: u32,
    /// Chunks the published keyword index holds (only for [`DriftKind::KeywordsOutOfStep`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword_chunks: Option<u32>,
    /// One past the vector store's highest ordinal: what a change names, so that the keyword
    /// indexer reads back every chunk stored.
    #[serde(skip)]
    pub stored_end: u32,
}

impl Drift {
    /// A drift of `kind` on `document`, with nothing else known yet.
    fn new(kind: DriftKind, document: &DocumentId) -> Drift {
        Drift {
            kind,
            document: document.clone(),
            key: None,
            checkpointed: None,
            stored: 0,
            keyword_chunks: None,
            stored_end: 0,
        }
    }
}

/// What a verification saw and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub objects: usize,
    pub documents: usize,
    /// Documents whose chunks are in the vector store, and how many chunks.
    pub stored_documents: usize,
    pub stored_chunks: u64,
    /// Documents left out because a worker holds them.
    pub in_flight: usize,
    /// Every disagreement, by kind then document.
    pub drift: Vec<Drift>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.drift.is_empty()
    }

    /// How many of each kind, every kind named.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        DriftKind::ALL.into_iter().map(|k| (k.name(), self.drift.iter().filter(|d| d.kind == k).count())).collect()
    }
}

/// Lists the objects under `prefix`, every document state and every stored document (and, where
/// a published keyword index is given, every document it holds), and compares them.
pub async fn verify<B, S, V, K>(
    source: &B,
    prefix: &str,
    state: &S,
    vectors: &V,
    keywords: Option<&K>,
) -> Result<Report, PortError>
where
    B: BlobSource,
    S: StateCensus,
    V: VectorCensus,
    K: VectorCensus,
{
    let objects: BTreeSet<DocumentKey> = source.list(prefix).await?.into_iter().map(|b| b.key).collect();
    let documents = state.documents().await?;
    let stored: BTreeMap<DocumentId, StoredChunks> =
        vectors.stored().await?.into_iter().map(|s| (s.document.clone(), s)).collect();
    let mut report = compare(prefix, &objects, &documents, &stored);
    if let Some(keywords) = keywords {
        let indexed: BTreeMap<DocumentId, StoredChunks> =
            keywords.stored().await?.into_iter().map(|s| (s.document.clone(), s)).collect();
        report.drift.extend(out_of_step(&stored, &indexed));
    }
    report.drift.sort_by(|a, b| (a.kind, &a.document).cmp(&(b.kind, &b.document)));
    Ok(report)
}

/// Documents whose chunks differ between the vector store and the keyword index.
fn out_of_step(
    stored: &BTreeMap<DocumentId, StoredChunks>,
    indexed: &BTreeMap<DocumentId, StoredChunks>,
) -> Vec<Drift> {
    let ids: BTreeSet<&DocumentId> = stored.keys().chain(indexed.keys()).collect();
    ids.into_iter()
        .filter_map(|id| {
            let (s, k) = (stored.get(id), indexed.get(id));
            let (so, ko) = (s.map_or(&[][..], |c| c.ordinals.as_slice()), k.map_or(&[][..], |c| c.ordinals.as_slice()));
            (so != ko).then(|| Drift {
                stored: s.map_or(0, StoredChunks::count),
                keyword_chunks: Some(k.map_or(0, StoredChunks::count)),
                stored_end: s.and_then(|s| s.ordinals.last()).map_or(0, |o| o + 1),
                ..Drift::new(DriftKind::KeywordsOutOfStep, id)
            })
        })
        .collect()
}

fn compare(
    prefix: &str,
    objects: &BTreeSet<DocumentKey>,
    documents: &[DocumentRecord],
    stored: &BTreeMap<DocumentId, StoredChunks>,
) -> Report {
    let mut report = Report {
        objects: objects.len(),
        documents: documents.len(),
        stored_documents: stored.len(),
        stored_chunks: stored.values().map(|s| u64::from(s.count())).sum(),
        ..Report::default()
    };
    let drift = |kind, d: &DocumentRecord, checkpointed, stored: Option<&StoredChunks>| Drift {
        key: d.key.clone(),
        checkpointed,
        stored: stored.map_or(0, StoredChunks::count),
        ..Drift::new(kind, &d.id)
    };
    let mut known = BTreeSet::new();
    for d in documents {
        known.insert(d.id.clone());
        if let Some(k) = &d.key {
            known.insert(DocumentId::for_key(k));
        }
        let held = stored.get(&d.id);
        if matches!(d.status, DocumentStatus::Processing { .. }) {
            report.in_flight += 1;
            continue;
        }
        // Only keys under the prefix verified can be judged gone.
        let gone = d.key.as_ref().is_some_and(|k| k.as_str().starts_with(prefix) && !objects.contains(k));
        if gone {
            report.drift.push(drift(DriftKind::ObjectGone, d, None, held));
            continue;
        }
        match &d.status {
            // A hosted store keeps the document's chunks; the vector store has none to compare.
            DocumentStatus::Indexed { .. } if d.handle.is_some() => {}
            DocumentStatus::Indexed { chunks } => {
                let (below, count) = held.map_or((0, 0), |s| (s.below(*chunks), s.count()));
                if below < *chunks {
                    report.drift.push(drift(DriftKind::MissingVectors, d, Some(*chunks), held));
                } else if count > *chunks {
                    report.drift.push(drift(DriftKind::StaleTail, d, Some(*chunks), held));
                }
            }
            // Waiting for its turn (a paused budget): an earlier version's chunks may still answer
            // until it is indexed, as they would have without the pause.
            DocumentStatus::Pending => {}
            _ if held.is_some() => report.drift.push(drift(DriftKind::OrphanVectors, d, None, held)),
            _ => {}
        }
    }
    for (id, s) in stored {
        if !known.contains(id) {
            report.drift.push(Drift { stored: s.count(), ..Drift::new(DriftKind::OrphanVectors, id) });
        }
    }
    for key in objects {
        let id = DocumentId::for_key(key);
        if !known.contains(&id) {
            report.drift.push(Drift { key: Some(key.clone()), ..Drift::new(DriftKind::Unindexed, &id) });
        }
    }
    report
}

/// What a repair did, and the keys the caller must index (a local run, or jobs on the queue).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Repaired {
    /// Chunks deleted (orphans, stale tails, documents forgotten).
    pub chunks_removed: u64,
    /// Documents forgotten (gone objects, and those to index afresh).
    pub forgotten: usize,
    /// To index: objects never seen, and documents missing chunks, whose state is now forgotten
    /// so that indexing does not stop at "unchanged".
    pub reindex: Vec<DocumentKey>,
    /// Documents the keyword indexer was told to read back.
    pub keyword_changes: usize,
}

/// Repairs every drift in `report` through the lifecycle's own steps. Idempotent: each step is
/// (a second run finds nothing, or the same keys still to index if the caller has not yet).
/// `feed` is the published keyword index's, where there is one: on AWS `writer` is also a
/// [`crate::Feeding`], so its deletions reach the index as every other path's do.
pub async fn repair<S, W, F>(
    report: &Report,
    state: &S,
    writer: &W,
    hosted: Option<&dyn HostedStore>,
    feed: Option<&F>,
) -> Result<Repaired, PortError>
where
    S: CheckpointStore,
    W: VectorWriter,
    F: ChangeFeed,
{
    let mut done = Repaired::default();
    for d in &report.drift {
        match d.kind {
            DriftKind::StaleTail => {
                done.chunks_removed += writer.delete_from(&d.document, d.checkpointed.unwrap_or(0)).await?;
            }
            DriftKind::OrphanVectors => done.chunks_removed += writer.delete_from(&d.document, 0).await?,
            DriftKind::ObjectGone => {
                done.chunks_removed += forget(state, writer, hosted, &d.document).await?;
                done.forgotten += 1;
            }
            DriftKind::MissingVectors => {
                done.chunks_removed += forget(state, writer, hosted, &d.document).await?;
                done.forgotten += 1;
                done.reindex.extend(d.key.clone());
            }
            DriftKind::Unindexed => done.reindex.extend(d.key.clone()),
            // The indexer reads the document back from the vector store as it is when it runs:
            // chunks deleted by the repairs above are dropped, whatever the count says.
            DriftKind::KeywordsOutOfStep => {
                if let Some(feed) = feed {
                    feed.changed(&ChunkChange { document: d.document.clone(), chunks: d.stored_end }).await?;
                    done.keyword_changes += 1;
                }
            }
        }
    }
    Ok(done)
}
