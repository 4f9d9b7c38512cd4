//! The course catalogue: `GET /courses`, `PUT` and `DELETE /courses/{course}`.

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::auth;
use super::error::{respond, ApiError};
use super::extract::{json, json_body};
use super::routes::{route, PathParams};
use super::schema::{Data, ErrorBody};
use super::{data, with_state, State};
use crate::audit::Origin;
use crate::insights::courses::{self, Course, CourseError, CoursePut};

/// A catalogue entry's body is a title and a flag.
const BODY_LIMIT: u64 = 16 * 1024;

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let list = route("/courses", Method::GET)
        .and(with_state(state))
        .then(|_: PathParams, state: State| list(state))
        .map(respond);
    let put = route("/courses/{course}", Method::PUT)
        .and(json_body(BODY_LIMIT))
        .and(auth::origin(state))
        .and(with_state(state))
        .then(put)
        .map(respond);
    let delete = route("/courses/{course}", Method::DELETE)
        .and(auth::origin(state))
        .and(with_state(state))
        .then(delete)
        .map(respond);
    list.or(put).unify().or(delete).unify().boxed()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, put, delete),
    components(schemas(Course, CoursePut)),
    tags((name = "courses", description = "The course catalogue: courses on offer; any other course asked for is new"))
)]
pub(super) struct Api;

impl From<CourseError> for ApiError {
    fn from(error: CourseError) -> Self {
        match error {
            CourseError::Invalid(e) => {
                ApiError::validation(e.to_string()).with_field(e.field, e.reason)
            }
            CourseError::Db(e) => e.into(),
        }
    }
}

/// The catalogue, by course name.
#[utoipa::path(
    get,
    path = "/courses",
    tag = "courses",
    responses(
        (status = 200, description = "Every course of the catalogue", body = Data<Vec<Course>>),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn list(state: State) -> Result<Response, ApiError> {
    Ok(data(StatusCode::OK, &courses::list(&state.pool).await?))
}

/// Adds a course to the catalogue, or replaces its title and whether it is
/// offered.
#[utoipa::path(
    put,
    path = "/courses/{course}",
    tag = "courses",
    params(("course" = String, Path, description = "The course as statements name it (1 to 256 bytes)")),
    request_body = CoursePut,
    responses(
        (status = 201, description = "Added; `Location` names it", body = Data<Course>,
            headers(("Location" = String, description = "`/courses/{course}`"))),
        (status = 200, description = "Replaced", body = Data<Course>),
        (status = 400, description = "A body or course that breaks the rules; `fields` names it", body = ErrorBody),
        (status = 413, description = "A body over 16 KiB", body = ErrorBody),
        (status = 415, description = "A body that is not `application/json`", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn put(
    params: PathParams,
    body: Bytes,
    origin: Origin,
    state: State,
) -> Result<Response, ApiError> {
    let name: String = params.get("course")?;
    let put: CoursePut = json(&body)?;
    let (course, created) = courses::put(&state.pool, &name, &put, &origin).await?;
    if !created {
        return Ok(data(StatusCode::OK, &course));
    }
    Ok(super::created("/courses", &course.course, &course))
}

/// Removes a course from the catalogue (it is then new wherever asked for).
#[utoipa::path(
    delete,
    path = "/courses/{course}",
    tag = "courses",
    params(("course" = String, Path, description = "The course")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not a valid course name", body = ErrorBody),
        (status = 404, description = "No such course in the catalogue", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn delete(params: PathParams, origin: Origin, state: State) -> Result<Response, ApiError> {
    let name: String = params.get("course")?;
    if courses::delete(&state.pool, &name, &origin).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "no course {name:?} in the catalogue"
        )))
    }
}
