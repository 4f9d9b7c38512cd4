//! The one place where errors become HTTP responses.
//!
//! Every error body is `{"error":{"code","message","fields"?}}`. Internal
//! details (SQL, stack traces, broker messages) are logged, never sent.

use std::convert::Infallible;

use serde::Serialize;
use serde_json::{Map, Value};
use warp::http::header::{HeaderName, HeaderValue, ALLOW};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::db::DbError;

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Option<Map<String, Value>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The error envelope of every route; also its OpenAPI schema `Error`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorDetail)]
struct Inner<'a> {
    /// Stable machine-readable code, e.g. `validation_failed`, `not_found`.
    #[schema(example = "validation_failed")]
    code: &'a str,
    /// Human-readable explanation.
    message: &'a str,
    /// Where the problem is (field names, line numbers, failing
    /// dependencies), when it helps.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object, nullable = false)]
    fields: Option<&'a Map<String, Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: None,
            headers: Vec::new(),
        }
    }

    /// Adds one entry to `fields` (a field name, a line number, a citizen...).
    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields
            .get_or_insert_with(Map::new)
            .insert(name.into(), value.into());
        self
    }

    pub fn with_fields(mut self, fields: Map<String, Value>) -> Self {
        self.fields = Some(fields);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// Input that parsed but broke a rule; `fields` says where.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_failed", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            .with_header(warp::http::header::WWW_AUTHENTICATE, "Bearer")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn method_not_allowed(allow: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("this route serves {allow}"),
        )
        .with_header(ALLOW, allow)
    }

    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// A failure that is ours, not the client's: logged in full, reported blandly.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the service log",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl warp::reject::Reject for ApiError {}

/// Largest error body, in bytes: whatever a request sent, its error answer
/// stays small (values it echoes are cut first, then fields dropped).
pub const MAX_ERROR_BODY: usize = 64 * 1024;
/// Most entries of `fields` an error body shows.
const MAX_FIELDS: usize = 100;

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let mut response = warp::reply::with_status(
            warp::reply::with_header(
                bounded_body(self.code, &self.message, self.fields.as_ref()),
                warp::http::header::CONTENT_TYPE,
                "application/json",
            ),
            self.status,
        )
        .into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// The error body, at most [`MAX_ERROR_BODY`] bytes: strings are cut to
/// shorter and shorter lengths until it fits, then `fields` is dropped.
fn bounded_body(code: &str, message: &str, fields: Option<&Map<String, Value>>) -> Vec<u8> {
    let mut max_chars = 1024;
    loop {
        let cut_fields: Option<Map<String, Value>> = fields.map(|fields| {
            let shown = fields.iter().take(MAX_FIELDS);
            let mut cut: Map<String, Value> = shown
                .map(|(k, v)| (cut_str(k, max_chars.min(256)), cut_value(v, max_chars)))
                .collect();
            if fields.len() > MAX_FIELDS {
                cut.insert(
                    "more".to_owned(),
                    Value::String(format!("{} more not shown", fields.len() - MAX_FIELDS)),
                );
            }
            cut
        });
        let message = cut_str(message, max_chars);
        let body = Body {
            error: Inner {
                code,
                message: &message,
                fields: cut_fields.as_ref(),
            },
        };
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        if bytes.len() <= MAX_ERROR_BODY {
            return bytes;
        }
        if max_chars > 16 {
            max_chars /= 4;
            continue;
        }
        let body = Body {
            error: Inner {
                code,
                message: &message,
                fields: None,
            },
        };
        return serde_json::to_vec(&body).unwrap_or_default();
    }
}

fn cut_str(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Every string in `value` cut to `max_chars`, arrays and objects to
/// [`MAX_FIELDS`] entries (nesting is shallow in error bodies).
fn cut_value(value: &Value, max_chars: usize) -> Value {
    match value {
        Value::String(s) => Value::String(cut_str(s, max_chars)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .take(MAX_FIELDS)
                .map(|v| cut_value(v, max_chars))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .take(MAX_FIELDS)
                .map(|(k, v)| (cut_str(k, max_chars.min(256)), cut_value(v, max_chars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(%error, "database unavailable");
            Self::unavailable("database_unavailable", "the database is unavailable")
        } else {
            Self::internal(&error)
        }
    }
}

/// Turns a handler's result into a response.
pub fn respond<R: Reply>(result: Result<R, ApiError>) -> Response {
    match result {
        Ok(reply) => reply.into_response(),
        Err(error) => error.into_response(),
    }
}

/// Maps rejections from warp's own filters (and ours) to the error body.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject::{
        InvalidHeader, InvalidQuery, LengthRequired, MissingHeader, PayloadTooLarge,
        UnsupportedMediaType,
    };

    let error = if let Some(error) = rejection.find::<ApiError>() {
        ApiError {
            status: error.status,
            code: error.code,
            message: error.message.clone(),
            fields: error.fields.clone(),
            headers: error.headers.clone(),
        }
    } else if rejection.is_not_found() {
        ApiError::not_found("no such route")
    } else if rejection.find::<PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else if rejection.find::<LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "a Content-Length header is required",
        )
    } else if rejection.find::<UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "unsupported content type",
        )
    } else if rejection.find::<InvalidQuery>().is_some() {
        ApiError::bad_request("invalid query string")
    } else if let Some(missing) = rejection.find::<MissingHeader>() {
        ApiError::bad_request(format!("missing header {}", missing.name()))
    } else if let Some(invalid) = rejection.find::<InvalidHeader>() {
        ApiError::bad_request(format!("invalid header {}", invalid.name()))
    } else {
        ApiError::internal(&format_args!("unhandled rejection: {rejection:?}"))
    };
    Ok(error.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use warp::Filter;

    async fn render(make: fn() -> ApiError) -> (StatusCode, Value) {
        let filter = warp::any().map(move || make().into_response());
        let response = warp::test::request().reply(&filter).await;
        (
            response.status(),
            serde_json::from_slice(response.body()).unwrap(),
        )
    }

    #[tokio::test]
    async fn error_body_has_code_message_and_optional_fields() {
        let (status, body) = render(|| {
            ApiError::validation("bad citizen").with_field("citizens[3].name", "must not be empty")
        })
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["message"], "bad citizen");
        assert_eq!(
            body["error"]["fields"]["citizens[3].name"],
            "must not be empty"
        );

        let (_, body) = render(|| ApiError::not_found("nope")).await;
        assert!(body["error"].get("fields").is_none());
    }

    #[tokio::test]
    async fn error_bodies_stay_under_64_kib_whatever_they_echo() {
        let (status, body) = render(|| {
            let huge = "\u{1}".repeat(20_000);
            let mut error = ApiError::validation(format!("bad: {huge}"));
            for i in 0..500 {
                error = error.with_field(format!("[{i}].{huge}"), huge.clone());
            }
            error.with_field("list", json!([{"line": 1, "reason": "x".repeat(100_000)}]))
        })
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let text = body.to_string();
        assert!(text.len() <= MAX_ERROR_BODY, "{} bytes", text.len());
        assert_eq!(body["error"]["code"], "validation_failed");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("bad: "));

        // Small errors are untouched.
        let (_, body) = render(|| ApiError::validation("short").with_field("a", "b")).await;
        assert_eq!(
            body,
            json!({"error": {"code": "validation_failed", "message": "short", "fields": {"a": "b"}}})
        );
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let (status, body) =
            render(|| ApiError::internal(&"relation \"secret_table\" does not exist")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("secret_table"));
    }
}
