//! Quarry's metadata and filter language in OpenAI's vector store terms: a document's metadata as
//! file attributes (within their limits), and a parsed [`Filter`] as OpenAI's comparison and
//! compound filters, or a refusal naming what has no translation.

use quarry_core::filter::{Filter, Op, Scalar};
use quarry_core::meta::Metadata;
use serde_json::{Map, Value, json};

/// Attributes a file may carry.
pub const MAX_ATTRIBUTES: usize = 16;
/// Longest attribute name.
pub const MAX_KEY_CHARS: usize = 64;
/// Longest string value kept. OpenAI's reference says 512 characters and its retrieval guide
/// 256; the lower one holds under both.
pub const MAX_VALUE_CHARS: usize = 256;
/// The attribute that maps a file back to its document.
pub const DOCUMENT_ID: &str = "document_id";
/// Suffix of the numeric twin of a field whose value reads as a number. Quarry's filters compare
/// such a string as a string (`$eq: "2021"`) and as a number (`$gte: 2020`), as S3 metadata holds
/// numbers as strings; OpenAI compares typed values, so the field is stored both ways.
pub const NUMERIC: &str = "#n";

fn numeric(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A document's attributes: its id and reserved fields first (`key`, `format`, `tenant`, `title`), then
/// user fields by name, up to [`MAX_ATTRIBUTES`]; a string that reads as a number also as its
/// numeric twin (`name#n`). Strings are cut to [`MAX_VALUE_CHARS`]; names over [`MAX_KEY_CHARS`]
/// and values that are not strings, numbers or booleans (lists) are left out. Returns the
/// attributes and the names left out, which a filter then does not find on this document.
pub fn attributes(document_id: &str, metadata: &Metadata) -> (Map<String, Value>, Vec<String>) {
    let mut out = Map::new();
    let mut left_out = Vec::new();
    out.insert(DOCUMENT_ID.into(), Value::from(document_id));
    let reserved =
        [quarry_core::meta::KEY, quarry_core::meta::FORMAT, quarry_core::meta::TENANT, quarry_core::meta::TITLE];
    let ordered = reserved
        .iter()
        .filter_map(|k| metadata.get_key_value(*k))
        .chain(metadata.iter().filter(|(k, _)| !reserved.contains(&k.as_str())));
    for (name, value) in ordered {
        let value = match value {
            Value::String(s) => Value::from(s.chars().take(MAX_VALUE_CHARS).collect::<String>()),
            Value::Number(_) | Value::Bool(_) => value.clone(),
            _ => {
                left_out.push(name.clone());
                continue;
            }
        };
        let twin = value.as_str().and_then(numeric).map(|n| (format!("{name}{NUMERIC}"), json!(n)));
        let room = MAX_ATTRIBUTES - out.len().min(MAX_ATTRIBUTES);
        if room < 1 + usize::from(twin.is_some())
            || name.chars().count() + NUMERIC.len() > MAX_KEY_CHARS
            || name == DOCUMENT_ID
        {
            left_out.push(name.clone());
            continue;
        }
        out.insert(name.clone(), value);
        out.extend(twin);
    }
    (out, left_out)
}

/// What a filter uses that OpenAI's filters cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the OpenAI vector store cannot filter with {what} (field {field:?})")]
pub struct Untranslatable {
    pub field: String,
    pub what: &'static str,
}

fn scalar(s: &Scalar) -> Value {
    match s {
        Scalar::Str(v) => json!(v),
        Scalar::Num(v) => json!(v),
        Scalar::Bool(v) => json!(v),
    }
}

/// A comparison on the field as stored: a number is compared with the numeric twin.
fn compare(kind: &str, field: &str, value: Value) -> Value {
    if value.is_number() {
        json!({"type": kind, "key": format!("{field}{NUMERIC}"), "value": value})
    } else {
        json!({"type": kind, "key": field, "value": value})
    }
}

/// `$in`/`$nin` as OpenAI's `in`/`nin` where the list is all strings or all numbers (what they
/// take), else as `or` of `eq` / `and` of `ne`.
fn list(field: &str, values: &[Scalar], negated: bool) -> Value {
    let (single, each, join) = if negated { ("nin", "ne", "and") } else { ("in", "eq", "or") };
    if values.iter().all(|v| matches!(v, Scalar::Str(_))) {
        json!({"type": single, "key": field, "value": values.iter().map(scalar).collect::<Vec<_>>()})
    } else if values.iter().all(|v| matches!(v, Scalar::Num(_))) {
        json!({"type": single, "key": format!("{field}{NUMERIC}"), "value": values.iter().map(scalar).collect::<Vec<_>>()})
    } else {
        json!({"type": join, "filters": values.iter().map(|v| compare(each, field, scalar(v))).collect::<Vec<_>>()})
    }
}

/// The OpenAI filter for `filter`. `$exists` and `$startsWith` have no translation (OpenAI compares
/// values only). A field left out of a document's attributes ([`attributes`]) is absent there:
/// positive tests do not match it, and `$ne`/`$nin` do, as they match a document without the
/// field in Quarry's own semantics (a list-valued field, left out, differs: Quarry's `$ne` looks
/// inside the list).
pub fn translate(filter: &Filter) -> Result<Value, Untranslatable> {
    Ok(match filter {
        Filter::And(parts) => {
            json!({"type": "and", "filters": parts.iter().map(translate).collect::<Result<Vec<_>, _>>()?})
        }
        Filter::Or(parts) => {
            json!({"type": "or", "filters": parts.iter().map(translate).collect::<Result<Vec<_>, _>>()?})
        }
        Filter::Field { field, op } => match op {
            Op::Eq(v) => compare("eq", field, scalar(v)),
            Op::Ne(v) => compare("ne", field, scalar(v)),
            Op::Gt(v) => compare("gt", field, json!(v)),
            Op::Gte(v) => compare("gte", field, json!(v)),
            Op::Lt(v) => compare("lt", field, json!(v)),
            Op::Lte(v) => compare("lte", field, json!(v)),
            Op::In(vs) => list(field, vs, false),
            Op::Nin(vs) => list(field, vs, true),
            Op::Exists(_) => return Err(Untranslatable { field: field.clone(), what: "$exists" }),
            Op::StartsWith(_) => return Err(Untranslatable { field: field.clone(), what: "$startsWith" }),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Filter {
        Filter::parse(&v).expect("a valid filter")
    }

    #[test]
    fn comparisons_and_compounds_translate_one_to_one() {
        let f =
            parse(json!({"format": "pdf", "$or": [{"user.year": {"$gte": 2020}}, {"user.team": {"$in": ["a", "b"]}}]}));
        let t = translate(&f).expect("translatable");
        assert_eq!(
            t,
            json!({"type": "and", "filters": [
                {"type": "eq", "key": "format", "value": "pdf"},
                {"type": "or", "filters": [
                    {"type": "gte", "key": "user.year#n", "value": 2020.0},
                    {"type": "in", "key": "user.team", "value": ["a", "b"]},
                ]},
            ]})
        );
        let mixed = translate(&parse(json!({"user.flag": {"$nin": [true, "x"]}}))).expect("translatable");
        assert_eq!(
            mixed,
            json!({"type": "and", "filters": [
                {"type": "ne", "key": "user.flag", "value": true},
                {"type": "ne", "key": "user.flag", "value": "x"},
            ]})
        );
    }

    #[test]
    fn what_openai_cannot_express_is_refused_with_its_name() {
        let e = translate(&parse(json!({"$or": [{"format": "md"}, {"user.draft": {"$exists": false}}]})))
            .expect_err("refused");
        assert_eq!(e, Untranslatable { field: "user.draft".into(), what: "$exists" });
        let e = translate(&parse(json!({"key": {"$startsWith": "reports/"}}))).expect_err("refused");
        assert!(e.to_string().contains("$startsWith") && e.to_string().contains("key"), "{e}");
    }

    #[test]
    fn attributes_keep_the_reserved_fields_first_and_stay_within_the_limits() {
        let mut m = Metadata::new();
        m.insert("key".into(), json!("notes/a.md"));
        m.insert("format".into(), json!("markdown"));
        m.insert("title".into(), json!("t".repeat(600)));
        m.insert("user.tags".into(), json!(["a", "b"]));
        m.insert(format!("user.{}", "n".repeat(70)), json!("long name"));
        for i in 0..20 {
            m.insert(format!("user.f{i:02}"), json!(format!("v{i}")));
        }
        let (a, left_out) = attributes("0123abcd", &m);
        assert_eq!(a.len(), MAX_ATTRIBUTES);
        assert_eq!(a[DOCUMENT_ID], json!("0123abcd"));
        assert_eq!((a["key"].clone(), a["format"].clone()), (json!("notes/a.md"), json!("markdown")));
        assert_eq!(a["title"].as_str().map(|t| t.chars().count()), Some(MAX_VALUE_CHARS));
        assert!(left_out.contains(&"user.tags".to_owned()), "a list has no attribute form: {left_out:?}");
        assert!(left_out.iter().any(|n| n.len() > MAX_KEY_CHARS), "{left_out:?}");
        assert!(left_out.contains(&"user.f19".to_owned()) && a.contains_key("user.f00"), "{left_out:?}");
        let mut m = Metadata::new();
        m.insert("user.year".into(), json!("2021"));
        let (a, _) = attributes("0123abcd", &m);
        assert_eq!((a["user.year"].clone(), a["user.year#n"].clone()), (json!("2021"), json!(2021.0)), "both ways");
    }
}
