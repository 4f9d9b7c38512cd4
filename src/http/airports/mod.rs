//! Airports over HTTP, with the seed's bare aliases (`POST /upload`,
//! `PUT /create`, `PATCH /update?id=`, `DELETE /delete?id=`, `GET /create`,
//! `GET /update?id=`, `GET /delete?id=`): the route table wiring, the OpenAPI
//! part, lookups and changes. The CSV upload is in [`upload`]; the changes
//! made by GET and their confirmation links in [`confirm`].

use bytes::Bytes;
use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::extract::{json, json_body, query, raw_query};
use super::routes::{route, PathParams};
use super::schema::{at_least_one_field, Data, ErrorBody};
use super::{auth, data, with_state, State};
use crate::airports::{
    self, Airport, AirportError, AirportPatch, ListFilter, NearAirport, NearQuery, NewAirport,
    Page, Storable, UploadOutcome, NUL,
};
use crate::audit::Origin;

mod confirm;
mod upload;

/// The airports part of the OpenAPI document. The bare aliases are added by
/// [`Aliases`] as copies of the operations they share a handler with.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        upload::upload_route,
        list,
        near,
        get,
        create,
        patch,
        delete,
        confirm::confirm_create,
        confirm::confirm_update,
        confirm::soft_delete,
        confirm::confirm,
    ),
    components(schemas(Airport, NearAirport, NewAirport, AirportPatch, Page, UploadOutcome,
        confirm::Confirmation, confirm::AirportChanges)),
    modifiers(&Aliases),
    tags((name = "airports", description = "Airports: CSV upload, lookup, nearby search, \
        changes, and signed confirmation links for changes made by GET"))
)]
pub(super) struct Api;

/// The seed's bare aliases: (alias, method, the documented path serving it).
/// On the aliases the airport id is the query parameter `?id=` instead of `{id}`.
const ALIASES: [(&str, &str, &str); 7] = [
    ("/upload", "post", "/airports/upload"),
    ("/create", "put", "/airports"),
    ("/create", "get", "/airports/create"),
    ("/update", "patch", "/airports/{id}"),
    ("/update", "get", "/airports/{id}/update"),
    ("/delete", "delete", "/airports/{id}"),
    ("/delete", "get", "/airports/{id}/delete"),
];

struct Aliases;

impl utoipa::Modify for Aliases {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{
            HttpMethod, ParameterBuilder, ParameterIn, ParameterStyle, PathItem,
        };
        use utoipa::openapi::{Ref, Required};
        at_least_one_field(openapi, "AirportPatch");
        at_least_one_field(openapi, "AirportChanges");
        // The update link's fields are the query itself: one object parameter
        // spread into `name=…&city=…`, so the document can require one field.
        if let Some(operation) = openapi
            .paths
            .paths
            .get_mut("/airports/{id}/update")
            .and_then(|item| item.get.as_mut())
        {
            let changes = ParameterBuilder::new()
                .name("changes")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .style(Some(ParameterStyle::Form))
                .explode(Some(true))
                .description(Some(
                    "The fields to change, as query parameters (`?city=Madrid&dst=E`)",
                ))
                .schema(Some(Ref::from_schema_name("AirportChanges")))
                .build();
            operation
                .parameters
                .get_or_insert_with(Vec::new)
                .push(changes);
        }
        for (alias, method, original) in ALIASES {
            let Some(mut operation) = openapi
                .paths
                .paths
                .get(original)
                .and_then(|item| operation_of(item, method))
                .cloned()
            else {
                continue;
            };
            operation.operation_id = None;
            for parameter in operation.parameters.iter_mut().flatten() {
                if parameter.name == "id" && parameter.parameter_in == ParameterIn::Path {
                    parameter.parameter_in = ParameterIn::Query;
                }
            }
            let method = match method {
                "post" => HttpMethod::Post,
                "put" => HttpMethod::Put,
                "patch" => HttpMethod::Patch,
                "delete" => HttpMethod::Delete,
                _ => HttpMethod::Get,
            };
            openapi
                .paths
                .add_path_operation(alias, vec![method], operation);
        }
        // `method(get, post)` gives both one operation id; ids must be unique.
        if let Some(post) = openapi
            .paths
            .paths
            .get_mut("/confirm/{token}")
            .and_then(|item| item.post.as_mut())
        {
            post.operation_id = Some("confirm_airport_change_post".to_owned());
        }

        fn operation_of<'a>(
            item: &'a PathItem,
            method: &str,
        ) -> Option<&'a utoipa::openapi::path::Operation> {
            match method {
                "post" => item.post.as_ref(),
                "put" => item.put.as_ref(),
                "patch" => item.patch.as_ref(),
                "delete" => item.delete.as_ref(),
                _ => item.get.as_ref(),
            }
        }
    }
}

/// Largest body of a JSON airport (or change): a few hundred bytes in practice.
const AIRPORT_BODY_LIMIT: u64 = 64 * 1024;

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let limit = state.config.body_limit.min(AIRPORT_BODY_LIMIT);
    let list = route("/airports", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(|_, raw, state| list(raw, state))
        .map(respond);
    let near = route("/airports/near", Method::GET)
        .and(raw_query())
        .and(with_state(state))
        .then(|_, raw, state| near(raw, state))
        .map(respond);
    let get = route("/airports/{id}", Method::GET)
        .and(with_state(state))
        .then(get)
        .map(respond);

    let create = route("/airports", Method::PUT)
        .or(route("/create", Method::PUT))
        .unify()
        .and(json_body(limit))
        .and(auth::origin(state))
        .and(with_state(state))
        .then(|_, body, origin, state| create(body, origin, state))
        .map(respond);
    let patch = route("/airports/{id}", Method::PATCH)
        .or(route("/update", Method::PATCH))
        .unify()
        .and(raw_query())
        .and(json_body(limit))
        .and(auth::origin(state))
        .and(with_state(state))
        .then(patch)
        .map(respond);
    let delete = route("/airports/{id}", Method::DELETE)
        .or(route("/delete", Method::DELETE))
        .unify()
        .and(raw_query())
        .and(auth::origin(state))
        .and(with_state(state))
        .then(delete)
        .map(respond);

    upload::routes(state)
        .or(list)
        .unify()
        .or(near)
        .unify()
        .or(get)
        .unify()
        .or(create)
        .unify()
        .or(patch)
        .unify()
        .or(delete)
        .unify()
        .or(confirm::routes(state))
        .unify()
        .boxed()
}

impl From<AirportError> for ApiError {
    fn from(error: AirportError) -> Self {
        match error {
            AirportError::NotFound(id) => ApiError::not_found(format!("airport {id} not found")),
            AirportError::Refused(rejected) => {
                let shown: Vec<String> = rejected
                    .errors
                    .iter()
                    .take(10)
                    .map(|e| e.line.to_string())
                    .collect();
                let more = if rejected.total > shown.len() {
                    ", …"
                } else {
                    ""
                };
                ApiError::validation(format!(
                    "the CSV has {} bad row(s) (line {}{more}); nothing was written",
                    rejected.total,
                    shown.join(", ")
                ))
                .with_field("bad_rows", rejected.total)
                .with_field("errors", json!(rejected.errors))
            }
            AirportError::TooLarge { limit } => ApiError::payload_too_large(limit),
            AirportError::Read(reason) => ApiError::bad_request(reason),
            AirportError::Invalid(reason) => ApiError::validation(reason),
            AirportError::TokenUsed => ApiError::new(
                StatusCode::CONFLICT,
                "token_used",
                "this confirmation link was already used; nothing was changed",
            ),
            AirportError::Db(error) => error.into(),
        }
    }
}

/// Airports, filtered by city, country or IATA code (case-insensitive), paged by id.
#[utoipa::path(
    get,
    path = "/airports",
    operation_id = "list_airports",
    tag = "airports",
    params(ListFilter),
    responses(
        (status = 200, description = "A page; pass `next_after` as `after` for the next", body = Data<Page>),
        (status = 400, description = "Unknown or invalid query parameter", body = ErrorBody),
    )
)]
async fn list(raw: String, state: State) -> Result<Response, ApiError> {
    let filter: ListFilter = query(&raw)?;
    let page = airports::list(&state.pool, &filter).await?;
    Ok(data(StatusCode::OK, &page))
}

/// Airports within `radius_km` of a point, nearest first.
#[utoipa::path(
    get,
    path = "/airports/near",
    operation_id = "near_airports",
    tag = "airports",
    params(NearQuery),
    responses(
        (status = 200, description = "Airports with `distance_km`, nearest first", body = Data<Vec<NearAirport>>),
        (status = 400, description = "Missing or invalid query parameter", body = ErrorBody),
    )
)]
async fn near(raw: String, state: State) -> Result<Response, ApiError> {
    let near: NearQuery = query(&raw)?;
    let found = airports::near(&state.pool, &near).await?;
    Ok(data(StatusCode::OK, &found))
}

/// One airport.
#[utoipa::path(
    get,
    path = "/airports/{id}",
    operation_id = "get_airport",
    tag = "airports",
    params(("id" = i64, Path, description = "Airport id")),
    responses(
        (status = 200, description = "The airport", body = Data<Airport>),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 404, description = "No such airport", body = ErrorBody),
    )
)]
async fn get(params: PathParams, state: State) -> Result<Response, ApiError> {
    let id = params.get::<i64>("id")?;
    let airport = airports::get(&state.pool, id).await?;
    Ok(data(StatusCode::OK, &airport))
}

fn created(airport: &airports::Airport) -> Response {
    super::created("/airports", &airport.id.to_string(), airport)
}

/// Creates an airport.
#[utoipa::path(
    put,
    path = "/airports",
    operation_id = "create_airport",
    tag = "airports",
    request_body = NewAirport,
    responses(
        (status = 201, description = "Created; `Location` names it", body = Data<Airport>,
            headers(("Location" = String, description = "`/airports/{id}`"))),
        (status = 400, description = "Invalid JSON or airport", body = ErrorBody),
        (status = 413, description = "The body exceeds 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
async fn create(body: Bytes, origin: Origin, state: State) -> Result<Response, ApiError> {
    let airport: NewAirport = typed(json::<Value>(&body)?)?;
    let airport = airports::create(&state.pool, &airport, &origin).await?;
    Ok(created(&airport))
}

/// The airport id: the path's `{id}`, or `?id=` on the bare aliases.
fn id(params: &PathParams, raw: &str) -> Result<i64, ApiError> {
    if params.raw("id").is_some() {
        return params.get("id");
    }
    let pairs = pairs(raw)?;
    let given = pairs
        .iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| {
            ApiError::bad_request("the query needs ?id=").with_field("id", "required")
        })?;
    given.parse().map_err(|_| {
        ApiError::bad_request("query parameter id is not valid")
            .with_field("id", format!("{given:?} is not a valid id"))
    })
}

fn pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

/// A JSON value as a typed airport input; what does not fit is a 400 saying why.
fn typed<T: serde::de::DeserializeOwned + Storable>(value: Value) -> Result<T, ApiError> {
    let parsed: T = serde_json::from_value(value)
        .map_err(|e| ApiError::validation(format!("invalid airport: {e}")))?;
    match parsed.unstorable() {
        None => Ok(parsed),
        Some(field) => Err(
            ApiError::validation(format!("invalid airport: {field} {NUL}")).with_field(field, NUL),
        ),
    }
}

/// A patch that changes something.
fn nonempty(patch: AirportPatch) -> Result<AirportPatch, ApiError> {
    if patch.is_empty() {
        Err(ApiError::validation("the update names no field to change"))
    } else {
        Ok(patch)
    }
}

/// Changes the given fields of an airport (`null` clears a nullable one).
#[utoipa::path(
    patch,
    path = "/airports/{id}",
    operation_id = "patch_airport",
    tag = "airports",
    params(("id" = i64, Path, description = "Airport id")),
    request_body = AirportPatch,
    responses(
        (status = 200, description = "The changed airport", body = Data<Airport>),
        (status = 400, description = "Invalid id, JSON or field, or no field to change", body = ErrorBody),
        (status = 404, description = "No such airport", body = ErrorBody),
        (status = 413, description = "The body exceeds 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
async fn patch(
    params: PathParams,
    raw: String,
    body: Bytes,
    origin: Origin,
    state: State,
) -> Result<Response, ApiError> {
    let id = id(&params, &raw)?;
    let patch = nonempty(typed(json::<Value>(&body)?)?)?;
    let airport = airports::patch(&state.pool, id, &patch, &origin).await?;
    Ok(data(StatusCode::OK, &airport))
}

/// Deletes an airport for good.
#[utoipa::path(
    delete,
    path = "/airports/{id}",
    operation_id = "delete_airport",
    tag = "airports",
    params(("id" = i64, Path, description = "Airport id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 404, description = "No such airport", body = ErrorBody),
    )
)]
async fn delete(
    params: PathParams,
    raw: String,
    origin: Origin,
    state: State,
) -> Result<Response, ApiError> {
    let id = id(&params, &raw)?;
    airports::delete(&state.pool, id, &origin).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
