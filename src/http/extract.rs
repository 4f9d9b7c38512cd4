//! Request extractors whose failures become proper API errors: bodies under
//! the configured limit (with or without Content-Length), JSON and query
//! strings parsed with messages that say what was wrong.

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
