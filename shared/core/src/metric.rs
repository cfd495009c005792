//! The catalogue of every metric Quarry records: its name, kind, unit, dimensions and meaning.
//!
//! Code records through the `metrics` facade with these names (the pipeline, the API, the
//! adapters, the Lambda glue); the exporters (Prometheus and `/metrics.json` locally, CloudWatch
//! EMF in Lambda) take units and help from here; docs/MONITORING.md and the alarms in
//! template.yaml are checked against it by tests, so that a metric is never documented, alarmed
//! on or graphed under a name the code does not emit.
//!
//! Dimensions are low-cardinality on purpose (an outcome, an error code, a mode, a stage): each
//! distinct set of values is a separate CloudWatch metric, paid for monthly. Keys, ids, queries
//! and tenants are never dimensions.

/// How a metric aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A count that only grows.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// A distribution (latencies, sizes): percentiles locally, `Values`/`Counts` in EMF.
    Histogram,
}

/// The unit of a metric's values, by CloudWatch's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Bytes,
    /// Billionths of a dollar, the unit of the cost metrics: counters are integers, and one
    /// token of the cheapest embedding model costs 20 of them.
    Nanodollars,
}

impl Unit {
    /// The unit as CloudWatch names it (EMF's `Unit`).
    pub fn cloudwatch(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
            // CloudWatch has no currency: a plain number.
            Unit::Nanodollars => "None",
        }
    }
}

/// One metric of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    /// Every dimension the metric is recorded with, always all of them.
    pub dimensions: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! catalogue {
    ($($konst:ident = $name:literal, $kind:ident, $unit:ident, [$($dim:literal),*], $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $konst: &str = $name;
        )*
        /// Every metric, in the order docs/MONITORING.md lists them.
        pub const CATALOGUE: &[Def] = &[$(Def {
            name: $name,
            kind: Kind::$kind,
            unit: Unit::$unit,
            dimensions: &[$($dim),*],
            help: $help,
        }),*];
    };
}

catalogue! {
    // The indexing half: one document's lifecycle.
    DOCUMENTS = "documents", Counter, Count, ["outcome"],
        "Documents processed, by outcome: indexed, unchanged, failed, paused (a budget held it back), busy (held by another worker), deleted.";
    DOCUMENT_FAILURES = "document_failures", Counter, Count, ["code"],
        "Documents that could not be indexed, by error code (docs/TROUBLESHOOTING.md).";
    DOCUMENT_LATENCY = "document_latency", Histogram, Milliseconds, [],
        "Time to index one changed document end to end: fetch to checkpoint.";
    STAGE_LATENCY = "stage_latency", Histogram, Milliseconds, ["stage"],
        "Time spent in one indexing stage: fetch, prepare (extract, redact, chunk), embed, upsert, checkpoint.";
    DOCUMENT_BYTES = "document_bytes", Counter, Bytes, [],
        "Bytes of documents read for indexing.";
    CHUNKS_INDEXED = "chunks_indexed", Counter, Count, [],
        "Chunks written to the vector store.";
    TOKENS_EMBEDDED = "tokens_embedded", Counter, Count, [],
        "Model tokens in the chunks sent to the embedder (cache misses only).";
    EMBEDDING_CACHE = "embedding_cache", Counter, Count, ["result"],
        "Chunk vectors looked up by text before embedding: hit (reused) or miss (embedded).";
    EMBEDDING_CACHE_EVICTED = "embedding_cache_evicted", Counter, Count, [],
        "Cached vectors dropped to keep the local cache under its size cap or TTL.";
    EMBEDDING_CALLS = "embedding_calls", Counter, Count, ["purpose", "status"],
        "Calls to the embedder, for indexing or a query, and whether they succeeded (ok or error).";
    EMBEDDING_LATENCY = "embedding_latency", Histogram, Milliseconds, ["purpose"],
        "Time of one embedder call, for indexing (a document's cache misses) or a query.";
    ERRORS = "errors", Counter, Count, ["class", "code"],
        "Indexing jobs that failed, by class (retryable, permanent, bad_input) and code.";
    QUEUE_LAG = "queue_lag", Histogram, Milliseconds, [],
        "Age of a job's message when a worker receives it.";
    BATCH_DOCUMENTS = "batch_documents", Counter, Count, ["outcome"],
        "Documents of batches that reached an end: indexed, unchanged or failed.";
    COLD_STARTS = "cold_starts", Counter, Count, [],
        "Lambda execution environments started (one per cold start).";
    COST = "cost", Counter, Nanodollars, ["operation"],
        "Estimated spend on paid services in billionths of a dollar, by operation (embed: OpenAI tokens at the model's list price).";
    HOSTED_STORE_BYTES = "hosted_store_bytes", Gauge, Bytes, [],
        "What OpenAI's vector store holds as it bills storage (its usage_bytes), read after each file stored or removed.";
    HOSTED_STORE_DAILY_COST = "hosted_store_daily_cost", Gauge, Nanodollars, [],
        "What that storage costs a day past the free allowance, at store.openai_usd_per_gb_day.";
    KEYWORD_PUBLISH_LAG = "keyword_publish_lag", Histogram, Milliseconds, [],
        "From a chunk change sent (its oldest message in the batch) to the keyword index manifest that holds it published (the AWS keyword indexer).";
    KEYWORD_PUBLISH_CONFLICTS = "keyword_publish_conflicts", Counter, Count, [],
        "Keyword index publishes refused because another writer's manifest landed first (each is retried from the winner's).";
    KEYWORD_INDEX_SEGMENTS = "keyword_index_segments", Gauge, Count, [],
        "Segments of the published keyword index, at each publish (the merge policy keeps it bounded).";
    KEYWORD_INDEX_BYTES = "keyword_index_bytes", Gauge, Bytes, [],
        "Size of the published keyword index's files, at each publish.";
    KEYWORD_INDEX_AGE = "keyword_index_age", Gauge, Milliseconds, [],
        "Age of the keyword index manifest a search function serves, at each refresh.";
    ALERTS = "alerts", Counter, Count, ["receiver", "delivery"],
        "Notifications routed, by receiver type (slack, pagerduty, email) and delivery (sent, failed, duplicate).";
    // The query half.
    SEARCH_REQUESTS = "search_requests", Counter, Count, ["mode", "status"],
        "Search requests by mode (semantic, keyword, hybrid; none when refused before one was chosen) and HTTP status.";
    SEARCH_LATENCY = "search_latency", Histogram, Milliseconds, ["mode"],
        "Time to answer a search request that succeeded, by mode.";
    QUERY_CACHE = "query_cache", Counter, Count, ["result"],
        "Query vectors looked up before embedding a query: hit or miss.";
}

/// The definition of the metric named `name`.
pub fn find(name: &str) -> Option<&'static Def> {
    CATALOGUE.iter().find(|d| d.name == name)
}

/// Values of the `outcome` dimension of [`DOCUMENTS`].
pub mod outcome {
    pub const INDEXED: &str = "indexed";
    pub const UNCHANGED: &str = "unchanged";
    pub const FAILED: &str = "failed";
    pub const BUSY: &str = "busy";
    pub const DELETED: &str = "deleted";
    /// Held back by a budget; pending until the batch is resumed.
    pub const PAUSED: &str = "paused";
}

/// Values of the `stage` dimension of [`STAGE_LATENCY`].
pub mod stage {
    pub const FETCH: &str = "fetch";
    pub const PREPARE: &str = "prepare";
    pub const EMBED: &str = "embed";
    pub const UPSERT: &str = "upsert";
    pub const CHECKPOINT: &str = "checkpoint";
}

/// The values a dimension takes, where they are a closed set (every dimension but `code`, whose
/// values are the error codes of docs/TROUBLESHOOTING.md).
pub fn known_values(dimension: &str) -> Option<&'static [&'static str]> {
    Some(match dimension {
        "outcome" => &[outcome::INDEXED, outcome::UNCHANGED, outcome::FAILED, outcome::BUSY, outcome::DELETED],
        "stage" => &[stage::FETCH, stage::PREPARE, stage::EMBED, stage::UPSERT, stage::CHECKPOINT],
        "status" => &["ok", "client_error", "server_error"],
        "mode" => &["semantic", "keyword", "hybrid", "none"],
        "purpose" => &["index", "query"],
        "result" => &["hit", "miss"],
        "class" => &["retryable", "permanent", "bad_input"],
        "operation" => &["embed"],
        "receiver" => &["slack", "pagerduty", "email"],
        "delivery" => &["sent", "failed", "duplicate"],
        _ => return None,
    })
}

/// Milliseconds since `start`, as histograms take them.
pub fn millis(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_both_exporters() {
        let mut seen = std::collections::HashSet::new();
        for d in CATALOGUE {
            assert!(seen.insert(d.name), "{} twice", d.name);
            // Prometheus names and CloudWatch names both accept [a-z_]; nothing else is used.
            assert!(d.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", d.name);
            assert!(d.dimensions.len() <= 3, "{}: CloudWatch bills every combination", d.name);
            assert!(d.help.ends_with('.'), "{}", d.name);
        }
        assert_eq!(find(SEARCH_LATENCY).map(|d| d.unit), Some(Unit::Milliseconds));
        assert_eq!(find("no_such_metric"), None);
    }
}
