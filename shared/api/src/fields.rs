//! `GET /v1/fields`: the filterable metadata fields the index holds and their commonest values,
//! from which a search page builds its filters ([`quarry_core::ports::FieldCatalog`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use quarry_core::ports::{FieldCatalog, FieldSummary};
use serde::{Deserialize, Serialize};

use crate::openapi::ErrorBody;
use crate::{ApiError, App, Backend};

/// Most values a field lists.
pub const MAX_VALUES: usize = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct FieldsParams {
    /// Values per field, 1 to 100 [default: 20].
    values: Option<usize>,
}

/// The filterable fields, by name. A deployment whose vector store cannot list its metadata
/// (S3 Vectors) answers an empty list, with `available: false`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldsResponse {
    pub fields: Vec<FieldSummary>,
    pub available: bool,
}

#[utoipa::path(get, path = "/v1/fields", params(FieldsParams),
    responses((status = 200, body = FieldsResponse), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_fields<B: Backend>(
    State(app): State<Arc<App<B>>>,
    Query(params): Query<FieldsParams>,
) -> Result<Json<FieldsResponse>, ApiError> {
    let values = params.values.unwrap_or(20);
    if !(1..=MAX_VALUES).contains(&values) {
        return Err(ApiError::bad_request("invalid_values", format!("values must be 1 to {MAX_VALUES}")));
    }
    Ok(Json(match app.backend.fields() {
        Some(catalog) => FieldsResponse { fields: catalog.fields(values).await?, available: true },
        None => FieldsResponse { fields: Vec::new(), available: false },
    }))
}
