//! The environment variables Quarry reads, each with the setting it sets: a table apart from
//! the settings themselves, so that one file lists every name a deployment can use.

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
    ("QUARRY_REDACT", "redaction.enabled"),
    ("QUARRY_REDACT_DISABLE", "redaction.disabled"),
    ("QUARRY_MODEL_DIR", "model.dir"),
    ("QUARRY_BIND", "server.bind"),
    ("QUARRY_MAX_BODY_BYTES", "server.max_body_bytes"),
    ("QUARRY_MAX_QUERY_CHARS", "server.max_query_chars"),
    ("QUARRY_MAX_CONCURRENCY", "server.max_concurrency"),
    ("QUARRY_API_KEY", "server.api_key (environment only)"),
    ("QUARRY_CURSOR_SECRET", "server.cursor_secret (environment only)"),
    ("QUARRY_BUCKET", "aws.bucket"),
    ("QUARRY_QUEUE_URL", "aws.queue_url"),
    ("QUARRY_TABLE", "aws.table"),
    ("QUARRY_VECTOR_BUCKET", "aws.vector_bucket"),
    ("QUARRY_VECTOR_INDEX", "aws.vector_index"),
    ("QUARRY_EVENTS_TOPIC", "aws.events_topic"),
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
];
