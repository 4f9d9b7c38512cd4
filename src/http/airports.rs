//! Airports over HTTP, with the seed's bare aliases (`POST /upload`,
//! `PUT /create`, `PATCH /update?id=`, `DELETE /delete?id=`, `GET /create`,
//! `GET /update?id=`, `GET /delete?id=`) and the confirmation links.

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::header::LOCATION;
use warp::http::{Method, StatusCode};
use warp::multipart::FormData;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::extract::{body_bytes, json, query, raw_query};
use super::routes::{route, PathParams};
use super::schema::{Data, ErrorBody};
use super::{data, with_state, State};
use crate::airports::confirm::{Action, Signer, TokenError};
use crate::airports::{
    self, Airport, AirportError, AirportPatch, ListFilter, NearAirport, NearQuery, NewAirport,
    Page, UploadOutcome,
};

/// The airports part of the OpenAPI document. The bare aliases are added by
/// [`Aliases`] as copies of the operations they share a handler with.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        upload_route,
        list,
        near,
        get,
        create,
        patch,
        delete,
        confirm_create,
        confirm_update,
        soft_delete,
        confirm,
    ),
    components(schemas(Airport, NearAirport, NewAirport, AirportPatch, Page, UploadOutcome, Confirmation)),
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
        use utoipa::openapi::path::{HttpMethod, ParameterIn, PathItem};
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

/// A signed confirmation link (`GET /airports/create`, `GET /airports/{id}/update`).
#[derive(serde::Serialize, utoipa::ToSchema)]
struct Confirmation {
    /// `POST` or `GET` it to carry out the change.
    #[schema(example = "/confirm/eyJ…")]
    confirm_url: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: chrono::DateTime<chrono::Utc>,
}

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let limit = state.config.body_limit;
    let upload = upload_route("/airports/upload", state)
        .or(upload_route("/upload", state))
        .unify();

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
        .and(body_bytes(limit))
        .and(with_state(state))
        .then(|_, body, state| create(body, state))
        .map(respond);
    let patch = route("/airports/{id}", Method::PATCH)
        .or(route("/update", Method::PATCH))
        .unify()
        .and(raw_query())
        .and(body_bytes(limit))
        .and(with_state(state))
        .then(patch)
        .map(respond);
    let delete = route("/airports/{id}", Method::DELETE)
        .or(route("/delete", Method::DELETE))
        .unify()
        .and(raw_query())
        .and(with_state(state))
        .then(delete)
        .map(respond);

    let confirm_create = route("/airports/create", Method::GET)
        .or(route("/create", Method::GET))
        .unify()
        .and(raw_query())
        .and(with_state(state))
        .then(|_, raw, state| confirm_create(raw, state))
        .map(respond);
    let confirm_update = route("/airports/{id}/update", Method::GET)
        .or(route("/update", Method::GET))
        .unify()
        .and(raw_query())
        .and(with_state(state))
        .then(confirm_update)
        .map(respond);
    let soft_delete = route("/airports/{id}/delete", Method::GET)
        .or(route("/delete", Method::GET))
        .unify()
        .and(raw_query())
        .and(with_state(state))
        .then(soft_delete)
        .map(respond);
    let confirm = route("/confirm/{token}", Method::GET)
        .or(route("/confirm/{token}", Method::POST))
        .unify()
        .and(with_state(state))
        .then(confirm)
        .map(respond);

    upload
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
        .or(confirm_create)
        .unify()
        .or(confirm_update)
        .unify()
        .or(soft_delete)
        .unify()
        .or(confirm)
        .unify()
        .boxed()
}

impl From<AirportError> for ApiError {
    fn from(error: AirportError) -> Self {
        match error {
            AirportError::NotFound(id) => ApiError::not_found(format!("airport {id} not found")),
            AirportError::Rejected(rejected) => {
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

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        let message = format!("{error}; nothing was changed");
        match error {
            TokenError::Malformed => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_token", message)
            }
            TokenError::BadSignature => {
                ApiError::new(StatusCode::FORBIDDEN, "invalid_token", message)
            }
            TokenError::Expired(_) => ApiError::new(StatusCode::GONE, "token_expired", message),
        }
    }
}

/// `POST` of a CSV body, raw (`text/csv`) or as the `file` part of a multipart form.
#[utoipa::path(
    post,
    path = "/airports/upload",
    operation_id = "upload_airports",
    tag = "airports",
    request_body(
        content = String,
        content_type = "text/csv",
        description = "OpenFlights airports CSV, raw or as the part `file` of a \
            `multipart/form-data` body. Rows are upserted by id, all or nothing."
    ),
    responses(
        (status = 201, description = "Written: how many rows were inserted and updated", body = Data<UploadOutcome>),
        (status = 400, description = "Bad rows (`fields.bad_rows`, `fields.errors` with line and reason; \
            nothing was written) or an unreadable body", body = ErrorBody),
        (status = 413, description = "The body exceeds the configured limit", body = ErrorBody),
    )
)]
fn upload_route(pattern: &'static str, state: &State) -> BoxedFilter<(Response,)> {
    let limit = state.config.body_limit;
    let multipart = route(pattern, Method::POST)
        .and(with_state(state))
        .and(warp::header::optional::<u64>("content-length"))
        // The limit is enforced while streaming (and on Content-Length below),
        // so chunked bodies work too.
        .and(warp::multipart::form().max_length(None))
        .then(move |_, state, length, form| upload_multipart(state, length, form, limit))
        .map(respond);
    let raw = route(pattern, Method::POST)
        .and(with_state(state))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(
            move |_, state: State, kind: Option<String>, length, body| async move {
                check_length(length, limit)?;
                check_csv_type(kind.as_deref())?;
                let outcome = airports::upload(&state.pool, body, limit).await?;
                Ok(data(StatusCode::CREATED, &outcome))
            },
        )
        .map(respond);
    multipart.or(raw).unify().boxed()
}

fn check_length(length: Option<u64>, limit: u64) -> Result<(), ApiError> {
    match length {
        Some(length) if length > limit => Err(ApiError::payload_too_large(limit)),
        _ => Ok(()),
    }
}

/// Any body but a broken multipart one is read as CSV: `curl --data-binary`
/// labels files as form data, and the parser judges the content anyway.
fn check_csv_type(kind: Option<&str>) -> Result<(), ApiError> {
    let essence = kind
        .and_then(|k| k.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence.starts_with("multipart/") {
        return Err(ApiError::bad_request(
            "a multipart body needs a boundary and a part named `file`",
        ));
    }
    Ok(())
}

async fn upload_multipart(
    state: State,
    length: Option<u64>,
    mut form: FormData,
    limit: u64,
) -> Result<Response, ApiError> {
    check_length(length, limit)?;
    while let Some(part) = form.next().await {
        let part =
            part.map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?;
        if part.name() == "file" {
            let outcome = airports::upload(&state.pool, part.stream(), limit).await?;
            return Ok(data(StatusCode::CREATED, &outcome));
        }
    }
    Err(ApiError::bad_request(
        "the multipart body has no part named `file`",
    ))
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
    let location = format!("/airports/{}", airport.id);
    warp::reply::with_header(data(StatusCode::CREATED, airport), LOCATION, location).into_response()
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
        (status = 413, description = "The body exceeds the configured limit", body = ErrorBody),
    )
)]
async fn create(body: Bytes, state: State) -> Result<Response, ApiError> {
    let airport: NewAirport = typed(json::<Value>(&body)?)?;
    let airport = airports::create(&state.pool, &airport).await?;
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
fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|e| ApiError::validation(format!("invalid airport: {e}")))
}

/// The query's fields (bar a bare alias's `id`) as typed input.
fn from_query<T: serde::de::DeserializeOwned>(
    params: &PathParams,
    raw: &str,
) -> Result<T, ApiError> {
    let mut pairs = pairs(raw)?;
    if params.raw("id").is_none() {
        pairs.retain(|(k, _)| k != "id");
    }
    typed(airports::pairs_to_json(pairs).map_err(ApiError::bad_request)?)
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
        (status = 413, description = "The body exceeds the configured limit", body = ErrorBody),
    )
)]
async fn patch(
    params: PathParams,
    raw: String,
    body: Bytes,
    state: State,
) -> Result<Response, ApiError> {
    let id = id(&params, &raw)?;
    let patch = nonempty(typed(json::<Value>(&body)?)?)?;
    let airport = airports::patch(&state.pool, id, &patch).await?;
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
async fn delete(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let id = id(&params, &raw)?;
    airports::delete(&state.pool, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Soft-deletes an airport: it stays, with `deleted_at` set.
#[utoipa::path(
    get,
    path = "/airports/{id}/delete",
    operation_id = "soft_delete_airport",
    tag = "airports",
    params(("id" = i64, Path, description = "Airport id")),
    responses(
        (status = 200, description = "The airport, with `deleted_at`", body = Data<Airport>),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 404, description = "No such airport", body = ErrorBody),
    )
)]
async fn soft_delete(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let id = id(&params, &raw)?;
    let airport = airports::soft_delete(&state.pool, id).await?;
    Ok(data(StatusCode::OK, &airport))
}

fn signer(state: &State) -> Result<Signer<'_>, ApiError> {
    let secret = state
        .config
        .secret
        .as_deref()
        .ok_or_else(|| ApiError::internal(&"no signing secret configured"))?;
    Ok(Signer::new(secret.as_bytes(), state.config.confirm_ttl()))
}

fn confirmation(state: &State, action: Action) -> Result<Response, ApiError> {
    let token = signer(state)?
        .sign(action, chrono::Utc::now())
        .map_err(|e| ApiError::internal(&e))?;
    Ok(data(
        StatusCode::OK,
        &Confirmation {
            confirm_url: format!("/confirm/{}", token.token),
            expires_at: token.expires_at,
        },
    ))
}

/// A signed link that creates the airport described by the query once followed.
#[utoipa::path(
    get,
    path = "/airports/create",
    operation_id = "airport_create_link",
    tag = "airports",
    params(NewAirport),
    responses(
        (status = 200, description = "The confirmation link and its expiry", body = Data<Confirmation>),
        (status = 400, description = "Invalid query or airport", body = ErrorBody),
    )
)]
async fn confirm_create(raw: String, state: State) -> Result<Response, ApiError> {
    let airport: NewAirport =
        typed(airports::pairs_to_json(pairs(&raw)?).map_err(ApiError::bad_request)?)?;
    confirmation(&state, Action::Create { airport })
}

/// A signed link that applies the query's fields to the airport once followed.
#[utoipa::path(
    get,
    path = "/airports/{id}/update",
    operation_id = "airport_update_link",
    tag = "airports",
    params(("id" = i64, Path, description = "Airport id")),
    responses(
        (status = 200, description = "The confirmation link and its expiry; the query \
            holds the fields to change, as in `AirportPatch`", body = Data<Confirmation>),
        (status = 400, description = "Invalid id or field, or no field to change", body = ErrorBody),
        (status = 404, description = "No such airport", body = ErrorBody),
    )
)]
async fn confirm_update(
    params: PathParams,
    raw: String,
    state: State,
) -> Result<Response, ApiError> {
    let id = id(&params, &raw)?;
    let patch = nonempty(from_query(&params, &raw)?)?;
    // A link to update an airport that is not there would only fail later.
    airports::get(&state.pool, id).await?;
    confirmation(&state, Action::Update { id, patch })
}

/// Carries out the change a signed link stands for, once.
#[utoipa::path(
    method(get, post),
    path = "/confirm/{token}",
    operation_id = "confirm_airport_change",
    tag = "airports",
    params(("token" = String, Path, description = "The signed token from `confirm_url`")),
    responses(
        (status = 200, description = "Updated", body = Data<Airport>),
        (status = 201, description = "Created; `Location` names it", body = Data<Airport>,
            headers(("Location" = String, description = "`/airports/{id}`"))),
        (status = 400, description = "Malformed token, or the change is no longer valid", body = ErrorBody),
        (status = 403, description = "Bad signature", body = ErrorBody),
        (status = 404, description = "The airport to update is gone", body = ErrorBody),
        (status = 409, description = "The link was already used", body = ErrorBody),
        (status = 410, description = "The link has expired", body = ErrorBody),
    )
)]
async fn confirm(params: PathParams, state: State) -> Result<Response, ApiError> {
    let token = params
        .raw("token")
        .ok_or_else(|| ApiError::internal(&"route has no token"))?;
    let verified = signer(&state)?.verify(token, chrono::Utc::now())?;
    match airports::confirm(&state.pool, &verified).await? {
        airports::Confirmed::Created(airport) => Ok(created(&airport)),
        airports::Confirmed::Updated(airport) => Ok(data(StatusCode::OK, &airport)),
    }
}
