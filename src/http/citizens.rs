//! Citizens imports: `POST /imports` and the reads and PATCH under
//! `/imports/{import_id}` (the 2019 backend-school citizens API).

use std::sync::Arc;

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
use super::schema::{Data, ErrorBody};
use super::{auth, data, with_state, State};
use crate::audit::Origin;
use crate::citizens::{self, fast, parse, store, CitizensError, GroupBy, Invalid};

/// Largest PATCH body: a citizen with 10,000 relatives (as many as an
/// import may hold) and every text field at its longest fits several times.
const PATCH_BODY_LIMIT: u64 = 1024 * 1024;

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let limit = state.config.body_limit;
    let stats = Arc::clone(&state.citizens);
    let with_stats = warp::any().map(move || Arc::clone(&stats));
    let post_import = route("/imports", Method::POST)
        .and(extract::json_body(limit))
        .and(auth::origin(state))
        .and(with_state(state))
        .and(with_stats.clone())
        .then(|_, body, origin, state, stats| post_import(body, origin, state, stats))
        .map(respond);
    let get_citizens = route("/imports/{import_id}/citizens", Method::GET)
        .and(with_state(state))
        .and(with_stats.clone())
        .then(get_citizens)
        .map(respond);
    let patch_citizen = route("/imports/{import_id}/citizens/{citizen_id}", Method::PATCH)
        .and(extract::json_body(limit.min(PATCH_BODY_LIMIT)))
        .and(auth::origin(state))
        .and(with_state(state))
        .then(patch_citizen)
        .map(respond);
    let birthdays = route("/imports/{import_id}/citizens/birthdays", Method::GET)
        .and(extract::raw_query())
        .and(with_state(state))
        .and(with_stats.clone())
        .then(birthdays)
        .map(respond);
    let percentiles = route(
        "/imports/{import_id}/towns/stat/percentile/age",
        Method::GET,
    )
    .and(with_state(state))
    .and(with_stats)
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

/// Documents this file's routes; merged into the document by `openapi.rs`.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(post_import, get_citizens, patch_citizen, birthdays, age_percentiles),
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

/// Mirror of the domain's wire format for the OpenAPI document only: the
/// domain parses requests itself (typed when valid, else field by field from
/// `serde_json::Value` to report every bad field) and serialises its own
/// types, so these are never built.
#[allow(dead_code)]
mod schema {
    use utoipa::ToSchema;

    /// A citizen as imported and as returned.
    #[derive(ToSchema)]
    pub struct Citizen {
        /// Unique within the import, 0..=2^31-1.
        #[schema(minimum = 0, maximum = 2147483647, example = 1)]
        pub citizen_id: i32,
        /// 1 to 256 characters with at least one letter or digit.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$",
            example = "Москва"
        )]
        pub town: String,
        /// 1 to 256 characters with at least one letter or digit.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$",
            example = "Льва Толстого"
        )]
        pub street: String,
        /// 1 to 256 characters with at least one letter or digit.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$",
            example = "16к7стр5"
        )]
        pub building: String,
        #[schema(minimum = 0, maximum = 2147483647, example = 7)]
        pub apartment: i32,
        /// 1 to 256 characters.
        #[schema(
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*$",
            example = "Иванов Иван Иванович"
        )]
        pub name: String,
        /// `DD.MM.YYYY`, a real date not after today (UTC).
        #[schema(
            pattern = r"^(0[1-9]|[12][0-9]|3[01])\.(0[1-9]|1[0-2])\.[0-9]{4}$",
            example = "26.12.1986"
        )]
        pub birth_date: String,
        #[schema(inline)]
        pub gender: Gender,
        /// Citizen ids of this import, each at most once; relations are
        /// mutual (if 1 lists 2, 2 lists 1).
        pub relatives: Vec<i32>,
        /// Advertising channel, 1 to 256 characters; absent when unknown.
        #[schema(
            nullable = false,
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*$",
            example = "telegram"
        )]
        pub channel: Option<String>,
    }

    #[derive(ToSchema)]
    #[schema(rename_all = "lowercase")]
    pub enum Gender {
        Male,
        Female,
    }

    /// `POST /imports` body: at most 10,000 citizens, no other field.
    #[derive(ToSchema)]
    pub struct Import {
        #[schema(max_items = 10000)]
        pub citizens: Vec<Citizen>,
    }

    /// `PATCH` body: any non-empty subset of the citizen's fields except
    /// `citizen_id`, none of them null; relations change on both sides.
    #[derive(ToSchema)]
    pub struct CitizenPatch {
        #[schema(
            nullable = false,
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$"
        )]
        pub town: Option<String>,
        #[schema(
            nullable = false,
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$"
        )]
        pub street: Option<String>,
        #[schema(
            nullable = false,
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*[\p{L}\p{N}][^\u0000]*$"
        )]
        pub building: Option<String>,
        #[schema(nullable = false, minimum = 0, maximum = 2147483647)]
        pub apartment: Option<i32>,
        #[schema(
            nullable = false,
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*$"
        )]
        pub name: Option<String>,
        /// `DD.MM.YYYY`.
        #[schema(
            nullable = false,
            pattern = r"^(0[1-9]|[12][0-9]|3[01])\.(0[1-9]|1[0-2])\.[0-9]{4}$"
        )]
        pub birth_date: Option<String>,
        #[schema(nullable = false, inline)]
        pub gender: Option<Gender>,
        #[schema(nullable = false)]
        pub relatives: Option<Vec<i32>>,
        #[schema(
            nullable = false,
            min_length = 1,
            max_length = 256,
            pattern = r"^[^\u0000]*$"
        )]
        pub channel: Option<String>,
    }

    /// `POST /imports` answer.
    #[derive(ToSchema)]
    pub struct ImportCreated {
        #[schema(example = 1)]
        pub import_id: i64,
    }

    /// One buyer and how many presents they buy in the group's period.
    #[derive(ToSchema)]
    pub struct Presents {
        pub citizen_id: i32,
        pub presents: i32,
    }

    /// Buyers per group: keys `1`..`12` (month) or channel names (`unknown`
    /// for citizens without one), each with the citizens buying presents.
    #[derive(ToSchema)]
    pub struct Birthdays(pub std::collections::BTreeMap<String, Vec<Presents>>);

    /// Age percentiles (full years, linear interpolation, 2 decimals) of one town.
    #[derive(ToSchema)]
    pub struct AgePercentiles {
        pub town: String,
        pub p50: f64,
        pub p75: f64,
        pub p99: f64,
    }
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
async fn post_import(
    body: Bytes,
    origin: Origin,
    state: State,
    stats: Arc<store::Stats>,
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
        tokio::task::spawn_blocking(move || store::ImportAnswers::of(&citizens, today))
    };
    let stored = store::insert_import(&state.pool, &citizens, &origin).await?;
    let import_id = stored.import_id;
    import_committed(&state, import_id);
    match answers.await {
        Ok(answers) => stats.keep_import(stored, answers),
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
async fn get_citizens(
    params: PathParams,
    state: State,
    stats: Arc<store::Stats>,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let chunks = store::citizens_json(&state.pool, &stats, import_id)
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
async fn patch_citizen(
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
    let citizen = store::patch(&state.pool, import_id, citizen_id, &patch, &origin).await?;
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

async fn birthdays(
    params: PathParams,
    raw: String,
    state: State,
    stats: Arc<store::Stats>,
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
    let birthdays = store::birthdays(&state.pool, &stats, import_id, group_by).await?;
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
async fn age_percentiles(
    params: PathParams,
    state: State,
    stats: Arc<store::Stats>,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let towns = store::age_percentiles(&state.pool, &stats, import_id, today()).await?;
    Ok(data(StatusCode::OK, &*towns))
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
