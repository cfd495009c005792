//! No dead alarms: every alarm and dashboard widget of template.yaml names a metric that is
//! emitted, under a dimension set that is published. Quarry's own metrics are checked against the
//! catalogue (names, dimensions, the values of closed dimensions) and the rollups of the EMF
//! writer (the empty set, each dimension alone, all of them); AWS's against the template's own
//! queues and functions. Every alarm notifies the topic both ways (ALARM and OK).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use quarry_core::metric::{self, find};
use serde_json::Value as Json;
use serde_yaml_ng::Value;

fn template() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
    serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("template.yaml")).expect("YAML")
}

/// A CloudFormation short-form function (`!Ref X`, `!GetAtt X.Y`) as (tag, argument).
fn tagged(v: &Value) -> Option<(String, String)> {
    match v {
        Value::Tagged(t) => Some((t.tag.to_string(), t.value.as_str().unwrap_or_default().to_owned())),
        _ => None,
    }
}

struct Resources(BTreeMap<String, String>);

impl Resources {
    fn of(t: &Value) -> Self {
        let map = t["Resources"].as_mapping().expect("Resources");
        Resources(
            map.iter()
                .map(|(k, v)| {
                    (k.as_str().unwrap_or_default().to_owned(), v["Type"].as_str().unwrap_or_default().to_owned())
                })
                .collect(),
        )
    }

    fn is(&self, name: &str, kind: &str) -> bool {
        self.0.get(name).is_some_and(|t| t == kind)
    }
}

/// Checks one metric reference: namespace, name and dimensions (name to value, where a value
/// that is a template reference comes as `!Ref X` or `!GetAtt X.Y`).
fn check(where_: &str, res: &Resources, namespace: &str, name: &str, dims: &BTreeMap<String, String>) {
    match namespace {
        "Quarry" => {
            let def = find(name).unwrap_or_else(|| panic!("{where_}: Quarry/{name} is not a metric the code emits"));
            let keys: Vec<&str> = dims.keys().map(String::as_str).collect();
            let mut all: Vec<&str> = def.dimensions.to_vec();
            all.sort_unstable();
            assert!(
                keys.len() <= 1 || keys == all,
                "{where_}: {name} is published under no dimensions, each alone, or all of {all:?}; not {keys:?}"
            );
            for (k, v) in dims {
                assert!(def.dimensions.contains(&k.as_str()), "{where_}: {name} has no dimension {k}");
                if let Some(values) = metric::known_values(k) {
                    assert!(values.contains(&v.as_str()), "{where_}: {name} {k}={v} is never recorded ({values:?})");
                }
            }
        }
        "AWS/SQS" => {
            let q = dims.get("QueueName").unwrap_or_else(|| panic!("{where_}: {name} without QueueName"));
            let queue = q.trim_start_matches("!GetAtt ").trim_end_matches(".QueueName");
            assert!(q.ends_with(".QueueName") && res.is(queue, "AWS::SQS::Queue"), "{where_}: {q} is not a queue here");
        }
        "AWS/Lambda" => {
            let f = dims.get("FunctionName").unwrap_or_else(|| panic!("{where_}: {name} without FunctionName"));
            let function = f.trim_start_matches("!Ref ");
            assert!(res.is(function, "AWS::Serverless::Function"), "{where_}: {f} is not a function here");
        }
        other => panic!("{where_}: namespace {other} is not checked here: add it"),
    }
}

fn dims_of(list: &Value) -> BTreeMap<String, String> {
    list.as_sequence()
        .map(|s| {
            s.iter()
                .map(|d| {
                    let v = &d["Value"];
                    let value = match tagged(v) {
                        Some((tag, arg)) => format!("{tag} {arg}"),
                        None => v.as_str().unwrap_or_default().to_owned(),
                    };
                    (d["Name"].as_str().unwrap_or_default().to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_alarm_watches_an_emitted_metric_and_notifies_both_ways() {
    let t = template();
    let res = Resources::of(&t);
    let mut alarms = BTreeSet::new();
    for (name, r) in t["Resources"].as_mapping().expect("Resources") {
        if r["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        let name = name.as_str().unwrap_or_default();
        let p = &r["Properties"];
        alarms.insert(tagged(&p["AlarmName"]).map(|(_, a)| a).unwrap_or_default());
        for actions in ["AlarmActions", "OKActions"] {
            let list = p[actions].as_sequence().unwrap_or_else(|| panic!("{name}: no {actions}"));
            assert!(list.iter().any(|a| tagged(a) == Some(("!Ref".into(), "AlarmTopic".into()))), "{name}: {actions}");
        }
        let threshold = &p["Threshold"];
        assert!(
            threshold.is_number() || tagged(threshold).is_some_and(|(_, x)| t["Parameters"].get(&x).is_some()),
            "{name}: the threshold is a number or a template parameter"
        );
        if let Some(ns) = p["Namespace"].as_str() {
            check(name, &res, ns, p["MetricName"].as_str().unwrap_or_default(), &dims_of(&p["Dimensions"]));
            continue;
        }
        let queries = p["Metrics"].as_sequence().unwrap_or_else(|| panic!("{name}: no metric"));
        let ids: Vec<&str> = queries.iter().filter_map(|q| q["Id"].as_str()).collect();
        for q in queries {
            if let Some(expr) = q["Expression"].as_str() {
                for word in expr.split(|c: char| !c.is_ascii_alphanumeric() && c != '_') {
                    let function = ["FILL", "SUM", "MAX", "MIN", "AVG"].contains(&word);
                    let number = word.chars().all(|c| c.is_ascii_digit());
                    assert!(word.is_empty() || function || number || ids.contains(&word), "{name}: {word} in {expr}");
                }
                assert!(!expr.contains("SEARCH"), "{name}: alarms cannot search");
                continue;
            }
            let m = &q["MetricStat"]["Metric"];
            check(
                name,
                &res,
                m["Namespace"].as_str().unwrap_or_default(),
                m["MetricName"].as_str().unwrap_or_default(),
                &dims_of(&m["Dimensions"]),
            );
        }
    }
    for wanted in [
        "ingest-error-rate",
        "search-error-rate",
        "document-latency-p95",
        "search-latency-p95",
        "events-dlq",
        "jobs-dlq",
        "events-queue-age",
        "jobs-queue-age",
        "lambda-errors",
        "lambda-throttles",
        "daily-cost",
    ] {
        assert!(alarms.contains(&format!("quarry-${{Stage}}-{wanted}")), "no {wanted} alarm in {alarms:?}");
    }
}

#[test]
fn every_dashboard_widget_graphs_an_emitted_metric() {
    let t = template();
    let res = Resources::of(&t);
    let (tag, body) = tagged(&t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]).expect("!Sub body");
    assert_eq!(tag, "!Sub");
    // `${X}` and `${X.Y}` become `!Ref X` and `!GetAtt X.Y`, as the alarms write them.
    let mut json = String::new();
    let mut rest = body.as_str();
    while let Some(i) = rest.find("${") {
        let end = rest[i..].find('}').expect("closed") + i;
        let inner = &rest[i + 2..end];
        json.push_str(&rest[..i]);
        if inner.starts_with("AWS::") {
            json.push_str("us-east-1");
        } else if inner.contains('.') {
            json.push_str(&format!("!GetAtt {inner}"));
        } else {
            json.push_str(&format!("!Ref {inner}"));
        }
        rest = &rest[end + 1..];
    }
    json.push_str(rest);
    let body: Json = serde_json::from_str(&json).expect("the dashboard body is JSON");
    let widgets = body["widgets"].as_array().expect("widgets");
    assert!(widgets.len() >= 8, "ingest, failures, queues, latency, search, errors, cost, functions");
    let mut graphed = BTreeSet::new();
    for w in widgets {
        let title = w["properties"]["title"].as_str().unwrap_or("?");
        for m in w["properties"]["metrics"].as_array().expect("metrics") {
            let parts = m.as_array().expect("a metric is an array");
            if let Some(expr) = parts.first().and_then(|p| p["expression"].as_str()) {
                // A SEARCH names its metric; arithmetic refers to ids of the widget.
                if let Some(i) = expr.find("MetricName=\"") {
                    let name = &expr[i + 12..];
                    let name = &name[..name.find('"').expect("closed")];
                    assert!(find(name).is_some(), "{title}: SEARCH for {name}, which is not emitted");
                    graphed.insert(name.to_owned());
                }
                continue;
            }
            let strings: Vec<&str> = parts.iter().filter_map(Json::as_str).collect();
            let (ns, name) = (strings[0], strings[1]);
            let dims: BTreeMap<String, String> =
                strings[2..].chunks(2).map(|kv| (kv[0].to_owned(), kv[1].to_owned())).collect();
            check(title, &res, ns, name, &dims);
            if ns == "Quarry" {
                graphed.insert(name.to_owned());
            }
        }
    }
    for must in ["documents", "document_failures", "search_latency", "search_requests", "embedding_latency", "cost"] {
        assert!(graphed.contains(must), "the dashboard does not graph {must}");
    }
}
