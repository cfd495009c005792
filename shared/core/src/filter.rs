//! One metadata filter language for every backend, in the JSON style S3 Vectors uses:
//!
//! ```json
//! {"format": "pdf", "year": {"$gte": 2020}, "$or": [{"user.team": {"$in": ["a", "b"]}}, {"draft": {"$exists": false}}]}
//! ```
//!
//! A field name with a bare value means `$eq`; several keys in one object are all required;
//! `$and`/`$or` take lists. Operators: `$eq $ne $gt $gte $lt $lte $in $nin $exists $startsWith`.
//! Values are strings, numbers and booleans; range operators take numbers only, as S3 Vectors does,
//! so that a filter means the same everywhere. `$ne` and `$nin` match a document without the field
//! (as in S3 Vectors and MongoDB). A list-valued field matches `$eq`/`$in` when any element does.
//!
//! Parsing validates everything up front (unknown operator, wrong type, depth, size) so that a bad
//! filter is a 400 with the path of the offending part, never a silent no-match. Backends translate
//! the parsed [`Filter`]; [`Filter::matches`] is the reference semantics (and the embedded
//! backend's evaluator).

use std::collections::BTreeMap;

use serde_json::Value;

/// Deepest nesting of `$and`/`$or`.
pub const MAX_DEPTH: usize = 8;
/// Most conditions (field tests) in one filter.
pub const MAX_CONDITIONS: usize = 64;
/// Most values in one `$in`/`$nin` list.
pub const MAX_LIST: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Eq(Scalar),
    Ne(Scalar),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    In(Vec<Scalar>),
    Nin(Vec<Scalar>),
    Exists(bool),
    StartsWith(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Field { field: String, op: Op },
}

/// Why a filter is refused; `path` points at the offending part (`$.year.$gte`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {path}: {reason}")]
pub struct FilterError {
    pub code: &'static str,
    pub path: String,
    pub reason: String,
}

impl crate::Classify for FilterError {
    fn class(&self) -> crate::ErrorClass {
        crate::ErrorClass::BadInput
    }
    fn code(&self) -> &'static str {
        self.code
    }
}

fn err(code: &'static str, path: &str, reason: impl Into<String>) -> FilterError {
    FilterError { code, path: path.to_owned(), reason: reason.into() }
}

struct Parser {
    conditions: usize,
}

impl Filter {
    /// Parses and validates a filter. `null` and `{}` are not filters: callers treat them as
    /// "no filter" before calling this.
    pub fn parse(value: &Value) -> Result<Filter, FilterError> {
        let mut p = Parser { conditions: 0 };
        p.object(value, "$", 0)
    }

    /// Whether a document with `metadata` passes.
    pub fn matches(&self, metadata: &BTreeMap<String, Value>) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(metadata)),
            Filter::Or(any) => any.iter().any(|f| f.matches(metadata)),
            Filter::Field { field, op } => op.matches(metadata.get(field)),
        }
    }
}

impl Parser {
    fn object(&mut self, value: &Value, path: &str, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return Err(err("filter_too_deep", path, format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let Value::Object(map) = value else {
            return Err(err("filter_wrong_type", path, "expected an object"));
        };
        if map.is_empty() {
            return Err(err("filter_empty", path, "an empty object tests nothing"));
        }
        let mut parts = Vec::with_capacity(map.len());
        for (key, v) in map {
            let here = format!("{path}.{key}");
            match key.as_str() {
                "$and" | "$or" => {
                    let Value::Array(items) = v else {
                        return Err(err("filter_wrong_type", &here, "expected a list of filters"));
                    };
                    if items.is_empty() {
                        return Err(err("filter_empty", &here, "an empty list"));
                    }
                    let subs = items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.object(item, &format!("{here}[{i}]"), depth + 1))
                        .collect::<Result<Vec<_>, _>>()?;
                    parts.push(if key == "$and" { Filter::And(subs) } else { Filter::Or(subs) });
                }
                k if k.starts_with('$') => {
                    return Err(err(
                        "filter_unknown_operator",
                        &here,
                        format!("{k} is not a logical operator ($and, $or)"),
                    ));
                }
                field => parts.extend(self.field(field, v, &here)?),
            }
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
    }

    fn field(&mut self, field: &str, v: &Value, path: &str) -> Result<Vec<Filter>, FilterError> {
        if field.is_empty() {
            return Err(err("filter_wrong_type", path, "a field name cannot be empty"));
        }
        let ops = match v {
            Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => ops,
            Value::Object(_) | Value::Array(_) | Value::Null => {
                return Err(err(
                    "filter_wrong_type",
                    path,
                    "expected a string, number or boolean, or an operator object",
                ));
            }
            scalar => {
                self.count(path)?;
                return Ok(vec![Filter::Field { field: field.to_owned(), op: Op::Eq(scalar_of(scalar, path)?) }]);
            }
        };
        let mut out = Vec::with_capacity(ops.len());
        for (op, arg) in ops {
            let here = format!("{path}.{op}");
            self.count(&here)?;
            let op = match op.as_str() {
                "$eq" => Op::Eq(scalar_of(arg, &here)?),
                "$ne" => Op::Ne(scalar_of(arg, &here)?),
                "$gt" => Op::Gt(number_of(arg, &here)?),
                "$gte" => Op::Gte(number_of(arg, &here)?),
                "$lt" => Op::Lt(number_of(arg, &here)?),
                "$lte" => Op::Lte(number_of(arg, &here)?),
                "$in" => Op::In(list_of(arg, &here)?),
                "$nin" => Op::Nin(list_of(arg, &here)?),
                "$exists" => match arg {
                    Value::Bool(b) => Op::Exists(*b),
                    _ => return Err(err("filter_wrong_type", &here, "expected true or false")),
                },
                "$startsWith" => match arg {
                    Value::String(s) => Op::StartsWith(s.clone()),
                    _ => return Err(err("filter_wrong_type", &here, "expected a string")),
                },
                other => {
                    return Err(err(
                        "filter_unknown_operator",
                        &here,
                        format!("{other} is not an operator ($eq $ne $gt $gte $lt $lte $in $nin $exists $startsWith)"),
                    ));
                }
            };
            out.push(Filter::Field { field: field.to_owned(), op });
        }
        Ok(out)
    }

    fn count(&mut self, path: &str) -> Result<(), FilterError> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(err("filter_too_large", path, format!("more than {MAX_CONDITIONS} conditions")));
        }
        Ok(())
    }
}

fn scalar_of(v: &Value, path: &str) -> Result<Scalar, FilterError> {
    match v {
        Value::String(s) => Ok(Scalar::Str(s.clone())),
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Number(n) => {
            n.as_f64().map(Scalar::Num).ok_or_else(|| err("filter_wrong_type", path, "number out of range"))
        }
        _ => Err(err("filter_wrong_type", path, "expected a string, number or boolean")),
    }
}

fn number_of(v: &Value, path: &str) -> Result<f64, FilterError> {
    v.as_f64().ok_or_else(|| err("filter_wrong_type", path, "range operators take a number"))
}

fn list_of(v: &Value, path: &str) -> Result<Vec<Scalar>, FilterError> {
    let Value::Array(items) = v else {
        return Err(err("filter_wrong_type", path, "expected a list"));
    };
    if items.is_empty() {
        return Err(err("filter_empty", path, "an empty list"));
    }
    if items.len() > MAX_LIST {
        return Err(err("filter_too_large", path, format!("more than {MAX_LIST} values")));
    }
    items.iter().enumerate().map(|(i, x)| scalar_of(x, &format!("{path}[{i}]"))).collect()
}

/// Metadata may hold numbers as strings (S3 object metadata is all strings): a numeric test
/// reads a string that parses as a number.
fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn equals(v: &Value, s: &Scalar) -> bool {
    match (v, s) {
        (Value::String(a), Scalar::Str(b)) => a == b,
        (Value::Bool(a), Scalar::Bool(b)) => a == b,
        (_, Scalar::Num(b)) => as_number(v).is_some_and(|a| a == *b),
        _ => false,
    }
}

impl Op {
    fn matches(&self, value: Option<&Value>) -> bool {
        // A list-valued field: any element may satisfy a positive test; none may match a negative one.
        let values: Vec<&Value> = match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(v) => vec![v],
        };
        let any = |f: &dyn Fn(&Value) -> bool| values.iter().any(|v| f(v));
        match self {
            Op::Exists(want) => values.is_empty() != *want,
            Op::Eq(s) => any(&|v| equals(v, s)),
            Op::Ne(s) => !any(&|v| equals(v, s)),
            Op::In(list) => any(&|v| list.iter().any(|s| equals(v, s))),
            Op::Nin(list) => !any(&|v| list.iter().any(|s| equals(v, s))),
            Op::Gt(n) => any(&|v| as_number(v).is_some_and(|a| a > *n)),
            Op::Gte(n) => any(&|v| as_number(v).is_some_and(|a| a >= *n)),
            Op::Lt(n) => any(&|v| as_number(v).is_some_and(|a| a < *n)),
            Op::Lte(n) => any(&|v| as_number(v).is_some_and(|a| a <= *n)),
            Op::StartsWith(p) => any(&|v| v.as_str().is_some_and(|s| s.starts_with(p.as_str()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(v: Value) -> BTreeMap<String, Value> {
        v.as_object().expect("object").clone().into_iter().collect()
    }

    #[test]
    fn operators_on_each_type() {
        let doc = meta(json!({
            "format": "pdf", "year": 2021, "pages": "12", "draft": false,
            "tags": ["diet", "heart"], "key": "reports/2021/q1.pdf", "empty": null
        }));
        let cases = [
            (json!({"format": "pdf"}), true),
            (json!({"format": "docx"}), false),
            (json!({"format": {"$eq": "pdf"}}), true),
            (json!({"format": {"$ne": "pdf"}}), false),
            (json!({"missing": {"$ne": "x"}}), true),
            (json!({"year": 2021}), true),
            (json!({"year": 2021.0}), true),
            (json!({"year": {"$gt": 2020}}), true),
            (json!({"year": {"$gt": 2021}}), false),
            (json!({"year": {"$gte": 2021}}), true),
            (json!({"year": {"$lt": 2021}}), false),
            (json!({"year": {"$lte": 2021, "$gte": 2000}}), true),
            (json!({"pages": {"$gte": 10}}), true),
            (json!({"pages": 12}), true),
            (json!({"format": {"$gt": 1}}), false),
            (json!({"draft": false}), true),
            (json!({"draft": {"$eq": true}}), false),
            (json!({"draft": "false"}), false),
            (json!({"format": {"$in": ["docx", "pdf"]}}), true),
            (json!({"format": {"$nin": ["docx", "pdf"]}}), false),
            (json!({"missing": {"$nin": ["a"]}}), true),
            (json!({"tags": "heart"}), true),
            (json!({"tags": {"$in": ["bones", "diet"]}}), true),
            (json!({"tags": {"$ne": "diet"}}), false),
            (json!({"tags": {"$nin": ["x", "y"]}}), true),
            (json!({"format": {"$exists": true}}), true),
            (json!({"missing": {"$exists": true}}), false),
            (json!({"missing": {"$exists": false}}), true),
            (json!({"empty": {"$exists": false}}), true),
            (json!({"key": {"$startsWith": "reports/2021/"}}), true),
            (json!({"key": {"$startsWith": "reports/2022/"}}), false),
            (json!({"year": {"$startsWith": "20"}}), false),
        ];
        for (f, want) in cases {
            let parsed = Filter::parse(&f).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!(parsed.matches(&doc), want, "{f}");
        }
    }

    #[test]
    fn nested_and_or() {
        let doc = meta(json!({"format": "pdf", "year": 2021, "team": "b"}));
        let cases = [
            (json!({"format": "pdf", "year": 2020}), false),
            (json!({"$and": [{"format": "pdf"}, {"year": 2021}]}), true),
            (json!({"$or": [{"format": "docx"}, {"year": 2021}]}), true),
            (json!({"$or": [{"format": "docx"}, {"year": 2020}]}), false),
            (
                json!({"format": "pdf", "$or": [{"team": "a"}, {"$and": [{"team": "b"}, {"year": {"$gt": 2000}}]}]}),
                true,
            ),
            (json!({"$and": [{"$or": [{"team": "a"}, {"team": "c"}]}, {"format": "pdf"}]}), false),
        ];
        for (f, want) in cases {
            assert_eq!(Filter::parse(&f).expect("valid").matches(&doc), want, "{f}");
        }
    }

    #[test]
    fn invalid_filters_say_what_and_where() {
        let deep = (0..10).fold(json!({"a": 1}), |inner, _| json!({"$and": [inner]}));
        let wide: serde_json::Map<String, Value> = (0..65).map(|i| (format!("f{i}"), json!(i))).collect();
        let long: Vec<Value> = (0..257).map(Value::from).collect();
        let cases = [
            (json!({"year": {"$gtx": 1}}), "filter_unknown_operator", "$.year.$gtx"),
            (json!({"$not": [{"a": 1}]}), "filter_unknown_operator", "$.$not"),
            (json!({"year": {"$gt": "2020"}}), "filter_wrong_type", "$.year.$gt"),
            (json!({"year": {"$in": "2020"}}), "filter_wrong_type", "$.year.$in"),
            (json!({"year": {"$in": [1, [2]]}}), "filter_wrong_type", "$.year.$in[1]"),
            (json!({"year": {"$exists": 1}}), "filter_wrong_type", "$.year.$exists"),
            (json!({"key": {"$startsWith": 3}}), "filter_wrong_type", "$.key.$startsWith"),
            (json!({"year": null}), "filter_wrong_type", "$.year"),
            (json!({"year": [2020]}), "filter_wrong_type", "$.year"),
            (json!({"year": {"nested": 1}}), "filter_wrong_type", "$.year"),
            (json!({"$or": {"a": 1}}), "filter_wrong_type", "$.$or"),
            (json!({"$or": []}), "filter_empty", "$.$or"),
            (json!({"$and": [{}]}), "filter_empty", "$.$and[0]"),
            (json!({"a": {"$in": []}}), "filter_empty", "$.a.$in"),
            (json!("pdf"), "filter_wrong_type", "$"),
            (json!({"": 1}), "filter_wrong_type", "$."),
            (deep, "filter_too_deep", ""),
            (Value::Object(wide), "filter_too_large", ""),
            (json!({"a": {"$in": long}}), "filter_too_large", "$.a.$in"),
        ];
        for (f, code, path) in cases {
            let e = Filter::parse(&f).expect_err(&f.to_string());
            assert_eq!(e.code, code, "{f}: {e}");
            if !path.is_empty() {
                assert_eq!(e.path, path, "{f}: {e}");
            }
            assert!(e.to_string().starts_with("filter "), "{e}");
        }
    }
}
