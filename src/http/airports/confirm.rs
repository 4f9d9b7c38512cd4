//! The changes an airport gets by GET, for links: signed confirmation links
//! that create (`GET /airports/create`) or update (`GET /airports/{id}/update`)
//! once followed (`/confirm/{token}`), and the soft delete
//! (`GET /airports/{id}/delete`); with their bare aliases.

use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::{created, id, nonempty, pairs, typed};
use crate::airports::confirm::{Action, Signer, TokenError};
use crate::airports::{self, Airport, NewAirport};
use crate::audit::Origin;
use crate::http::error::{respond, ApiError};
use crate::http::extract::raw_query;
use crate::http::routes::{route, PathParams};
use crate::http::schema::{Data, ErrorBody};
use crate::http::{auth, data, with_state, State};

/// A signed confirmation link (`GET /airports/create`, `GET /airports/{id}/update`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Confirmation {
    /// `POST` or `GET` it to carry out the change.
    #[schema(example = "/confirm/eyJ…")]
    confirm_url: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: chrono::DateTime<chrono::Utc>,
}

/// The query of `GET /airports/{id}/update`, for the document only (the
/// handler reads it as an `AirportPatch`): at least one field; an
/// empty value clears a nullable field, as `null` does in a body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct AirportChanges {
    #[schema(min_length = 1, pattern = r"^[^\u0000]+$")]
    name: Option<String>,
    #[schema(nullable = false, pattern = r"^[^\u0000]*$")]
    city: Option<String>,
    #[schema(nullable = false, pattern = r"^[^\u0000]*$")]
    country: Option<String>,
    #[schema(nullable = false, pattern = r"^[^\u0000]*$")]
    iata: Option<String>,
    #[schema(nullable = false, pattern = r"^[^\u0000]*$")]
    icao: Option<String>,
    #[schema(nullable = false, minimum = -90, maximum = 90)]
    latitude: Option<f64>,
    #[schema(nullable = false, minimum = -180, maximum = 180)]
    longitude: Option<f64>,
    #[schema(nullable = false)]
    altitude: Option<i32>,
    #[schema(nullable = false, minimum = -12, maximum = 14, multiple_of = 0.01)]
    timezone: Option<f64>,
    #[schema(nullable = false, max_length = 1, pattern = r"^[^\u0000]?$")]
    dst: Option<String>,
    #[schema(nullable = false, pattern = r"^[^\u0000]*$")]
    tz: Option<String>,
    #[schema(rename = "type", nullable = false, pattern = r"^[^\u0000]*$")]
    kind: Option<String>,
    #[schema(nullable = false, pattern = r"^[^\u0000]*$")]
    source: Option<String>,
}

/// The changes made by GET (and their bare aliases) and the link that carries
/// one out.
pub(super) fn routes(state: &State) -> BoxedFilter<(Response,)> {
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
        .and(auth::origin(state))
        .and(with_state(state))
        .then(soft_delete)
        .map(respond);
    let confirm = route("/confirm/{token}", Method::GET)
        .or(route("/confirm/{token}", Method::POST))
        .unify()
        .and(auth::origin(state))
        .and(with_state(state))
        .then(confirm)
        .map(respond);

    confirm_create
        .or(confirm_update)
        .unify()
        .or(soft_delete)
        .unify()
        .or(confirm)
        .unify()
        .boxed()
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

/// The query's fields (bar a bare alias's `id`) as typed input.
fn from_query<T: serde::de::DeserializeOwned + airports::Storable>(
    params: &PathParams,
    raw: &str,
) -> Result<T, ApiError> {
    let mut pairs = pairs(raw)?;
    if params.raw("id").is_none() {
        pairs.retain(|(k, _)| k != "id");
    }
    typed(airports::pairs_to_json(pairs).map_err(ApiError::bad_request)?)
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
async fn soft_delete(
    params: PathParams,
    raw: String,
    origin: Origin,
    state: State,
) -> Result<Response, ApiError> {
    let id = id(&params, &raw)?;
    let airport = airports::soft_delete(&state.pool, id, &origin).await?;
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
    // A token is base64url claims, a dot and the 43-character base64url HMAC-SHA256;
    // one of that form that was not issued here is a 403, anything else a 400.
    params(("token" = String, Path, description = "The signed token from `confirm_url`",
        pattern = r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$")),
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
async fn confirm(params: PathParams, origin: Origin, state: State) -> Result<Response, ApiError> {
    let token = params
        .raw("token")
        .ok_or_else(|| ApiError::internal(&"route has no token"))?;
    let verified = signer(&state)?.verify(token, chrono::Utc::now())?;
    match airports::confirm(&state.pool, &verified, &origin).await? {
        airports::Confirmed::Created(airport) => Ok(created(&airport)),
        airports::Confirmed::Updated(airport) => Ok(data(StatusCode::OK, &airport)),
    }
}
