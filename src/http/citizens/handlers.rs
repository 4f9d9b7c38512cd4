//! The citizens handlers: each parses its request, calls the citizens
//! module and maps the result.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use futures_util::{stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

use super::schema;
use crate::audit::Origin;
use crate::citizens::statistics::{self, ImportAnswers};
use crate::citizens::{self, fast, parse, read, write, GroupBy, KeptAnswers};
use crate::http::error::ApiError;
use crate::http::extract;
use crate::http::routes::PathParams;
use crate::http::schema::{Data, ErrorBody};
use crate::http::{data, State};

/// Today in UTC: birth dates after it are refused, ages are counted on it.
fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// Stores a new import of citizens.
#[utoipa::path(
    post,
    path = "/imports",
    tag = "citizens",
    request_body = schema::Import,
    responses(
        (status = 201, description = "Stored; its id", body = Data<schema::ImportCreated>),
        (status = 400, description = "Invalid JSON (`bad_request`) or invalid citizens \
            (`validation_failed`, `fields` maps each bad value's path such as \
            `citizens[3].birth_date` to what is wrong)", body = ErrorBody),
        (status = 411, description = "No Content-Length", body = ErrorBody),
        (status = 413, description = "Body larger than the configured limit", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
pub(super) async fn post_import(
    body: Bytes,
    origin: Origin,
    state: State,
    kept: Arc<KeptAnswers>,
) -> Result<Response, ApiError> {
    let today = today();
    // Parsing and checking 10,000 citizens takes milliseconds of CPU: keep it
    // off the threads that serve other requests.
    let citizens = tokio::task::spawn_blocking(move || {
        // A valid body takes the typed path; anything else is parsed again
        // thoroughly to say what is wrong (the answer is the same either way).
        let citizens = match fast::import(&body, today) {
            Some(citizens) => citizens,
            None => {
                let value: Value = extract::json(&body)?;
                parse::import(&value, today)?
            }
        };
        citizens::check_import(&citizens)?;
        Ok::<_, ApiError>(Arc::new(citizens))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    // The statistics are worked out while PostgreSQL writes the rows, so the
    // first ask about the import finds them kept.
    let answers = {
        let citizens = Arc::clone(&citizens);
        tokio::task::spawn_blocking(move || ImportAnswers::of(&citizens, today))
    };
    let stored = write::insert_import(&state.pool, &citizens, &origin).await?;
    let import_id = stored.import_id;
    import_committed(&state, import_id);
    match answers.await {
        Ok(answers) => kept.keep_import(stored, answers),
        Err(error) => tracing::warn!(%error, import_id, "statistics not kept; computed when asked"),
    }
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
#[utoipa::path(
    get,
    path = "/imports/{import_id}/citizens",
    tag = "citizens",
    params(("import_id" = i64, Path, description = "The import")),
    responses(
        (status = 200, description = "Every citizen of the import", body = Data<Vec<schema::Citizen>>),
        (status = 400, description = "`import_id` is not an integer", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
    )
)]
pub(super) async fn get_citizens(
    params: PathParams,
    state: State,
    kept: Arc<KeptAnswers>,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let chunks = read::citizens_json(&state.pool, &kept, import_id)
        .await?
        .map(move |chunk| {
            chunk.map_err(|e| {
                tracing::error!(error = %e, import_id, "reading citizens failed mid-response");
                std::io::Error::other("reading citizens failed")
            })
        });
    let body = stream::once(async { Ok(Bytes::from_static(b"{\"data\":[")) })
        .chain(chunks)
        .chain(stream::once(async { Ok(Bytes::from_static(b"]}")) }));
    let mut response = warp::reply::stream(body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Changes some of one citizen's fields and returns the citizen.
#[utoipa::path(
    patch,
    path = "/imports/{import_id}/citizens/{citizen_id}",
    tag = "citizens",
    params(
        ("import_id" = i64, Path, description = "The import"),
        ("citizen_id" = i64, Path, description = "The citizen"),
    ),
    request_body = schema::CitizenPatch,
    responses(
        (status = 200, description = "The citizen after the change", body = Data<schema::Citizen>),
        (status = 400, description = "Bad path parameter or invalid JSON (`bad_request`), \
            or invalid fields (`validation_failed`, with `fields`)", body = ErrorBody),
        (status = 404, description = "No such import or citizen", body = ErrorBody),
        (status = 411, description = "No Content-Length", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
    )
)]
pub(super) async fn patch_citizen(
    params: PathParams,
    body: Bytes,
    origin: Origin,
    state: State,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let citizen_id: i64 = params.get("citizen_id")?;
    let today = today();
    // Up to a megabyte of JSON: parsed off the threads serving requests.
    let patch = tokio::task::spawn_blocking(move || {
        let value: Value = extract::json(&body)?;
        Ok::<_, ApiError>(parse::patch(&value, today)?)
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    let citizen =
        citizens::patch::apply(&state.pool, import_id, citizen_id, &patch, &origin).await?;
    Ok(data(StatusCode::OK, &citizen))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct BirthdaysQuery {
    /// `month` (default: keys `1`..`12`) or `channel`.
    #[param(pattern = "^(month|channel)$", default = "month")]
    group_by: Option<String>,
}

/// How many presents each citizen buys for their relatives' birthdays, per
/// month or per advertising channel.
#[utoipa::path(
    get,
    path = "/imports/{import_id}/citizens/birthdays",
    tag = "citizens",
    params(("import_id" = i64, Path, description = "The import"), BirthdaysQuery),
    responses(
        (status = 200, description = "Buyers per group", body = Data<schema::Birthdays>),
        (status = 400, description = "Bad `import_id`, unknown parameter, or `group_by` \
            not month/channel (`fields.group_by`)", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
    )
)]

pub(super) async fn birthdays(
    params: PathParams,
    raw: String,
    state: State,
    kept: Arc<KeptAnswers>,
) -> Result<Response, ApiError> {
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
    let birthdays = statistics::birthdays(&state.pool, &kept, import_id, group_by).await?;
    Ok(data(StatusCode::OK, &*birthdays))
}

/// Per town, the 50th, 75th and 99th percentiles of the citizens' ages.
#[utoipa::path(
    get,
    path = "/imports/{import_id}/towns/stat/percentile/age",
    tag = "citizens",
    params(("import_id" = i64, Path, description = "The import")),
    responses(
        (status = 200, description = "One entry per town, ordered by town", body = Data<Vec<schema::AgePercentiles>>),
        (status = 400, description = "`import_id` is not an integer", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
    )
)]
pub(super) async fn age_percentiles(
    params: PathParams,
    state: State,
    kept: Arc<KeptAnswers>,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let towns = statistics::age_percentiles(&state.pool, &kept, import_id, today()).await?;
    Ok(data(StatusCode::OK, &*towns))
}
