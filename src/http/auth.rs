//! The admin token: `Authorization: Bearer <INSIKT_ADMIN_TOKEN>` guards the
//! admin routes. No credentials is 401 (with `WWW-Authenticate: Bearer`);
//! wrong credentials, or no token configured, is 403.

use warp::{Filter, Rejection};

use super::error::ApiError;
use super::State;

/// Passes requests that carry the configured admin token, rejects the others
/// with the error body. Put it after the route filter so other routes are not
/// affected: `route(p, Method::GET).and(auth::admin(state))`.
pub fn admin(state: &State) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let expected = state.config.admin_token.clone();
    warp::header::optional::<String>("authorization")
        .and_then(move |header: Option<String>| {
            let result = check(expected.as_deref(), header.as_deref());
            async move { result.map_err(warp::reject::custom) }
        })
        .untuple_one()
}

/// The decision, apart from warp.
pub fn check(expected: Option<&str>, authorization: Option<&str>) -> Result<(), ApiError> {
    let Some(authorization) = authorization else {
        return Err(ApiError::unauthorized("this route needs the admin token"));
    };
    let given = authorization
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match (expected, given) {
        (Some(expected), Some(given)) if !expected.is_empty() && same(expected, given) => Ok(()),
        (None, _) | (Some(""), _) => Err(ApiError::forbidden(
            "admin routes are disabled: no admin token is configured",
        )),
        _ => Err(ApiError::forbidden("wrong admin token")),
    }
}

/// Compares without an early exit, so timing does not tell how much matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::StatusCode;

    #[test]
    fn missing_is_401_wrong_or_unconfigured_is_403() {
        let status = |expected, given| check(expected, given).map_err(|e| e.status);
        assert_eq!(status(Some("s3cret"), Some("Bearer s3cret")), Ok(()));
        assert_eq!(status(Some("s3cret"), Some("bearer  s3cret")), Ok(()));
        assert_eq!(status(Some("s3cret"), None), Err(StatusCode::UNAUTHORIZED));
        assert_eq!(status(None, None), Err(StatusCode::UNAUTHORIZED));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "Basic s3cret",
            "s3cret",
            "Bearer ",
        ] {
            assert_eq!(
                status(Some("s3cret"), Some(wrong)),
                Err(StatusCode::FORBIDDEN),
                "{wrong}"
            );
        }
        assert_eq!(status(None, Some("Bearer x")), Err(StatusCode::FORBIDDEN));
        assert_eq!(
            status(Some(""), Some("Bearer ")),
            Err(StatusCode::FORBIDDEN)
        );
    }
}
