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

use quarry_core::ports::{BatchOutcome, BatchTracker, BlobSource};
use quarry_core::{BatchId, Classify, Config, DocumentKey, Failure};

use crate::engine::Source;
use sha2::{Digest, Sha256};

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
}

pub async fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let target = crate::engine::Target::resolve(&args.input, args.state.as_deref())?;
    let Some((lock, store)) = target.open_for_writing()? else {
        anyhow::bail!("another `quarry ingest` is running on {}", args.input.display())
    };
    let (source, rejected) = target.source()?;
    let local = crate::engine::Local::load(&config, source, store)?;
    let (source, store, preparer) = (&local.source, &local.store, &local.preparer);
    let started = Instant::now();

    // 1. Validate everything up front.
    let listed = source.list("").await?;
    let limit = config.limits.max_file_bytes;
    let (mut valid, mut invalid) = (Vec::new(), Vec::new());
    for r in &rejected {
        invalid.push((r.key.clone(), r.size, Failure::from_error(&r.error)));
    }
    for b in &listed {
        let reason = if b.size == 0 {
            Some(quarry_text::ExtractError::Empty)
        } else if b.size > limit {
            Some(quarry_text::ExtractError::TooLarge { size: b.size, limit })
        } else {
            let head = read_head(source, &b.key).unwrap_or_default();
            preparer
                .extractor()
                .detect_as(Some(b.key.as_str()), b.content_type.as_deref(), &head)
                .err()
                .filter(|e| e.code() == "unsupported_type")
        };
        match reason {
            Some(e) => invalid.push((b.key.clone(), b.size, Failure::from_error(&e))),
            None => valid.push((b.key.clone(), b.size)),
        }
    }

    // 2. The batch: its id follows from what is indexed, so a killed run resumes the same batch.
    let mut h = Sha256::new();
    for r in &rejected {
        h.update(r.key.as_str());
        h.update([1]);
    }
    for b in &listed {
        h.update(b.key.as_str());
        h.update([0]);
        h.update(b.version.as_deref().unwrap_or(""));
        h.update(b.size.to_le_bytes());
    }
    let batch = BatchId::new(format!("b-{}", &format!("{:x}", h.finalize())[..12]));
    let all: Vec<(DocumentKey, u64)> =
        valid.iter().cloned().chain(invalid.iter().map(|(k, s, _)| (k.clone(), *s))).collect();
    store.create(&batch, &all).await?;
    for (key, bytes, failure) in &invalid {
        store.record(&batch, key, &BatchOutcome::Failed { failure: failure.clone(), bytes: *bytes }).await?;
    }

    // 3. Index, many documents in flight, with progress by bytes.
    let total_bytes: u64 = valid.iter().map(|(_, s)| s).sum();
    let bar = if args.quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total_bytes) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut indexed, mut chunks, mut unchanged, mut failed, mut busy) = (0, 0u64, 0, invalid.len(), 0);
    let mut failures: Vec<(DocumentKey, Failure)> = invalid.iter().map(|(k, _, f)| (k.clone(), f.clone())).collect();
    local
        .run_batch(&batch, &valid, usize::from(args.workers), |key, size, outcome| {
            match outcome {
                // Another process holds it: left pending for that process or the next run.
                None => busy += 1,
                Some(BatchOutcome::Indexed { chunks: n, .. }) => {
                    indexed += 1;
                    chunks += u64::from(*n);
                }
                Some(BatchOutcome::Unchanged { .. }) => unchanged += 1,
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

    // 4. Sync: what is indexed but no longer in the folder leaves the index.
    let removed = local.remove_missing(&listed.iter().map(|b| &b.key).collect()).await?;

    let c = store.counters(&batch).await?;
    drop(lock);
    println!(
        "batch {batch}: {} documents, {indexed} indexed ({chunks} chunks), {unchanged} unchanged, {failed} failed, {removed} removed{} in {:.1}s",
        c.total,
        if busy > 0 { format!(", {busy} busy elsewhere") } else { String::new() },
        started.elapsed().as_secs_f64()
    );
    failures.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, f) in &failures {
        println!("  failed {key}: {} ({})", f.message, f.code);
    }
    Ok(())
}

/// The first 8 KiB of a file: enough for magic-number sniffing. (A JSONL record's type is declared.)
fn read_head(source: &Source, key: &DocumentKey) -> Option<Vec<u8>> {
    use std::io::Read;
    let Source::Folder(folder) = source else { return None };
    let path = folder.path_of(key).ok()?;
    let mut buf = Vec::with_capacity(8192);
    std::fs::File::open(path).ok()?.take(8192).read_to_end(&mut buf).ok()?;
    Some(buf)
}
