//! `quarry ingest DIR` / `quarry ingest FILE.jsonl`: index a folder (or a JSONL file of records,
//! one document a line) on this machine and keep the index in sync with it.
//!
//! Every file is checked before work starts (size, type), the run is recorded as a batch, documents
//! are processed concurrently (extraction overlaps embedding, and their chunks share model calls), progress and ETA are
//! computed from bytes, and the run ends with a summary. Files gone from the folder leave the
//! index. Re-running over an unchanged folder embeds nothing; a run killed at any moment picks up
//! where it stopped, because every step is idempotent and a document is checkpointed only after
//! its vectors are written.

use std::path::{Path, PathBuf};
use std::time::Instant;

use quarry_core::ports::{BatchOutcome, BatchRequest, BatchTracker};
use quarry_core::{Config, DocumentKey, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to index (the local "bucket"), or a .jsonl file of {"_id", "title", "text"} records.
    input: PathBuf,
    /// Where to keep the index [default: DIR/.quarry, or FILE.quarry beside a .jsonl file].
    #[arg(long)]
    state: Option<PathBuf>,
    /// Documents in flight at once: their chunks share model calls, so more in flight pads less.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: u16,
    /// No progress bar (for logs and scripts).
    #[arg(long)]
    quiet: bool,
    /// Print what indexing would send and cost (documents, chunks, tokens after the cache,
    /// dollars) and stop: nothing is embedded or written.
    #[arg(long)]
    estimate: bool,
    /// The local model's precision [default: model.precision, f32]: int8 embeds faster with the
    /// same retrieval quality (docs/RELEVANCE.md); an index holds one precision's vectors.
    #[arg(long, value_parser = ["f32", "int8"])]
    precision: Option<String>,
}

/// `quarry ingest --estimate`: the pipeline's estimator over this input and its index, if any.
async fn estimate(config: &Config, target: &crate::engine::Target) -> anyhow::Result<()> {
    use quarry_core::ports::{Embedder, Usage};
    let (source, rejected) = target.source()?;
    let store = if target.state_db().is_file() {
        Some(target.open_existing()?.with_cache_policy(config.cache.clone()))
    } else {
        None
    };
    let model_dir = config.model.resolved_dir();
    let counter = quarry_openai::chunk_counter(&config.embedder, || {
        quarry_text::WordPiece::from_file(&model_dir.join("tokenizer.json")).map_err(crate::SetupError::Tokenizer)
    })?;
    let preparer = quarry_text::Preparer::new(config, counter);
    let openai = quarry_openai::from_settings(&config.embedder).map_err(crate::SetupError::OpenAi)?;
    let local = quarry_embed::model_info(config.model.precision);
    let model = openai.as_ref().map_or(&local, |o| o.model());
    let price = |texts: &[String]| openai.as_ref().map_or_else(Usage::default, |o| o.usage(texts));
    let hosted = quarry_openai::stores::OpenAiStore::from_config(config).map_err(crate::SetupError::OpenAi)?;
    let estimator = quarry_pipeline::estimate::Estimator {
        source: &source,
        reader: store.as_ref(),
        cache: store.as_ref(),
        preparer: &preparer,
        model,
        price: &price,
        hosted: hosted.as_ref().map(|h| h as &dyn quarry_core::hosted::HostedStore),
    };
    let e = estimator.estimate_request(&BatchRequest { prefix: Some(String::new()), keys: Vec::new() }).await?;
    let failing = e.failing + rejected.len() as u64;
    println!(
        "estimate: {} documents ({} unchanged, {failing} would fail), {} chunks ({} cached), {} to embed: {} tokens billed, ${:.4} with {}",
        e.documents + rejected.len() as u64,
        e.unchanged,
        e.chunks,
        e.cached,
        e.chunks - e.cached,
        e.usage.tokens,
        e.usage.dollars(),
        e.model,
    );
    println!("nothing was embedded or written");
    Ok(())
}

pub async fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    let mut config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    if let Some(p) = args.precision.as_deref().and_then(quarry_core::config::Precision::parse) {
        config.model.precision = p;
    }
    let target = crate::engine::Target::resolve(&args.input, args.state.as_deref())?;
    if args.estimate {
        return estimate(&config, &target).await;
    }
    let Some((lock, store)) = target.open_for_writing()? else {
        anyhow::bail!("another `quarry ingest` is running on {}", args.input.display())
    };
    let (source, rejected) = target.source()?;
    let local = crate::engine::Local::load(&config, source, store)?;
    let started = Instant::now();

    // 1. Validate everything up front and record the batch: its id follows from what is indexed,
    //    so a killed run resumes the same batch.
    let not_documents: Vec<(DocumentKey, u64, Failure)> =
        rejected.iter().map(|r| (r.key.clone(), r.size, Failure::from_error(&r.error))).collect();
    let request = BatchRequest { prefix: Some(String::new()), keys: Vec::new() };
    let plan = local.planner().plan(&request, &not_documents).await?;
    let batch = plan.started.batch.clone();

    // 2. Index, many documents in flight, with progress by bytes.
    let total_bytes: u64 = plan.jobs.iter().filter_map(|j| j.size).sum();
    let bar = if args.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total_bytes) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut failures: Vec<(DocumentKey, Failure)> =
        plan.refused.iter().cloned().chain(not_documents.into_iter().map(|(k, _, f)| (k, f))).collect();
    let (mut indexed, mut chunks, mut unchanged, mut failed, mut busy) = (0, 0u64, 0, failures.len(), 0);
    let mut paused = 0;
    local
        .run(&plan.jobs, usize::from(args.workers), |key, size, outcome| {
            match outcome {
                // Another process holds it: left pending for that process or the next run.
                None => busy += 1,
                Some(BatchOutcome::Indexed { chunks: n, .. }) => {
                    indexed += 1;
                    chunks += u64::from(*n);
                }
                Some(BatchOutcome::Unchanged { .. }) => unchanged += 1,
                Some(BatchOutcome::Paused { .. }) => paused += 1,
                Some(BatchOutcome::Failed { failure, .. }) => {
                    failed += 1;
                    failures.push((key.clone(), failure.clone()));
                }
            }
            bar.inc(size);
            bar.set_message(format!("{indexed} indexed, {unchanged} unchanged, {failed} failed"));
        })
        .await?;
    bar.finish_and_clear();

    // 3. Sync: what is indexed but no longer in the folder leaves the index.
    let removed = local.remove_missing(&plan.listed.iter().map(|b| &b.key).collect()).await?;

    let c = local.store.counters(&batch).await?;
    let spent =
        quarry_core::spend::SpendLedger::spent(&local.store, &quarry_core::spend::SpendScope::Batch(batch.clone()))
            .await?
            .used;
    drop(lock);
    println!(
        "batch {batch}: {} documents, {indexed} indexed ({chunks} chunks), {unchanged} unchanged, {failed} failed, {removed} removed{} in {:.1}s; {}",
        c.total,
        if busy > 0 { format!(", {busy} busy elsewhere") } else { String::new() },
        started.elapsed().as_secs_f64(),
        crate::batches::spend_line(spent),
    );
    if paused > 0 {
        println!(
            "  paused {paused}: a budget was reached (nothing was spent on them); raise budget.daily_usd or \
             budget.batch_usd, or wait for the day to turn (UTC), then `quarry retry {batch}`"
        );
    }
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, f) in &failures {
        println!("  failed {key}: {} ({})", f.message, f.code);
    }
    Ok(())
}
