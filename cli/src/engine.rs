//! The local deployment's wiring, as a library the commands (and benchmarks) call: where an
//! input's index lives, the input as a blob source (a folder or a JSONL file of records), and the
//! local model, preparer and store, loaded once, with the pipeline's indexer, runner and batch
//! planner over them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use quarry_core::event::Event;
use quarry_core::ports::{BatchOutcome, Blob, BlobInfo, BlobSource, Either, EventPublisher, IndexJob};
use quarry_core::{Config, DocumentKey, PortError};
use quarry_embed::{EmbedOptions, LocalEmbedder};
use quarry_local::{FolderSource, JsonlSource, Rejected, SqliteStore};
use quarry_openai::OpenAiEmbedder;
use quarry_pipeline::{CoalescingEmbedder, Indexer, Planner, Retries, Runner};
use quarry_text::{Preparer, TokenCounter, WordPiece};

/// The embedder the configuration picks: the local model, or OpenAI's API.
pub type ConfiguredEmbedder = Either<LocalEmbedder, OpenAiEmbedder>;

/// The embedder `config` asks for; the local model is loaded with `options`, at the configured
/// precision, only when it is the one.
pub fn embedder(config: &Config, options: EmbedOptions) -> Result<ConfiguredEmbedder, crate::SetupError> {
    let options = EmbedOptions { precision: config.model.precision, ..options };
    Ok(match quarry_openai::from_settings(&config.embedder).map_err(crate::SetupError::OpenAi)? {
        Some(openai) => Either::Right(openai),
        None => {
            Either::Left(LocalEmbedder::load(&config.model.resolved_dir(), options).map_err(crate::SetupError::Model)?)
        }
    })
}

/// The model `config` embeds with, known without loading it.
pub fn model_info(config: &Config) -> Result<quarry_core::ports::ModelInfo, crate::SetupError> {
    use quarry_core::ports::Embedder;
    Ok(match quarry_openai::from_settings(&config.embedder).map_err(crate::SetupError::OpenAi)? {
        Some(openai) => openai.model().clone(),
        None => quarry_embed::model_info(config.model.precision),
    })
}

/// Refuses an index whose documents were embedded by another model than the one `config` embeds
/// with (another precision, another embedder), or stored in another store (an OpenAI vector store
/// and Quarry's own): their vectors cannot be compared, and a document already indexed elsewhere
/// would read as unchanged and never reach this one. Says how to go on.
pub fn check_model(store: &SqliteStore, config: &Config) -> anyhow::Result<()> {
    let want = match config.store.backend {
        quarry_core::config::StoreBackend::Openai => quarry_openai::stores::OpenAiStore::model_id(&config.store),
        quarry_core::config::StoreBackend::Native => model_info(config)?.id,
    };
    let found = store.indexed_models()?;
    if let Some(other) = found.iter().find(|m| **m != want) {
        anyhow::bail!(
            "this index holds documents of {other}, and the configuration uses {want}: two models' vectors (or \
             two stores) cannot be mixed. Use the index's (the local model's precision: QUARRY_MODEL_PRECISION or \
             `quarry ingest --precision`; the store: QUARRY_STORE), or re-index into a new state folder \
             (`quarry ingest DIR --state NEW_DIR`)"
        );
    }
    Ok(())
}

/// What chunks are measured in: the configured embedder's own tokens.
pub type ChunkTokens = Box<dyn TokenCounter>;

/// How long one run may hold a document before another may take it over.
const LEASE: Duration = Duration::from_secs(300);

/// Texts per merged model call: a few hundred chunks sort into batches that pad almost nothing.
const MERGED_TEXTS: usize = 512;

/// What the user points Quarry at, and where its index is kept.
#[derive(Debug, Clone)]
pub struct Target {
    pub input: PathBuf,
    pub jsonl: bool,
    /// The folder holding `state.db` and the ingest lock.
    pub state_dir: PathBuf,
}

impl Target {
    /// A folder keeps its index inside itself (`DIR/.quarry`); a `.jsonl` file beside itself
    /// (`corpus.jsonl` → `corpus.quarry`), unless `state` says otherwise.
    pub fn resolve(input: &Path, state: Option<&Path>) -> anyhow::Result<Self> {
        let jsonl = input.is_file() && is_jsonl(input);
        anyhow::ensure!(jsonl || input.is_dir(), "{} is neither a folder nor a .jsonl file", input.display());
        let state_dir = match state {
            Some(s) => s.to_owned(),
            None if jsonl => input.with_extension("quarry"),
            None => input.join(".quarry"),
        };
        Ok(Target { input: input.to_owned(), jsonl, state_dir })
    }

    pub fn state_db(&self) -> PathBuf {
        self.state_dir.join("state.db")
    }

    /// The store of an input that has been ingested; a clear error if it has not.
    pub fn open_existing(&self) -> anyhow::Result<SqliteStore> {
        self.ensure_indexed()?;
        Ok(SqliteStore::open(&self.state_db(), quarry_embed::DIMENSION)?)
    }

    /// A clear error if the input has not been ingested, before anything opens or creates its index.
    pub fn ensure_indexed(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.state_db().is_file(),
            "{} has no index yet: run `quarry ingest {}` first",
            self.input.display(),
            self.input.display()
        );
        Ok(())
    }

    /// The index opened for writing: under an exclusive lock on `state_dir/lock`, with leases left
    /// by a dead run released. One writer per index: the OS drops the lock when a process dies,
    /// even by SIGKILL, so holding it proves that leftover leases are stale. `None` when another
    /// process holds the lock; the returned file holds it until dropped.
    pub fn open_for_writing(&self) -> anyhow::Result<Option<(std::fs::File, SqliteStore)>> {
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("cannot create {}", self.state_dir.display()))?;
        let lock_path = self.state_dir.join("lock");
        let lock =
            std::fs::File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(e).context("cannot lock the state folder"),
        }
        let store = SqliteStore::open(&self.state_db(), quarry_embed::DIMENSION)?;
        let stale = store.release_leases()?;
        if stale > 0 {
            tracing::info!(stale, "resuming: released leases of an interrupted run");
        }
        Ok(Some((lock, store)))
    }

    /// The input as a blob source, with the JSONL lines that are not documents.
    pub fn source(&self) -> anyhow::Result<(Source, Vec<Rejected>)> {
        if self.jsonl {
            let (s, rejected) =
                JsonlSource::open(&self.input).with_context(|| format!("cannot read {}", self.input.display()))?;
            Ok((Source::Jsonl(s), rejected))
        } else {
            Ok((Source::Folder(FolderSource::new(&self.input)), Vec::new()))
        }
    }
}

fn is_jsonl(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson"))
}

/// The inputs the CLI indexes.
#[derive(Debug)]
pub enum Source {
    Folder(FolderSource),
    Jsonl(JsonlSource),
}

impl BlobSource for Source {
    async fn head(&self, key: &DocumentKey) -> Result<BlobInfo, PortError> {
        match self {
            Source::Folder(s) => s.head(key).await,
            Source::Jsonl(s) => s.head(key).await,
        }
    }

    async fn get(&self, key: &DocumentKey) -> Result<Blob, PortError> {
        match self {
            Source::Folder(s) => s.get(key).await,
            Source::Jsonl(s) => s.get(key).await,
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, PortError> {
        match self {
            Source::Folder(s) => s.list(prefix).await,
            Source::Jsonl(s) => s.list(prefix).await,
        }
    }

    async fn peek(&self, key: &DocumentKey, n: usize) -> Result<Vec<u8>, PortError> {
        match self {
            Source::Folder(s) => s.peek(key, n).await,
            Source::Jsonl(s) => s.peek(key, n).await,
        }
    }
}

/// The indexer over the local adapters.
pub type LocalIndexer<'a> =
    Indexer<'a, Source, SqliteStore, CoalescingEmbedder, SqliteStore, SqliteStore, Preparer<ChunkTokens>, SqliteStore>;

/// Quarry's events on this machine (a batch that ended with failures): handed to whoever listens
/// (`quarry serve` routes them with its alert routes), dropped when no one does. `quarry ingest`
/// prints its failures instead.
#[derive(Debug, Default)]
pub struct LocalEvents(Option<tokio::sync::mpsc::UnboundedSender<Event>>);

impl EventPublisher for LocalEvents {
    async fn publish(&self, event: &Event) -> Result<(), PortError> {
        if let Some(tx) = &self.0 {
            // A listener that has gone (the server is stopping) loses nothing worth failing a job for.
            let _ = tx.send(event.clone());
        }
        Ok(())
    }
}

/// The job runner over the local adapters.
pub type LocalRunner<'a> = Runner<
    'a,
    Source,
    SqliteStore,
    CoalescingEmbedder,
    SqliteStore,
    SqliteStore,
    Preparer<ChunkTokens>,
    SqliteStore,
    LocalEvents,
    SqliteStore,
>;

#[derive(Debug)]
pub struct Local {
    /// The local model behind a merging queue: documents in flight share model calls.
    pub embedder: CoalescingEmbedder,
    pub preparer: Preparer<ChunkTokens>,
    pub source: Source,
    pub store: SqliteStore,
    pub events: LocalEvents,
    /// The budgets indexing is held to (the store keeps the spend).
    pub budget: quarry_core::config::Budget,
    /// The OpenAI vector store that takes the documents, where the configuration picks it
    /// (`store.backend = "openai"`); SQLite then keeps their state alone.
    pub hosted: Option<quarry_openai::stores::OpenAiStore>,
    /// How long a document is held: past the longest attach an OpenAI vector store may take, so
    /// that no second process uploads a document the first is still waiting for.
    lease: Duration,
}

impl Local {
    /// Call inside the tokio runtime (the merging queue runs on it).
    /// Refuses an index another model or store filled ([`check_model`]) before loading anything.
    pub fn load(config: &Config, source: Source, store: SqliteStore) -> anyhow::Result<Self> {
        Local::load_with(config, source, store, EmbedOptions::default())
    }

    /// [`Local::load`] with the indexing model's own options (`quarry serve` leaves searches a
    /// share of the cores).
    pub fn load_with(
        config: &Config,
        source: Source,
        store: SqliteStore,
        options: EmbedOptions,
    ) -> anyhow::Result<Self> {
        check_model(&store, config)?;
        let model_dir = config.model.resolved_dir();
        let embedder = embedder(config, options)?;
        let tokenizer = quarry_openai::chunk_counter(&config.embedder, || {
            WordPiece::from_file(&model_dir.join("tokenizer.json")).map_err(crate::SetupError::Tokenizer)
        })?;
        let embedder = CoalescingEmbedder::new(embedder, MERGED_TEXTS);
        Ok(Local {
            embedder,
            preparer: Preparer::new(config, tokenizer),
            source,
            store: store.with_cache_policy(config.cache.clone()),
            events: LocalEvents::default(),
            budget: config.budget.clone(),
            hosted: quarry_openai::stores::OpenAiStore::from_config(config).map_err(crate::SetupError::OpenAi)?,
            lease: match config.store.backend {
                quarry_core::config::StoreBackend::Native => LEASE,
                quarry_core::config::StoreBackend::Openai => {
                    LEASE.max(Duration::from_secs(config.store.openai_attach_timeout_s + 60))
                }
            },
        })
    }

    /// From now on, events come out of the returned channel.
    pub fn listen(&mut self) -> tokio::sync::mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.events = LocalEvents(Some(tx));
        rx
    }

    pub fn indexer(&self) -> LocalIndexer<'_> {
        Indexer {
            source: &self.source,
            state: &self.store,
            embedder: &self.embedder,
            cache: &self.store,
            writer: &self.store,
            preparer: &self.preparer,
            lease: self.lease,
            spend: &self.store,
            budget: &self.budget,
            hosted: self.hosted(),
        }
    }

    pub fn hosted(&self) -> Option<&dyn quarry_core::hosted::HostedStore> {
        self.hosted.as_ref().map(|h| h as &dyn quarry_core::hosted::HostedStore)
    }
}

impl Local {
    /// The job runner: there is no queue to redeliver a job, so retryable failures are recorded
    /// in the batch for `quarry retry`.
    pub fn runner(&self) -> LocalRunner<'_> {
        Runner { indexer: self.indexer(), batches: &self.store, events: &self.events, retries: Retries::Record }
    }

    /// The batch planner: every batch is listed, screened and recorded before work starts.
    pub fn planner(&self) -> Planner<'_, Source, SqliteStore, SqliteStore, SqliteStore, LocalEvents> {
        Planner {
            source: &self.source,
            tracker: &self.store,
            state: &self.store,
            writer: &self.store,
            events: &self.events,
            limits: self.preparer.limits(),
            hosted: self.hosted(),
        }
    }

    /// Sync: documents indexed (or failed) earlier whose keys are not in `present` leave the
    /// index. Returns how many left.
    pub async fn remove_missing(&self, present: &std::collections::BTreeSet<&DocumentKey>) -> Result<usize, PortError> {
        let indexer = self.indexer();
        let mut removed = 0;
        for key in self.store.indexed_keys()? {
            if !present.contains(&key) {
                indexer.remove(&key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Runs `jobs`, `workers` documents in flight, reporting each outcome to `progress` (`None`:
    /// another process holds the document, which stays pending). Stops at a store that cannot be
    /// written.
    pub async fn run(
        &self,
        jobs: &[IndexJob],
        workers: usize,
        mut progress: impl FnMut(&DocumentKey, u64, Option<&BatchOutcome>),
    ) -> Result<(), PortError> {
        let jobs = futures::stream::iter(jobs.iter().cloned());
        self.runner()
            .run_all(jobs, workers, |job, result| {
                progress(&job.key, job.size.unwrap_or(0), result?.as_ref());
                Ok(())
            })
            .await
    }
}
