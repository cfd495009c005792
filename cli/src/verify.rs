//! `quarry verify [--repair]`: the folder (or JSONL file), the document states and the stored
//! chunks of an index compared, every disagreement reported by kind, and with `--repair` put right
//! through the pipeline's own steps ([`quarry_pipeline::verify`]). Exit 0 when clean (or repaired),
//! 4 when drift is found and left.

use std::path::{Path, PathBuf};

use quarry_core::Config;
use quarry_pipeline::verify::{self, Report};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder (or .jsonl file) indexed with `quarry ingest`.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Where its index is kept, if `quarry ingest --state` put it elsewhere.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Put every disagreement right: delete stray chunks, forget documents whose file is gone,
    /// and index afresh what is missing chunks or was never indexed.
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Drift was found and left as it is.
#[derive(Debug, thiserror::Error)]
#[error("the index disagrees with its folder in {0} place(s): run `quarry verify --repair` to put it right")]
pub struct Drifted(pub usize);

pub async fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let target = quarry_cli::engine::Target::resolve(&args.dir, args.state.as_deref())?;
    // Refuses an input with no index (and says how to make one) before anything is created.
    drop(target.open_existing()?);
    // A repair writes: one writer per index, as `quarry ingest` holds it. A check only reads, but
    // would report a running ingest's unfinished documents as drift; it says so instead.
    let (lock, store) = match target.open_for_writing()? {
        Some((lock, store)) => (Some(lock), store),
        None if !args.repair => {
            eprintln!("note: another quarry process is writing this index; documents in flight are left out");
            (None, target.open_existing()?)
        }
        None => anyhow::bail!("another quarry process is writing this index: stop it (or wait) and repair again"),
    };
    let (source, _) = target.source()?;
    let report = verify::verify(&source, "", &store, &store).await?;
    let counts = report.counts();
    if !args.repair || report.is_clean() {
        print_report(&report, args.json)?;
        return if report.is_clean() { Ok(()) } else { Err(Drifted(report.drift.len()).into()) };
    }
    if !args.json {
        print_report(&report, false)?;
    }
    let local = quarry_cli::engine::Local::load(&config, source, store)?;
    let repaired = verify::repair(&report, &local.store, &local.store, local.hosted()).await?;
    let jobs = quarry_pipeline::index_jobs(repaired.reindex.iter().map(|k| (k, None)), None);
    let (mut indexed, mut failed) = (0, 0);
    local
        .run(&jobs, 2, |_, _, outcome| match outcome {
            Some(quarry_core::ports::BatchOutcome::Failed { .. }) => failed += 1,
            Some(_) => indexed += 1,
            None => {}
        })
        .await?;
    let after = verify::verify(&local.source, "", &local.store, &local.store).await?;
    drop(lock);
    if args.json {
        let out = serde_json::json!({
            "report": report, "counts": counts, "repaired": repaired, "indexed": indexed, "failed": failed, "after": after,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "repaired: {} chunks deleted, {} documents forgotten, {} indexed afresh ({indexed} indexed, {failed} failed with a recorded reason)",
            repaired.chunks_removed,
            repaired.forgotten,
            repaired.reindex.len()
        );
        println!("after repair: {}", if after.is_clean() { "clean".to_owned() } else { summary(&after) });
    }
    if after.is_clean() { Ok(()) } else { Err(Drifted(after.drift.len()).into()) }
}

fn summary(report: &Report) -> String {
    let kinds: Vec<String> =
        report.counts().into_iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{n} {k}")).collect();
    format!("{} disagreement(s): {}", report.drift.len(), kinds.join(", "))
}

fn print_report(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        let out = serde_json::json!({ "report": report, "counts": report.counts() });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "checked {} objects, {} document states, {} stored chunks of {} documents ({} in flight, left out)",
        report.objects, report.documents, report.stored_chunks, report.stored_documents, report.in_flight
    );
    if report.is_clean() {
        println!("clean: every object, document state and stored chunk agree");
        return Ok(());
    }
    println!("{}", summary(report));
    for d in &report.drift {
        let key = d.key.as_ref().map_or("(no key)", |k| k.as_str());
        let counts = match d.checkpointed {
            Some(c) => format!("checkpointed {c} chunk(s), {} stored", d.stored),
            None => format!("{} stored chunk(s)", d.stored),
        };
        println!("  {:<15} {key}  [{}] {counts}", d.kind.name(), d.document);
    }
    Ok(())
}
