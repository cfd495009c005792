//! `quarry batches [ID]` and `quarry retry ID`: what past ingests did, and another go at what failed.

use std::path::{Path, PathBuf};

use quarry_core::ports::{BatchOutcome, BatchTracker};
use quarry_core::{BatchId, Config};
use quarry_embedded::SqliteStore;
use quarry_pipeline::batch_outcome;

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// A batch id; without it, every batch.
    id: Option<String>,
    /// The folder indexed with `quarry ingest`.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RetryArgs {
    /// The batch whose failed documents to index again.
    id: String,
    /// The folder indexed with `quarry ingest`.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

fn open(dir: &Path) -> anyhow::Result<SqliteStore> {
    let state = crate::ingest::state_path(dir);
    anyhow::ensure!(state.is_file(), "{} has no index yet: run `quarry ingest {}` first", dir.display(), dir.display());
    Ok(SqliteStore::open(&state, quarry_embed::DIMENSION)?)
}

pub async fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let store = open(&args.dir)?;
    match &args.id {
        None => {
            let batches = store.batches()?;
            if batches.is_empty() {
                println!("no batches");
            }
            for (id, _) in batches {
                let c = store.counters(&id).await?;
                println!(
                    "{id}  {} documents: {} done, {} unchanged, {} failed, {} pending",
                    c.total, c.done, c.skipped, c.failed, c.pending
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
            for (key, f) in store.failures(&id).await? {
                println!("  failed {key}: {} ({}{})", f.message, f.code, if f.retryable { ", retryable" } else { "" });
            }
        }
    }
    Ok(())
}

pub async fn retry(config_file: Option<&Path>, args: &RetryArgs) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let store = open(&args.dir)?;
    let batch = BatchId::new(args.id.as_str());
    let failed = store.failures(&batch).await?;
    if failed.is_empty() {
        println!("batch {batch} has no failed documents");
        return Ok(());
    }
    let local = crate::engine::Local::load(&config, &args.dir, store)?;
    let indexer = local.indexer();
    let (mut fixed, mut still) = (0, 0);
    for (key, _) in &failed {
        let Some(outcome) = batch_outcome(&indexer.index(key).await, 0) else { continue };
        if let BatchOutcome::Failed { failure, .. } = &outcome {
            still += 1;
            println!("  still failing {key}: {} ({})", failure.message, failure.code);
        } else {
            fixed += 1;
        }
        local.store.record(&batch, key, &outcome).await?;
    }
    println!("batch {batch}: retried {}, {fixed} now indexed, {still} still failing", failed.len());
    Ok(())
}
