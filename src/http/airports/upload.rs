//! `POST /airports/upload` (and `POST /upload`): a CSV body, raw or as the
//! `file` part of a multipart form, checked for its length and type before
//! it is streamed to the parser.

use futures_util::StreamExt;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::multipart::FormData;
use warp::reply::Response;
use warp::Filter;

use crate::airports::{self, UploadOutcome};
use crate::audit::Origin;
use crate::http::error::{respond, ApiError};
use crate::http::routes::route;
use crate::http::schema::{Data, ErrorBody};
use crate::http::{auth, data, with_state, State};

/// `POST /airports/upload` and its bare alias `POST /upload`.
pub(super) fn routes(state: &State) -> BoxedFilter<(Response,)> {
    upload_route("/airports/upload", state)
        .or(upload_route("/upload", state))
        .unify()
        .boxed()
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
        .and(auth::origin(state))
        .and(warp::header::optional::<u64>("content-length"))
        // The limit is enforced while streaming (and on Content-Length below),
        // so chunked bodies work too.
        .and(warp::multipart::form().max_length(None))
        .then(move |_, state, origin, length, form| {
            upload_multipart(state, origin, length, form, limit)
        })
        .map(respond);
    let raw = route(pattern, Method::POST)
        .and(with_state(state))
        .and(auth::origin(state))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .then(
            move |_, state: State, origin: Origin, kind: Option<String>, length, body| async move {
                check_length(length, limit)?;
                check_csv_type(kind.as_deref())?;
                let outcome = airports::upload(&state.pool, body, limit, &origin).await?;
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
    origin: Origin,
    length: Option<u64>,
    mut form: FormData,
    limit: u64,
) -> Result<Response, ApiError> {
    check_length(length, limit)?;
    while let Some(part) = form.next().await {
        let part =
            part.map_err(|e| ApiError::bad_request(format!("invalid multipart body: {e}")))?;
        if part.name() == "file" {
            let outcome = airports::upload(&state.pool, part.stream(), limit, &origin).await?;
            return Ok(data(StatusCode::CREATED, &outcome));
        }
    }
    Err(ApiError::bad_request(
        "the multipart body has no part named `file`",
    ))
}
