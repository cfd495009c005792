//! S3 Vectors as the vector store: the writer and the searcher.
//!
//! Each chunk is one vector keyed by its [`ChunkId`]. Its metadata is split the way S3 Vectors
//! prices and limits it: the chunk's text, pages and span (what a hit shows) go under
//! non-filterable keys declared when the index is created ([`NON_FILTERABLE`]); the document id,
//! key, key folders, format, title and user metadata stay filterable, kept under the 2 KB
//! filterable limit by moving the largest optional fields into the non-filterable `extra` key (they
//! still come back with hits; they just cannot be filtered on). QueryVectors returns cosine
//! distance, converted here to a similarity in [0, 1]: `1 - distance / 2`, which is
//! `(1 + cosine) / 2`, the same scale as the embedded index.

use aws_sdk_s3vectors::Client;
use aws_sdk_s3vectors::types::{PutInputVector, VectorData};
use aws_smithy_types::Document;
use quarry_core::filter::{Op, Scalar};
use quarry_core::meta::{self, ChunkMeta};
use quarry_core::ports::{VectorHit, VectorQuery, VectorRecord, VectorSearcher, VectorWriter};
use quarry_core::{CharSpan, ChunkId, DocumentId, Filter, PageRange, PortError};
use serde_json::{Map, Value};
use tracing::instrument;

use crate::{build_error, document, port_error};

/// Metadata keys the index must declare non-filterable (the template and [`crate::provision`]).
pub const NON_FILTERABLE: [&str; 4] = ["text", "pages", "span", "extra"];
/// S3 Vectors' limit on filterable metadata per vector is 2 KB; leave room for its own encoding.
pub const FILTERABLE_BUDGET: usize = 1_900;
/// PutVectors takes at most 500 vectors a call.
pub const PUT_BATCH: usize = 500;
/// QueryVectors returns at most 100 results.
pub const MAX_TOP_K: usize = 100;
/// GetVectors/DeleteVectors keys per call.
const KEYS_BATCH: usize = 100;
/// Filterable keys Quarry itself sets; never moved to `extra`.
const FIXED: [&str; 5] = ["document", meta::KEY, "key_dirs", meta::FORMAT, meta::TENANT];

#[derive(Debug, Clone)]
pub struct S3VectorStore {
    client: Client,
    bucket: String,
    index: String,
}

/// Why a filter cannot be run on S3 Vectors.
#[derive(Debug, thiserror::Error)]
#[error("S3 Vectors cannot run {what}")]
pub struct UnsupportedFilter {
    pub what: String,
}

impl S3VectorStore {
    pub fn new(client: Client, bucket: impl Into<String>, index: impl Into<String>) -> Self {
        S3VectorStore { client, bucket: bucket.into(), index: index.into() }
    }

    /// GetVectors for the chunks of `document` with `ordinals` (at most a hundred), without their
    /// data, with their metadata when asked.
    async fn get(
        &self,
        document: &DocumentId,
        ordinals: std::ops::Range<u32>,
        metadata: bool,
    ) -> Result<aws_sdk_s3vectors::operation::get_vectors::GetVectorsOutput, PortError> {
        self.client
            .get_vectors()
            .vector_bucket_name(&self.bucket)
            .index_name(&self.index)
            .set_keys(Some(ordinals.map(|o| ChunkId::new(document, o).as_str().to_owned()).collect()))
            .return_data(false)
            .return_metadata(metadata)
            .send()
            .await
            .map_err(|e| port_error("s3vectors.get_vectors", e))
    }
}

/// "a/b/c.pdf" -> ["a/", "a/b/"]: what `$startsWith` on `key` is answered with.
fn key_dirs(key: &str) -> Vec<Value> {
    key.match_indices('/').map(|(i, _)| Value::from(&key[..=i])).collect()
}

fn json_len(v: &Map<String, Value>) -> usize {
    serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX)
}

/// The metadata stored with one vector.
pub fn metadata_of(r: &VectorRecord) -> Map<String, Value> {
    let mut filterable = Map::new();
    filterable.insert("document".into(), Value::from(r.document.as_str()));
    for (k, v) in r.meta.to_metadata() {
        filterable.insert(k, v);
    }
    filterable.insert("key_dirs".into(), Value::Array(key_dirs(r.meta.key.as_str())));
    let mut extra = Map::new();
    while json_len(&filterable) > FILTERABLE_BUDGET {
        let largest = filterable
            .iter()
            .filter(|(k, _)| !FIXED.contains(&k.as_str()))
            .max_by_key(|(k, v)| k.len() + v.to_string().len())
            .map(|(k, _)| k.clone());
        match largest {
            Some(k) => {
                if let Some(v) = filterable.remove(&k) {
                    extra.insert(k, v);
                }
            }
            // Only Quarry's own fields left: a very deep key's folders go last.
            None => {
                if filterable.remove("key_dirs").is_none() {
                    break;
                }
            }
        }
    }
    if !extra.is_empty() {
        tracing::warn!(
            moved = extra.len(),
            "filterable metadata over 2 KB: the largest fields are stored unfilterable"
        );
        filterable.insert("extra".into(), Value::Object(extra));
    }
    filterable.insert("text".into(), Value::from(r.text.as_str()));
    filterable.insert("span".into(), Value::from(vec![r.span.start as u64, r.span.end as u64]));
    if let Some(p) = r.pages {
        filterable.insert("pages".into(), Value::from(vec![p.first, p.last]));
    }
    filterable
}

fn hit_of(key: &str, distance: Option<f32>, metadata: Option<&Document>) -> Option<VectorHit> {
    let id = ChunkId::from_stored(key.to_owned());
    let mut meta = match metadata.map(document::to_json) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let text = meta.remove("text").and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let pair = |v: Option<Value>| -> Option<(u64, u64)> {
        let v = v?;
        let a = v.as_array()?;
        Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?))
    };
    let span = pair(meta.remove("span")).map(|(s, e)| CharSpan { start: s as usize, end: e as usize });
    let pages = pair(meta.remove("pages")).map(|(f, l)| PageRange { first: f as u32, last: l as u32 });
    let document = meta
        .remove("document")
        .and_then(|v| v.as_str().and_then(DocumentId::parse))
        .or_else(|| id.parts().map(|(d, _)| d))?;
    meta.remove("key_dirs");
    if let Some(Value::Object(extra)) = meta.remove("extra") {
        meta.extend(extra);
    }
    // Cosine distance is in [0, 2]; rounding can stray just outside.
    let score = (1.0 - distance.unwrap_or(2.0) / 2.0).clamp(0.0, 1.0);
    let meta = match ChunkMeta::from_metadata(&meta.into_iter().collect()) {
        Ok(m) => m,
        Err(e) => {
            // Only Quarry writes this index; a vector without its key or format is left out.
            tracing::warn!(chunk = key, error = %e, "a stored vector's metadata is incomplete");
            return None;
        }
    };
    Some(VectorHit { id, document, score, text, pages, span: span.unwrap_or(CharSpan { start: 0, end: 0 }), meta })
}

fn scalar(s: &Scalar) -> Value {
    match s {
        Scalar::Str(v) => Value::from(v.as_str()),
        Scalar::Bool(b) => Value::from(*b),
        Scalar::Num(n) => number(*n),
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 { Value::from(n as i64) } else { Value::from(n) }
}

/// The shared filter language in S3 Vectors' own operators. `$startsWith` has no S3 Vectors
/// operator: on `key` with a prefix that ends at a folder (`"reports/2024/"`) it becomes a match
/// on the stored `key_dirs`; anything else is refused rather than run differently.
pub fn translate(filter: &Filter) -> Result<Value, UnsupportedFilter> {
    Ok(match filter {
        Filter::And(parts) => {
            serde_json::json!({ "$and": parts.iter().map(translate).collect::<Result<Vec<_>, _>>()? })
        }
        Filter::Or(parts) => {
            serde_json::json!({ "$or": parts.iter().map(translate).collect::<Result<Vec<_>, _>>()? })
        }
        Filter::Field { field, op } => {
            let cond = match op {
                Op::Eq(v) => serde_json::json!({ "$eq": scalar(v) }),
                Op::Ne(v) => serde_json::json!({ "$ne": scalar(v) }),
                Op::Gt(x) => serde_json::json!({ "$gt": number(*x) }),
                Op::Gte(x) => serde_json::json!({ "$gte": number(*x) }),
                Op::Lt(x) => serde_json::json!({ "$lt": number(*x) }),
                Op::Lte(x) => serde_json::json!({ "$lte": number(*x) }),
                Op::In(vs) => serde_json::json!({ "$in": vs.iter().map(scalar).collect::<Vec<_>>() }),
                Op::Nin(vs) => serde_json::json!({ "$nin": vs.iter().map(scalar).collect::<Vec<_>>() }),
                Op::Exists(b) => serde_json::json!({ "$exists": b }),
                Op::StartsWith(p) if field == meta::KEY && p.is_empty() => {
                    return Ok(serde_json::json!({ "key": { "$exists": true } }));
                }
                Op::StartsWith(p) if field == meta::KEY && p.ends_with('/') => {
                    return Ok(serde_json::json!({ "key_dirs": { "$eq": p } }));
                }
                Op::StartsWith(p) => {
                    return Err(UnsupportedFilter {
                        what: format!(
                            "$startsWith {p:?} on {field:?}: only on \"key\", with a prefix that ends in '/'"
                        ),
                    });
                }
            };
            if NON_FILTERABLE.contains(&field.as_str()) || field == "key_dirs" {
                return Err(UnsupportedFilter { what: format!("a filter on {field:?}, which is not filterable") });
            }
            let mut m = Map::new();
            m.insert(field.clone(), cond);
            Value::Object(m)
        }
    })
}

impl VectorWriter for S3VectorStore {
    #[instrument(skip_all, err, fields(records = records.len()))]
    async fn upsert(&self, records: &[VectorRecord]) -> Result<(), PortError> {
        for group in records.chunks(PUT_BATCH) {
            let vectors = group
                .iter()
                .map(|r| {
                    PutInputVector::builder()
                        .key(r.id.as_str())
                        .data(VectorData::Float32(r.vector.clone()))
                        .metadata(document::from_json(&Value::Object(metadata_of(r))))
                        .build()
                        .map_err(build_error("s3vectors.put_vectors"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // The SDK's standard retry backs off on 429 and 5xx (see Clients::new).
            self.client
                .put_vectors()
                .vector_bucket_name(&self.bucket)
                .index_name(&self.index)
                .set_vectors(Some(vectors))
                .send()
                .await
                .map_err(|e| port_error("s3vectors.put_vectors", e))?;
        }
        Ok(())
    }

    /// S3 Vectors cannot delete by metadata, and listing an index is a full scan. Chunk ordinals
    /// are dense from 0, so the stale tail is found by asking for ordinals `keep..` a hundred at a
    /// time until a block comes back short.
    #[instrument(skip_all, err)]
    async fn delete_from(&self, document: &DocumentId, keep: u32) -> Result<u64, PortError> {
        let mut removed = 0u64;
        let mut from = keep;
        loop {
            let out = self.get(document, from..from + KEYS_BATCH as u32, false).await?;
            let found: Vec<String> = out.vectors().iter().map(|v| v.key().to_owned()).collect();
            if !found.is_empty() {
                self.client
                    .delete_vectors()
                    .vector_bucket_name(&self.bucket)
                    .index_name(&self.index)
                    .set_keys(Some(found.clone()))
                    .send()
                    .await
                    .map_err(|e| port_error("s3vectors.delete_vectors", e))?;
                removed += found.len() as u64;
            }
            if found.len() < KEYS_BATCH {
                return Ok(removed);
            }
            from += KEYS_BATCH as u32;
        }
    }
}

impl quarry_core::keywords::ChunkReader for S3VectorStore {
    /// GetVectors by the document's chunk ids, a hundred at a time, with their metadata.
    #[instrument(skip_all, err, fields(count))]
    async fn chunks(&self, document: &DocumentId, count: u32) -> Result<Vec<VectorHit>, PortError> {
        let mut out = Vec::with_capacity(count as usize);
        let mut from = 0;
        while from < count {
            let to = count.min(from + KEYS_BATCH as u32);
            let got = self.get(document, from..to, true).await?;
            out.extend(got.vectors().iter().filter_map(|v| hit_of(v.key(), None, v.metadata())));
            from = to;
        }
        out.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        Ok(out)
    }
}

impl quarry_core::census::VectorCensus for S3VectorStore {
    /// ListVectors over the whole index, keys only, a thousand a page (its most): a full scan,
    /// for reconciliation alone.
    #[instrument(skip_all, err)]
    async fn stored(&self) -> Result<Vec<quarry_core::census::StoredChunks>, PortError> {
        let mut ids: Vec<(DocumentId, u32)> = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = self
                .client
                .list_vectors()
                .vector_bucket_name(&self.bucket)
                .index_name(&self.index)
                .max_results(1_000)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| port_error("s3vectors.list_vectors", e))?;
            ids.extend(page.vectors().iter().filter_map(|v| ChunkId::from_stored(v.key().to_owned()).parts()));
            next = page.next_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if next.is_none() {
                break;
            }
        }
        Ok(quarry_core::census::StoredChunks::group(ids))
    }
}

impl VectorSearcher for S3VectorStore {
    /// At most [`MAX_TOP_K`] results: S3 Vectors' own limit, so deeper pages end there.
    #[instrument(skip_all, err, fields(top_k = query.top_k))]
    async fn search(&self, query: &VectorQuery) -> Result<Vec<VectorHit>, PortError> {
        let top_k = query.top_k.clamp(1, MAX_TOP_K);
        let mut req = self
            .client
            .query_vectors()
            .vector_bucket_name(&self.bucket)
            .index_name(&self.index)
            .top_k(top_k as i32)
            .query_vector(VectorData::Float32(query.vector.clone()))
            .return_metadata(true)
            .return_distance(true);
        if let Some(f) = &query.filter {
            let translated = translate(f)
                .map_err(|e| PortError::InvalidInput { operation: "s3vectors.query_vectors", reason: e.to_string() })?;
            req = req.filter(document::from_json(&translated));
        }
        let out = req.send().await.map_err(|e| port_error("s3vectors.query_vectors", e))?;
        let mut hits: Vec<VectorHit> =
            out.vectors().iter().filter_map(|v| hit_of(v.key(), v.distance(), v.metadata())).collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.as_str().cmp(b.id.as_str())));
        hits.truncate(query.top_k);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn filters_translate_to_s3_vectors_operators() {
        let cases = [
            (json!({"format": "pdf"}), json!({"format": {"$eq": "pdf"}})),
            (
                json!({"year": {"$gte": 2020, "$lt": 2024.5}}),
                json!({"$and": [{"year": {"$gte": 2020}}, {"year": {"$lt": 2024.5}}]}),
            ),
            (
                json!({"$or": [{"a": true}, {"b": {"$in": ["x", 1]}}]}),
                json!({"$or": [{"a": {"$eq": true}}, {"b": {"$in": ["x", 1]}}]}),
            ),
            (
                json!({"tag": {"$nin": ["old"]}, "x": {"$exists": false}}),
                json!({"$and": [{"tag": {"$nin": ["old"]}}, {"x": {"$exists": false}}]}),
            ),
            (json!({"key": {"$startsWith": "reports/2024/"}}), json!({"key_dirs": {"$eq": "reports/2024/"}})),
        ];
        for (input, want) in cases {
            let f = Filter::parse(&input).expect("valid");
            let got = translate(&f).expect("translates");
            // A single-field filter may come back unwrapped or in a one-item $and; compare both ways.
            let unwrap = |v: Value| match v.get("$and").and_then(Value::as_array) {
                Some(a) if a.len() == 1 => a[0].clone(),
                _ => v,
            };
            assert_eq!(unwrap(got), unwrap(want), "{input}");
        }
        for bad in
            [json!({"key": {"$startsWith": "rep"}}), json!({"title": {"$startsWith": "A"}}), json!({"text": "x"})]
        {
            let f = Filter::parse(&bad).expect("valid in the shared language");
            assert!(translate(&f).is_err(), "{bad} cannot run on S3 Vectors");
        }
    }

    #[test]
    fn metadata_stays_under_the_filterable_limit_and_comes_back_whole() {
        let doc = DocumentId::for_key(&quarry_core::DocumentKey::new("a/b/c.pdf"));
        let mut metadata = BTreeMap::new();
        metadata.insert("key".to_owned(), json!("a/b/c.pdf"));
        metadata.insert("format".to_owned(), json!("pdf"));
        metadata.insert("tenant".to_owned(), json!("default"));
        metadata.insert("title".to_owned(), json!("t".repeat(1_500)));
        metadata.insert("user.note".to_owned(), json!("n".repeat(900)));
        metadata.insert("user.team".to_owned(), json!("search"));
        let r = VectorRecord {
            id: ChunkId::new(&doc, 3),
            document: doc.clone(),
            vector: vec![0.0; 3],
            text: "body".into(),
            pages: Some(PageRange { first: 2, last: 3 }),
            span: CharSpan { start: 5, end: 9 },
            meta: ChunkMeta::from_metadata(&metadata).expect("complete metadata"),
        };
        let stored = metadata_of(&r);
        let filterable: Map<String, Value> = stored
            .iter()
            .filter(|(k, _)| !NON_FILTERABLE.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert!(json_len(&filterable) <= FILTERABLE_BUDGET, "{}", json_len(&filterable));
        assert_eq!(filterable.get("user.team"), Some(&json!("search")), "small fields stay filterable");
        assert_eq!(filterable.get("tenant"), Some(&json!("default")), "the tenant is always filterable");
        assert_eq!(filterable.get("key_dirs"), Some(&json!(["a/", "a/b/"])));
        let hit = hit_of(r.id.as_str(), Some(0.5), Some(&document::from_json(&Value::Object(stored)))).expect("hit");
        assert_eq!((hit.text.as_str(), hit.span, hit.pages, &hit.document), ("body", r.span, r.pages, &doc));
        assert_eq!(hit.meta.to_metadata(), metadata, "moved fields come back");
        assert!((hit.score - 0.75).abs() < 1e-6, "cosine distance 0.5 is similarity 0.75");
    }
}
