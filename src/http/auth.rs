//! Access to the routes: [`gate`] runs before any handler and checks the
//! access the route table declares for the request's route and method
//! against the request's bearer token (see `crate::access`). No token where
//! one is needed is 401 (with `WWW-Authenticate: Bearer`); an unknown token,
//! or one without the scope, is 403. [`origin`] names the caller of a change
//! for the audit trail.

use std::sync::Arc;

use warp::filters::path::FullPath;
use warp::http::{HeaderMap, Method};
use warp::{Filter, Rejection};

use super::error::ApiError;
use super::routes::{self, Access};
use super::State;
use crate::access::{Denied, Scope, Tokens};
use crate::audit::Origin;

/// Rejects a request its route and method do not allow, before its handler
/// runs. Requests that match no route or method pass through, for the
/// table's 404, 405 and OPTIONS answers.
pub fn gate(state: &State) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let tokens = Arc::clone(&state.tokens);
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and_then(move |method: Method, path: FullPath, headers: HeaderMap| {
            let decided = decide(&tokens, &method, path.as_str(), &headers);
            async move { decided.map_err(warp::reject::custom) }
        })
        .untuple_one()
}

/// The gate's decision, apart from warp.
fn decide(
    tokens: &Tokens,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(access) = routes::find(path).and_then(|p| p.route().access(method)) else {
        return Ok(());
    };
    let Access::Token(scope) = access else {
        return Ok(());
    };
    if scope >= Scope::Write && cross_site(method, headers) {
        // A page on another site made the browser send this: without tokens
        // (open mode) it would change data on the visitor's behalf.
        return Err(ApiError::forbidden(
            "cross-site requests may not change data (Sec-Fetch-Site: cross-site)",
        ));
    }
    let authorization = headers
        .get(warp::http::header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or(""));
    tokens
        .authorize(scope, authorization)
        .map(|_| ())
        .map_err(|denied| match denied {
            Denied::Missing(scope) => {
                ApiError::unauthorized(format!("this route needs a token with the {scope} scope"))
            }
            Denied::Forbidden(reason) => ApiError::forbidden(reason),
        })
}

/// Whether a browser says another site's page sent the request (Fetch
/// Metadata); a top-level GET navigation (a link followed) is let through.
fn cross_site(method: &Method, headers: &HeaderMap) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    header("sec-fetch-site") == "cross-site"
        && !(method == Method::GET && header("sec-fetch-mode") == "navigate")
}

/// Who asks for a change, by which method and route: where an audit row
/// starts. Only for routes the gate let through.
pub fn origin(state: &State) -> impl Filter<Extract = (Origin,), Error = Rejection> + Clone {
    let tokens = Arc::clone(&state.tokens);
    warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .map(
            move |method: Method, path: FullPath, authorization: Option<String>| {
                let caller = tokens.caller(authorization.as_deref());
                Origin {
                    token: caller.token,
                    method: method.as_str().to_owned(),
                    route: routes::find(path.as_str()).map_or("", |p| p.route().pattern),
                }
            },
        )
}

/// Whether a request's token has the admin scope (for what a read route
/// shows admins only, such as archive download links).
pub fn is_admin(tokens: &Tokens, authorization: Option<&str>) -> bool {
    authorization.is_some() && tokens.authorize(Scope::Admin, authorization).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::TokenDigest;
    use warp::http::StatusCode;

    fn tokens() -> Tokens {
        let read = format!("analyst:{}", TokenDigest::of("r").hex());
        let admin = format!("ops:{}", TokenDigest::of("a").hex());
        Tokens::new(
            None,
            [
                (Scope::Read, Some(read.as_str())),
                (Scope::Write, None),
                (Scope::Admin, Some(admin.as_str())),
            ],
            None,
        )
        .unwrap()
    }

    fn status(method: Method, path: &str, headers: &[(&'static str, &str)]) -> StatusCode {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        decide(&tokens(), &method, path, &map)
            .err()
            .map_or(StatusCode::OK, |e| e.status)
    }

    #[test]
    fn the_table_decides() {
        assert_eq!(status(Method::GET, "/healthz", &[]), StatusCode::OK);
        assert_eq!(status(Method::GET, "/jobs", &[]), StatusCode::UNAUTHORIZED);
        let reader = [("authorization", "Bearer r")];
        assert_eq!(status(Method::GET, "/jobs", &reader), StatusCode::OK);
        assert_eq!(
            status(Method::POST, "/imports", &reader),
            StatusCode::FORBIDDEN
        );
        let admin = [("authorization", "Bearer a")];
        assert_eq!(status(Method::POST, "/imports", &admin), StatusCode::OK);
        // Not in the table, or another method: the fallback answers.
        assert_eq!(status(Method::GET, "/nowhere", &[]), StatusCode::OK);
        assert_eq!(status(Method::PUT, "/jobs", &[]), StatusCode::OK);
        assert_eq!(status(Method::OPTIONS, "/jobs", &[]), StatusCode::OK);
    }

    #[test]
    fn cross_site_changes_are_refused_even_with_a_token() {
        let headers = [
            ("authorization", "Bearer a"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert_eq!(
            status(Method::POST, "/imports", &headers),
            StatusCode::FORBIDDEN
        );
        // Reads, and links followed (navigations), are not changes by a page.
        assert_eq!(status(Method::GET, "/jobs", &headers), StatusCode::OK);
        let followed = [
            ("authorization", "Bearer a"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-mode", "navigate"),
        ];
        assert_eq!(
            status(Method::GET, "/confirm/x.y", &followed),
            StatusCode::OK
        );
        let same_origin = [
            ("authorization", "Bearer a"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(
            status(Method::POST, "/imports", &same_origin),
            StatusCode::OK
        );
    }
}
