//! Statement ingestion (validated, then produced to the import's stream) and
//! the import's dead letters.

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
use crate::limits::Capped;
use crate::statements::{self, DeadLetter, Statement};
use crate::telemetry;
use tracing::Instrument;

/// At most this many problems are named in one 400.
const MAX_REPORTED: usize = 100;

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
    let client = state.pool.get().await.map_err(crate::db::DbError::from)?;
    let exists = crate::citizens::import_exists(&client, import_id).await?;
    drop(client);
    // Parsing and checking millions of items is CPU work: off the threads
    // that serve other requests, one item at a time (each becomes its
    // record, or a problem while fewer than MAX_REPORTED are named).
    let checked = tokio::task::spawn_blocking(move || {
        check_items(&body, kind == BodyKind::NdJson, exists.then_some(import_id))
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    if checked.items == 0 {
        return Err(ApiError::validation("no statements in the body"));
    }
    if !exists {
        return Err(ApiError::not_found(format!("no import {import_id}")));
    }
    let Checked {
        problems, records, ..
    } = checked;
    let mut ids: Vec<i32> = records.iter().map(|r| r.citizen_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let client = state.pool.get().await.map_err(crate::db::DbError::from)?;
    let unknown = statements::unknown_citizens(&client, import_id, &ids).await?;
    drop(client);
    drop(ids);
    let strangers = records
        .iter()
        .filter(|r| unknown.contains(&r.citizen_id))
        .count();
    let total = problems.total() + strangers;
    if total > 0 {
        // Both lists are in item order: the first problems of the body are
        // the first of their union.
        let mut named = problems.into_items();
        named.extend(
            records
                .iter()
                .filter(|r| unknown.contains(&r.citizen_id))
                .take(MAX_REPORTED)
                .map(|r| {
                    (
                        r.index,
                        format!("[{}].citizen_id", r.index),
                        format!("no citizen {} in import {import_id}", r.citizen_id),
                    )
                }),
        );
        named.sort_by_key(|(index, _, _)| *index);
        let fields: Map<String, Value> = named
            .into_iter()
            .take(MAX_REPORTED)
            .map(|(_, path, reason)| (path, Value::String(reason)))
            .collect();
        return Err(ApiError::validation(format!(
            "{total} statement problem(s); nothing was accepted"
        ))
        .with_fields(fields));
    }
    let count = records.len();
    // Through the supervisor only when the job has no topic yet.
    let job = match state.supervisor.stream(import_id).await? {
        Some(job) if job.topic_ready => job,
        _ => state.supervisor.ensure(import_id).await?,
    };
    if job.expired {
        return Err(ApiError::conflict(format!(
            "the stream of import {import_id} has expired"
        )));
    }
    if !job.topic_ready {
        // No topic yet: Kafka was unreachable when the job was created.
        return Err(ApiError::unavailable(
            "kafka_unavailable",
            "the import's stream is not available yet; retry later",
        ));
    }
    let records: Vec<(String, Vec<u8>)> = records
        .into_iter()
        .map(|r| (r.citizen_id.to_string(), r.payload))
        .collect();
    // A producer span whose W3C context goes into every record's headers, so
    // the job storing them continues this request's trace.
    let span = tracing::info_span!(
        "kafka.produce",
        otel.name = %format_args!("{} publish", job.topic),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.destination.name = %job.topic,
        messaging.batch.message_count = count as i64,
        job = %job.job,
        import = import_id,
    );
    let headers = telemetry::inject_context(&span);
    let accepted = state
        .supervisor
        .publish(&job, records, &headers)
        .instrument(span)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "produce failed");
            if e.is_record_too_large() {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "statement_too_large",
                    "a statement is larger than the largest Kafka record; nothing was accepted",
                )
            } else {
                ApiError::unavailable(
                    "kafka_unavailable",
                    "Kafka did not commit the statements; none was accepted, retry later",
                )
            }
        })?;
    // The change is Kafka's transaction, not ours: the row follows its commit.
    let entry = origin
        .entry("accepted")
        .import(import_id)
        .job(&job.job)
        .detail(serde_json::json!({ "statements": accepted }));
    if let Err(error) = entry.record_alone(&state.pool).await {
        tracing::error!(%error, import_id, "audit row not written");
    }
    Ok(data(
        StatusCode::ACCEPTED,
        &Accepted {
            accepted,
            job: job.job,
        },
    ))
}

/// A statement that passed its own rules, as it goes to the topic.
struct Record {
    index: usize,
    citizen_id: i32,
    payload: Vec<u8>,
}

/// What reading a body found: how many items, their records, the first
/// problems (with their item's index) and how many in all.
struct Checked {
    items: usize,
    records: Vec<Record>,
    problems: Capped<(usize, String, String)>,
}

/// Reads and checks every item of a body; `import_id` is `None` when the
/// import does not exist (then items are only counted: the answer is a 404).
fn check_items(body: &[u8], ndjson: bool, import_id: Option<i64>) -> Result<Checked, ApiError> {
    let mut records = Vec::new();
    let mut problems = Capped::new(MAX_REPORTED);
    let items = statements::read_items(body, ndjson, |index, item| {
        let Some(import_id) = import_id else {
            return;
        };
        match Statement::from_value(&item, Some(import_id)) {
            Ok(statement) => records.push(Record {
                index,
                citizen_id: statement.citizen_id,
                payload: statement.to_payload(),
            }),
            Err(invalid) => problems.push_with(|| {
                (
                    index,
                    format!("[{index}].{}", invalid.field),
                    invalid.reason,
                )
            }),
        }
    })
    .map_err(|(line, message)| ApiError::bad_request(message).with_field("line", line))?;
    Ok(Checked {
        items,
        records,
        problems,
    })
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
