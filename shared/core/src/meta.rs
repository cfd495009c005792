//! The metadata every chunk carries, in one place: the fields Quarry sets on every chunk of a
//! document (its key, format and title), typed, and the user's own (S3 object metadata, a JSONL
//! record's extra fields) in a map apart ([`ChunkMeta`]).
//!
//! Stores persist, and filters address, one flat map ([`Metadata`]) in both deployments, as S3
//! Vectors stores it: `key`, `format`, `tenant`, `title` and `user.<name>`. This module alone converts
//! between the two ([`ChunkMeta::to_metadata`] and [`ChunkMeta::from_metadata`] through a map,
//! and `ChunkMeta`'s serde impls straight to and from JSON), so the reserved names live here alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::{DocumentKey, Format};
use crate::ports::{FieldSummary, ValueCount};

/// A chunk's metadata as stored and filtered: reserved fields and `user.`-prefixed ones.
pub type Metadata = BTreeMap<String, Value>;

/// The document's key (S3 object key, path in the folder).
pub const KEY: &str = "key";
/// The detected format's name ([`Format::name`]).
pub const FORMAT: &str = "format";
/// The document's own title, where it has one (PDF and DOCX properties, HTML `<title>`, the
/// first Markdown heading).
pub const TITLE: &str = "title";
/// The document's tenant ([`crate::tenant::of_key`]), derived from its key and stored so that
/// searches filter on it; read back from the key, never from what is stored.
pub const TENANT: &str = "tenant";
/// What user metadata is named under, so that no user field can shadow a reserved one.
pub const USER_PREFIX: &str = "user.";

/// What every chunk of a document carries. Serialised in the flat form stores keep
/// ([`ChunkMeta::to_metadata`]), and read straight from it: a search reads one per hit, so the
/// reserved fields are taken as the JSON is parsed rather than through an intermediate map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkMeta {
    pub key: DocumentKey,
    pub format: Format,
    pub title: Option<String>,
    /// The user's metadata, by its own names (without the `user.` prefix filters use).
    pub user: BTreeMap<String, String>,
}

/// Stored metadata that lacks a reserved field or holds one Quarry never writes.
#[derive(Debug, thiserror::Error)]
#[error("stored chunk metadata has no valid {field:?}")]
pub struct BadMetadata {
    pub field: &'static str,
}

impl ChunkMeta {
    /// A document's metadata with no title and no user fields.
    pub fn new(key: DocumentKey, format: Format) -> Self {
        ChunkMeta { key, format, title: None, user: BTreeMap::new() }
    }

    /// The flat map stored with every chunk of the document.
    pub fn to_metadata(&self) -> Metadata {
        let mut m = Metadata::new();
        m.insert(KEY.to_owned(), Value::from(self.key.as_str()));
        m.insert(FORMAT.to_owned(), Value::from(self.format.name()));
        m.insert(TENANT.to_owned(), Value::from(self.key.tenant()));
        if let Some(t) = &self.title {
            m.insert(TITLE.to_owned(), Value::from(t.as_str()));
        }
        for (k, v) in &self.user {
            m.insert(format!("{USER_PREFIX}{k}"), Value::from(v.as_str()));
        }
        m
    }

    /// Reads back what [`ChunkMeta::to_metadata`] wrote; other names (a store's own) are ignored.
    pub fn from_metadata(m: &Metadata) -> Result<Self, BadMetadata> {
        let key = m.get(KEY).and_then(Value::as_str).ok_or(BadMetadata { field: KEY })?;
        let format =
            m.get(FORMAT).and_then(Value::as_str).and_then(Format::from_name).ok_or(BadMetadata { field: FORMAT })?;
        let title = m.get(TITLE).and_then(Value::as_str).map(str::to_owned);
        let user = m
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix(USER_PREFIX)?;
                Some((name.to_owned(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            })
            .collect();
        Ok(ChunkMeta { key: DocumentKey::new(key), format, title, user })
    }

    /// The title keyword search weighs: the document's own, or else the user's `title` field.
    pub fn search_title(&self) -> &str {
        self.title.as_deref().or_else(|| self.user.get(TITLE).map(String::as_str)).unwrap_or("")
    }
}

impl Serialize for ChunkMeta {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry(FORMAT, self.format.name())?;
        map.serialize_entry(KEY, self.key.as_str())?;
        map.serialize_entry(TENANT, self.key.tenant())?;
        if let Some(t) = &self.title {
            map.serialize_entry(TITLE, t)?;
        }
        for (k, v) in &self.user {
            map.serialize_entry(&format!("{USER_PREFIX}{k}"), v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ChunkMeta {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Flat;
        impl<'de> serde::de::Visitor<'de> for Flat {
            type Value = ChunkMeta;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a chunk's metadata: key, format, title and user.<name> fields")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ChunkMeta, A::Error> {
                use serde::de::Error;
                let (mut key, mut format, mut title, mut user) = (None, None, None, BTreeMap::new());
                while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    let value: Value = map.next_value()?;
                    match name.as_ref() {
                        KEY => key = value.as_str().map(DocumentKey::new),
                        FORMAT => format = value.as_str().and_then(Format::from_name),
                        TITLE => title = value.as_str().map(str::to_owned),
                        other => {
                            if let Some(n) = other.strip_prefix(USER_PREFIX) {
                                let v = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                                user.insert(n.to_owned(), v);
                            }
                        }
                    }
                }
                let key = key.ok_or_else(|| A::Error::custom(BadMetadata { field: KEY }))?;
                let format = format.ok_or_else(|| A::Error::custom(BadMetadata { field: FORMAT }))?;
                Ok(ChunkMeta { key, format, title, user })
            }
        }
        deserializer.deserialize_map(Flat)
    }
}

/// [`ChunkMeta::search_title`] on a stored map, for stores that keep the flat form in memory.
pub fn title(m: &Metadata) -> &str {
    m.get(TITLE)
        .and_then(Value::as_str)
        .or_else(|| m.get(&format!("{USER_PREFIX}{TITLE}")).and_then(Value::as_str))
        .unwrap_or("")
}

/// The filterable fields of a set of documents (one [`Metadata`] each), as a search page offers
/// them ([`crate::ports::FieldCatalog`]): every field but `key` and `tenant` (who is asking, not
/// what to narrow by), with its `values` commonest scalar
/// values. A field with more distinct values than `values` where most of its documents have a
/// value no other document shares (titles, ids) is left out, since a menu of it would list some
/// documents, not narrow them all; a few documents of distinct formats keep their format menu. Fields by name; values by documents, then by value, so that the same index
/// always gives the same menu.
pub fn summarise<'a>(documents: impl IntoIterator<Item = &'a Metadata>, values: usize) -> Vec<FieldSummary> {
    // Value as JSON text -> (value, documents with it).
    type Counts<'v> = BTreeMap<String, (&'v Value, u64)>;
    // Field -> (documents carrying it, its values).
    let mut fields: BTreeMap<&str, (u64, Counts<'_>)> = BTreeMap::new();
    for m in documents {
        for (name, value) in m {
            if name == KEY || name == TENANT || !(value.is_string() || value.is_number() || value.is_boolean()) {
                continue;
            }
            let f = fields.entry(name.as_str()).or_default();
            f.0 += 1;
            f.1.entry(value.to_string()).or_insert((value, 0)).1 += 1;
        }
    }
    fields
        .into_iter()
        .filter(|(_, (documents, counts))| {
            let own = counts.values().filter(|(_, n)| *n == 1).count() as u64;
            counts.len() <= values || 2 * own <= *documents
        })
        .map(|(name, (documents, counts))| {
            let mut counts: Vec<(String, (&Value, u64))> = counts.into_iter().collect();
            counts.sort_by(|a, b| b.1.1.cmp(&a.1.1).then_with(|| a.0.cmp(&b.0)));
            FieldSummary {
                name: name.to_owned(),
                documents,
                values: counts
                    .into_iter()
                    .take(values)
                    .map(|(_, (value, documents))| ValueCount { value: value.clone(), documents })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_fields_round_trip_and_user_fields_never_shadow_them() {
        let user = BTreeMap::from([("team".to_owned(), "search".to_owned()), ("title".to_owned(), "T2".to_owned())]);
        let meta = ChunkMeta { key: DocumentKey::new("a/b.pdf"), format: Format::Pdf, title: None, user };
        let m = meta.to_metadata();
        assert_eq!(m.get("key"), Some(&Value::from("a/b.pdf")));
        assert_eq!(m.get("format"), Some(&Value::from("pdf")));
        assert_eq!(m.get("user.team"), Some(&Value::from("search")));
        assert_eq!(ChunkMeta::from_metadata(&m).ok().as_ref(), Some(&meta));
        assert_eq!((meta.search_title(), title(&m)), ("T2", "T2"), "the user's title when the document has none");
        let own = ChunkMeta { title: Some("T1".into()), ..meta };
        assert_eq!((own.search_title(), title(&own.to_metadata())), ("T1", "T1"), "the document's own first");
        let mut broken = own.to_metadata();
        broken.insert("format".into(), Value::from("md"));
        assert!(ChunkMeta::from_metadata(&broken).is_err(), "a format Quarry never writes is refused");
        // Its serde form is the flat map, both ways.
        let json = serde_json::to_value(&own).expect("serialise");
        assert_eq!(json, Value::Object(own.to_metadata().into_iter().collect()));
        assert_eq!(serde_json::from_value::<ChunkMeta>(json).ok().as_ref(), Some(&own));
        assert!(serde_json::from_value::<ChunkMeta>(Value::Object(broken.into_iter().collect())).is_err());
        // Byte for byte what older versions stored (a sorted map): stored rows compare equal.
        let stored = serde_json::to_string(&own.to_metadata()).expect("serialise");
        assert_eq!(serde_json::to_string(&own).expect("serialise"), stored);
    }

    #[test]
    fn chunks_written_by_older_versions_still_read() {
        // A title that is not a string, a number in user metadata, a store's own field.
        let old = r#"{"format":"text","key":"k","other":1,"title":2024,"user.n":5,"user.title":"Ledger"}"#;
        let meta: ChunkMeta = serde_json::from_str(old).expect("an older chunk reads");
        assert_eq!((meta.title.as_deref(), meta.search_title()), (None, "Ledger"));
        assert_eq!(meta.user.get("n").map(String::as_str), Some("5"));
        assert_eq!(meta.user.len(), 2, "fields outside the reserved names and user.* are ignored");
        let flat: Metadata = serde_json::from_str(old).expect("a map");
        assert_eq!(ChunkMeta::from_metadata(&flat).ok().as_ref(), Some(&meta), "both readers agree");
    }

    #[test]
    fn every_format_reads_back_by_name() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()), Some(f));
        }
        // Exhaustive: a new variant fails to compile here until it is added to `Format::ALL`.
        let listed = |f: Format| match f {
            Format::Text
            | Format::Markdown
            | Format::Html
            | Format::Pdf
            | Format::Docx
            | Format::Csv
            | Format::Json => Format::ALL.contains(&f),
        };
        assert!(Format::ALL.into_iter().all(listed));
    }

    #[test]
    fn fields_are_summarised_for_filters_without_keys_or_unique_values() {
        let doc = |key: &str, format: &str, title: &str, year: i64| {
            let mut m = Metadata::new();
            m.insert(KEY.to_owned(), Value::from(key));
            m.insert(FORMAT.to_owned(), Value::from(format));
            m.insert(TITLE.to_owned(), Value::from(title));
            m.insert("user.year".to_owned(), Value::from(year));
            m.insert("user.tags".to_owned(), serde_json::json!(["a"]));
            m
        };
        let docs = [doc("a", "pdf", "A", 2020), doc("b", "pdf", "B", 2021), doc("c", "text", "C", 2020)];
        let fields = summarise(&docs, 1);
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["format", "user.year"], "no key, no list, no all-distinct title past the cap");
        assert_eq!(fields[0].documents, 3);
        assert_eq!(
            fields[0].values,
            [ValueCount { value: Value::from("pdf"), documents: 2 }],
            "commonest, capped at 1"
        );
        assert_eq!(fields[1].values[0].value, Value::from(2020));
        let names: Vec<String> = summarise(&docs, 3).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["format", "title", "user.year"], "three titles fit a menu of three");
        // Titles with one repeat in many documents are still a list of documents.
        let many: Vec<Metadata> =
            (0..40).map(|i| doc(&format!("k{i}"), "pdf", &format!("T{}", i.min(38)), 2020)).collect();
        let names: Vec<String> = summarise(&many, 20).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["format", "user.year"]);
        assert!(summarise(&[], 5).is_empty());
    }
}
