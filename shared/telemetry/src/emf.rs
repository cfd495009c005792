//! CloudWatch Embedded Metric Format for the Lambda functions: `metrics_cloudwatch_embedded`
//! collects what the facade records, and [`Emf::flush`] writes it to stdout once per invocation,
//! where the Lambda log agent turns it into metrics.
//!
//! The crate writes one blob per label set with that set as its only dimension set. Two things
//! are added here, by hand, on its output (about forty lines, chosen over a fork):
//! - **Rollups.** Every blob also carries the empty dimension set (and, for a two-dimension
//!   metric, each dimension alone), so that alarms can watch a total: an alarm's metric math
//!   cannot search, and takes at most ten metrics.
//! - **The specification's limits.** At most 100 metrics per blob and 100 values per metric. The
//!   crate keeps at most 100 values of a histogram between flushes (it drops the rest with an
//!   error in the log); an invocation records far fewer (one search, or ten jobs of five stages).
//!   Metrics are split here across blobs past 100.

use std::io::Write;

use metrics_cloudwatch_embedded::{Builder, Collector};
use quarry_core::metric;
use serde_json::{Map, Value};

/// The namespace of every Quarry metric in CloudWatch.
pub const NAMESPACE: &str = "Quarry";
/// EMF's limits, per blob and per metric.
pub const MAX_METRICS: usize = 100;
pub const MAX_VALUES: usize = 100;

/// The collector could not be installed (another recorder is).
#[derive(Debug, thiserror::Error)]
#[error("the EMF recorder could not be installed")]
pub struct InstallError(#[source] metrics_cloudwatch_embedded::Error);

/// The process's EMF collector.
#[derive(Clone, Copy)]
pub struct Emf {
    collector: &'static Collector,
}

impl std::fmt::Debug for Emf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emf").field("namespace", &NAMESPACE).finish_non_exhaustive()
    }
}

impl Emf {
    /// Installs the collector as the process's recorder and counts the cold start (flushed with
    /// the first invocation). Call once at init, before anything records.
    pub fn install() -> Result<Self, InstallError> {
        let collector = Builder::new().cloudwatch_namespace(NAMESPACE).init().map_err(InstallError)?;
        crate::describe();
        metrics::counter!(metric::COLD_STARTS).increment(1);
        Ok(Emf { collector })
    }

    /// Writes what was recorded since the last flush to stdout, as EMF, one blob a line.
    pub fn flush(&self) {
        let stdout = std::io::stdout();
        if let Err(e) = self.flush_to(stdout.lock()) {
            tracing::warn!(error = %e, "metrics could not be written");
        }
    }

    /// [`Emf::flush`] into any writer.
    pub fn flush_to(&self, mut out: impl Write) -> std::io::Result<()> {
        let mut raw = Vec::new();
        self.collector.flush(&mut raw)?;
        for line in raw.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let blob: Value = serde_json::from_slice(line)?;
            for shaped in shape(blob) {
                serde_json::to_writer(&mut out, &shaped)?;
                out.write_all(b"\n")?;
            }
        }
        out.flush()
    }
}

/// Adds the rollup dimension sets to one of the collector's blobs and splits it where it passes
/// the specification's limits. A blob that does not have the collector's shape is kept as it is.
pub fn shape(blob: Value) -> Vec<Value> {
    let Value::Object(mut root) = blob else { return vec![blob] };
    let Some(directive) = root.get_mut("_aws").and_then(|a| a["CloudWatchMetrics"].get_mut(0)) else {
        return vec![Value::Object(root)];
    };
    let dims: Vec<Value> = directive["Dimensions"].get(0).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut sets = vec![Value::Array(Vec::new())];
    if dims.len() > 1 {
        sets.extend(dims.iter().map(|d| Value::Array(vec![d.clone()])));
    }
    if !dims.is_empty() {
        sets.push(Value::Array(dims));
    }
    directive["Dimensions"] = Value::Array(sets);
    let metrics: Vec<Value> = directive["Metrics"].as_array().cloned().unwrap_or_default();
    // Values leave the root into per-metric queues; each round takes up to 100 of each.
    let mut queues: Vec<(Value, Vec<Value>, bool)> = metrics
        .into_iter()
        .map(|m| {
            let name = m["Name"].as_str().unwrap_or_default().to_owned();
            match root.remove(&name) {
                Some(Value::Array(values)) => (m, values, true),
                Some(v) => (m, vec![v], false),
                None => (m, Vec::new(), false),
            }
        })
        .collect();
    let mut out = Vec::new();
    loop {
        let ready: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].1.is_empty()).collect();
        if ready.is_empty() {
            break;
        }
        for group in ready.chunks(MAX_METRICS) {
            let mut blob: Map<String, Value> = root.clone();
            let mut names = Vec::new();
            for &i in group {
                let (def, values, array) = &mut queues[i];
                let take: Vec<Value> = values.drain(..values.len().min(MAX_VALUES)).collect();
                let name = def["Name"].as_str().unwrap_or_default().to_owned();
                let value = if *array { Value::Array(take) } else { take.into_iter().next().unwrap_or(Value::Null) };
                blob.insert(name, value);
                names.push(def.clone());
            }
            blob["_aws"]["CloudWatchMetrics"][0]["Metrics"] = Value::Array(names);
            out.push(Value::Object(blob));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rollups_and_limits() {
        let values: Vec<f64> = (0..250).map(f64::from).collect();
        let blob = json!({
            "_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "Quarry",
                "Dimensions": [["mode", "status"]],
                "Metrics": [{"Name": "search_requests", "Unit": "Count"}, {"Name": "search_latency", "Unit": "Milliseconds"}]}]},
            "mode": "hybrid", "status": "ok", "search_requests": 3, "search_latency": values,
        });
        let out = shape(blob);
        assert_eq!(out.len(), 3, "250 values take three blobs");
        for b in &out {
            assert_eq!(
                b["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                json!([[], ["mode"], ["status"], ["mode", "status"]])
            );
            assert_eq!((b["mode"].as_str(), b["status"].as_str()), (Some("hybrid"), Some("ok")));
        }
        assert_eq!(out[0]["search_requests"], 3, "a counter goes once");
        assert!(out[1].get("search_requests").is_none());
        let lens: Vec<usize> = out.iter().map(|b| b["search_latency"].as_array().map_or(0, Vec::len)).collect();
        assert_eq!(lens, [100, 100, 50]);
        let plain = json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "Quarry", "Dimensions": [[]],
            "Metrics": [{"Name": "cold_starts", "Unit": "Count"}]}]}, "cold_starts": 1});
        assert_eq!(shape(plain)[0]["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
    }
}
