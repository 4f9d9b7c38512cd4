//! The route table: the single list of paths and methods this service serves.
//!
//! It drives dispatch (every handler filter is built with [`route`], which
//! matches a request against the table and refuses patterns or methods the
//! table does not declare) and the generic answers: `OPTIONS` with `Allow`,
//! 405 with `Allow` for a known path and another method, 404 otherwise.

use std::str::FromStr;

use warp::filters::path::FullPath;
use warp::http::header::ALLOW;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;

/// One path pattern (`{name}` marks a parameter segment) and its methods.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub pattern: &'static str,
    pub methods: &'static [Method],
}

const fn route_entry(pattern: &'static str, methods: &'static [Method]) -> Route {
    Route { pattern, methods }
}

/// Every route of the service. Literal segments win over parameters, so
/// `/airports/near` is never taken for `/airports/{id}`.
pub static ROUTES: &[Route] = &[
    route_entry("/healthz", &[Method::GET]),
    route_entry("/readyz", &[Method::GET]),
    route_entry("/imports/{id}/statements", &[Method::POST]),
    route_entry("/imports/{id}/dead-letters", &[Method::GET]),
    route_entry("/jobs", &[Method::GET]),
    route_entry("/jobs/{name}", &[Method::GET]),
    route_entry("/jobs/{name}/stop", &[Method::POST]),
    route_entry("/jobs/{name}/start", &[Method::POST]),
    route_entry("/jobs/{name}/archives", &[Method::GET]),
    route_entry("/jobs/{name}/archives/{partition}/{from}", &[Method::GET]),
    route_entry("/imports/{id}/replay", &[Method::POST]),
    // Airports, then the seed's bare aliases for them.
    route_entry("/airports", &[Method::GET, Method::PUT]),
    route_entry("/airports/upload", &[Method::POST]),
    route_entry("/airports/near", &[Method::GET]),
    route_entry("/airports/create", &[Method::GET]),
    route_entry(
        "/airports/{id}",
        &[Method::GET, Method::PATCH, Method::DELETE],
    ),
    route_entry("/airports/{id}/update", &[Method::GET]),
    route_entry("/airports/{id}/delete", &[Method::GET]),
    route_entry("/upload", &[Method::POST]),
    route_entry("/create", &[Method::GET, Method::PUT]),
    route_entry("/update", &[Method::GET, Method::PATCH]),
    route_entry("/delete", &[Method::GET, Method::DELETE]),
    route_entry("/confirm/{token}", &[Method::GET, Method::POST]),
    route_entry("/imports/{id}/demand", &[Method::GET]),
    route_entry("/imports/{id}/demand.svg", &[Method::GET]),
    route_entry("/imports/{id}/insights/rates", &[Method::GET]),
    route_entry("/imports/{id}/insights/trend", &[Method::GET]),
    route_entry("/imports/{id}/insights/emerging", &[Method::GET]),
    route_entry("/imports/{id}/insights/near", &[Method::GET]),
    route_entry("/imports/{id}/insights/map.svg", &[Method::GET]),
    route_entry("/courses", &[Method::GET]),
    route_entry("/courses/{course}", &[Method::PUT, Method::DELETE]),
    route_entry("/imports", &[Method::POST]),
    route_entry("/imports/{import_id}/citizens", &[Method::GET]),
    route_entry(
        "/imports/{import_id}/citizens/{citizen_id}",
        &[Method::PATCH],
    ),
    route_entry("/imports/{import_id}/citizens/birthdays", &[Method::GET]),
    route_entry(
        "/imports/{import_id}/towns/stat/percentile/age",
        &[Method::GET],
    ),
    route_entry("/imports/{id}/towns/airports", &[Method::GET]),
    route_entry("/towns", &[Method::GET]),
    route_entry("/towns/{name}", &[Method::PUT, Method::DELETE]),
    route_entry("/metrics", &[Method::GET]),
    route_entry("/debug/pprof/profile", &[Method::GET]),
    route_entry("/debug/pprof/heap", &[Method::GET]),
    route_entry("/openapi.json", &[Method::GET]),
    route_entry("/docs", &[Method::GET]),
    // Where most Swagger UIs live; the same page.
    route_entry("/docs/", &[Method::GET]),
    route_entry("/docs/{file}", &[Method::GET]),
    route_entry("/console", &[Method::GET]),
    route_entry("/console/{file}", &[Method::GET]),
];

impl Route {
    /// The `Allow` header value: the served methods, then OPTIONS.
    pub fn allow(&self) -> String {
        let mut allow: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
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

    /// Parameter `name` parsed as `T`; a value that does not parse is a 400
    /// naming the parameter (never a 500).
    pub fn get<T: FromStr>(&self, name: &str) -> Result<T, ApiError> {
        let raw = self
            .raw(name)
            .ok_or_else(|| ApiError::internal(&format_args!("route has no parameter {name}")))?;
        raw.parse().map_err(|_| {
            ApiError::bad_request(format!("path parameter {name} is not valid"))
                .with_field(name, format!("{raw:?} is not a valid {name}"))
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
        declared.methods.contains(&method),
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
            if !route.methods.contains(&method) {
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
            assert!(!route.methods.contains(&Method::OPTIONS));
        }
    }

    #[test]
    fn allow_lists_methods_then_options() {
        let route = route_entry("/x/{id}", &[Method::GET, Method::PATCH]);
        assert_eq!(route.allow(), "GET, PATCH, OPTIONS");
    }

    #[test]
    fn literal_segments_beat_parameters() {
        let by_id = route_entry("/things/{id}", &[Method::GET]);
        let near = route_entry("/things/near", &[Method::GET]);
        let (a, _) = by_id.match_path("/things/near").unwrap();
        let (b, _) = near.match_path("/things/near").unwrap();
        assert!(b > a);
    }

    #[test]
    fn parameters_are_decoded_and_never_empty() {
        let route = route_entry("/things/{id}/parts/{part}", &[Method::GET]);
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
    }

    #[test]
    fn unknown_paths_match_nothing() {
        assert!(find("/no/such/route").is_none());
        assert!(find("/healthz/").is_none());
        assert_eq!(find("/healthz").unwrap().route.pattern, "/healthz");
        assert_eq!(find("/docs/").unwrap().route.pattern, "/docs/");
    }
}
