//! `GET /imports/{id}/insights/near`: the import's placed towns within a
//! radius of an airport or a point, nearest first, each with its demand
//! (the insights' rates by town); the towns without a place apart, so a
//! missing town is never read as a town without demand.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{rule, Candidate, Fix, How, PlacesError, Status};
use crate::db::Pool;
use crate::insights::rates::Totals;
use crate::insights::{Insights, RateRow, RatesQuery, Raw};

/// The largest radius: about half the Earth's circumference.
pub const MAX_RADIUS_KM: f64 = 20_000.0;

/// Where distances are measured from.
#[derive(Debug, Clone, PartialEq)]
pub enum Center {
    /// A live airport, by IATA code.
    Airport(String),
    Point {
        latitude: f64,
        longitude: f64,
    },
}

/// The parameters as they came (the route refuses others).
#[derive(Debug, Clone, Default)]
pub struct NearRaw {
    pub airport: Option<String>,
    pub lat: Option<String>,
    pub lon: Option<String>,
    pub radius_km: Option<String>,
    pub course: Option<String>,
    pub min_score: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NearQuery {
    pub center: Center,
    pub radius_km: f64,
    /// Rates by town, with the course and score filters.
    pub rates: RatesQuery,
}

fn number(
    raw: &str,
    name: &str,
    range: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<f64, PlacesError> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && ok(*v))
        .ok_or_else(|| PlacesError::invalid(name, format!("must be a number {range}")))
}

impl NearQuery {
    pub fn parse(raw: &NearRaw, now: DateTime<Utc>) -> Result<Self, PlacesError> {
        let center = match (&raw.airport, &raw.lat, &raw.lon) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(PlacesError::invalid(
                    "airport",
                    "give either airport or lat and lon, not both",
                ))
            }
            (Some(code), None, None) => {
                let code = code.trim();
                if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(PlacesError::invalid(
                        "airport",
                        "must be an IATA code: three letters or digits, e.g. MAD",
                    ));
                }
                Center::Airport(code.to_ascii_uppercase())
            }
            (None, Some(lat), Some(lon)) => Center::Point {
                latitude: number(lat, "lat", "from -90 to 90", |v| v.abs() <= 90.0)?,
                longitude: number(lon, "lon", "from -180 to 180", |v| v.abs() <= 180.0)?,
            },
            (None, Some(_), None) => {
                return Err(PlacesError::invalid("lon", "is required with lat"))
            }
            (None, None, Some(_)) => {
                return Err(PlacesError::invalid("lat", "is required with lon"))
            }
            (None, None, None) => {
                return Err(PlacesError::invalid(
                    "airport",
                    "give an airport (IATA code) or lat and lon",
                ))
            }
        };
        let radius_km = match &raw.radius_km {
            None => return Err(PlacesError::invalid("radius_km", "is required")),
            Some(r) => number(r, "radius_km", "above 0 and at most 20000", |v| {
                v > 0.0 && v <= MAX_RADIUS_KM
            })?,
        };
        let rates = towns_rates(raw.course.clone(), raw.min_score.clone(), now)?;
        Ok(Self {
            center,
            radius_km,
            rates,
        })
    }
}

/// The insights' rates by town under `course` and `min_score`, every town.
pub(super) fn towns_rates(
    course: Option<String>,
    min_score: Option<String>,
    now: DateTime<Utc>,
) -> Result<RatesQuery, PlacesError> {
    Ok(RatesQuery::parse(
        &Raw {
            by: Some("town".into()),
            course,
            min_score,
            limit: Some(crate::insights::params::MAX_ROWS.to_string()),
            ..Raw::default()
        },
        now,
    )?)
}

/// The point distances are measured from.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NearCenter {
    pub latitude: f64,
    pub longitude: f64,
    /// The airport, when the center is one.
    pub airport: Option<CenterAirport>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CenterAirport {
    pub id: i64,
    pub iata: String,
    pub name: String,
    pub city: Option<String>,
    pub country: Option<String>,
}

/// A placed town within the radius, with its demand.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NearTown {
    pub town: String,
    /// Great-circle distance on the WGS84 spheroid, km, one decimal.
    pub distance_km: f64,
    pub how: Option<How>,
    pub country: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    /// Residents of the town (in this import).
    pub population: u64,
    /// Residents with at least one counted statement.
    pub askers: u64,
    pub statements: u64,
    /// askers / population, with its Wilson 95 % interval.
    pub rate: Option<f64>,
    pub rate_low: Option<f64>,
    pub rate_high: Option<f64>,
    /// Askers expected at the import's age-specific rates, and askers / expected.
    pub expected: Option<f64>,
    pub ratio: Option<f64>,
}

/// A town of the import without a place: not in the distances.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NotPlaced {
    pub town: String,
    /// `ambiguous` or `unplaced`.
    pub status: Status,
    pub candidates: Vec<Candidate>,
    pub fixed: Option<Fix>,
    pub why: String,
    pub population: u64,
    pub askers: u64,
    pub statements: u64,
}

/// The towns within the radius, together.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NearTotals {
    pub towns: usize,
    #[serde(flatten)]
    pub residents: Totals,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Near {
    pub center: NearCenter,
    pub radius_km: f64,
    /// Nearest first.
    pub towns: Vec<NearTown>,
    pub totals: NearTotals,
    /// Placed towns of the import beyond the radius.
    pub outside: usize,
    /// Towns that could not be placed (`ambiguous`, `unplaced`), by name.
    pub not_placed: Vec<NotPlaced>,
    /// Towns left out for their small population (`INSIKT_MIN_GROUP_SIZE`),
    /// shown beside the data by the HTTP layer.
    #[serde(skip)]
    pub suppressed: usize,
}

/// The live airport with IATA code `code` (the lowest id, should two share it).
async fn airport_center(
    client: &deadpool_postgres::Client,
    code: &str,
) -> Result<NearCenter, PlacesError> {
    let row = client
        .query_opt(
            "SELECT id, iata, name, city, country, latitude, longitude FROM airports
              WHERE upper(iata) = $1 AND deleted_at IS NULL ORDER BY id LIMIT 1",
            &[&code],
        )
        .await?
        .ok_or_else(|| PlacesError::NotFound {
            field: "airport".into(),
            reason: format!("no live airport has the IATA code {code}"),
        })?;
    Ok(NearCenter {
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        airport: Some(CenterAirport {
            id: row.try_get("id")?,
            iata: row.try_get("iata")?,
            name: row.try_get("name")?,
            city: row.try_get("city")?,
            country: row.try_get("country")?,
        }),
    })
}

/// The towns of each rate row, by name.
pub(super) fn by_town(rows: &[RateRow]) -> HashMap<&str, &RateRow> {
    rows.iter()
        .filter_map(|r| r.label.values.first().map(|(_, town)| (town.as_str(), r)))
        .collect()
}

/// The import's towns near the query's center; `NoImport` when the import
/// does not exist.
pub async fn near(
    pool: &Pool,
    insights: &Insights,
    import_id: i64,
    query: NearQuery,
) -> Result<Near, PlacesError> {
    let client = pool.get().await?;
    let center = match &query.center {
        Center::Airport(code) => airport_center(&client, code).await?,
        Center::Point {
            latitude,
            longitude,
        } => NearCenter {
            latitude: *latitude,
            longitude: *longitude,
            airport: None,
        },
    };
    let rates = insights
        .rates(import_id, query.rates)
        .await?
        .ok_or(PlacesError::NoImport(import_id))?;
    let rows = by_town(&rates.rows);
    let names: Vec<String> = rows.keys().map(|t| (*t).to_owned()).collect();
    let places = rule::places_from(
        &client,
        &names,
        (center.latitude, center.longitude),
        query.radius_km * 1000.0,
    )
    .await?;
    let (mut towns, mut not_placed, mut outside) = (Vec::new(), Vec::new(), 0);
    for (place, distance_m, within) in places {
        let Some(row) = rows.get(place.town.as_str()) else {
            continue;
        };
        match (place.position(), distance_m) {
            (Some((latitude, longitude)), Some(distance_m)) if within => towns.push(NearTown {
                distance_km: (distance_m / 100.0).round() / 10.0,
                how: place.how,
                country: place.country.clone(),
                latitude,
                longitude,
                population: row.population,
                askers: row.askers,
                statements: row.statements,
                rate: row.rate,
                rate_low: row.rate_low,
                rate_high: row.rate_high,
                expected: row.expected,
                ratio: row.ratio,
                town: place.town,
            }),
            (Some(_), _) => outside += 1,
            (None, _) => not_placed.push(NotPlaced {
                status: place.status,
                why: place.why(),
                candidates: place.candidates,
                fixed: place.fixed,
                population: row.population,
                askers: row.askers,
                statements: row.statements,
                town: place.town,
            }),
        }
    }
    not_placed.sort_by(|a, b| a.town.cmp(&b.town));
    let totals = NearTotals {
        towns: towns.len(),
        residents: Totals::of(
            towns.iter().map(|t| t.population).sum(),
            towns.iter().map(|t| t.askers).sum(),
            towns.iter().map(|t| t.statements).sum(),
        ),
    };
    Ok(Near {
        center,
        radius_km: query.radius_km,
        towns,
        totals,
        outside,
        not_placed,
        suppressed: rates.suppressed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    fn raw(pairs: &[(&str, &str)]) -> NearRaw {
        let mut raw = NearRaw::default();
        for (k, v) in pairs {
            let v = Some((*v).to_owned());
            match *k {
                "airport" => raw.airport = v,
                "lat" => raw.lat = v,
                "lon" => raw.lon = v,
                "radius_km" => raw.radius_km = v,
                "course" => raw.course = v,
                "min_score" => raw.min_score = v,
                other => panic!("{other}"),
            }
        }
        raw
    }

    fn refused(pairs: &[(&str, &str)]) -> String {
        match NearQuery::parse(&raw(pairs), now()).unwrap_err() {
            PlacesError::Invalid { field, .. } => field,
            PlacesError::Param(e) => e.parameter().to_owned(),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let r = ("radius_km", "400");
        assert_eq!(refused(&[r]), "airport");
        assert_eq!(refused(&[("airport", "MADRID"), r]), "airport");
        assert_eq!(refused(&[("airport", "M D"), r]), "airport");
        assert_eq!(refused(&[("airport", "MAD"), ("lat", "1"), r]), "airport");
        assert_eq!(refused(&[("lat", "91"), ("lon", "0"), r]), "lat");
        assert_eq!(refused(&[("lat", "NaN"), ("lon", "0"), r]), "lat");
        assert_eq!(refused(&[("lat", "40"), ("lon", "180.1"), r]), "lon");
        assert_eq!(refused(&[("lat", "40"), r]), "lon");
        assert_eq!(refused(&[("lon", "40"), r]), "lat");
        assert_eq!(refused(&[("airport", "MAD")]), "radius_km");
        for bad in ["0", "-1", "20000.5", "inf", "far"] {
            assert_eq!(
                refused(&[("airport", "MAD"), ("radius_km", bad)]),
                "radius_km"
            );
        }
        assert_eq!(refused(&[("airport", "MAD"), r, ("course", "")]), "course");
        assert_eq!(
            refused(&[("airport", "MAD"), r, ("min_score", "x")]),
            "min_score"
        );
    }

    #[test]
    fn good_parameters_parse() {
        let q =
            NearQuery::parse(&raw(&[("airport", " mad "), ("radius_km", "20000")]), now()).unwrap();
        assert_eq!(q.center, Center::Airport("MAD".into()));
        assert_eq!(q.radius_km, 20_000.0);
        let q = NearQuery::parse(
            &raw(&[
                ("lat", "40.4"),
                ("lon", "-3.7"),
                ("radius_km", "0.5"),
                ("min_score", "0.5"),
            ]),
            now(),
        )
        .unwrap();
        assert_eq!(
            q.center,
            Center::Point {
                latitude: 40.4,
                longitude: -3.7
            }
        );
        assert_eq!(q.rates.common.filters.min_score, Some(0.5));
    }

    proptest! {
        #[test]
        fn no_input_panics(a in ".{0,6}", lat in ".{0,8}", lon in ".{0,8}", r in ".{0,8}") {
            let _ = NearQuery::parse(&raw(&[("airport", &a), ("radius_km", &r)]), now());
            let _ = NearQuery::parse(&raw(&[("lat", &lat), ("lon", &lon), ("radius_km", &r)]), now());
        }
    }
}
