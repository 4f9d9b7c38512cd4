//! How answers show the groups `crate::privacy` left out: JSON bodies are
//! `{"data": rows, "suppressed": n}`; CSV and SVG answers carry the count in
//! the `Insikt-Suppressed` header. For a route that counts people:
//!
//! ```ignore
//! let kept = state.config.min_group_size().apply(rows, |r| r.population);
//! Ok(suppressed::json(&kept.rows, kept.suppressed))          // JSON
//! suppressed::mark(&mut csv_response, kept.suppressed);      // CSV, SVG
//! ```

use serde::Serialize;
use warp::http::header::HeaderValue;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// The response header of CSV and SVG answers.
pub const HEADER: &str = "insikt-suppressed";

/// `{"data": …, "suppressed": n}`: the success envelope of an answer whose
/// groups are subject to `INSIKT_MIN_GROUP_SIZE`; also its OpenAPI schema.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Suppressed<T> {
    pub data: T,
    /// Groups left out for having fewer residents than `INSIKT_MIN_GROUP_SIZE`.
    pub suppressed: usize,
}

/// The JSON answer (200).
pub fn json<T: Serialize>(rows: &T, suppressed: usize) -> Response {
    let body = Suppressed {
        data: rows,
        suppressed,
    };
    warp::reply::with_status(warp::reply::json(&body), StatusCode::OK).into_response()
}

/// Adds the count to a CSV or SVG answer.
pub fn mark(response: &mut Response, suppressed: usize) {
    response
        .headers_mut()
        .insert(HEADER, HeaderValue::from(suppressed));
}
