//! `quarry`: the command-line front of the embedded default. Thin: parse arguments, load the
//! configuration once, hand off to the subcommand, and turn any error into one line on stderr with
//! its whole cause chain and a non-zero exit, never a panic.

// Printing to the terminal is this binary's job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod alerting;
mod batches;
mod cache;
mod eval;
mod ingest;
mod inspect;
mod search;
mod serve;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quarry_cli::{SetupError, engine};

#[derive(Debug, Parser)]
#[command(name = "quarry", version, about = "Semantic search over a folder or an S3 bucket")]
struct Cli {
    /// Configuration file (TOML); QUARRY_* environment variables override it.
    #[arg(long, global = true, env = "QUARRY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show how a file will be indexed: detected type, pages, redactions and chunks with spans.
    Inspect(inspect::Args),
    /// Index a folder on this machine and keep the index in sync with it.
    Ingest(ingest::Args),
    /// Search a folder indexed with `quarry ingest`.
    Search(search::Args),
    /// Serve the HTTP API on this machine (with --watch, keep a folder indexed while serving).
    Serve(serve::Args),
    /// Measure relevance on a BEIR-format dataset: nDCG@10, Recall@100, MRR@10 and latency per mode.
    Eval(eval::Args),
    /// Show past batches, or one batch's counts and failures.
    Batches(batches::ShowArgs),
    /// Index a batch's failed documents again.
    Retry(batches::RetryArgs),
    /// Show or clear the embedding cache of an index (`quarry cache stats`, `quarry cache clear`).
    Cache(cache::Args),
    /// Compare the folder, the document states and the stored chunks; --repair puts them right.
    Verify(verify::Args),
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Exit codes: 1 for input Quarry cannot use (a missing or unindexable file), 3 for a broken setup
/// (configuration, model), 4 for an index `quarry verify` found drifted. clap uses 2 for usage errors.
fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUARRY_LOG")
                // The parsers' own warnings are about the file, which the typed error already
                // reports in one line; QUARRY_LOG=debug shows them.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lopdf=off,pdf_extract=off")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(cli.config.as_deref(), &args),
        Command::Ingest(args) => runtime().and_then(|rt| rt.block_on(ingest::run(cli.config.as_deref(), &args))),
        Command::Search(args) => runtime().and_then(|rt| rt.block_on(search::run(cli.config.as_deref(), &args))),
        Command::Serve(args) => runtime().and_then(|rt| rt.block_on(serve::run(cli.config.as_deref(), &args))),
        Command::Eval(args) => runtime().and_then(|rt| rt.block_on(eval::run(cli.config.as_deref(), &args))),
        Command::Batches(args) => runtime().and_then(|rt| rt.block_on(batches::show(&args))),
        Command::Retry(args) => runtime().and_then(|rt| rt.block_on(batches::retry(cli.config.as_deref(), &args))),
        Command::Cache(args) => runtime().and_then(|rt| rt.block_on(cache::run(cli.config.as_deref(), &args))),
        Command::Verify(args) => runtime().and_then(|rt| rt.block_on(verify::run(cli.config.as_deref(), &args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("quarry: {err:#}");
            let setup = err.chain().any(|e| e.is::<SetupError>());
            let drifted = err.is::<verify::Drifted>();
            ExitCode::from(if setup {
                3
            } else if drifted {
                4
            } else {
                1
            })
        }
    }
}
