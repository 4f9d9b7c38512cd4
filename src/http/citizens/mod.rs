//! Citizens imports: `POST /imports` and the reads and PATCH under
//! `/imports/{import_id}` (the 2019 backend-school citizens API): the route
//! table wiring, the OpenAPI part and the errors' answers. The handlers are
//! in [`handlers`], the OpenAPI mirror of the wire format in [`schema`].

use std::sync::Arc;

use serde_json::{Map, Value};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;
use warp::Filter;

use super::error::{respond, ApiError};
use super::extract;
use super::routes::route;
use super::{auth, with_state, State};
use crate::citizens::{CitizensError, Invalid};

mod handlers;
mod schema;

/// Largest PATCH body: a citizen with 10,000 relatives (as many as an
/// import may hold) and every text field at its longest fits several times.
const PATCH_BODY_LIMIT: u64 = 1024 * 1024;

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let limit = state.config.body_limit;
    let kept = Arc::clone(&state.citizens);
    let with_kept = warp::any().map(move || Arc::clone(&kept));
    let post_import = route("/imports", Method::POST)
        .and(extract::json_body(limit))
        .and(auth::origin(state))
        .and(with_state(state))
        .and(with_kept.clone())
        .then(|_, body, origin, state, kept| handlers::post_import(body, origin, state, kept))
        .map(respond);
    let get_citizens = route("/imports/{import_id}/citizens", Method::GET)
        .and(with_state(state))
        .and(with_kept.clone())
        .then(handlers::get_citizens)
        .map(respond);
    let patch_citizen = route("/imports/{import_id}/citizens/{citizen_id}", Method::PATCH)
        .and(extract::json_body(limit.min(PATCH_BODY_LIMIT)))
        .and(auth::origin(state))
        .and(with_state(state))
        .then(handlers::patch_citizen)
        .map(respond);
    let birthdays = route("/imports/{import_id}/citizens/birthdays", Method::GET)
        .and(extract::raw_query())
        .and(with_state(state))
        .and(with_kept.clone())
        .then(handlers::birthdays)
        .map(respond);
    let percentiles = route(
        "/imports/{import_id}/towns/stat/percentile/age",
        Method::GET,
    )
    .and(with_state(state))
    .and(with_kept)
    .then(handlers::age_percentiles)
    .map(respond);
    post_import
        .or(get_citizens)
        .unify()
        .or(patch_citizen)
        .unify()
        .or(birthdays)
        .unify()
        .or(percentiles)
        .unify()
        .boxed()
}

/// Documents these routes; merged into the document by `openapi.rs`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        handlers::post_import,
        handlers::get_citizens,
        handlers::patch_citizen,
        handlers::birthdays,
        handlers::age_percentiles
    ),
    components(schemas(
        schema::Citizen,
        schema::Import,
        schema::CitizenPatch,
        schema::ImportCreated,
        schema::Presents,
        schema::Birthdays,
        schema::AgePercentiles,
    )),
    modifiers(&Constraints),
    tags((name = "citizens", description = "Citizens imports, their relatives and statistics"))
)]
pub(super) struct Api;

/// What the derives cannot say: relatives are distinct citizen ids, and a
/// patch changes at least one field.
struct Constraints;

impl utoipa::Modify for Constraints {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ArrayItems, Schema};
        use utoipa::openapi::RefOr;
        super::schema::at_least_one_field(openapi, "CitizenPatch");
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in ["Citizen", "CitizenPatch"] {
            let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) else {
                continue;
            };
            let Some(RefOr::T(Schema::Array(relatives))) = object.properties.get_mut("relatives")
            else {
                continue;
            };
            relatives.unique_items = true;
            if let ArrayItems::RefOrSchema(item) = &mut relatives.items {
                if let RefOr::T(Schema::Object(id)) = item.as_mut() {
                    id.minimum = Some(0.into());
                    id.maximum = Some(i32::MAX.into());
                }
            }
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        let fields: Map<String, Value> = invalid
            .fields
            .into_iter()
            .map(|(path, message)| (path, Value::String(message)))
            .collect();
        ApiError::validation(invalid.message).with_fields(fields)
    }
}

impl From<CitizensError> for ApiError {
    fn from(error: CitizensError) -> Self {
        match error {
            CitizensError::Invalid(invalid) => invalid.into(),
            CitizensError::ImportNotFound(_) | CitizensError::CitizenNotFound { .. } => {
                ApiError::not_found(error.to_string())
            }
            CitizensError::Db(error) => error.into(),
        }
    }
}
