//! `quarry verify [--repair]`: the folder (or JSONL file), the document states and the stored
//! chunks of an index compared, every disagreement reported by kind, and with `--repair` put right
//! through the pipeline's own steps ([`quarry_pipeline::verify`]). Exit 0 when clean (or repaired),
//! 4 when drift is found and left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quarry_core::Config;
use quarry_core::keywords::IndexFiles;
use quarry_core::keywords::NoFeed;
use quarry_core::ports::JobQueue;
use quarry_keyword::KeywordReplica;
use quarry_local::SqliteStore;
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
    /// Verify the AWS deployment the environment names (`QUARRY_BUCKET`, `QUARRY_TABLE`,
    /// `QUARRY_VECTOR_BUCKET`, ... as the functions read them) instead of a folder. `--repair`
    /// then deletes and forgets at once and queues what must be indexed for the embed-workers.
    #[arg(long, conflicts_with = "state")]
    aws: bool,
    /// With `--aws`: only objects under this prefix are looked for (a document whose key is
    /// outside it is never judged gone).
    #[arg(long, default_value = "", requires = "aws")]
    prefix: String,
}

/// Drift was found and left as it is.
#[derive(Debug, thiserror::Error)]
#[error("the index disagrees with its folder in {0} place(s): run `quarry verify --repair` to put it right")]
pub struct Drifted(pub usize);

pub async fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    if args.aws {
        return run_aws(&config, args).await;
    }
    let target = quarry_cli::engine::Target::resolve(&args.dir, args.state.as_deref())?;
    // Refuses an input with no index (and says how to make one) before anything is created.
    target.ensure_indexed()?;
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
    // The embedded keyword index is kept by the store itself and rebuilt when behind.
    let report = verify::verify(&source, "", &store, &store, None::<&SqliteStore>).await?;
    let counts = report.counts();
    if !args.repair || report.is_clean() {
        print_report(&report, args.json)?;
        return if report.is_clean() { Ok(()) } else { Err(Drifted(report.drift.len()).into()) };
    }
    if !args.json {
        print_report(&report, false)?;
    }
    let local = quarry_cli::engine::Local::load(&config, source, store)?;
    let repaired = verify::repair(&report, &local.store, &local.store, local.hosted(), None::<&NoFeed>).await?;
    let jobs = quarry_pipeline::index_jobs(repaired.reindex.iter().map(|k| (k, None)), None);
    let (mut indexed, mut failed) = (0, 0);
    local
        .run(&jobs, 2, |_, _, outcome| match outcome {
            Some(quarry_core::ports::BatchOutcome::Failed { .. }) => failed += 1,
            Some(_) => indexed += 1,
            None => {}
        })
        .await?;
    let after = verify::verify(&local.source, "", &local.store, &local.store, None::<&SqliteStore>).await?;
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

/// The same over the AWS stores. A repair's deletions reach the keyword index as changes, as every
/// other path's do; what must be indexed goes on the jobs queue, so the report after it is the
/// next run's, once the queue has drained.
async fn run_aws(config: &Config, args: &Args) -> anyhow::Result<()> {
    let aws = quarry_aws::Adapters::for_config(&config.aws).await?;
    // The newest published keyword index, where the deployment has one.
    let keywords = aws.keyword_files.clone().map(|files| KeywordReplica::new(files, Duration::ZERO));
    let report = verify::verify(&aws.source, &args.prefix, &aws.state, &aws.vectors, keywords.as_ref()).await?;
    let strays = match &aws.keyword_files {
        Some(files) => quarry_keyword::stray_files(files).await?,
        None => Vec::new(),
    };
    let found = report.drift.len() + strays.len();
    let mut out = serde_json::json!({ "report": report, "counts": report.counts(), "stray_index_files": strays });
    if !args.json {
        print_report(&report, false)?;
        if !strays.is_empty() {
            println!(
                "{} keyword index file(s) no manifest names or will (a writer killed before publishing)",
                strays.len()
            );
        }
    }
    if !args.repair || found == 0 {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        return if found == 0 { Ok(()) } else { Err(Drifted(found).into()) };
    }
    let writer = quarry_pipeline::Feeding { writer: aws.vectors.clone(), feed: aws.keyword_feed.clone() };
    let hosted = quarry_openai::stores::OpenAiStore::from_config(config).map_err(crate::SetupError::OpenAi)?;
    let hosted = hosted.as_ref().map(|h| h as &dyn quarry_core::hosted::HostedStore);
    let repaired = verify::repair(&report, &aws.state, &writer, hosted, aws.keyword_feed.as_ref()).await?;
    let jobs = quarry_pipeline::index_jobs(repaired.reindex.iter().map(|k| (k, None)), None);
    aws.queue.enqueue(&jobs).await?;
    if let Some(files) = &aws.keyword_files {
        files.delete(&strays).await?;
    }
    if args.json {
        out["repaired"] = serde_json::to_value(&repaired)?;
        out["queued"] = jobs.len().into();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "repaired: {} chunks deleted, {} documents forgotten, {} queued for indexing, {} sent to the keyword indexer, {} stray index files deleted (verify again once the queues drain)",
            repaired.chunks_removed,
            repaired.forgotten,
            jobs.len(),
            repaired.keyword_changes,
            strays.len()
        );
    }
    Ok(())
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
