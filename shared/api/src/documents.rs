//! `GET` and `DELETE /v1/documents/{id}`: one document's state, and its removal from the index
//! through the pipeline's [`quarry_pipeline::forget`].

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quarry_core::DocumentId;
use quarry_core::ports::DocumentReader;

use crate::openapi::ErrorBody;
use crate::{ApiError, App, Backend};

fn document_id(raw: &str) -> Result<DocumentId, ApiError> {
    DocumentId::parse(raw).ok_or_else(|| {
        ApiError::bad_request("invalid_document_id", "a document id is the 32 hex characters search results return")
    })
}

#[utoipa::path(get, path = "/v1/documents/{id}", params(("id" = String, Path, description = "a result's document_id")),
    responses((status = 200, body = quarry_core::ports::DocumentRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_document<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = document_id(&id)?;
    match app.backend.documents().document(&id).await? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "document_not_found", format!("no document {}", id.as_str()))),
    }
}

/// Removes a document from the index (its chunks and state). The source file or object is not
/// touched: deleting that is what keeps a document out for good, as the next sync re-indexes it.
#[utoipa::path(delete, path = "/v1/documents/{id}", params(("id" = String, Path, description = "a result's document_id")),
    responses((status = 200, body = Object, description = "{document_id, removed_chunks}"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_document<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = document_id(&id)?;
    let known = app.backend.documents().document(&id).await?.is_some();
    let removed = quarry_pipeline::forget(app.backend.state(), app.backend.writer(), app.backend.hosted(), &id).await?;
    if !known && removed == 0 {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "document_not_found", format!("no document {}", id.as_str())));
    }
    Ok(Json(serde_json::json!({"document_id": id.as_str(), "removed_chunks": removed})).into_response())
}
