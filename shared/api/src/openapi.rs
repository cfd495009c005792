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
    serde_json::to_value(<ApiDoc as utoipa::OpenApi>::openapi()).unwrap_or(serde_json::Value::Null)
}
