//! Adding files over the API, for the search page's drop zone. Two steps, the same in both
//! deployments: `POST /v1/uploads` screens the file's name, size and type (the screening ingest
//! applies, [`quarry_core::format::screen`]) and answers where to send the bytes; the page sends
//! them there. Locally that is this API's `PUT /v1/files/{name}`, which screens again on the bytes
//! themselves, writes the file into the served folder and starts a one-file batch; on AWS it is a
//! presigned S3 PUT, and the bucket's event indexes the object as any other upload.
//!
//! A name is one path segment: the page adds files beside the others, never over one (a grant or
//! a write for a name already taken answers `409 file_exists`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use quarry_core::config::Limits;
use quarry_core::format::{HEAD_BYTES, Refusal, screen};
use quarry_core::ports::{BatchRequest, BatchStarted, BatchStarter, BlobWriter, UploadGrant, UploadGranter};
use quarry_core::tenant::Reach;
use quarry_core::{Classify, DocumentId, DocumentKey, PortError};
use serde::{Deserialize, Serialize};

use crate::openapi::ErrorBody;
use crate::{ApiError, App, Backend, body};

/// Longest file name, in bytes: what common file systems allow in one path segment.
pub const MAX_NAME_BYTES: usize = 255;

/// Whether this deployment takes files over the API, and how large.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadsInfo {
    pub available: bool,
    /// `limits.max_file_bytes`: larger files are refused before any byte is sent.
    pub max_file_bytes: u64,
}

/// A file about to be sent.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadRequest {
    /// The file's name: one path segment, which becomes its key.
    pub name: String,
    /// Its size in bytes.
    #[serde(deserialize_with = "crate::whole_number")]
    pub size: u64,
    /// Its media type, if the client knows it.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// A file received by `PUT /v1/files/{name}`, and the batch indexing it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UploadReceived {
    pub key: String,
    pub document_id: String,
    /// The batch indexing it; `null` if it could not be started (the file is kept: a watching
    /// server indexes it anyway, and `POST /v1/batches` with its key starts one).
    #[schema(value_type = Object)]
    pub batch: Option<BatchStarted>,
}

#[utoipa::path(get, path = "/v1/uploads", responses((status = 200, body = UploadsInfo)))]
pub(crate) async fn info<B: Backend>(State(app): State<Arc<App<B>>>) -> Json<UploadsInfo> {
    Json(UploadsInfo {
        available: app.backend.uploads().is_some(),
        max_file_bytes: app.backend.file_limits().max_file_bytes,
    })
}

#[utoipa::path(post, path = "/v1/uploads", request_body = UploadRequest,
    responses((status = 200, body = quarry_core::ports::UploadGrant), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn grant<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    payload: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Json<UploadGrant>, ApiError> {
    let req: UploadRequest = body(payload)?;
    let Some(uploads) = app.backend.uploads() else {
        return Err(unavailable());
    };
    let key = upload_key(&reach, &req.name)?;
    screen(app.backend.file_limits(), &key, req.size, req.content_type.as_deref(), &[]).map_err(refused)?;
    let grant = uploads.grant(&key, req.size, req.content_type.as_deref()).await.map_err(|e| taken(&key, e))?;
    Ok(Json(grant))
}

#[utoipa::path(put, path = "/v1/files/{name}", params(("name" = String, Path, description = "the file's name, one path segment")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = UploadReceived), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn put_file<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Extension(reach): Extension<Reach>,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(inbox) = app.backend.inbox() else {
        return Err(if app.backend.uploads().is_some() {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this server takes files at the URL POST /v1/uploads gives",
            )
        } else {
            unavailable()
        });
    };
    let key = upload_key(&reach, &name)?;
    let limits: &Limits = app.backend.file_limits();
    let bytes = bytes.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                format!("the file is over the {}-byte limit (limits.max_file_bytes)", limits.max_file_bytes),
            )
        } else {
            ApiError::bad_request("invalid_request", r.body_text())
        }
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let head = &bytes[..bytes.len().min(HEAD_BYTES)];
    screen(limits, &key, bytes.len() as u64, content_type, head).map_err(refused)?;
    inbox.put_new(&key, &bytes).await.map_err(|e| taken(&key, e))?;
    tracing::info!(key = %key, bytes = bytes.len(), "file received");
    // The file is written: whatever happens now, the answer is 201, or a client's retry would
    // find its own file and read "name taken".
    let batch = match app.backend.starter().start(&BatchRequest { prefix: None, keys: vec![key.clone()] }).await {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(key = %key, error = %quarry_core::error::chain(&e), "file written, but its batch did not start");
            None
        }
    };
    let received = UploadReceived {
        document_id: DocumentId::for_key(&key).as_str().to_owned(),
        key: key.as_str().to_owned(),
        batch,
    };
    Ok((StatusCode::CREATED, Json(received)).into_response())
}

fn unavailable() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "uploads_unavailable", "this server does not take files over the API")
}

/// The key a file name becomes (in the caller's tenant's folder, [`Reach::upload_key`]), or why
/// it cannot be one.
fn upload_key(reach: &Reach, name: &str) -> Result<DocumentKey, ApiError> {
    let bad = |why: &str| ApiError::bad_request("invalid_name", format!("file name {name:?} {why}"));
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(bad(&format!("must be 1 to {MAX_NAME_BYTES} bytes long")));
    }
    if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err(bad("must be one name, without slashes or control characters"));
    }
    // Listings skip hidden files (editors' and uploads' temporaries start with a dot): such a file
    // would be written and never indexed.
    if name.starts_with('.') {
        return Err(bad("must not start with a dot"));
    }
    if name.trim() != name {
        return Err(bad("must not start or end with spaces"));
    }
    Ok(reach.upload_key(name))
}

fn refused(r: Refusal) -> ApiError {
    let status =
        if matches!(r, Refusal::TooLarge { .. }) { StatusCode::PAYLOAD_TOO_LARGE } else { StatusCode::BAD_REQUEST };
    ApiError::new(status, r.code(), r.to_string())
}

fn taken(key: &DocumentKey, e: PortError) -> ApiError {
    match e {
        PortError::Conflict { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "file_exists",
            format!("a file named {key} is already there; rename the new one, or replace the old one where it is kept"),
        ),
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Reach, upload_key};

    #[test]
    fn file_names_become_keys_or_are_refused() {
        assert_eq!(
            upload_key(&Reach::All, "notes.md").map(|k| k.as_str().to_owned()).ok().as_deref(),
            Some("notes.md")
        );
        let acme = Reach::Tenant("acme".into());
        assert_eq!(
            upload_key(&acme, "notes.md").ok().map(|k| k.as_str().to_owned()).as_deref(),
            Some("tenants/acme/notes.md")
        );
        assert_eq!(
            upload_key(&Reach::All, "Année 2024 (v2).pdf").ok().map(|k| k.as_str().len()),
            Some("Année 2024 (v2).pdf".len())
        );
        for name in ["", "a/b.txt", "..\\x.txt", ".hidden.txt", "tab\t.txt", " padded.txt", &"x".repeat(256)] {
            let e = upload_key(&Reach::All, name).err().unwrap_or_else(|| panic!("{name:?} accepted"));
            assert_eq!(e.code(), "invalid_name", "{name:?}");
        }
        assert!(upload_key(&Reach::All, "..").is_err(), "a dot name is refused");
    }
}
