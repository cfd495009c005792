//! `GET` and `DELETE /v1/documents/{id}`: one document's state, and its removal from the index
//! through the pipeline's [`quarry_pipeline::forget`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use quarry_core::DocumentId;
use quarry_core::ports::{DocumentReader, DocumentRecord};
use quarry_core::tenant::Reach;

use crate::openapi::ErrorBody;
use crate::{ApiError, App, Backend};

fn document_id(raw: &str) -> Result<DocumentId, ApiError> {
    DocumentId::parse(raw).ok_or_else(|| {
        ApiError::bad_request("invalid_document_id", "a document id is the 32 hex characters search results return")
    })
}

fn not_found(id: &DocumentId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "document_not_found", format!("no document {}", id.as_str()))
}

/// The document, if there is one and the caller's tenant owns it: another tenant's document is
/// answered as no document at all, so that its existence is not revealed either (and one whose
/// key is unknown, having failed before it was ever read, is an operator's).
async fn visible<B: Backend>(app: &App<B>, reach: &Reach, id: &DocumentId) -> Result<Option<DocumentRecord>, ApiError> {
    let record = app.backend.documents().document(id).await?;
    Ok(record.filter(|d| *reach == Reach::All || d.key.as_ref().is_some_and(|k| reach.sees(k))))
}

#[utoipa::path(get, path = "/v1/documents/{id}", params(("id" = String, Path, description = "a result's document_id")),
    responses((status = 200, body = quarry_core::ports::DocumentRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_document<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = document_id(&id)?;
    match visible(&app, &reach, &id).await? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(not_found(&id)),
    }
}

/// Removes a document from the index (its chunks and state). The source file or object is not
/// touched: deleting that is what keeps a document out for good, as the next sync re-indexes it.
#[utoipa::path(delete, path = "/v1/documents/{id}", params(("id" = String, Path, description = "a result's document_id")),
    responses((status = 200, body = Object, description = "{document_id, removed_chunks}"), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_document<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = document_id(&id)?;
    let known = visible(&app, &reach, &id).await?.is_some();
    // Chunks left without a record belong to no one a tenant can prove: only an operator
    // (every tenant) removes them.
    if !known && reach != Reach::All {
        return Err(not_found(&id));
    }
    let removed = quarry_pipeline::forget(app.backend.state(), app.backend.writer(), app.backend.hosted(), &id).await?;
    if !known && removed == 0 {
        return Err(not_found(&id));
    }
    Ok(Json(serde_json::json!({"document_id": id.as_str(), "removed_chunks": removed})).into_response())
}
