//! `quarry inspect FILE`: runs extraction, redaction and chunking exactly as indexing does and
//! shows the result, so a user can see why a file indexes the way it does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use quarry_core::Config;
use quarry_text::{Preparer, WordPiece};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to inspect.
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Print each chunk's whole text instead of a one-line preview.
    #[arg(long)]
    full: bool,
}

pub fn run(config_file: Option<&Path>, args: &Args) -> anyhow::Result<()> {
    let config = Config::from_env(config_file).map_err(crate::SetupError::Config)?;
    let model_dir = config.model.resolved_dir();
    let tokenizer_path = model_dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(crate::SetupError::ModelMissing { dir: model_dir }.into());
    }
    let tokenizer = WordPiece::from_file(&tokenizer_path).map_err(crate::SetupError::Tokenizer)?;
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let name = args.file.file_name().and_then(|n| n.to_str());
    let preparer = Preparer::new(&config, tokenizer);
    let prepared = preparer.prepare(name, &bytes).with_context(|| format!("cannot index {}", args.file.display()))?;
    let out =
        if args.json { render_json(&prepared, bytes.len())? } else { render_text(&prepared, bytes.len(), args.full) };
    print!("{out}");
    Ok(())
}

fn render_json(p: &quarry_text::Prepared, size: usize) -> anyhow::Result<String> {
    let redactions: serde_json::Map<String, serde_json::Value> =
        p.redactions.iter().map(|(k, n)| (k.name().to_owned(), (*n).into())).collect();
    let v = serde_json::json!({
        "format": p.document.format,
        "mime": p.document.format.mime(),
        "bytes": size,
        "chars": p.document.text.chars().count(),
        "title": p.document.title,
        "pages": p.document.pages.len(),
        "redactions": redactions,
        "chunks": p.chunks,
    });
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

fn render_text(p: &quarry_text::Prepared, size: usize, full: bool) -> String {
    let d = &p.document;
    let mut s = String::new();
    let _ = writeln!(s, "type:       {} ({})", d.format, d.format.mime());
    let _ = writeln!(s, "size:       {size} bytes, {} characters extracted", d.text.chars().count());
    if let Some(t) = &d.title {
        let _ = writeln!(s, "title:      {t}");
    }
    let _ = writeln!(s, "pages:      {}", d.pages.len());
    let red = if p.redactions.is_empty() {
        "none".to_owned()
    } else {
        p.redactions.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(s, "redactions: {red}");
    let tokens: u32 = p.chunks.iter().map(|c| c.tokens).sum();
    let _ = writeln!(s, "chunks:     {} ({tokens} tokens)", p.chunks.len());
    for c in &p.chunks {
        let pages = match c.pages {
            Some(r) if r.first == r.last => format!("p.{}", r.first),
            Some(r) => format!("p.{}-{}", r.first, r.last),
            None => "-".to_owned(),
        };
        let _ = writeln!(s, "\n#{:<4} chars {}..{}  {pages}  {} tokens", c.ordinal, c.span.start, c.span.end, c.tokens);
        if full {
            let _ = writeln!(s, "{}", c.text.trim());
        } else {
            let one_line: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
            let preview: String = one_line.chars().take(100).collect();
            let more = if one_line.chars().count() > 100 { "…" } else { "" };
            let _ = writeln!(s, "  {preview}{more}");
        }
    }
    s
}
