//! `quarry batches [ID]` and `quarry retry ID`: what past ingests did, and another go at what failed.

use std::path::{Path, PathBuf};

use quarry_core::ports::{BatchOutcome, BatchTracker, Usage};
use quarry_core::spend::{SpendLedger, SpendScope};
use quarry_core::{BatchId, Config};

/// `1,234 tokens ($0.0000)`: what embedding was billed.
pub fn spend_line(used: Usage) -> String {
    format!("{} tokens embedded (${:.4})", used.tokens, used.dollars())
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A batch id; without it, every batch.
    id: Option<String>,
    /// The folder (or .jsonl file) indexed with `quarry ingest`.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Where its index is kept, if `quarry ingest --state` put it elsewhere.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// The batch whose failed documents to index again.
    id: String,
    /// The folder (or .jsonl file) indexed with `quarry ingest`.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Where its index is kept, if `quarry ingest --state` put it elsewhere.
    #[arg(long)]
    state: Option<PathBuf>,
}

pub async fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let store = crate::engine::Target::resolve(&args.dir, args.state.as_deref())?.open_existing()?;
    match &args.id {
        None => {
            let batches = store.recent(usize::MAX).await?;
            if batches.is_empty() {
                println!("no batches");
            }
            for (id, _) in batches {
                let c = store.counters(&id).await?;
                let used = store.spent(&SpendScope::Batch(id.clone())).await?.used;
                println!(
                    "{id}  {} documents: {} done, {} unchanged, {} failed, {} pending{}; ${:.4}",
                    c.total,
                    c.done,
                    c.skipped,
                    c.failed,
                    c.pending,
                    if c.paused > 0 { format!(" ({} paused)", c.paused) } else { String::new() },
                    used.dollars()
                );
            }
        }
        Some(id) => {
            let id = BatchId::new(id.as_str());
            let c = store.counters(&id).await?;
            println!("batch {id}");
            println!("  documents  {} ({} bytes)", c.total, c.bytes_total);
            println!("  done       {}", c.done);
            println!("  unchanged  {}", c.skipped);
            println!("  failed     {}", c.failed);
            println!("  pending    {} ({} of {} bytes processed)", c.pending, c.bytes_done, c.bytes_total);
            if c.paused > 0 {
                println!("  paused     {} (budget_exhausted: `quarry retry {id}` once the budget allows)", c.paused);
            }
            let used = store.spent(&SpendScope::Batch(id.clone())).await?.used;
            println!("  spent      {}", spend_line(used));
            for (key, f) in store.failures(&id).await? {
                println!("  failed {key}: {} ({}{})", f.message, f.code, if f.retryable { ", retryable" } else { "" });
            }
        }
    }
    Ok(())
}

pub async fn retry(config_file: Option<&Path>, args: &RetryArgs) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let target = crate::engine::Target::resolve(&args.dir, args.state.as_deref())?;
    let store = target.open_existing()?;
    let batch = BatchId::new(args.id.as_str());
    // Paused and failed documents, under the batch's own id.
    let keys = quarry_pipeline::resume_keys(&store, &batch).await?;
    if keys.is_empty() {
        println!("batch {batch} has no failed or paused documents");
        return Ok(());
    }
    // Lines of a JSONL file that are not documents are still not documents; the rest can be retried.
    let (source, _) = target.source()?;
    let local = crate::engine::Local::load(&config, source, store)?;
    let jobs = quarry_pipeline::index_jobs(keys.iter().map(|key| (key, None)), Some(&batch));
    let (mut fixed, mut still) = (0, 0);
    local
        .run(&jobs, 1, |key, _, outcome| match outcome {
            Some(BatchOutcome::Failed { failure, .. }) => {
                still += 1;
                println!("  still failing {key}: {} ({})", failure.message, failure.code);
            }
            Some(BatchOutcome::Paused { reason }) => {
                still += 1;
                println!("  still paused {key}: {reason}");
            }
            Some(_) => fixed += 1,
            None => {}
        })
        .await?;
    println!("batch {batch}: retried {}, {fixed} now indexed, {still} still failing or paused", keys.len());
    Ok(())
}
