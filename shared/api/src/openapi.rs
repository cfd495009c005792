//! The OpenAPI description, generated from the handlers and types (`GET /openapi.json`).

use serde::{Deserialize, Serialize};

use crate::batches::{BatchDocuments, BatchFailure, BatchView};
use crate::search::{SearchRequest, SearchResponse, SearchResult, SearchUsage, Source};
use quarry_pipeline::query::{Highlight, Mode};

/// The error shape every failure has.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `query_too_long`, `filter_unknown_operator`, ...
    pub code: String,
    pub message: String,
}

/// The OpenAPI description, generated from the handlers and types above.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(title = "Quarry", description = "Semantic, keyword and hybrid search over a bucket or a folder"),
    paths(
        crate::search::search,
        crate::documents::get_document,
        crate::documents::delete_document,
        crate::batches::start_batch,
        crate::batches::get_batch,
        crate::batches::list_batches,
        crate::batches::retry_batch,
        crate::fields::list_fields,
        crate::cache::stats,
        crate::cache::clear,
        crate::uploads::info,
        crate::uploads::grant,
        crate::uploads::put_file
    ),
    components(schemas(
        SearchRequest,
        SearchResponse,
        SearchResult,
        SearchUsage,
        Source,
        Mode,
        Highlight,
        BatchView,
        BatchDocuments,
        BatchFailure,
        ErrorBody,
        ErrorDetail,
        crate::fields::FieldsResponse,
        quarry_core::ports::FieldSummary,
        quarry_core::ports::ValueCount,
        crate::batches::BatchList,
        crate::batches::BatchSummary,
        crate::batches::StartBatch,
        crate::cache::CacheView,
        crate::cache::ClearCache,
        crate::cache::CacheCleared,
        quarry_core::cache::CacheStats,
        crate::batches::BatchEstimate,
        crate::uploads::UploadsInfo,
        crate::uploads::UploadRequest,
        crate::uploads::UploadReceived,
        quarry_core::ports::UploadGrant
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON (what `GET /openapi.json` serves).
pub fn openapi_json() -> serde_json::Value {
    let mut spec = serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or(serde_json::Value::Null);
    constrain(&mut spec);
    spec
}

/// A file name the API takes (`crate::uploads`'s rule): one path segment, not hidden, no slashes,
/// no control characters, no spaces at either end; at most 255 bytes, so at most 63 characters
/// (four bytes each, at worst) are declared.
const FILE_NAME: &str = concat!(
    r"^(?![.\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])",
    r"[^/\\\u0000-\u001f\u007f-\u009f]*",
    r"[^/\\\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$(?!\n)"
);

/// Some character that is not white space as Rust's `trim` has it (Unicode's White_Space, spelt
/// out: regex engines disagree on what `\s` covers).
const NOT_BLANK: &str = r"[^\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// The constraints the handlers enforce that the derived schemas cannot say, written into the
/// document, so that a client generated from it never sends what the server refuses (checked by
/// schemathesis, `scripts/api_fuzz.sh`).
fn constrain(spec: &mut serde_json::Value) {
    use serde_json::json;
    let schemas = &mut spec["components"]["schemas"];
    let q = &mut schemas["SearchRequest"]["properties"];
    q["query"]["minLength"] = json!(1);
    q["query"]["pattern"] = json!(NOT_BLANK);
    q["top_k"]["minimum"] = json!(1);
    q["top_k"]["maximum"] = json!(crate::MAX_TOP_K);
    q["min_score"]["minimum"] = json!(0);
    q["min_score"]["maximum"] = json!(1);
    let b = &mut schemas["BatchRequest"];
    b["properties"]["keys"]["maxItems"] = json!(crate::MAX_BATCH_KEYS);
    b["properties"]["keys"]["items"] = json!({"type": "string", "minLength": 1, "pattern": NOT_BLANK});
    b["anyOf"] = json!([
        {"required": ["prefix"], "properties": {"prefix": {"type": "string"}}},
        {"required": ["keys"], "properties": {"keys": {"minItems": 1}}},
    ]);
    let u = &mut schemas["UploadRequest"]["properties"];
    u["name"]["minLength"] = json!(1);
    u["name"]["maxLength"] = json!(63);
    u["name"]["pattern"] = json!(FILE_NAME);
    u["size"]["minimum"] = json!(1);
    u["name"]["not"] = json!({"pattern": unsupported_names()});
    let paths = &mut spec["paths"];
    for (path, method) in [("/v1/documents/{id}", "get"), ("/v1/documents/{id}", "delete")] {
        for p in paths[path][method]["parameters"].as_array_mut().into_iter().flatten() {
            // `(?!\n)`: Python's `$` (what schemathesis generates with) also matches before a
            // final newline; ECMA's never does, so this changes nothing for other readers.
            p["schema"]["pattern"] = json!("^[0-9a-f]{32}$(?!\n)");
        }
    }
    for p in paths["/v1/files/{name}"]["put"]["parameters"].as_array_mut().into_iter().flatten() {
        p["schema"] = json!({"type": "string", "minLength": 1, "maxLength": 63, "pattern": FILE_NAME});
    }
    // What the guard answers on every `/v1` route, before any handler: no key, a key without the
    // route's scope (or, for the cache, outside every tenant), a key over its rate, no free slot.
    let error = json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    for (path, item) in paths.as_object_mut().into_iter().flatten() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for op in item.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
            for (status, what) in [
                ("401", "no valid bearer token"),
                ("403", "the key lacks the route's scope, or its tenant may not use the route"),
                ("429", "the key is over its request rate: retry after `Retry-After` seconds"),
                ("503", "the server is at its concurrency cap, or a backend is throttled"),
            ] {
                let responses = &mut op["responses"];
                if responses.get(status).is_none() {
                    let mut r = error.clone();
                    r["description"] = json!(what);
                    responses[status] = r;
                }
            }
        }
    }
}

/// A name ending in an extension Quarry refuses ([`quarry_core::format::UNSUPPORTED_EXT`]), in
/// either case: spelt letter by letter, as JSON Schema's regular expressions take no flags.
fn unsupported_names() -> String {
    let either = |e: &str| {
        e.chars().map(|c| format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())).collect::<String>()
    };
    let alternatives: Vec<String> = quarry_core::format::UNSUPPORTED_EXT.iter().map(|e| either(e)).collect();
    format!(r"\.({})$(?!\n)", alternatives.join("|"))
}

/// The document with this deployment's own limits (query length, file size) declared.
pub fn openapi_json_with(max_query_chars: u32, max_file_bytes: u64) -> serde_json::Value {
    let mut spec = openapi_json();
    spec["components"]["schemas"]["SearchRequest"]["properties"]["query"]["maxLength"] =
        serde_json::json!(max_query_chars);
    spec["components"]["schemas"]["UploadRequest"]["properties"]["size"]["maximum"] = serde_json::json!(max_file_bytes);
    spec
}
