//! `GET /imports/{id}/insights/map.svg`: the import's placed towns on a
//! map, circle area by askers and colour by the age-standardised ratio of
//! the insights' rates; the towns without a place named below it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::draw::{self, MapAirport, MapData, MapTown};
use super::near::{by_town, towns_rates};
use super::{rule, PlacesError, Status};
use crate::db::Pool;
use crate::insights::{Insights, RatesQuery};

#[derive(Debug, Clone, PartialEq)]
pub struct MapQuery {
    pub course: Option<String>,
    pub min_score: Option<f64>,
    rates: RatesQuery,
}

impl MapQuery {
    pub fn parse(
        course: Option<String>,
        min_score: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Self, PlacesError> {
        let rates = towns_rates(course, min_score, now)?;
        Ok(Self {
            course: rates.common.filters.course.clone(),
            min_score: rates.common.filters.min_score,
            rates,
        })
    }

    /// Leaves out the towns smaller than `min_group` (`INSIKT_MIN_GROUP_SIZE`).
    pub fn with_min_group(mut self, min_group: crate::privacy::MinGroupSize) -> Self {
        self.rates.common.min_group = min_group;
        self
    }
}

/// The most airport marks drawn (the whole bundled file has 7,698).
const MAX_AIRPORTS: i64 = 20_000;

/// The map of import `import_id` as an SVG document, and how many towns
/// were left out for their small population.
pub async fn map_svg(
    pool: &Pool,
    insights: &Insights,
    import_id: i64,
    query: MapQuery,
) -> Result<(String, usize), PlacesError> {
    let rates = insights
        .rates(import_id, query.rates.clone())
        .await?
        .ok_or(PlacesError::NoImport(import_id))?;
    let rows = by_town(&rates.rows);
    let names: Vec<String> = rows.keys().map(|t| (*t).to_owned()).collect();
    let client = pool.get().await?;
    let places = rule::places(&client, &names).await?;
    let mut towns = Vec::new();
    let mut missing = Vec::new();
    let mut used = HashSet::new();
    for place in &places {
        let Some(row) = rows.get(place.town.as_str()) else {
            continue;
        };
        match place.position() {
            Some((latitude, longitude)) => {
                used.extend(place.airport_ids.iter().copied());
                towns.push(MapTown {
                    name: place.town.clone(),
                    latitude,
                    longitude,
                    askers: row.askers,
                    ratio: row.ratio,
                });
            }
            None => missing.push(match place.status {
                Status::Ambiguous => {
                    let countries: Vec<&str> = place
                        .candidates
                        .iter()
                        .filter(|c| c.airports == place.candidates[0].airports)
                        .map(|c| c.country.as_deref().unwrap_or("no country"))
                        .collect();
                    format!(
                        "{} ({}; ambiguous: {})",
                        place.town,
                        askers(row.askers),
                        countries.join(" or ")
                    )
                }
                _ if place.fixed.is_some() => format!(
                    "{} ({}; no airport left in the country it was fixed to)",
                    place.town,
                    askers(row.askers)
                ),
                _ => format!(
                    "{} ({}; no airport of that name)",
                    place.town,
                    askers(row.askers)
                ),
            }),
        }
    }
    let projection = draw::fit(
        &towns
            .iter()
            .map(|t| (t.latitude, t.longitude))
            .collect::<Vec<_>>(),
    );
    let ((lat_lo, lat_hi), _) = draw::view(&projection);
    // Longitudes are filtered by the frame when drawn (the view may cross ±180).
    let airports = client
        .query(
            "SELECT id, latitude, longitude FROM airports
              WHERE deleted_at IS NULL AND latitude BETWEEN $1 AND $2
              ORDER BY id LIMIT $3",
            &[&lat_lo, &lat_hi, &MAX_AIRPORTS],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(MapAirport {
                used: used.contains(&row.try_get::<_, i64>("id")?),
                latitude: row.try_get("latitude")?,
                longitude: row.try_get("longitude")?,
            })
        })
        .collect::<Result<Vec<_>, PlacesError>>()?;
    let not_placed = missing.len();
    let mut notes = notes(missing);
    if rates.suppressed > 0 {
        notes.push(format!(
            "{} left out for having fewer residents than the minimum group size.",
            if rates.suppressed == 1 {
                "1 town".to_owned()
            } else {
                format!("{} towns", rates.suppressed)
            }
        ));
    }
    let data = MapData {
        title: format!("Where the askers live — import {import_id}"),
        subtitle: subtitle(&query, towns.len(), not_placed),
        notes,
        towns,
        airports,
    };
    let svg = tokio::task::spawn_blocking(move || draw::render(&data, &projection))
        .await
        .map_err(|e| PlacesError::Internal(e.to_string()))?
        .map_err(|e| PlacesError::Internal(e.to_string()))?;
    Ok((svg, rates.suppressed))
}

fn askers(n: u64) -> String {
    if n == 1 {
        "1 asker".to_owned()
    } else {
        format!("{n} askers")
    }
}

fn subtitle(query: &MapQuery, placed: usize, missing: usize) -> String {
    let what = match &query.course {
        Some(course) => format!("Residents asking for {course}"),
        None => "Residents asking for any course".to_owned(),
    };
    let score = query
        .min_score
        .map(|s| format!(" with a score of at least {s}"))
        .unwrap_or_default();
    let towns = |n: usize| if n == 1 { "town" } else { "towns" };
    let missing = if missing == 0 {
        String::new()
    } else {
        format!(", {missing} not (named below)")
    };
    format!(
        "{what}{score}, by town: {placed} {} placed at the mean position of their airports{missing}.",
        towns(placed)
    )
}

fn notes(mut missing: Vec<String>) -> Vec<String> {
    if missing.is_empty() {
        return Vec::new();
    }
    missing.sort();
    vec![format!(
        "Not on the map: {}. Fix a place with PUT /towns/{{name}}.",
        missing.join(", ")
    )]
}
