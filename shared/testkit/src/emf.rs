//! The CloudWatch Embedded Metric Format specification, as a checker: what the Lambda functions
//! print must pass it, or CloudWatch drops the metrics (and says so only in its own logs).

use serde_json::Value;

/// The units EMF accepts (CloudWatch's `StandardUnit`).
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Whether a log line is an EMF blob at all (JSON with `_aws`).
pub fn is_emf(line: &str) -> Option<Value> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    v.get("_aws").is_some().then_some(v)
}

/// Checks one blob against the specification: `_aws.Timestamp` (epoch milliseconds),
/// `CloudWatchMetrics` directives with a namespace, dimension sets (at most 30 names each, every
/// one a string member of the root) and at most 100 metrics, each a root member holding a number
/// or at most 100 numbers, with a standard unit.
pub fn validate(blob: &Value) -> Result<(), String> {
    let root = blob.as_object().ok_or("not an object")?;
    let aws = root.get("_aws").and_then(Value::as_object).ok_or("no _aws object")?;
    let ts = aws.get("Timestamp").and_then(Value::as_u64).ok_or("_aws.Timestamp is not a whole number")?;
    if ts < 1_500_000_000_000 {
        return Err(format!("_aws.Timestamp {ts} is not epoch milliseconds"));
    }
    let directives = aws.get("CloudWatchMetrics").and_then(Value::as_array).ok_or("no CloudWatchMetrics array")?;
    if directives.is_empty() {
        return Err("CloudWatchMetrics is empty".into());
    }
    for d in directives {
        let ns = d.get("Namespace").and_then(Value::as_str).ok_or("a directive without Namespace")?;
        if ns.is_empty() || ns.len() > 255 || ns.trim() != ns {
            return Err(format!("bad namespace {ns:?}"));
        }
        let sets = d.get("Dimensions").and_then(Value::as_array).ok_or("Dimensions is not an array")?;
        for set in sets {
            let names = set.as_array().ok_or("a dimension set is not an array")?;
            if names.len() > 30 {
                return Err(format!("a dimension set of {} names (30 at most)", names.len()));
            }
            for name in names {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                match root.get(name) {
                    Some(Value::String(v)) if !v.is_empty() && v.len() <= 1024 => {}
                    other => return Err(format!("dimension {name} is {other:?}, not a member string")),
                }
            }
        }
        let metrics = d.get("Metrics").and_then(Value::as_array).ok_or("Metrics is not an array")?;
        if metrics.len() > 100 {
            return Err(format!("{} metrics in one directive (100 at most)", metrics.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for m in metrics {
            let name = m.get("Name").and_then(Value::as_str).ok_or("a metric without Name")?;
            if name.is_empty() || name.len() > 255 || !seen.insert(name) {
                return Err(format!("bad or repeated metric name {name:?}"));
            }
            if let Some(unit) = m.get("Unit") {
                let unit = unit.as_str().ok_or("Unit is not a string")?;
                if !UNITS.contains(&unit) {
                    return Err(format!("{name}: unit {unit:?} is not a CloudWatch unit"));
                }
            }
            if let Some(r) = m.get("StorageResolution")
                && r != 1
                && r != 60
            {
                return Err(format!("{name}: StorageResolution {r}"));
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values)) if !values.is_empty() && values.len() <= 100 => {
                    if !values.iter().all(Value::is_number) {
                        return Err(format!("{name}: a value is not a number"));
                    }
                }
                other => return Err(format!("{name} is {other:?}: a number or 1 to 100 numbers")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_checker_catches_what_cloudwatch_drops() {
        let good = json!({"_aws": {"Timestamp": 1_764_640_000_000_u64, "CloudWatchMetrics": [{"Namespace": "Quarry",
            "Dimensions": [[], ["mode"]], "Metrics": [{"Name": "search_latency", "Unit": "Milliseconds"}]}]},
            "mode": "hybrid", "search_latency": [1.5, 2.0]});
        assert_eq!(validate(&good), Ok(()));
        let mut bad = good.clone();
        bad["mode"] = json!(3);
        assert!(validate(&bad).is_err(), "a dimension must be a string");
        let mut bad = good.clone();
        bad["search_latency"] = json!((0..101).collect::<Vec<_>>());
        assert!(validate(&bad).is_err(), "101 values");
        let mut bad = good.clone();
        bad["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Nanodollars");
        assert!(validate(&bad).is_err(), "not a unit");
        let mut bad = good;
        bad["_aws"]["Timestamp"] = json!(1_764_640_000);
        assert!(validate(&bad).is_err(), "seconds, not milliseconds");
    }
}
