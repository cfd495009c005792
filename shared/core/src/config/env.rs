//! The environment variables Quarry reads, each with the setting it sets: a table apart from
//! the settings themselves, so that one file lists every name a deployment can use, and how each
//! is read.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{Config, ConfigError, EmbedderKind, Secret, Usd, invalid};
use crate::domain::PiiKind;

/// Environment variables and the settings they set.
pub(super) const ENV: &[(&str, &str)] = &[
    ("QUARRY_CONFIG", "config file path"),
    // Read by the `quarry` binary's log filter, not by the configuration; known so that setting
    // it is not refused as a misspelt setting.
    ("QUARRY_LOG", "log filter (quarry binary)"),
    ("QUARRY_MAX_FILE_BYTES", "limits.max_file_bytes"),
    ("QUARRY_MAX_CHARS", "limits.max_chars"),
    ("QUARRY_MAX_PDF_PAGES", "limits.max_pdf_pages"),
    ("QUARRY_DOCX_MAX_RATIO", "limits.docx_max_ratio"),
    ("QUARRY_DOCX_MAX_UNCOMPRESSED_BYTES", "limits.docx_max_uncompressed_bytes"),
    ("QUARRY_JSON_MAX_DEPTH", "limits.json_max_depth"),
    ("QUARRY_HTML_MAX_DEPTH", "limits.html_max_depth"),
    ("QUARRY_CHUNK_MAX_TOKENS", "chunking.max_tokens"),
    ("QUARRY_CHUNK_OVERLAP_TOKENS", "chunking.overlap_tokens"),
    ("QUARRY_CHUNK_OPENAI_MAX_TOKENS", "chunking.openai_max_tokens"),
    ("QUARRY_CHUNK_OPENAI_OVERLAP_TOKENS", "chunking.openai_overlap_tokens"),
    ("QUARRY_REDACT", "redaction.enabled"),
    ("QUARRY_REDACT_DISABLE", "redaction.disabled"),
    ("QUARRY_MODEL_DIR", "model.dir"),
    ("QUARRY_MODEL_PRECISION", "model.precision"),
    ("QUARRY_BIND", "server.bind"),
    ("QUARRY_MAX_BODY_BYTES", "server.max_body_bytes"),
    ("QUARRY_MAX_QUERY_CHARS", "server.max_query_chars"),
    ("QUARRY_MAX_CONCURRENCY", "server.max_concurrency"),
    ("QUARRY_API_KEY", "server.api_key (environment only)"),
    ("QUARRY_CURSOR_SECRET", "server.cursor_secret (environment only)"),
    ("QUARRY_KEYS_FILE", "server.keys_file"),
    ("QUARRY_TENANT_CLAIM", "server.tenant_claim"),
    ("QUARRY_BUCKET", "aws.bucket"),
    ("QUARRY_QUEUE_URL", "aws.queue_url"),
    ("QUARRY_TABLE", "aws.table"),
    ("QUARRY_VECTOR_BUCKET", "aws.vector_bucket"),
    ("QUARRY_VECTOR_INDEX", "aws.vector_index"),
    ("QUARRY_EVENTS_TOPIC", "aws.events_topic"),
    ("QUARRY_INDEX_BUCKET", "aws.index_bucket"),
    ("QUARRY_KEYWORD_QUEUE_URL", "aws.keyword_queue_url"),
    ("QUARRY_KEYWORD_REFRESH_SECS", "aws.keyword_refresh_secs"),
    ("QUARRY_AWS_ENDPOINT_URL", "aws.endpoint_url"),
    ("QUARRY_ALERT_ROUTES", "alerts.routes"),
    ("QUARRY_EMBEDDER", "embedder.kind"),
    ("QUARRY_OPENAI_MODEL", "embedder.openai_model"),
    ("QUARRY_OPENAI_DIMENSIONS", "embedder.openai_dimensions"),
    ("QUARRY_OPENAI_BASE_URL", "embedder.openai_base_url"),
    ("QUARRY_OPENAI_API_KEY", "embedder.openai_api_key (environment only)"),
    ("QUARRY_OPENAI_CONCURRENCY", "embedder.openai_concurrency"),
    ("QUARRY_OPENAI_RPM", "embedder.openai_requests_per_minute"),
    ("QUARRY_OPENAI_TPM", "embedder.openai_tokens_per_minute"),
    ("QUARRY_OPENAI_USD_PER_MILLION_TOKENS", "embedder.openai_usd_per_million_tokens"),
    ("QUARRY_OPENAI_MAX_RETRIES", "embedder.openai_max_retries"),
    ("QUARRY_BUDGET_DAILY_USD", "budget.daily_usd"),
    ("QUARRY_BUDGET_BATCH_USD", "budget.batch_usd"),
    ("QUARRY_BUDGET_WARN_PERCENT", "budget.warn_percent"),
    ("QUARRY_CACHE_ENCODING", "cache.encoding"),
    ("QUARRY_CACHE_TTL_DAYS", "cache.ttl_days"),
    ("QUARRY_CACHE_MAX_MB", "cache.max_mb"),
    ("QUARRY_STORE", "store.backend"),
    ("QUARRY_OPENAI_STORE_NAME", "store.openai_name"),
];

/// Parses `50MB`, `50 MiB`, `1.5GB`, `1048576`: what people type for sizes.
pub fn parse_bytes(setting: &str, value: &str) -> Result<u64, ConfigError> {
    let v = value.trim();
    let split = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1 << 10,
        "mb" | "m" => 1000 * 1000,
        "mib" => 1 << 20,
        "gb" | "g" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        _ => return Err(invalid(setting, value, "expected a size such as 50MB, 64MiB or 1048576")),
    };
    let n: f64 = num.parse().map_err(|_| invalid(setting, value, "expected a size such as 50MB, 64MiB or 1048576"))?;
    let bytes = n * mult as f64;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
        return Err(invalid(setting, value, "size out of range"));
    }
    Ok(bytes as u64)
}

fn parse_usd(setting: &str, value: &str) -> Result<Usd, ConfigError> {
    Usd::parse(value).ok_or_else(|| invalid(setting, value, "expected dollars such as 5 or 0.50"))
}

fn parse_num<T: std::str::FromStr>(setting: &str, value: &str) -> Result<T, ConfigError> {
    value.trim().replace('_', "").parse().map_err(|_| invalid(setting, value, "expected a whole number"))
}

fn parse_bool(setting: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err(invalid(setting, value, "expected on/off (true/false, 1/0)")),
    }
}

impl Config {
    pub(super) fn apply_env(&mut self, name: &str, v: &str) -> Result<(), ConfigError> {
        let l = &mut self.limits;
        match name {
            "QUARRY_CONFIG" | "QUARRY_LOG" => {}
            "QUARRY_MAX_FILE_BYTES" => l.max_file_bytes = parse_bytes(name, v)?,
            "QUARRY_MAX_CHARS" => l.max_chars = parse_num(name, v)?,
            "QUARRY_MAX_PDF_PAGES" => l.max_pdf_pages = parse_num(name, v)?,
            "QUARRY_DOCX_MAX_RATIO" => l.docx_max_ratio = parse_num(name, v)?,
            "QUARRY_DOCX_MAX_UNCOMPRESSED_BYTES" => l.docx_max_uncompressed_bytes = parse_bytes(name, v)?,
            "QUARRY_JSON_MAX_DEPTH" => l.json_max_depth = parse_num(name, v)?,
            "QUARRY_HTML_MAX_DEPTH" => l.html_max_depth = parse_num(name, v)?,
            "QUARRY_CHUNK_MAX_TOKENS" => self.chunking.max_tokens = parse_num(name, v)?,
            "QUARRY_CHUNK_OVERLAP_TOKENS" => self.chunking.overlap_tokens = parse_num(name, v)?,
            "QUARRY_CHUNK_OPENAI_MAX_TOKENS" => self.chunking.openai_max_tokens = parse_num(name, v)?,
            "QUARRY_CHUNK_OPENAI_OVERLAP_TOKENS" => self.chunking.openai_overlap_tokens = parse_num(name, v)?,
            "QUARRY_REDACT" => self.redaction.enabled = parse_bool(name, v)?,
            "QUARRY_REDACT_DISABLE" => {
                let mut set = BTreeSet::new();
                for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let kind = PiiKind::from_name(part).ok_or_else(|| {
                        let names: Vec<_> = PiiKind::ALL.iter().map(|k| k.name()).collect();
                        invalid(name, v, format!("unknown kind {part:?}; kinds are {}", names.join(", ")))
                    })?;
                    set.insert(kind);
                }
                self.redaction.disabled = set;
            }
            "QUARRY_MODEL_DIR" => self.model.dir = Some(PathBuf::from(v)),
            "QUARRY_MODEL_PRECISION" => {
                self.model.precision =
                    super::Precision::parse(v).ok_or_else(|| invalid(name, v, "expected f32 or int8"))?;
            }
            "QUARRY_BIND" => self.server.bind = v.to_owned(),
            "QUARRY_MAX_BODY_BYTES" => self.server.max_body_bytes = parse_bytes(name, v)?,
            "QUARRY_MAX_QUERY_CHARS" => self.server.max_query_chars = parse_num(name, v)?,
            "QUARRY_MAX_CONCURRENCY" => self.server.max_concurrency = parse_num(name, v)?,
            "QUARRY_API_KEY" => self.server.api_key = Some(Secret::new(v)),
            "QUARRY_CURSOR_SECRET" => self.server.cursor_secret = Some(Secret::new(v)),
            "QUARRY_KEYS_FILE" => self.server.keys_file = Some(v.into()),
            "QUARRY_TENANT_CLAIM" => self.server.tenant_claim = v.to_owned(),
            "QUARRY_BUCKET" => self.aws.bucket = Some(v.to_owned()),
            "QUARRY_QUEUE_URL" => self.aws.queue_url = Some(v.to_owned()),
            "QUARRY_TABLE" => self.aws.table = Some(v.to_owned()),
            "QUARRY_ALERT_ROUTES" => self.alerts.routes = Some(v.to_owned()),
            "QUARRY_VECTOR_BUCKET" => self.aws.vector_bucket = Some(v.to_owned()),
            "QUARRY_VECTOR_INDEX" => self.aws.vector_index = Some(v.to_owned()),
            "QUARRY_EVENTS_TOPIC" => self.aws.events_topic = Some(v.to_owned()),
            "QUARRY_INDEX_BUCKET" => self.aws.index_bucket = Some(v.to_owned()),
            "QUARRY_KEYWORD_QUEUE_URL" => self.aws.keyword_queue_url = Some(v.to_owned()),
            "QUARRY_KEYWORD_REFRESH_SECS" => self.aws.keyword_refresh_secs = Some(parse_num(name, v)?),
            "QUARRY_AWS_ENDPOINT_URL" => self.aws.endpoint_url = Some(v.to_owned()),
            "QUARRY_EMBEDDER" => {
                self.embedder.kind = match v.trim().to_ascii_lowercase().as_str() {
                    "local" => EmbedderKind::Local,
                    "openai" => EmbedderKind::Openai,
                    _ => return Err(invalid(name, v, "expected local or openai")),
                }
            }
            "QUARRY_OPENAI_MODEL" => self.embedder.openai_model = v.to_owned(),
            "QUARRY_OPENAI_DIMENSIONS" => self.embedder.openai_dimensions = parse_num(name, v)?,
            "QUARRY_OPENAI_BASE_URL" => self.embedder.openai_base_url = Some(v.to_owned()),
            "QUARRY_OPENAI_API_KEY" => self.embedder.openai_api_key = Some(Secret::new(v)),
            "QUARRY_OPENAI_CONCURRENCY" => self.embedder.openai_concurrency = parse_num(name, v)?,
            "QUARRY_OPENAI_RPM" => self.embedder.openai_requests_per_minute = Some(parse_num(name, v)?),
            "QUARRY_OPENAI_TPM" => self.embedder.openai_tokens_per_minute = Some(parse_num(name, v)?),
            "QUARRY_OPENAI_USD_PER_MILLION_TOKENS" => {
                self.embedder.openai_usd_per_million_tokens = Some(parse_usd(name, v)?);
            }
            "QUARRY_OPENAI_MAX_RETRIES" => self.embedder.openai_max_retries = parse_num(name, v)?,
            "QUARRY_BUDGET_DAILY_USD" => self.budget.daily_usd = Some(parse_usd(name, v)?),
            "QUARRY_BUDGET_BATCH_USD" => self.budget.batch_usd = Some(parse_usd(name, v)?),
            "QUARRY_BUDGET_WARN_PERCENT" => self.budget.warn_percent = parse_num(name, v)?,
            "QUARRY_CACHE_ENCODING" => {
                self.cache.encoding =
                    crate::cache::Encoding::parse(v).ok_or_else(|| invalid(name, v, "expected f32, f16 or int8"))?;
            }
            "QUARRY_CACHE_TTL_DAYS" => self.cache.ttl_days = parse_num(name, v)?,
            "QUARRY_CACHE_MAX_MB" => self.cache.max_mb = parse_num(name, v)?,
            "QUARRY_STORE" => {
                self.store.backend =
                    super::StoreBackend::parse(v).ok_or_else(|| invalid(name, v, "expected native or openai"))?;
            }
            "QUARRY_OPENAI_STORE_NAME" => self.store.openai_name = v.to_owned(),
            _ => {
                let known: Vec<&str> = ENV.iter().map(|(n, _)| *n).collect();
                return Err(ConfigError::UnknownVariable { name: name.to_owned(), known: known.join(", ") });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Precision, StoreBackend};

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(None, pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    /// A value each variable takes, so that every name in the table is shown to be read.
    fn good(name: &str) -> &'static str {
        match name {
            "QUARRY_REDACT" => "off",
            "QUARRY_REDACT_DISABLE" => "email",
            "QUARRY_MODEL_PRECISION" => "int8",
            "QUARRY_BIND" => "127.0.0.1:9000",
            "QUARRY_API_KEY" => "0123456789abcdef",
            "QUARRY_CURSOR_SECRET" => "0123456789abcdef0123456789abcdef",
            "QUARRY_EMBEDDER" => "local",
            "QUARRY_OPENAI_USD_PER_MILLION_TOKENS" | "QUARRY_BUDGET_DAILY_USD" | "QUARRY_BUDGET_BATCH_USD" => "$0.02",
            "QUARRY_CACHE_ENCODING" => " F16 ",
            "QUARRY_STORE" => "native",
            "QUARRY_MAX_FILE_BYTES" | "QUARRY_DOCX_MAX_UNCOMPRESSED_BYTES" | "QUARRY_MAX_BODY_BYTES" => "2MiB",
            "QUARRY_DOCX_MAX_RATIO" => "50",
            "QUARRY_CHUNK_OVERLAP_TOKENS" | "QUARRY_CHUNK_OPENAI_OVERLAP_TOKENS" => "16",
            "QUARRY_BUDGET_WARN_PERCENT" => "80",
            n if n.contains("MAX") || n.contains("TOKENS") || n.contains("DEPTH") => "128",
            n if n.contains("PAGES") || n.contains("CHARS") || n.contains("RPM") || n.contains("TPM") => "128",
            n if n.contains("CONCURRENCY")
                || n.contains("DIMENSIONS")
                || n.contains("SECS")
                || n.contains("RETRIES") =>
            {
                "128"
            }
            n if n.contains("TTL_DAYS") || n.contains("MAX_MB") => "7",
            _ => "some-name",
        }
    }

    #[test]
    fn every_variable_in_the_table_is_read() {
        for &(name, setting) in ENV.iter().filter(|(n, _)| *n != "QUARRY_CONFIG") {
            let loaded = load(&[(name, good(name))]);
            assert!(loaded.is_ok(), "{name} ({setting}) = {:?}: {:?}", good(name), loaded.err());
        }
        let c = load(&[
            ("QUARRY_REDACT", "off"),
            ("QUARRY_CACHE_ENCODING", " F16 "),
            ("QUARRY_OPENAI_USD_PER_MILLION_TOKENS", "$0.02"),
            ("QUARRY_MODEL_PRECISION", "INT8"),
            ("QUARRY_STORE", "openai"),
            ("QUARRY_CACHE_MAX_MB", "0"),
        ])
        .expect("valid");
        assert!(c.redaction.kinds().is_empty(), "redaction off redacts nothing");
        assert_eq!(c.cache.encoding, crate::cache::Encoding::F16);
        assert_eq!(c.embedder.openai_usd_per_million_tokens, Some(Usd(20_000_000)));
        assert_eq!((c.model.precision, c.store.backend), (Precision::Int8, StoreBackend::Openai));
    }

    #[test]
    fn a_bad_value_is_refused_with_the_variable_named() {
        for (name, value) in [
            ("QUARRY_REDACT", "maybe"),
            ("QUARRY_CACHE_ENCODING", "f64"),
            ("QUARRY_MODEL_PRECISION", "int4"),
            ("QUARRY_STORE", "bogus"),
            ("QUARRY_EMBEDDER", "remote"),
            ("QUARRY_BUDGET_DAILY_USD", "five"),
            ("QUARRY_MAX_CHARS", "1e6"),
            ("QUARRY_MAX_FILE_BYTES", "99999999999999999999GB"),
        ] {
            let e = load(&[(name, value)]).expect_err(name);
            assert!(e.to_string().starts_with(&format!("{name}:")), "{name}={value}: {e}");
        }
        let e = load(&[("QUARRY_MAX_FILE_BYTES", "99999999999999999999GB")]).expect_err("huge");
        assert!(e.to_string().contains("size out of range"), "{e}");
    }

    #[test]
    fn settings_that_need_each_other_are_checked_together() {
        let refused = |pairs: &[(&str, &str)], names: &str| {
            let e = load(pairs).expect_err(names);
            assert!(e.to_string().starts_with(names), "{pairs:?}: {e}");
            e.to_string()
        };
        refused(&[("QUARRY_EMBEDDER", "openai")], "QUARRY_OPENAI_API_KEY:");
        let key = ("QUARRY_OPENAI_API_KEY", "sk-test");
        refused(
            &[("QUARRY_EMBEDDER", "openai"), key, ("QUARRY_OPENAI_DIMENSIONS", "4000")],
            "embedder.openai_dimensions:",
        );
        refused(
            &[("QUARRY_EMBEDDER", "openai"), key, ("QUARRY_OPENAI_RPM", "0")],
            "embedder.openai_requests_per_minute:",
        );
        refused(
            &[("QUARRY_EMBEDDER", "openai"), key, ("QUARRY_OPENAI_CONCURRENCY", "0")],
            "embedder.openai_concurrency:",
        );
        let short = refused(&[("QUARRY_API_KEY", "short-key")], "QUARRY_API_KEY:");
        assert!(!short.contains("short-key"), "a secret is never repeated in an error: {short}");
        refused(&[("QUARRY_CURSOR_SECRET", "too short")], "QUARRY_CURSOR_SECRET:");
        refused(&[("QUARRY_BIND", "localhost")], "server.bind:");
        assert!(load(&[("QUARRY_EMBEDDER", "openai"), key]).is_ok());
        let c = load(&[("QUARRY_EMBEDDER", "openai"), key]).expect("valid");
        assert!(!format!("{c:?}").contains("sk-test"), "a secret is hidden from Debug too");
    }
}
