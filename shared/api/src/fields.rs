//! `GET /v1/fields`: the filterable metadata fields the index holds and their commonest values,
//! from which a search page builds its filters ([`quarry_core::ports::FieldCatalog`]).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use quarry_core::ports::{FieldCatalog, FieldSummary};
use quarry_core::tenant::Reach;
use serde::{Deserialize, Serialize};

use crate::openapi::ErrorBody;
use crate::{ApiError, App, Backend};

/// Most values a field lists.
pub const MAX_VALUES: usize = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FieldsParams {
    /// Values per field, 1 to 100 [default: 20].
    #[param(minimum = 1, maximum = 100)]
    values: Option<usize>,
}

/// The filterable fields, by name, of the caller's tenant's documents. A deployment whose vector store cannot list its metadata
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
    Extension(reach): Extension<Reach>,
    params: Result<Query<FieldsParams>, QueryRejection>,
) -> Result<Json<FieldsResponse>, ApiError> {
    let bad = || ApiError::bad_request("invalid_values", format!("values must be a number from 1 to {MAX_VALUES}"));
    // A value that is not a number at all gets the same JSON error as one out of range.
    let Ok(Query(params)) = params else { return Err(bad()) };
    let values = params.values.unwrap_or(20);
    if !(1..=MAX_VALUES).contains(&values) {
        return Err(bad());
    }
    Ok(Json(match app.backend.fields() {
        Some(catalog) => {
            FieldsResponse { fields: catalog.fields(values, reach.narrow(None).as_ref()).await?, available: true }
        }
        None => FieldsResponse { fields: Vec::new(), available: false },
    }))
}
