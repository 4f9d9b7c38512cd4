//! Citizens imports: `POST /imports` and the reads and PATCH under
//! `/imports/{import_id}` (the 2019 backend-school citizens API).

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use futures_util::{stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use warp::filters::BoxedFilter;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::extract;
use super::routes::{route, PathParams};
use super::{data, with_state, State};
use crate::citizens::{self, parse, store, CitizensError, GroupBy, Invalid};

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let limit = state.config.body_limit;
    let post_import = route("/imports", Method::POST)
        .and(extract::body_bytes(limit))
        .and(with_state(state))
        .then(|_, body, state| post_import(body, state))
        .map(respond);
    let get_citizens = route("/imports/{import_id}/citizens", Method::GET)
        .and(with_state(state))
        .then(get_citizens)
        .map(respond);
    let patch_citizen = route("/imports/{import_id}/citizens/{citizen_id}", Method::PATCH)
        .and(extract::body_bytes(limit))
        .and(with_state(state))
        .then(patch_citizen)
        .map(respond);
    let birthdays = route("/imports/{import_id}/citizens/birthdays", Method::GET)
        .and(extract::raw_query())
        .and(with_state(state))
        .then(birthdays)
        .map(respond);
    let percentiles = route(
        "/imports/{import_id}/towns/stat/percentile/age",
        Method::GET,
    )
    .and(with_state(state))
    .then(age_percentiles)
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

/// Today in UTC: birth dates after it are refused, ages are counted on it.
fn today() -> NaiveDate {
    Utc::now().date_naive()
}

async fn post_import(body: Bytes, state: State) -> Result<Response, ApiError> {
    // Parsing and checking 10,000 citizens takes milliseconds of CPU: keep it
    // off the threads that serve other requests.
    let citizens = tokio::task::spawn_blocking(move || {
        let value: Value = extract::json(&body)?;
        let citizens = parse::import(&value, today())?;
        citizens::check_import(&citizens)?;
        Ok::<_, ApiError>(citizens)
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    let import_id = store::insert_import(&state.pool, &citizens).await?;
    import_committed(&state, import_id);
    Ok(data(
        StatusCode::CREATED,
        &json!({ "import_id": import_id }),
    ))
}

/// Runs once an import's transaction has committed, before the 201 is sent:
/// asks the supervisor for the import's stream and job without waiting, so a
/// Kafka outage never fails an import (the job stays `pending` and the
/// periodic reconciliation creates the stream once Kafka is back).
fn import_committed(state: &State, import_id: i64) {
    if let Err(error) = state.supervisor.ensure_later(import_id) {
        tracing::warn!(%error, import_id, "stream not requested; reconciliation will create it");
    }
}

/// Streams `{"data":[…]}` as the rows arrive, never holding the whole import.
async fn get_citizens(params: PathParams, state: State) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let batches = store::citizens(&state.pool, import_id).await?;
    let mut first = true;
    let citizens = batches.map(move |batch| {
        let batch = batch.map_err(|e| {
            tracing::error!(error = %e, import_id, "reading citizens failed mid-response");
            std::io::Error::other("reading citizens failed")
        })?;
        let mut buffer = Vec::with_capacity(batch.len() * 320);
        for citizen in &batch {
            if !std::mem::take(&mut first) {
                buffer.push(b',');
            }
            serde_json::to_writer(&mut buffer, citizen).map_err(std::io::Error::other)?;
        }
        Ok::<_, std::io::Error>(Bytes::from(buffer))
    });
    let body = stream::once(async { Ok(Bytes::from_static(b"{\"data\":[")) })
        .chain(citizens)
        .chain(stream::once(async { Ok(Bytes::from_static(b"]}")) }));
    let mut response = warp::reply::stream(body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

async fn patch_citizen(
    params: PathParams,
    body: Bytes,
    state: State,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let citizen_id: i64 = params.get("citizen_id")?;
    let value: Value = extract::json(&body)?;
    let patch = parse::patch(&value, today())?;
    let citizen = store::patch(&state.pool, import_id, citizen_id, &patch).await?;
    Ok(data(StatusCode::OK, &citizen))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BirthdaysQuery {
    group_by: Option<String>,
}

async fn birthdays(params: PathParams, raw: String, state: State) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let query: BirthdaysQuery = extract::query(&raw)?;
    let group_by = match query.group_by.as_deref() {
        None | Some("month") => GroupBy::Month,
        Some("channel") => GroupBy::Channel,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "group_by must be month or channel, not {other:?}"
            ))
            .with_field("group_by", "must be month or channel"))
        }
    };
    let birthdays = store::birthdays(&state.pool, import_id, group_by).await?;
    Ok(data(StatusCode::OK, &birthdays))
}

async fn age_percentiles(params: PathParams, state: State) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let towns = store::age_percentiles(&state.pool, import_id, today()).await?;
    Ok(data(StatusCode::OK, &towns))
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
