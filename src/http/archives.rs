//! Archives of expired jobs: the objects (`GET /jobs/{name}/archives`), one
//! object's bytes (admin), and a replay into an import (admin).
//!
//! Downloads go through the service (a route that streams the object)
//! rather than presigned URLs: a `file://` archive has nothing to presign,
//! the object store's endpoint need not be reachable by API clients, and
//! the admin token stays the only credential a client ever holds.

use serde::{Deserialize, Serialize};
use warp::filters::BoxedFilter;
use warp::http::{header, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::error::{respond, ApiError};
use super::routes::{route, PathParams};
use super::schema::{Data, ErrorBody};
use super::{auth, data, extract, with_state, State};
use crate::audit::Origin;
use crate::jobs::Replayed;

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let list = route("/jobs/{name}/archives", Method::GET)
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state(state))
        .then(|params, authorization, state| list(state, params, authorization))
        .map(respond);
    let download = route("/jobs/{name}/archives/{partition}/{from}", Method::GET)
        .and(with_state(state))
        .then(|params, state| download(state, params))
        .map(respond);
    let replay = route("/imports/{id}/replay", Method::POST)
        .and(extract::json_body(64 * 1024))
        .and(auth::origin(state))
        .and(with_state(state))
        .then(|params, body, origin, state| replay(state, params, body, origin))
        .map(respond);
    list.or(download).unify().or(replay).unify().boxed()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, download, replay),
    components(schemas(Archived, Replayed, ReplayRequest)),
    tags((name = "archives", description = "What expired jobs archived, and its replay into an import"))
)]
pub(super) struct Api;

/// An archived object as the API shows it: named relative to the archive
/// (never the store's location or a local path).
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Archived {
    pub partition: i32,
    /// First offset of the range.
    pub from_offset: i64,
    /// End of the range (exclusive).
    pub to_offset: i64,
    /// Records in the object (fewer than the range: transaction markers).
    pub count: i64,
    /// Compressed size in bytes.
    pub bytes: i64,
    /// SHA-256 of the object's bytes, in hex.
    pub sha256: String,
    /// The object's name in the archive: `{job}/{partition}-{from}-{to}.ndjson.gz`.
    #[schema(example = "0a1b2c3d4e5f6071/0-6-14.ndjson.gz")]
    pub object: String,
    /// Where to download the object (gzip NDJSON): only for a request with an admin token.
    #[serde(skip_serializing_if = "Option::is_none")]
    download: Option<String>,
}

const NAME: &str = "The job's name (as in `GET /jobs`)";

/// The objects a job archived at expiry, with their offsets, record counts,
/// sizes and SHA-256; download links when an admin token is given.
#[utoipa::path(
    get,
    path = "/jobs/{name}/archives",
    tag = "archives",
    params(("name" = String, Path, description = NAME)),
    responses(
        (status = 200, description = "The objects, by partition and offset", body = Data<Vec<Archived>>),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn list(
    state: State,
    params: PathParams,
    authorization: Option<String>,
) -> Result<Response, ApiError> {
    let name: String = params.get("name")?;
    let admin = auth::is_admin(&state.tokens, authorization.as_deref());
    let store = state.supervisor.archive();
    let objects = state.supervisor.archives(&name).await?;
    let shown: Vec<Archived> = objects
        .into_iter()
        .map(|object| Archived {
            download: admin.then(|| {
                format!(
                    "/jobs/{name}/archives/{}/{}",
                    object.partition, object.from_offset
                )
            }),
            object: store.relative_name(&object.url).unwrap_or_else(|| {
                format!(
                    "{name}/{}-{}-{}.ndjson.gz",
                    object.partition, object.from_offset, object.to_offset
                )
            }),
            partition: object.partition,
            from_offset: object.from_offset,
            to_offset: object.to_offset,
            count: object.count,
            bytes: object.bytes,
            sha256: object.sha256,
        })
        .collect();
    Ok(data(StatusCode::OK, &shown))
}

/// One archived object's bytes (gzip-compressed NDJSON), streamed from the store.
#[utoipa::path(
    get,
    path = "/jobs/{name}/archives/{partition}/{from}",
    tag = "archives",
    params(
        ("name" = String, Path, description = NAME),
        ("partition" = i32, Path, description = "The object's partition"),
        ("from" = i64, Path, description = "The first offset of its range"),
    ),
    responses(
        (status = 200, description = "The object", content_type = "application/gzip", body = Vec<u8>),
        (status = 400, description = "A partition or offset that is not a number in range", body = ErrorBody),
        (status = 404, description = "No such job or object", body = ErrorBody),
        (status = 503, description = "The database or the archive store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn download(state: State, params: PathParams) -> Result<Response, ApiError> {
    let name: String = params.get("name")?;
    let partition: i32 = params.get("partition")?;
    let from: i64 = params.get("from")?;
    let objects = state.supervisor.archives(&name).await?;
    let object = objects
        .into_iter()
        .find(|o| o.partition == partition && o.from_offset == from)
        .ok_or_else(|| {
            ApiError::not_found(format!("job {name} has no object at {partition}/{from}"))
        })?;
    let store = state.supervisor.archive();
    let key = store
        .key_of(&object.url)
        .ok_or_else(|| ApiError::not_found("the object is not under the configured archive"))?;
    let stream = store
        .stream(&key)
        .await
        .map_err(crate::jobs::JobsError::from)?;
    let mut response = warp::reply::stream(Synced(std::sync::Mutex::new(stream))).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/gzip"),
    );
    if let Ok(length) = header::HeaderValue::from_str(&object.bytes.to_string()) {
        headers.insert(header::CONTENT_LENGTH, length);
    }
    Ok(response)
}

/// What to replay.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayRequest {
    /// The job whose archive is read back.
    #[schema(pattern = r"^[^\u0000]+$")]
    job: String,
}

/// Reads a job's archive back into this import, through the stream's batch
/// write: each statement stored once however often this is called (ids
/// already stored are skipped), what the import cannot take (e.g. a citizen
/// it does not have) a dead letter. Answers when done.
#[utoipa::path(
    post,
    path = "/imports/{id}/replay",
    tag = "archives",
    params(("id" = i64, Path, description = "The import to store into")),
    request_body(content = ReplayRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What the replay read and stored", body = Data<Replayed>),
        (status = 400, description = "Malformed body, or a job name holding NUL (`fields.job`)", body = ErrorBody),
        (status = 404, description = "No such import or job, or the job has no archive", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 503, description = "The database or the archive store is unavailable", body = ErrorBody),
    )
)]
pub(super) async fn replay(
    state: State,
    params: PathParams,
    body: bytes::Bytes,
    origin: Origin,
) -> Result<Response, ApiError> {
    let import: i64 = params.get("id")?;
    let request: ReplayRequest = extract::json(&body)?;
    if request.job.contains('\0') {
        // No job name holds NUL, and PostgreSQL refuses one as a parameter.
        return Err(ApiError::bad_request("invalid job name")
            .with_field("job", "must not contain NUL characters"));
    }
    let replayed = state.supervisor.replay(&request.job, import).await?;
    let entry = origin
        .entry("replayed")
        .import(import)
        .job(&request.job)
        .detail(serde_json::to_value(&replayed).unwrap_or_default());
    if let Err(error) = entry.record_alone(&state.pool).await {
        tracing::error!(%error, import, "audit row not written");
    }
    Ok(data(StatusCode::OK, &replayed))
}

/// A `Send` stream made `Sync`, as warp's streamed body wants: only ever
/// polled through `&mut`, so the mutex is never locked.
struct Synced<S>(std::sync::Mutex<S>);

impl<S: futures_util::Stream + Unpin> futures_util::Stream for Synced<S> {
    type Item = S::Item;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<S::Item>> {
        let inner = self
            .get_mut()
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::pin::Pin::new(inner).poll_next(cx)
    }
}
