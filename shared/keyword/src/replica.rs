//! A searcher's copy of the published keyword index: loaded at the first search (or by
//! [`KeywordReplica::warm`] at cold start), and brought up to the newest manifest at most every
//! `interval`, fetching only the files it lacks.

use std::time::{Duration, Instant};

use quarry_core::PortError;
use quarry_core::keywords::IndexFiles;
use quarry_core::ports::{KeywordQuery, KeywordSearcher, VectorHit};

use crate::published::{Manifest, PublishedIndex};

/// How often a searcher asks for a newer manifest by default: one conditional GET per interval
/// per instance, and the most a published change waits on top of the writer's batching window.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// The published index as one searcher sees it.
#[derive(Debug)]
pub struct KeywordReplica<F> {
    files: F,
    interval: Duration,
    index: tokio::sync::RwLock<PublishedIndex>,
    /// When the manifest was last asked for.
    checked: std::sync::Mutex<Option<Instant>>,
    /// Held by the refresh under way.
    refreshing: tokio::sync::Mutex<()>,
    /// A manifest was read (or found missing) at least once.
    loaded: std::sync::atomic::AtomicBool,
}

impl<F: IndexFiles> KeywordReplica<F> {
    pub fn new(files: F, interval: Duration) -> Self {
        KeywordReplica {
            files,
            interval,
            index: tokio::sync::RwLock::new(PublishedIndex::default()),
            checked: std::sync::Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            loaded: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Loads the newest manifest now, whatever the interval says.
    pub async fn warm(&self) -> Result<(), PortError> {
        self.refresh(true).await
    }

    /// The manifest searched now (generation 0: none loaded).
    pub async fn manifest(&self) -> Manifest {
        self.index.read().await.manifest().clone()
    }

    /// The manifest searched, after a refresh if one is due: what readiness reports.
    pub async fn current(&self) -> Result<Manifest, PortError> {
        self.refresh(false).await?;
        Ok(self.manifest().await)
    }

    async fn refresh(&self, force: bool) -> Result<(), PortError> {
        // One refresh at a time; searches meanwhile use the copy they have, unless there is none
        // yet (a readiness probe may be loading it as the first search comes): then they wait.
        let _refreshing = match self.refreshing.try_lock() {
            Ok(guard) => guard,
            Err(_) if self.loaded.load(std::sync::atomic::Ordering::Acquire) => return Ok(()),
            Err(_) => self.refreshing.lock().await,
        };
        {
            let mut checked = self.checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !force && checked.is_some_and(|at| at.elapsed() < self.interval) {
                return Ok(());
            }
            *checked = Some(Instant::now());
        }
        // Downloads under the shared lock, beside searches; only the switch takes the exclusive one.
        let fetched = self.index.read().await.fetch(&self.files).await?;
        let Some(fetched) = fetched else {
            self.loaded.store(true, std::sync::atomic::Ordering::Release);
            return Ok(());
        };
        let mut index = self.index.write().await;
        index.install(fetched)?;
        self.loaded.store(true, std::sync::atomic::Ordering::Release);
        let m = index.manifest();
        metrics::gauge!(quarry_core::metric::KEYWORD_INDEX_AGE).set(m.age_ms() as f64);
        tracing::info!(generation = m.generation, chunks = m.chunks, segments = m.segments, "keyword index refreshed");
        Ok(())
    }
}

impl<F: IndexFiles> KeywordSearcher for KeywordReplica<F> {
    async fn keyword_search(&self, query: &KeywordQuery) -> Result<Vec<VectorHit>, PortError> {
        if let Err(e) = self.refresh(false).await {
            // A failed refresh leaves the copy as it was: searched, a little staler.
            tracing::warn!(error = %quarry_core::error::chain(&e), "the keyword index could not be refreshed");
            if self.index.read().await.manifest().generation == 0 {
                return Err(e);
            }
        }
        let terms = crate::query_terms(&query.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let index = self.index.read().await;
        Ok(index.search(&terms, query.top_k, query.filter.as_ref())?)
    }
}

impl<F: IndexFiles> quarry_core::census::VectorCensus for KeywordReplica<F> {
    /// The newest published index's documents and chunk ordinals: loaded first, whatever the
    /// interval says, so that reconciliation compares what searchers are about to search.
    async fn stored(&self) -> Result<Vec<quarry_core::census::StoredChunks>, PortError> {
        self.warm().await?;
        Ok(self.index.read().await.census()?)
    }
}
