//! What the harness feeds its targets: JSON trees over each format's vocabulary, filters in the
//! filter language's grammar, S3 records, and byte-level mutations of seeds.

use arbitrary::Arbitrary;
use quarry_testkit::XorShift;
use serde_json::Value;

/// Words each structured input is built from, beside arbitrary strings.
pub(crate) const WORDS: &[&str] = &[
    "$and",
    "$or",
    "$not",
    "$eq",
    "$ne",
    "$gt",
    "$gte",
    "$lt",
    "$lte",
    "$in",
    "$nin",
    "$exists",
    "$startsWith",
    "format",
    "key",
    "title",
    "user.team",
    "user.year",
    "Records",
    "eventName",
    "ObjectCreated:Put",
    "ObjectRemoved:Delete",
    "s3",
    "bucket",
    "object",
    "name",
    "size",
    "eTag",
    "Event",
    "s3:TestEvent",
    "_id",
    "text",
    "metadata",
    "version",
    "",
    "a b%2Bc",
    "%",
    "\u{0}",
    "ü",
    "🦀",
    "1e309",
    "-0",
];
pub(crate) const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\\",
    b"\\u0000",
    b"\n",
    b"\r\n",
    b"<",
    b">",
    b"</",
    b"<!--",
    b"<![CDATA[",
    b"<script>",
    b"&amp;",
    b"&#x10FFFF;",
    b"#",
    b"```",
    b"|",
    b"---",
    b"*",
    b"\t",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"obj",
    b"endobj",
    b"stream",
    b"endstream",
    b"xref",
    b"trailer",
    b"/Length 99999999",
    b"PK\x03\x04",
    b"0",
    b"-1",
    b"18446744073709551616",
    b"NaN",
];

/// A JSON tree over [`WORDS`].
#[derive(Debug, Arbitrary)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Word(u8),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(Key, Json)>),
}

#[derive(Debug, Arbitrary)]
pub(crate) enum Key {
    Word(u8),
    Str(String),
}

fn word(i: u8) -> String {
    WORDS[usize::from(i) % WORDS.len()].to_owned()
}

impl Json {
    pub(crate) fn value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(i) => Value::from(*i),
            Json::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Word(i) => Value::String(word(*i)),
            Json::Str(s) => Value::String(s.clone()),
            Json::Arr(items) => Value::Array(items.iter().map(Json::value).collect()),
            Json::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            match k {
                                Key::Word(i) => word(*i),
                                Key::Str(s) => s.clone(),
                            },
                            v.value(),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// A filter in the filter language's own shape, so that most built inputs parse and reach matching.
#[derive(Debug, Arbitrary)]
pub(crate) enum FilterAst {
    Field(u8, Condition),
    And(Vec<FilterAst>),
    Or(Vec<FilterAst>),
    Not(Box<FilterAst>),
}

#[derive(Debug, Arbitrary)]
pub(crate) enum Condition {
    Eq(Json),
    Op(u8, Json),
    In(bool, Vec<Json>),
    Exists(bool),
}

const FIELDS: &[&str] = &["format", "key", "title", "user.team", "user.year", "user.n", "unknown", "$eq", ""];
const OPERATORS: &[&str] = &["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$startsWith", "$regex"];

impl FilterAst {
    pub(crate) fn value(&self) -> Value {
        match self {
            FilterAst::Field(f, c) => {
                let cond = match c {
                    Condition::Eq(v) => v.value(),
                    Condition::Op(o, v) => {
                        serde_json::json!({ OPERATORS[usize::from(*o) % OPERATORS.len()]: v.value() })
                    }
                    Condition::In(negated, vs) => {
                        serde_json::json!({ if *negated { "$nin" } else { "$in" }: vs.iter().map(Json::value).collect::<Vec<_>>() })
                    }
                    Condition::Exists(b) => serde_json::json!({ "$exists": b }),
                };
                serde_json::json!({ FIELDS[usize::from(*f) % FIELDS.len()]: cond })
            }
            FilterAst::And(items) => {
                serde_json::json!({ "$and": items.iter().map(FilterAst::value).collect::<Vec<_>>() })
            }
            FilterAst::Or(items) => {
                serde_json::json!({ "$or": items.iter().map(FilterAst::value).collect::<Vec<_>>() })
            }
            FilterAst::Not(inner) => serde_json::json!({ "$not": inner.value() }),
        }
    }
}

/// An S3 notification's records, in their own shape.
#[derive(Debug, Arbitrary)]
pub(crate) struct S3Record {
    pub(crate) event: u8,
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) size: Option<i64>,
    pub(crate) etag: Option<String>,
}

pub(crate) const EVENT_NAMES: &[&str] =
    &["ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload", "ObjectRemoved:Delete", "ObjectRestore:Post", ""];

/// Largest input a mutation may make: files users index are bounded by the size limit anyway.
const MAX_INPUT: usize = 1 << 20;

/// One to eight random edits of `data`.
pub fn mutate(mut data: Vec<u8>, rng: &mut XorShift) -> Vec<u8> {
    for _ in 0..1 + rng.next() % 8 {
        let len = data.len();
        let at = |rng: &mut XorShift| rng.next() as usize % (len + 1);
        match rng.next() % 8 {
            0 if len > 0 => {
                let i = rng.next() as usize % len;
                data[i] ^= 1 << (rng.next() % 8);
            }
            1 if len > 0 => {
                let i = rng.next() as usize % len;
                data[i] = [0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'<', b'\n', b'\\', b'0'][rng.next() as usize % 10];
            }
            2 => {
                let i = at(rng);
                let bytes: Vec<u8> = (0..1 + rng.next() % 16).map(|_| rng.next() as u8).collect();
                data.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.next() as usize % len;
                let j = (i + 1 + rng.next() as usize % 64).min(len);
                data.drain(i..j);
            }
            4 if len > 0 => {
                let i = rng.next() as usize % len;
                let j = (i + 1 + rng.next() as usize % 256).min(len);
                let chunk = data[i..j].to_vec();
                for _ in 0..1 + rng.next() % 8 {
                    if data.len() + chunk.len() > MAX_INPUT {
                        break;
                    }
                    data.splice(j..j, chunk.iter().copied());
                }
            }
            5 => data.truncate(at(rng)),
            _ => {
                let i = at(rng);
                let token = TOKENS[rng.next() as usize % TOKENS.len()];
                data.splice(i..i, token.iter().copied());
            }
        }
    }
    data
}
