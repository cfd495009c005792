//! `quarry search "QUERY"`: search a folder indexed with `quarry ingest`, in any mode, through the
//! pipeline's query half, as the API does.

use std::path::{Path, PathBuf};

use anyhow::Context;
use quarry_core::Config;
use quarry_embed::EmbedOptions;
use quarry_pipeline::Mode;
use quarry_pipeline::query::Fusion;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to search for.
    query: String,
    /// The folder (or .jsonl file) indexed with `quarry ingest`.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Where its index is kept, if `quarry ingest --state` put it elsewhere.
    #[arg(long)]
    state: Option<PathBuf>,
    /// How many results (1 to 100).
    #[arg(long, short = 'k', default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    top_k: u16,
    /// semantic, keyword (BM25) or hybrid (both, fused), as in the API.
    /// Hybrid by default; semantic with an OpenAI vector store (`store.backend = "openai"`).
    #[arg(long)]
    mode: Option<Mode>,
    /// Show the sentences that answer the query (marked »…«) instead of the start of each chunk.
    #[arg(long)]
    highlight: bool,
    /// Metadata filter in the API's JSON language, e.g. '{"format": "pdf"}' (see docs/API.md).
    #[arg(long)]
    filter: Option<String>,
}

pub async fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(!args.query.trim().is_empty(), "the query is empty");
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let store = crate::engine::Target::resolve(&args.dir, args.state.as_deref())?.open_existing()?;
    let filter = match &args.filter {
        None => None,
        Some(text) => {
            let value: serde_json::Value = serde_json::from_str(text).context("--filter is not valid JSON")?;
            Some(quarry_core::Filter::parse(&value)?)
        }
    };
    let top_k = usize::from(args.top_k);
    let hosted = quarry_openai::stores::OpenAiStore::from_config(&config).map_err(crate::SetupError::OpenAi)?;
    if let Some(hosted) = &hosted {
        let mode = args.mode.unwrap_or(Mode::Semantic);
        let mut hits = quarry_pipeline::retrieve_hosted(hosted, &store, mode, &args.query, top_k, filter).await?;
        hits.truncate(top_k);
        let marks: Vec<_> = match args.highlight {
            true => quarry_pipeline::query::word_highlights(&args.query, &hits),
            false => vec![Vec::new(); hits.len()],
        };
        print_hits(&hits, marks);
        return Ok(());
    }
    let mode = args.mode.unwrap_or(Mode::Hybrid);
    let embedder = if mode.needs_vector() {
        crate::engine::check_model(&store, &config)?;
        Some(crate::engine::embedder(&config, EmbedOptions { threads: 0, batch_size: 16, ..EmbedOptions::default() })?)
    } else {
        None
    };
    let vector = match &embedder {
        Some(e) => Some(quarry_core::ports::Embedder::embed(e, std::slice::from_ref(&args.query)).await?.remove(0)),
        None => None,
    };
    let mut hits = quarry_pipeline::retrieve(
        &store,
        Some(&store),
        mode,
        &args.query,
        std::future::ready(vector.clone().ok_or(quarry_core::PortError::InvalidInput {
            operation: "search",
            reason: "keyword mode has no query vector".into(),
        })),
        top_k,
        filter,
        Fusion::DEFAULT,
    )
    .await?;
    hits.truncate(top_k);
    let marks = match (&embedder, args.highlight) {
        (Some(e), true) => quarry_pipeline::query::highlight_hits(e, &args.query, vector.as_deref(), &hits).await?,
        (None, true) => quarry_pipeline::query::word_highlights(&args.query, &hits),
        (_, false) => vec![Vec::new(); hits.len()],
    };
    print_hits(&hits, marks);
    Ok(())
}

fn print_hits(hits: &[quarry_core::ports::VectorHit], marks: Vec<Vec<quarry_pipeline::query::Highlight>>) {
    if hits.is_empty() {
        println!("no results");
    }
    for (rank, (hit, marks)) in hits.iter().zip(marks).enumerate() {
        let key = hit.meta.key.as_str();
        let page = match hit.pages {
            Some(p) if p.first != p.last => format!(" p.{}-{}", p.first, p.last),
            Some(p) if hit.meta.format == quarry_core::Format::Pdf => format!(" p.{}", p.first),
            _ => String::new(),
        };
        println!("{:>2}. {:.3}  {key}{page}", rank + 1, hit.score);
        if marks.is_empty() {
            let text: String = hit.text.split_whitespace().collect::<Vec<_>>().join(" ");
            let preview: String = text.chars().take(160).collect();
            let more = if text.chars().count() > 160 { "…" } else { "" };
            println!("    {preview}{more}");
        }
        let chars: Vec<char> = hit.text.chars().collect();
        for m in marks {
            let sentence: String = chars[m.start..m.end].iter().collect();
            println!("    »{}«", sentence.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
}
