//! Statement ingestion (the use case is `crate::ingestion`) and the import's
//! dead letters.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::{respond, ApiError};
use super::extract::BodyKind;
use super::routes::{route, PathParams};
use super::schema::{Data, ErrorBody};
use super::{auth, data, extract, with_state, State};
use crate::audit::Origin;
use crate::ingestion::{self, IngestError};
use crate::statements::{self, DeadLetter, Statement};

/// What a statements body may be.
const KINDS: &[BodyKind] = &[BodyKind::Json, BodyKind::NdJson];

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let ingest = route("/imports/{id}/statements", Method::POST)
        .and(extract::typed_body(state.config.body_limit, KINDS))
        .and(auth::origin(state))
        .and(with_state(state))
        .then(|params, kind, body, origin, state| ingest(state, params, kind, body, origin))
        .map(respond);
    let dead = route("/imports/{id}/dead-letters", Method::GET)
        .and(extract::raw_query())
        .and(with_state(state))
        .then(|params, query: String, state| dead_letters(state, params, query))
        .map(respond);
    ingest.or(dead).unify().boxed()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(ingest, dead_letters),
    components(schemas(Statement, Accepted, DeadLetter)),
    tags((name = "statements", description = "Statement ingestion and dead letters"))
)]
pub(super) struct Api;

/// What `POST /imports/{id}/statements` answers: how many statements Kafka
/// acknowledged, and the job that will store them.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Accepted {
    accepted: usize,
    job: String,
}

/// Accepts statements for an import, as a JSON array (`Content-Type:
/// application/json`) or as NDJSON (one object per line; `Content-Type:
/// application/x-ndjson`). All are checked
/// first — shape and that each citizen belongs to the import — and none is
/// accepted if any fails. Accepted statements are produced to the import's
/// Kafka stream in one transaction (all or none reach the job) and stored
/// by its job asynchronously. `channel`, `score`, `text` and `ts` are
/// optional; without `ts` the job stores the Kafka record's timestamp.
#[utoipa::path(
    post,
    path = "/imports/{id}/statements",
    tag = "statements",
    params(("id" = i64, Path, description = "The import")),
    request_body(
        description = "Statements: a JSON array, or NDJSON with one statement per line",
        content(
            (Vec<Statement> = "application/json"),
            (Statement = "application/x-ndjson"),
        )
    ),
    responses(
        (status = 202, description = "All statements committed to Kafka in one transaction", body = Data<Accepted>),
        (status = 400, description = "Malformed body (`fields.line`), no statements, or invalid \
                                      statements (`fields` keyed `[index].field`, at most 100; \
                                      nothing accepted)", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 409, description = "The import's stream has expired", body = ErrorBody),
        (status = 413, description = "Body over the size limit, or a statement larger than \
                                      the largest Kafka record (`statement_too_large`; nothing accepted)", body = ErrorBody),
        (status = 415, description = "The body is neither `application/json` nor \
                                      `application/x-ndjson`", body = ErrorBody),
        (status = 503, description = "The database or Kafka is unavailable (`kafka_unavailable`): retry later", body = ErrorBody),
    )
)]
pub(super) async fn ingest(
    state: State,
    params: PathParams,
    kind: BodyKind,
    body: bytes::Bytes,
    origin: Origin,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("id")?;
    let ndjson = kind == BodyKind::NdJson;
    let ingested = ingestion::ingest(
        &state.pool,
        &state.supervisor,
        import_id,
        body,
        ndjson,
        &origin,
    )
    .await?;
    Ok(data(
        StatusCode::ACCEPTED,
        &Accepted {
            accepted: ingested.accepted,
            job: ingested.job,
        },
    ))
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        let message = error.to_string();
        match error {
            IngestError::Malformed { line, message } => {
                ApiError::bad_request(message).with_field("line", line)
            }
            IngestError::Empty => ApiError::validation(message),
            IngestError::Invalid { named, .. } => ApiError::validation(message).with_fields(
                named
                    .into_iter()
                    .map(|(path, reason)| (path, Value::String(reason)))
                    .collect::<Map<String, Value>>(),
            ),
            IngestError::ImportNotFound(_) => ApiError::not_found(message),
            IngestError::Expired(_) => ApiError::conflict(message),
            IngestError::StreamNotReady | IngestError::KafkaUnavailable => {
                ApiError::unavailable("kafka_unavailable", message)
            }
            IngestError::RecordTooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "statement_too_large",
                message,
            ),
            IngestError::Interrupted(_) => ApiError::internal(&error),
            IngestError::Db(error) => error.into(),
            IngestError::Jobs(error) => error.into(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeadLetterQuery {
    /// Only dead letters with an id above this (for paging).
    #[param(default = 0)]
    after: Option<i64>,
    /// How many at most (1 to 1000).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// The import's dead letters (statements its job could not store), oldest
/// first; page with `after` = the last id seen.
#[utoipa::path(
    get,
    path = "/imports/{id}/dead-letters",
    tag = "statements",
    params(("id" = i64, Path, description = "The import"), DeadLetterQuery),
    responses(
        (status = 200, description = "The dead letters", body = Data<Vec<DeadLetter>>),
        (status = 400, description = "Bad `id`, `after` or `limit`, or an unknown parameter", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn dead_letters(
    state: State,
    params: PathParams,
    raw: String,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("id")?;
    let query: DeadLetterQuery = extract::query(&raw)?;
    let (after, limit) = extract::page(query.after, query.limit)?;
    let client = state.pool.get().await.map_err(crate::db::DbError::from)?;
    if !crate::citizens::import_exists(&client, import_id).await? {
        return Err(ApiError::not_found(format!("no import {import_id}")));
    }
    let letters = statements::dead_letters(&client, import_id, after, limit).await?;
    Ok(data(StatusCode::OK, &letters))
}
