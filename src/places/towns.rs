//! Every town with its place (`GET /towns`), and an import's towns with
//! the airports of their names, the chosen ones marked
//! (`GET /imports/{id}/towns/airports`): one rule behind both, and behind
//! `near` and the map.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{rule, Candidate, Fix, How, Place, PlacesError, Status};
use crate::airports::{self, Airport};
use crate::db::Pool;

/// A place as the answers show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlaceView {
    pub town: String,
    pub status: Status,
    /// How it was placed, when it is.
    pub how: Option<How>,
    /// The country whose airports place it.
    pub country: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// Every country with live airports of the town's name, most first.
    pub candidates: Vec<Candidate>,
    /// The fix `PUT /towns/{name}` set, if any.
    pub fixed: Option<Fix>,
    /// Why it is placed so, or not at all.
    pub why: String,
}

impl From<&Place> for PlaceView {
    fn from(place: &Place) -> Self {
        Self {
            town: place.town.clone(),
            status: place.status,
            how: place.how,
            country: place.country.clone(),
            latitude: place.latitude,
            longitude: place.longitude,
            candidates: place.candidates.clone(),
            fixed: place.fixed.clone(),
            why: place.why(),
        }
    }
}

/// An airport that places a town, briefly.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsedAirport {
    pub id: i64,
    pub iata: Option<String>,
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
}

/// A town of `GET /towns`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TownEntry {
    #[serde(flatten)]
    pub place: PlaceView,
    /// The airports whose mean position places it.
    pub airports: Vec<UsedAirport>,
    /// How many imports have residents in it (0: only fixed).
    pub imports: i64,
}

/// One page of towns, by name.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TownPage {
    pub towns: Vec<TownEntry>,
    /// The next page's `after`, when there may be one.
    pub next_after: Option<String>,
}

/// `GET /towns` filters and paging.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TownsQuery {
    /// Only towns with this status: `placed`, `ambiguous` or `unplaced`.
    #[param(pattern = "^(placed|ambiguous|unplaced)$")]
    pub status: Option<String>,
    /// Towns whose names sort after this one (the previous page's `next_after`).
    #[param(max_length = 256, pattern = r"^[^\u0000]*$")]
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: i64 = 100;

/// Every town name of every import, and every fixed name, with its place.
/// The towns of all imports are read whole (there is no index by town:
/// it would slow every import down for this rarely asked list).
pub async fn list(pool: &Pool, query: &TownsQuery) -> Result<TownPage, PlacesError> {
    let status = match query.status.as_deref().map(str::trim) {
        None => None,
        Some("placed") => Some(Status::Placed),
        Some("ambiguous") => Some(Status::Ambiguous),
        Some("unplaced") => Some(Status::Unplaced),
        Some(_) => {
            return Err(PlacesError::invalid(
                "status",
                "must be placed, ambiguous or unplaced",
            ))
        }
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(PlacesError::invalid("limit", "must be from 1 to 1000"));
    }
    if query.after.as_deref().is_some_and(|a| a.contains('\0')) {
        return Err(PlacesError::invalid(
            "after",
            "must not contain NUL characters",
        ));
    }
    // As documented: a town name is at most 256 characters, so is a cursor.
    if query
        .after
        .as_deref()
        .is_some_and(|a| a.chars().count() > 256)
    {
        return Err(PlacesError::invalid(
            "after",
            "must be at most 256 characters",
        ));
    }
    let client = pool.get().await?;
    // Without a status filter a page needs only its own names.
    let rows = client
        .query(
            "WITH towns AS (
                 SELECT town, count(DISTINCT import_id) AS imports FROM citizens GROUP BY town
             ),
             named AS (
                 SELECT town, imports FROM towns
                 UNION ALL
                 SELECT f.town, 0 FROM town_places f
                  WHERE lower(f.town) NOT IN (SELECT lower(town) FROM towns)
             )
             SELECT town, imports FROM named
              WHERE $1::text IS NULL OR town > $1
              ORDER BY town
              LIMIT CASE WHEN $2::bool THEN NULL ELSE $3::bigint END",
            &[&query.after, &status.is_some(), &(limit + 1)],
        )
        .await?;
    let mut imports: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    let mut names = Vec::with_capacity(rows.len());
    for row in &rows {
        let town: String = row.try_get("town")?;
        imports.insert(town.clone(), row.try_get("imports")?);
        names.push(town);
    }
    let mut places = rule::places(&client, &names).await?;
    places.retain(|p| status.is_none_or(|s| p.status == s));
    let more = places.len() as i64 > limit;
    places.truncate(limit as usize);
    let ids: Vec<i64> = places.iter().flat_map(|p| p.airport_ids.clone()).collect();
    let airports: HashMap<i64, Airport> = airports::by_ids(&client, &ids)
        .await?
        .into_iter()
        .map(|a| (a.id, a))
        .collect();
    let next_after = more
        .then(|| places.last().map(|p| p.town.clone()))
        .flatten();
    let towns = places
        .iter()
        .map(|place| TownEntry {
            place: place.into(),
            airports: place
                .airport_ids
                .iter()
                .filter_map(|id| airports.get(id))
                .map(|a| UsedAirport {
                    id: a.id,
                    iata: a.iata.clone(),
                    name: a.name.clone(),
                    latitude: a.latitude,
                    longitude: a.longitude,
                })
                .collect(),
            imports: imports.get(&place.town).copied().unwrap_or(0),
        })
        .collect();
    Ok(TownPage { towns, next_after })
}

/// An airport of a town's name, and whether it places the town.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TownAirport {
    #[serde(flatten)]
    pub airport: Airport,
    /// Among the airports whose mean position is the town's place.
    pub chosen: bool,
}

/// A town of an import, its place, and every live airport of its name.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TownAirports {
    #[serde(flatten)]
    pub place: PlaceView,
    pub airports: Vec<TownAirport>,
}

/// Every town of the import (by name) with its place and the live airports
/// whose `city` is its name (case-insensitive), the chosen ones marked;
/// `None` when the import does not exist.
pub async fn town_airports(
    pool: &Pool,
    import_id: i64,
) -> Result<Option<Vec<TownAirports>>, PlacesError> {
    let client = pool.get().await?;
    if !crate::citizens::import_exists(&client, import_id).await? {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT DISTINCT town FROM citizens WHERE import_id = $1",
            &[&import_id],
        )
        .await?;
    let names = rows
        .iter()
        .map(|r| r.try_get("town"))
        .collect::<Result<Vec<String>, _>>()?;
    let places = rule::places(&client, &names).await?;
    let mut by_town: HashMap<String, Vec<Airport>> = HashMap::new();
    for (town, airport) in airports::of_cities(&client, &names).await? {
        by_town.entry(town).or_default().push(airport);
    }
    Ok(Some(
        places
            .iter()
            .map(|place| TownAirports {
                place: place.into(),
                airports: by_town
                    .get(&place.town)
                    .into_iter()
                    .flatten()
                    .map(|a| TownAirport {
                        chosen: place.airport_ids.contains(&a.id),
                        airport: a.clone(),
                    })
                    .collect(),
            })
            .collect(),
    ))
}
