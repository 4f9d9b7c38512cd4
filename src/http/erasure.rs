//! Erasure: `DELETE /imports/{id}` and `DELETE /imports/{import_id}/citizens/{citizen_id}`
//! (admin). The domain (`crate::erasure`) does the work; this maps it.

use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::error::{respond, ApiError};
use super::routes::{route, PathParams};
use super::schema::{Data, ErrorBody};
use super::{auth, data, with_state, State};
use crate::audit::Origin;
use crate::erasure::{self, ErasedCitizen, ErasedImport, ErasureError};

pub fn routes(state: &State) -> BoxedFilter<(Response,)> {
    let import = route("/imports/{id}", Method::DELETE)
        .and(auth::origin(state))
        .and(with_state(state))
        .then(erase_import)
        .map(respond);
    let citizen = route("/imports/{import_id}/citizens/{citizen_id}", Method::DELETE)
        .and(auth::origin(state))
        .and(with_state(state))
        .then(erase_citizen)
        .map(respond);
    import.or(citizen).unify().boxed()
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(erase_import, erase_citizen),
    components(schemas(ErasedImport, ErasedCitizen)),
    tags((name = "erasure", description = "Erasing an import or one resident (GDPR art. 17)"))
)]
pub(super) struct Api;

impl From<ErasureError> for ApiError {
    fn from(error: ErasureError) -> Self {
        match error {
            ErasureError::ImportNotFound(_) | ErasureError::CitizenNotFound { .. } => {
                ApiError::not_found(error.to_string())
            }
            ErasureError::Db(error) => error.into(),
            ErasureError::Jobs(error) => error.into(),
        }
    }
}

/// Erases an import: its residents, their statements, the counts, dead
/// letters and kept answers; stops and removes its job, deletes its topic
/// and its archive objects. PostgreSQL's part is one transaction (audited in
/// it); the topic and the archive go after it, and the answer says if they
/// could not (see docs/access.md, for what cannot be erased).
#[utoipa::path(
    delete,
    path = "/imports/{id}",
    tag = "erasure",
    params(("id" = i64, Path, description = "The import")),
    responses(
        (status = 200, description = "Erased; what was removed", body = Data<ErasedImport>),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 404, description = "No such import", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn erase_import(
    params: PathParams,
    origin: Origin,
    state: State,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("id")?;
    let erased = erasure::erase_import(
        &state.pool,
        &state.supervisor,
        &state.kafka,
        import_id,
        &origin,
    )
    .await?;
    state.citizens.forget(import_id);
    Ok(data(StatusCode::OK, &erased))
}

/// Erases one resident: their row, their place in their relatives' lists
/// (the relation stays symmetric), their statements, counts and dead
/// letters, in one transaction (audited in it). The import's job is stopped
/// meanwhile and started again, so it refuses the resident's statements
/// from then on.
#[utoipa::path(
    delete,
    path = "/imports/{import_id}/citizens/{citizen_id}",
    tag = "erasure",
    params(
        ("import_id" = i64, Path, description = "The import"),
        ("citizen_id" = i64, Path, description = "The resident"),
    ),
    responses(
        (status = 200, description = "Erased; what was removed", body = Data<ErasedCitizen>),
        (status = 400, description = "A path parameter is not an integer", body = ErrorBody),
        (status = 404, description = "No such import or resident", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    )
)]
async fn erase_citizen(
    params: PathParams,
    origin: Origin,
    state: State,
) -> Result<Response, ApiError> {
    let import_id: i64 = params.get("import_id")?;
    let citizen_id: i64 = params.get("citizen_id")?;
    let erased = erasure::erase_citizen(
        &state.pool,
        &state.supervisor,
        import_id,
        citizen_id,
        &origin,
    )
    .await?;
    Ok(data(StatusCode::OK, &erased))
}
