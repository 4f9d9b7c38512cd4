//! The route table: the single list of paths, methods and who may call them.
//!
//! It drives dispatch (every handler filter is built with [`route`], which
//! matches a request against the table and refuses patterns or methods the
//! table does not declare), access (each method of each route names the
//! [`Access`] it needs: `http::auth::gate` checks it before any handler
//! runs, so a route cannot be served without a declared scope), and the
//! generic answers: `OPTIONS` with `Allow`, 405 with `Allow` for a known path
//! and another method, 404 otherwise.

use std::str::FromStr;

use warp::filters::path::FullPath;
use warp::http::header::ALLOW;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use crate::access::Scope;

/// Who may call a route's method: anyone, or a caller with a token of the
/// scope (or a higher one; in open mode `read` and `write` need none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Token(Scope),
}

/// Liveness, metrics, the API document and the console's static files.
pub const PUBLIC: Access = Access::Public;
/// Every read of data (citizens, demand, airports, jobs...).
pub const READ: Access = Access::Token(Scope::Read);
/// Every change of data, and what prepares one (confirmation links).
pub const WRITE: Access = Access::Token(Scope::Write);
/// Job control, archives, profiles, the audit trail and erasure.
pub const ADMIN: Access = Access::Token(Scope::Admin);

/// One path pattern (`{name}` marks a parameter segment) and its methods,
/// each with the access it needs.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub pattern: &'static str,
    pub methods: &'static [(Method, Access)],
}

const fn route_entry(pattern: &'static str, methods: &'static [(Method, Access)]) -> Route {
    Route { pattern, methods }
}

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// Every route of the service. Literal segments win over parameters, so
/// `/airports/near` is never taken for `/airports/{id}`. A new route names
/// the access of each of its methods here; `tests/access.rs` walks this
/// table with no token, a lower scope and the right one.
pub static ROUTES: &[Route] = &[
    route_entry("/healthz", &[(GET, PUBLIC)]),
    route_entry("/readyz", &[(GET, PUBLIC)]),
    route_entry("/imports/{id}/statements", &[(POST, WRITE)]),
    route_entry("/imports/{id}/dead-letters", &[(GET, READ)]),
    route_entry("/jobs", &[(GET, READ)]),
    route_entry("/jobs/{name}", &[(GET, READ)]),
    route_entry("/jobs/{name}/stop", &[(POST, ADMIN)]),
    route_entry("/jobs/{name}/start", &[(POST, ADMIN)]),
    // The listing is a read; download links are shown to admins only.
    route_entry("/jobs/{name}/archives", &[(GET, READ)]),
    route_entry("/jobs/{name}/archives/{partition}/{from}", &[(GET, ADMIN)]),
    route_entry("/imports/{id}/replay", &[(POST, ADMIN)]),
    // Airports, then the seed's bare aliases for them. A confirmation link
    // is a change waiting to happen: issuing one needs `write`, as does the
    // soft delete the seed does by GET.
    route_entry("/airports", &[(GET, READ), (PUT, WRITE)]),
    route_entry("/airports/upload", &[(POST, WRITE)]),
    route_entry("/airports/near", &[(GET, READ)]),
    route_entry("/airports/create", &[(GET, WRITE)]),
    route_entry(
        "/airports/{id}",
        &[(GET, READ), (PATCH, WRITE), (DELETE, WRITE)],
    ),
    route_entry("/airports/{id}/update", &[(GET, WRITE)]),
    route_entry("/airports/{id}/delete", &[(GET, WRITE)]),
    route_entry("/upload", &[(POST, WRITE)]),
    route_entry("/create", &[(GET, WRITE), (PUT, WRITE)]),
    route_entry("/update", &[(GET, WRITE), (PATCH, WRITE)]),
    route_entry("/delete", &[(GET, WRITE), (DELETE, WRITE)]),
    route_entry("/confirm/{token}", &[(GET, WRITE), (POST, WRITE)]),
    route_entry("/imports/{id}/demand", &[(GET, READ)]),
    route_entry("/imports/{id}/demand.svg", &[(GET, READ)]),
    route_entry("/imports/{id}/insights/rates", &[(GET, READ)]),
    route_entry("/imports/{id}/insights/trend", &[(GET, READ)]),
    route_entry("/imports/{id}/insights/emerging", &[(GET, READ)]),
    route_entry("/imports/{id}/insights/opportunities", &[(GET, READ)]),
    route_entry("/imports/{id}/insights/near", &[(GET, READ)]),
    route_entry("/imports/{id}/insights/map.svg", &[(GET, READ)]),
    route_entry("/courses", &[(GET, READ)]),
    route_entry("/courses/{course}", &[(PUT, WRITE), (DELETE, WRITE)]),
    route_entry("/imports", &[(POST, WRITE)]),
    route_entry("/imports/{id}", &[(DELETE, ADMIN)]),
    route_entry("/imports/{import_id}/citizens", &[(GET, READ)]),
    route_entry(
        "/imports/{import_id}/citizens/{citizen_id}",
        &[(PATCH, WRITE), (DELETE, ADMIN)],
    ),
    route_entry("/imports/{import_id}/citizens/birthdays", &[(GET, READ)]),
    route_entry(
        "/imports/{import_id}/towns/stat/percentile/age",
        &[(GET, READ)],
    ),
    route_entry("/imports/{id}/towns/airports", &[(GET, READ)]),
    route_entry("/towns", &[(GET, READ)]),
    route_entry("/towns/{name}", &[(PUT, WRITE), (DELETE, WRITE)]),
    route_entry("/audit", &[(GET, ADMIN)]),
    route_entry("/metrics", &[(GET, PUBLIC)]),
    route_entry("/debug/pprof/profile", &[(GET, ADMIN)]),
    route_entry("/debug/pprof/heap", &[(GET, ADMIN)]),
    route_entry("/openapi.json", &[(GET, PUBLIC)]),
    route_entry("/docs", &[(GET, PUBLIC)]),
    // Where most Swagger UIs live; the same page.
    route_entry("/docs/", &[(GET, PUBLIC)]),
    route_entry("/docs/{file}", &[(GET, PUBLIC)]),
    route_entry("/console", &[(GET, PUBLIC)]),
    route_entry("/console/{file}", &[(GET, PUBLIC)]),
];

/// The routes that need no token: anything else public fails
/// `routes::tests::only_the_operational_routes_are_public`.
pub const PUBLIC_ROUTES: [&str; 9] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/",
    "/docs/{file}",
    "/console",
    "/console/{file}",
];

impl Route {
    /// The methods this route serves.
    pub fn methods(&self) -> impl Iterator<Item = &'static Method> {
        self.methods.iter().map(|(method, _)| method)
    }

    /// What `method` needs on this route; `None` when it is not served.
    pub fn access(&self, method: &Method) -> Option<Access> {
        self.methods
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, access)| *access)
    }

    /// The `Allow` header value: the served methods, then OPTIONS.
    pub fn allow(&self) -> String {
        let mut allow: Vec<&str> = self.methods().map(Method::as_str).collect();
        allow.push("OPTIONS");
        allow.join(", ")
    }

    /// Matches `path` and returns one flag per segment (true = literal), or
    /// `None` when it does not match.
    fn match_path(&self, path: &str) -> Option<(Vec<bool>, Vec<String>)> {
        let mut pattern_segments = self.pattern.split('/');
        let mut path_segments = path.split('/');
        let mut literal = Vec::new();
        let mut values = Vec::new();
        loop {
            match (pattern_segments.next(), path_segments.next()) {
                (None, None) => return Some((literal, values)),
                (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') => {
                    if s.is_empty() {
                        return None;
                    }
                    let value = percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .ok()?
                        .into_owned();
                    literal.push(false);
                    values.push(value);
                }
                (Some(p), Some(s)) if p == s => literal.push(true),
                _ => return None,
            }
        }
    }

    fn param_names(&self) -> impl Iterator<Item = &'static str> {
        self.pattern
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }
}

/// The values of a matched route's `{name}` segments, percent-decoded.
#[derive(Debug, Clone)]
pub struct PathParams {
    route: &'static Route,
    values: Vec<String>,
}

impl PathParams {
    /// The raw value of parameter `name`.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.route
            .param_names()
            .position(|n| n == name)
            .map(|i| self.values[i].as_str())
    }

    /// Parameter `name` parsed as `T`; a value that does not parse, or holds
    /// a NUL character (which no stored name holds and PostgreSQL refuses as
    /// a parameter), is a 400 naming the parameter (never a 500).
    pub fn get<T: FromStr>(&self, name: &str) -> Result<T, ApiError> {
        let raw = self
            .raw(name)
            .ok_or_else(|| ApiError::internal(&format_args!("route has no parameter {name}")))?;
        if raw.contains('\0') {
            return Err(
                ApiError::bad_request(format!("path parameter {name} is not valid"))
                    .with_field(name, "must not contain NUL characters"),
            );
        }
        raw.parse().map_err(|_| {
            ApiError::bad_request(format!("path parameter {name} is not valid")).with_field(
                name,
                format!(
                    "{} is not a valid {name}",
                    crate::limits::excerpt(raw, crate::limits::ECHO_CHARS)
                ),
            )
        })
    }

    pub fn route(&self) -> &'static Route {
        self.route
    }
}

/// The table's best match for `path`: among matching routes, the one whose
/// first differing segment is literal.
pub fn find(path: &str) -> Option<PathParams> {
    ROUTES
        .iter()
        .filter_map(|route| {
            route
                .match_path(path)
                .map(|(literal, values)| (literal, route, values))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, route, values)| PathParams { route, values })
}

/// A filter accepting `method` on the table route `pattern`, extracting its
/// parameters.
///
/// # Panics
/// When the table does not declare `pattern` with `method`: a programming
/// error, caught by building the router in any test.
pub fn route(
    pattern: &'static str,
    method: Method,
) -> impl Filter<Extract = (PathParams,), Error = Rejection> + Clone {
    let declared = ROUTES
        .iter()
        .find(|r| r.pattern == pattern)
        .unwrap_or_else(|| panic!("route {pattern} is not in the route table"));
    assert!(
        declared.access(&method).is_some(),
        "route {pattern} does not declare {method} in the route table"
    );
    warp::method().and(warp::path::full()).and_then(
        move |request_method: Method, path: FullPath| {
            let matched = (request_method == method)
                .then(|| find(path.as_str()))
                .flatten()
                .filter(|params| params.route.pattern == pattern);
            async move { matched.ok_or_else(warp::reject::not_found) }
        },
    )
}

/// The last branch of the router: OPTIONS, 405 and 404 from the table.
pub fn fallback() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and_then(|method: Method, path: FullPath| async move {
            let Some(params) = find(path.as_str()) else {
                return Ok(
                    ApiError::not_found(format!("no route {}", path.as_str())).into_response()
                );
            };
            let route = params.route;
            if method == Method::OPTIONS {
                let reply = warp::reply::with_header(StatusCode::NO_CONTENT, ALLOW, route.allow());
                return Ok(reply.into_response());
            }
            if route.access(&method).is_none() {
                return Ok(ApiError::method_not_allowed(&route.allow()).into_response());
            }
            // A served method whose handler filter rejected (e.g. body too large):
            // let that rejection speak.
            Err(warp::reject::not_found())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert!(route.pattern.starts_with('/'), "{}", route.pattern);
            assert!(seen.insert(route.pattern), "duplicate {}", route.pattern);
            assert!(
                !route.methods.is_empty(),
                "{} serves nothing",
                route.pattern
            );
            assert!(route.access(&Method::OPTIONS).is_none());
            let methods: Vec<&Method> = route.methods().collect();
            let mut unique = methods.clone();
            unique.dedup();
            assert_eq!(methods, unique, "{} lists a method twice", route.pattern);
        }
    }

    #[test]
    fn only_the_operational_routes_are_public() {
        for route in ROUTES {
            for (method, access) in route.methods {
                assert_eq!(
                    *access == PUBLIC,
                    PUBLIC_ROUTES.contains(&route.pattern),
                    "{method} {}: only liveness, metrics, the docs and the console's \
                     files need no token; any other route names read, write or admin",
                    route.pattern
                );
            }
        }
    }

    #[test]
    fn reads_are_gets_and_changes_are_not_reads() {
        for route in ROUTES {
            for (method, access) in route.methods {
                if *access == READ {
                    assert_eq!(*method, Method::GET, "{}", route.pattern);
                }
                if *method != Method::GET {
                    assert_ne!(*access, READ, "{method} {} changes data", route.pattern);
                    assert_ne!(*access, PUBLIC, "{method} {}", route.pattern);
                }
            }
        }
    }

    #[test]
    fn allow_lists_methods_then_options() {
        let route = route_entry("/x/{id}", &[(GET, READ), (PATCH, WRITE)]);
        assert_eq!(route.allow(), "GET, PATCH, OPTIONS");
    }

    #[test]
    fn literal_segments_beat_parameters() {
        let by_id = route_entry("/things/{id}", &[(GET, READ)]);
        let near = route_entry("/things/near", &[(GET, READ)]);
        let (a, _) = by_id.match_path("/things/near").unwrap();
        let (b, _) = near.match_path("/things/near").unwrap();
        assert!(b > a);
    }

    #[test]
    fn parameters_are_decoded_and_never_empty() {
        let route = route_entry("/things/{id}/parts/{part}", &[(GET, READ)]);
        let (_, values) = route.match_path("/things/a%20b/parts/7").unwrap();
        assert_eq!(values, ["a b", "7"]);
        assert!(route.match_path("/things//parts/7").is_none());
        assert!(route.match_path("/things/1/parts").is_none());
        assert!(route.match_path("/things/1/parts/7/more").is_none());
        let params = PathParams {
            route: Box::leak(Box::new(route)),
            values,
        };
        assert_eq!(params.raw("part"), Some("7"));
        assert_eq!(params.get::<i64>("part").unwrap(), 7);
        assert_eq!(
            params.get::<i64>("id").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        let (_, values) = route.match_path("/things/a%00b/parts/7").unwrap();
        let params = PathParams {
            route: params.route,
            values,
        };
        let error = params.get::<String>("id").unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.fields.unwrap().contains_key("id"));
    }

    #[test]
    fn unknown_paths_match_nothing() {
        assert!(find("/no/such/route").is_none());
        assert!(find("/healthz/").is_none());
        assert_eq!(find("/healthz").unwrap().route.pattern, "/healthz");
        assert_eq!(find("/docs/").unwrap().route.pattern, "/docs/");
    }
}
