//! `quarry serve`: the HTTP API on this machine, over the embedded store. With `--watch DIR` the
//! folder is kept in sync while serving: a file dropped in becomes searchable, a deleted one
//! leaves the results.
//!
//! The router is quarry-api's, the same one the search Lambda runs; this module only supplies the
//! embedded backend, binds the socket and runs the watcher.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use quarry_api::{Backend, CursorKey};
use quarry_core::config::Limits;
use quarry_core::ports::{
    BatchOutcome, BatchRequest, BatchStarted, BatchStarter, BlobSource, Estimate, IndexJob, JobQueue,
};
use quarry_core::{BatchId, Config, DocumentKey, PortError};
use quarry_embed::EmbedOptions;
use quarry_local::{ChannelQueue, FolderSource, SqliteStore};

use crate::engine::{Local, Source, Target};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder (or .jsonl file) whose index to serve.
    #[arg(long, default_value = ".", conflicts_with = "watch")]
    dir: PathBuf,
    /// Serve this folder and keep its index in sync with it while serving.
    #[arg(long, value_name = "DIR")]
    watch: Option<PathBuf>,
    /// Where the index is kept, if `quarry ingest --state` put it elsewhere.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Address to listen on [default: server.bind, 127.0.0.1:8080]. Any address but loopback
    /// requires QUARRY_API_KEY.
    #[arg(long)]
    bind: Option<String>,
    /// Seconds between two looks at the watched folder.
    #[arg(long, default_value_t = 1.0)]
    poll: f64,
}

/// The local recorder behind `/metrics` and `/metrics.json`.
struct Metrics(quarry_telemetry::local::LocalMetrics);

impl quarry_api::MetricsExport for Metrics {
    fn prometheus(&self) -> String {
        self.0.prometheus()
    }
    fn snapshot(&self) -> serde_json::Value {
        self.0.snapshot()
    }
}

/// Documents in flight for batches started over the API.
const WORKERS: usize = 32;

struct LocalBackend {
    local: Arc<Local>,
    /// Its own session: a query never waits behind a batch's merged embedding calls.
    queries: crate::engine::ConfiguredEmbedder,
    starter: LocalStarter,
    /// Start-up work still running (the keyword index's load, `--watch`'s first pass): until
    /// none is, `/health/startup` answers 503 and a load balancer sends no traffic.
    starting: Arc<AtomicUsize>,
    root: PathBuf,
    jsonl: bool,
    /// The audit log: JSON lines in `STATE/audit/`, a file a day, the last 30 kept.
    audit: std::sync::Mutex<tracing_appender::rolling::RollingFileAppender>,
}

/// Days of audit log kept.
const AUDIT_DAYS: usize = 30;

/// The audit log: a JSON lines file a day in `dir`, the last [`AUDIT_DAYS`] kept.
fn audit_log(dir: &Path) -> anyhow::Result<tracing_appender::rolling::RollingFileAppender> {
    // Made first: the appender looks for old files to prune as it starts.
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("audit")
        .filename_suffix("jsonl")
        .max_log_files(AUDIT_DAYS)
        .build(dir)
        .context("cannot open the audit log")
}

impl Backend for LocalBackend {
    type Embedder = crate::engine::ConfiguredEmbedder;
    type Searcher = SqliteStore;
    type Documents = SqliteStore;
    type Writer = SqliteStore;
    type State = SqliteStore;
    type Batches = SqliteStore;
    type Starter = LocalStarter;
    type Keywords = SqliteStore;
    type Fields = SqliteStore;
    type Uploads = FolderSource;
    type Inbox = FolderSource;
    type Cache = SqliteStore;

    fn embedder(&self) -> &crate::engine::ConfiguredEmbedder {
        &self.queries
    }
    /// None when an OpenAI vector store takes the documents: nothing is in the keyword index.
    fn keywords(&self) -> Option<&SqliteStore> {
        self.local.hosted().is_none().then_some(&self.local.store)
    }
    fn searcher(&self) -> &SqliteStore {
        &self.local.store
    }
    fn fields(&self) -> Option<&SqliteStore> {
        self.local.hosted().is_none().then_some(&self.local.store)
    }
    fn documents(&self) -> &SqliteStore {
        &self.local.store
    }
    fn writer(&self) -> &SqliteStore {
        &self.local.store
    }
    fn state(&self) -> &SqliteStore {
        &self.local.store
    }
    fn batches(&self) -> &SqliteStore {
        &self.local.store
    }
    fn starter(&self) -> &LocalStarter {
        &self.starter
    }
    fn uploads(&self) -> Option<&FolderSource> {
        self.folder()
    }
    fn inbox(&self) -> Option<&FolderSource> {
        self.folder()
    }
    fn cache(&self) -> &SqliteStore {
        &self.local.store
    }
    fn file_limits(&self) -> &Limits {
        self.local.preparer.limits()
    }

    fn uri(&self, key: &str) -> String {
        if self.jsonl {
            format!("{}#{key}", self.root.display())
        } else {
            format!("file://{}", self.root.join(key).display())
        }
    }

    /// The SQLite store, the query embedder (the model answers a word), the job queue (its
    /// worker is alive), and the OpenAI vector store where one is used (it answers its size).
    fn dependencies(&self) -> Vec<quarry_api::Dependency<'_>> {
        use quarry_api::Dependency;
        use quarry_core::ports::Embedder;
        let mut deps = vec![
            Dependency::required("state_store", std::future::ready(self.local.store.ping())),
            Dependency::required("embedder", async { self.queries.embed(&["ready".to_owned()]).await.map(|_| ()) }),
            Dependency::required("job_queue", std::future::ready(self.starter.queue.alive())),
        ];
        if let Some(store) = self.local.hosted() {
            deps.push(Dependency::required("vector_store", async move { store.usage_bytes().await.map(|_| ()) }));
        }
        deps
    }

    fn started(&self) -> bool {
        self.starting.load(Ordering::Acquire) == 0
    }

    fn hosted(&self) -> Option<&dyn quarry_core::hosted::HostedStore> {
        self.local.hosted()
    }

    fn audit(&self, entry: &quarry_api::audit::Entry) {
        use std::io::Write as _;
        let mut line = serde_json::to_vec(entry).unwrap_or_default();
        line.push(b'\n');
        let mut file = self.audit.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = file.write_all(&line) {
            tracing::warn!(error = %e, "an audit entry could not be written");
        }
    }
}

impl LocalBackend {
    /// Files dropped on the page land in the served folder; a JSONL file takes none.
    fn folder(&self) -> Option<&FolderSource> {
        match &self.local.source {
            Source::Folder(f) => Some(f),
            Source::Jsonl(_) => None,
        }
    }
}

/// Batches over the API: planned at once (validated, screened, recorded), then their jobs go on the
/// local queue, which one background task works ([`work`]), as the embed-workers work SQS on AWS.
struct LocalStarter {
    local: Arc<Local>,
    queue: ChannelQueue,
}

impl BatchStarter for LocalStarter {
    async fn start(&self, request: &BatchRequest) -> Result<BatchStarted, PortError> {
        let plan = self.local.planner().plan(request, &[]).await?;
        // The queue is bounded: a batch larger than it waits for room in its own task, not in the
        // request that started it.
        let (queue, batch, jobs) = (self.queue.clone(), plan.started.batch.clone(), plan.jobs);
        tokio::spawn(async move {
            if let Err(e) = queue.enqueue(&jobs).await {
                tracing::error!(batch = %batch, error = %anyhow::Error::from(e), "cannot queue the batch's jobs");
            }
        });
        Ok(plan.started)
    }

    /// The pipeline's estimator over the served index: the same documents a batch would plan,
    /// read and prepared as the indexer would, priced after the cache.
    async fn estimate(&self, request: &BatchRequest) -> Result<Option<Estimate>, PortError> {
        use quarry_core::ports::Embedder;
        let local = &self.local;
        let price = |texts: &[String]| local.embedder.usage(texts);
        let estimator = quarry_pipeline::estimate::Estimator {
            source: &local.source,
            reader: Some(&local.store),
            cache: Some(&local.store),
            preparer: &local.preparer,
            model: local.embedder.model(),
            price: &price,
            hosted: local.hosted(),
        };
        estimator.estimate_request(request).await.map(Some)
    }

    async fn resume(&self, batch: &BatchId, keys: &[DocumentKey]) -> Result<u64, PortError> {
        let jobs = quarry_pipeline::index_jobs(keys.iter().map(|k| (k, None)), Some(batch));
        let n = jobs.len() as u64;
        let (queue, batch) = (self.queue.clone(), batch.clone());
        tokio::spawn(async move {
            if let Err(e) = queue.enqueue(&jobs).await {
                tracing::error!(batch = %batch, error = %anyhow::Error::from(e), "cannot queue the batch's jobs");
            }
        });
        Ok(n)
    }
}

/// How long a batch's job that found its document held waits before it is tried again.
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// How far indexing's model threads are lowered (a `nice` increment): at 10 the kernel gives them
/// about a tenth of the CPU that searches want, and all of what searches leave, so a batch never
/// stalls behind a busy server (at 19 it would get a seventieth).
const INDEXING_NICE: i32 = 10;

/// Jobs the local queue holds at most.
const QUEUE_CAPACITY: usize = 4_096;

/// Works the local queue for as long as the server runs, [`WORKERS`] jobs at once (a slot is
/// refilled as soon as a job ends). A job that cannot be recorded is logged and the rest go on:
/// its batch shows it pending, and `quarry retry` or a new batch takes it again. A batch's job that
/// found its document held (the watcher indexing the same new file) goes back on the queue after
/// [`BUSY_RETRY`], as SQS brings a message back: otherwise its batch would wait on it forever.
async fn work(local: Arc<Local>, queue: ChannelQueue, mut jobs: tokio::sync::mpsc::Receiver<IndexJob>) {
    let jobs = futures::stream::poll_fn(move |cx| jobs.poll_recv(cx));
    let result = local
        .runner()
        .run_all(jobs, WORKERS, |job, result| {
            match result {
                Err(e) => tracing::error!(key = %job.key, error = %anyhow::Error::from(e), "a queued job failed"),
                Ok(None) if job.action == quarry_core::ports::JobAction::Index && job.batch.is_some() => {
                    let (queue, job) = (queue.clone(), job.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(BUSY_RETRY).await;
                        if let Err(e) = queue.enqueue(std::slice::from_ref(&job)).await {
                            tracing::warn!(key = %job.key, error = %anyhow::Error::from(e), "cannot queue a busy job again");
                        }
                    });
                }
                Ok(_) => {}
            }
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %anyhow::Error::from(e), "the job queue stopped");
    }
}

pub async fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let input = args.watch.as_deref().unwrap_or(&args.dir);
    let target = Target::resolve(input, args.state.as_deref())?;
    anyhow::ensure!(!(args.watch.is_some() && target.jsonl), "--watch takes a folder, not a .jsonl file");
    anyhow::ensure!(args.poll.is_finite() && args.poll >= 0.05, "--poll must be at least 0.05 seconds");
    let mut limits = config.server.clone();
    if let Some(b) = &args.bind {
        limits.bind = b.clone();
    }
    let addr: SocketAddr = limits
        .bind
        .parse()
        .with_context(|| format!("--bind {:?} is not an address such as 127.0.0.1:8080", limits.bind))?;
    if !addr.ip().is_loopback() && limits.api_key.is_none() && limits.keys_file.is_none() {
        anyhow::bail!(
            "refusing to serve on {addr} without an API key: set QUARRY_API_KEY (16+ characters) or QUARRY_KEYS_FILE, or bind to 127.0.0.1"
        );
    }
    if let Some(path) = &limits.keys_file {
        // Read now, so that a bad file stops the start rather than every request.
        quarry_api::keys::Keys::load(path)?;
    }

    // The same lock as `quarry ingest`: one writer per index.
    let Some((lock, store)) = target.open_for_writing()? else {
        anyhow::bail!("another `quarry ingest` or `quarry serve` is using {}", input.display())
    };
    let (source, _) = target.source()?;
    // Indexing gives way to searches: its model gets half the cores, at a lowered priority, so
    // that a search waiting for a core gets it first (docs/LOAD.md). Search p95 under a batch, as
    // a multiple of idle: 5.3x with every core at the same priority, 2.97x with half, 1.34x with
    // half at the lower priority (the batch 20 % slower).
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let indexing = EmbedOptions { threads: (cores / 2).max(1), nice: INDEXING_NICE, ..EmbedOptions::default() };
    let mut local = Local::load_with(&config, source, store, indexing)?;
    // With alert routes, the alarms' rules run on this process's own metrics and Quarry's events
    // (a batch that ended with failures) are routed too.
    let routes =
        config.alerts.routes.as_deref().map(quarry_alerts::Routes::load).transpose().context("alerts.routes")?;
    let events = routes.as_ref().map(|_| local.listen());
    let local = Arc::new(local);
    let queries =
        crate::engine::embedder(&config, EmbedOptions { threads: 0, batch_size: 1, ..EmbedOptions::default() })?;
    let starting = Arc::new(AtomicUsize::new(1 + usize::from(args.watch.is_some())));
    let (queue, jobs) = ChannelQueue::new(QUEUE_CAPACITY);
    tokio::spawn(work(Arc::clone(&local), queue.clone(), jobs));
    let root = std::path::absolute(input).unwrap_or_else(|_| input.to_owned());
    let backend = LocalBackend {
        local: Arc::clone(&local),
        queries,
        starter: LocalStarter { local: Arc::clone(&local), queue },
        starting: Arc::clone(&starting),
        root,
        jsonl: target.jsonl,
        audit: std::sync::Mutex::new(audit_log(&target.state_dir.join("audit"))?),
    };
    let cursor_key =
        CursorKey::from_config(config.server.cursor_secret.as_ref()).context("no randomness for the cursor key")?;
    let telemetry = quarry_telemetry::local::LocalMetrics::global().context("cannot install the metrics recorder")?;
    let rules = match (routes, events) {
        (Some(routes), Some(events)) => Some(crate::alerting::Rules::new(routes, Arc::clone(&local), events)?),
        _ => None,
    };
    let _ticker = telemetry.spawn_ticker(move |w| {
        if let Some(rules) = &rules {
            rules.evaluate(w);
        }
    });
    let app =
        quarry_api::router(backend, limits, cursor_key).merge(quarry_api::metrics_routes(Arc::new(Metrics(telemetry))));

    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    println!("listening on http://{bound}");
    {
        // Keyword and hybrid queries need the in-memory keyword index; build it now, beside the
        // listener, rather than in the first such query. Until it is built the server is starting:
        // searches sent meanwhile wait for it (at 100k chunks, 2 s), and behind them the rest.
        let (local, done) = (Arc::clone(&local), StartupTask(Arc::clone(&starting)));
        tokio::task::spawn_blocking(move || {
            let _done = done;
            if let Err(e) = local.store.warm_keywords() {
                tracing::warn!(error = %anyhow::Error::from(e), "cannot build the keyword index yet");
            }
        });
    }
    if args.watch.is_some() {
        let local = Arc::clone(&local);
        let every = Duration::from_secs_f64(args.poll);
        let first_pass = StartupTask(Arc::clone(&starting));
        tokio::spawn(async move { watch(&local, first_pass, every).await });
    }
    // A response leaves in one write, but a kept-alive connection's next response must not wait
    // for the client's delayed ACK of the last one (Nagle's algorithm): no delay, as HTTP servers set.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.context("the server stopped")?;
    drop(lock);
    Ok(())
}

async fn shutdown() {
    // Ctrl-C, or SIGTERM (what systemd, Docker and Kubernetes send to stop a service): either way,
    // stop taking requests, finish those in flight, and exit cleanly.
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C still stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stopping: finishing the requests in flight");
}

/// One piece of start-up work, counted out of `LocalBackend::starting` when it ends, however it
/// ends (a panic included): `/health/startup` must not answer 503 for good.
struct StartupTask(Arc<AtomicUsize>);

impl Drop for StartupTask {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Keeps the index in step with the folder: every `every`, new and changed files are indexed and
/// deleted ones removed. Polling rather than filesystem events: it works the same on network and
/// container mounts, where inotify is silent, and a listing of a folder costs little.
async fn watch(local: &Local, first_pass: StartupTask, every: Duration) {
    let mut seen: BTreeMap<DocumentKey, Option<String>> = BTreeMap::new();
    let mut first_pass = Some(first_pass);
    loop {
        match sync_once(local, &mut seen).await {
            Ok((indexed, removed)) if indexed + removed > 0 => {
                tracing::info!(indexed, removed, "folder changes indexed");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %anyhow::Error::from(e), "watch pass failed; retrying"),
        }
        drop(first_pass.take());
        tokio::time::sleep(every).await;
    }
}

async fn sync_once(
    local: &Local,
    seen: &mut BTreeMap<DocumentKey, Option<String>>,
) -> Result<(usize, usize), PortError> {
    let listed = local.source.list("").await?;
    let changed = quarry_pipeline::index_jobs(
        listed.iter().filter(|b| seen.get(&b.key) != Some(&b.version)).map(|b| (&b.key, Some(b.size))),
        None,
    );
    let (mut indexed, mut retry) = (0, std::collections::BTreeSet::new());
    // Unchanged content stops at the lease check; a file caught mid-write is read again when its
    // modification time moves.
    local
        .run(&changed, WORKERS, |key, _, outcome| match outcome {
            Some(BatchOutcome::Indexed { .. }) => indexed += 1,
            // Held elsewhere, or a transient failure: the next pass tries again.
            None => {
                retry.insert(key.clone());
            }
            Some(BatchOutcome::Failed { failure, .. }) if failure.retryable => {
                tracing::warn!(key = %key, code = failure.code, "indexing failed; will retry");
                retry.insert(key.clone());
            }
            // Already logged and recorded by the indexer.
            Some(_) => {}
        })
        .await?;
    let removed = local.remove_missing(&listed.iter().map(|b| &b.key).collect()).await?;
    *seen = listed.into_iter().filter(|b| !retry.contains(&b.key)).map(|b| (b.key, b.version)).collect();
    Ok((indexed, removed))
}
