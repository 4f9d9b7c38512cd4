//! Request extractors whose failures become proper API errors: bodies under
//! a limit (with or without Content-Length), of the content type the route
//! takes, JSON and query strings parsed with messages that say what was wrong.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use warp::{Filter, Rejection};

use super::error::ApiError;

/// The whole body, refused with 413 beyond `limit` bytes — checked against
/// Content-Length up front and against the bytes actually read (chunked).
pub fn body_bytes(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length: Option<u64>, body| async move {
            if length.is_some_and(|length| length > limit) {
                return Err(warp::reject::custom(ApiError::payload_too_large(limit)));
            }
            collect(body, limit, length.unwrap_or(0))
                .await
                .map_err(warp::reject::custom)
        })
}

async fn collect<S, B>(body: S, limit: u64, expected: u64) -> Result<Bytes, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut buffer = BytesMut::with_capacity(expected.min(limit) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
        if (buffer.len() + chunk.remaining()) as u64 > limit {
            return Err(ApiError::payload_too_large(limit));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            buffer.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(buffer.freeze())
}

/// What a body is, by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (any parameters, e.g. `; charset=utf-8`) or a
    /// `+json` type such as `application/merge-patch+json`.
    Json,
    /// One JSON document a line: `application/x-ndjson`, `application/ndjson`,
    /// `application/jsonl`, `application/x-jsonlines`.
    NdJson,
}

impl BodyKind {
    fn of(content_type: &str) -> Option<Self> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Some(Self::Json),
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines" => Some(Self::NdJson),
            e if e.starts_with("application/") && e.ends_with("+json") => Some(Self::Json),
            _ => None,
        }
    }
}

/// The kind of a body a route takes `accepted` kinds of; another type, or
/// none, is a 415 before the body is read. JSON routes refuse the types a
/// browser may send to another site without asking it first (`text/plain`,
/// forms): a page an employee opens cannot post to the service (CSRF).
pub fn body_kind(content_type: Option<&str>, accepted: &[BodyKind]) -> Result<BodyKind, ApiError> {
    let kind = content_type.and_then(BodyKind::of);
    match kind {
        Some(kind) if accepted.contains(&kind) => Ok(kind),
        _ => {
            let names = if accepted.contains(&BodyKind::NdJson) {
                "application/json or application/x-ndjson"
            } else {
                "application/json"
            };
            Err(ApiError::new(
                warp::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("the body must be {names} (Content-Type)"),
            )
            .with_field(
                "content-type",
                match content_type {
                    Some(given) => format!(
                        "{} is not accepted",
                        crate::limits::excerpt(given, crate::limits::ECHO_CHARS)
                    ),
                    None => "is required".to_owned(),
                },
            ))
        }
    }
}

/// A JSON body of at most `limit` bytes: 415 for another content type, 413
/// beyond the limit.
pub fn json_body(limit: u64) -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    typed_body(limit, &[BodyKind::Json]).map(|_, body| body)
}

/// A body of one of the `accepted` kinds, at most `limit` bytes, with its kind.
pub fn typed_body(
    limit: u64,
    accepted: &'static [BodyKind],
) -> impl Filter<Extract = (BodyKind, Bytes), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and_then(move |content_type: Option<String>| {
            let kind = body_kind(content_type.as_deref(), accepted);
            async move { kind.map_err(warp::reject::custom) }
        })
        .and(body_bytes(limit))
}

/// Parses a JSON body, reporting where it stopped making sense.
pub fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("invalid JSON body: {e}"))
            .with_field("line", e.line())
            .with_field("column", e.column())
    })
}

/// The raw query string, empty when there is none (warp rejects that case).
pub fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// The `after` and `limit` of a list paged by id: rows with an id above
/// `after` (default 0), at most `limit` (1 to 1000, default 100; another is a
/// 400 naming it).
pub fn page(after: Option<i64>, limit: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid limit").with_field("limit", "must be 1 to 1000"));
    }
    Ok((after.unwrap_or(0), limit))
}

/// Parses a query string into `T`, with the reason when it does not fit.
pub fn query<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    serde_urlencoded::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Paging {
        limit: u32,
    }

    #[test]
    fn json_errors_say_where() {
        let error = json::<serde_json::Value>(b"{\n  \"a\": }").unwrap_err();
        assert_eq!(error.code, "bad_request");
        assert_eq!(error.fields.unwrap()["line"], 2);
    }

    #[test]
    fn query_errors_are_bad_requests() {
        assert_eq!(query::<Paging>("limit=5").unwrap().limit, 5);
        assert_eq!(query::<Paging>("limit=x").unwrap_err().code, "bad_request");
        assert_eq!(query::<Paging>("other=1").unwrap_err().code, "bad_request");
    }

    #[test]
    fn json_routes_take_json_types_only() {
        let json = [BodyKind::Json];
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/merge-patch+json",
        ] {
            assert_eq!(
                body_kind(Some(ok), &json).ok(),
                Some(BodyKind::Json),
                "{ok}"
            );
        }
        for refused in [
            None,
            Some("text/plain"),
            Some("text/plain; charset=utf-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/x-ndjson"),
            Some("application/jsonx"),
            Some(""),
        ] {
            let error = body_kind(refused, &json).unwrap_err();
            assert_eq!(
                error.status,
                warp::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{refused:?}"
            );
        }
        let both = [BodyKind::Json, BodyKind::NdJson];
        assert_eq!(
            body_kind(Some("application/x-ndjson"), &both).ok(),
            Some(BodyKind::NdJson)
        );
        assert_eq!(
            body_kind(Some("application/jsonl"), &both).ok(),
            Some(BodyKind::NdJson)
        );
        assert!(body_kind(Some("text/plain"), &both).is_err());
    }

    #[tokio::test]
    async fn a_refused_type_is_refused_before_the_body_is_read() {
        let filter = json_body(8);
        let rejection = warp::test::request()
            .header("content-type", "text/plain")
            .body("far more than eight bytes")
            .filter(&filter)
            .await
            .unwrap_err();
        assert_eq!(
            rejection.find::<ApiError>().unwrap().status,
            warp::http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let filter = body_bytes(8);
        let ok = warp::test::request().body("12345678").filter(&filter).await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"12345678"));
        let too_large = warp::test::request()
            .body("123456789")
            .filter(&filter)
            .await;
        let rejection = too_large.unwrap_err();
        assert_eq!(
            rejection.find::<ApiError>().unwrap().status,
            warp::http::StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
