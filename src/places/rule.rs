//! The placing rule, in SQL: PostGIS computes every position and distance.
//!
//! A town is placed at the mean position of the live airports whose `city`
//! is its name (case-insensitive) in the country with the most of them;
//! on a tie it is `ambiguous`; without any such airport, `unplaced`. A fix
//! (`town_places`, migration V19) overrides the rule: a country chooses
//! among that country's airports of the name, coordinates are the place.
//! Nothing is cached: a soft-deleted or edited airport moves its town at
//! the next read.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{Candidate, Fix, How, Place, Status};
use crate::db::DbError;

/// Common table expressions ending in `places`, one row per distinct name
/// of `$1::text[]`: the rule's decision and position (geography). The mean
/// position is PostGIS's spherical centroid of the chosen airports, so a
/// city whose airports straddle the antimeridian is placed between them.
/// A country without a name (NULL) counts as a country of its own.
const PLACES: &str = "
names AS (
    SELECT DISTINCT t.town FROM unnest($1::text[]) AS t(town)
),
counted AS (
    SELECT n.town, COALESCE(lower(a.country), '') AS country_key,
           min(a.country) AS country, count(*) AS airports
      FROM names n
      JOIN airports a ON lower(a.city) = lower(n.town) AND a.deleted_at IS NULL
     GROUP BY n.town, COALESCE(lower(a.country), '')
),
ranked AS (
    SELECT c.*,
           row_number() OVER w AS rank,
           lead(c.airports) OVER w AS next_airports
      FROM counted c
    WINDOW w AS (PARTITION BY c.town ORDER BY c.airports DESC, c.country_key)
),
summary AS (
    SELECT town,
           array_agg(country ORDER BY rank) AS candidate_countries,
           array_agg(airports ORDER BY rank) AS candidate_airports,
           count(*) AS countries,
           -- The leading country, only when it leads alone.
           max(country_key) FILTER (WHERE rank = 1
               AND (next_airports IS NULL OR airports > next_airports)) AS leader
      FROM ranked
     GROUP BY town
),
decided AS (
    SELECT n.town, f.town AS fixed_town, f.country AS fixed_country,
           f.latitude AS fixed_latitude, f.longitude AS fixed_longitude,
           f.location AS fixed_location,
           CASE WHEN f.country IS NOT NULL THEN lower(f.country)
                WHEN f.town IS NULL THEN s.leader END AS chosen,
           COALESCE(s.countries, 0) AS countries,
           COALESCE(s.candidate_countries, '{}') AS candidate_countries,
           COALESCE(s.candidate_airports, '{}') AS candidate_airports
      FROM names n
      LEFT JOIN town_places f ON lower(f.town) = lower(n.town)
      LEFT JOIN summary s ON s.town = n.town
),
used AS (
    SELECT d.town, array_agg(a.id ORDER BY a.id) AS airport_ids,
           ST_Centroid(ST_Collect(a.location::geometry)::geography) AS position
      FROM decided d
      JOIN airports a ON lower(a.city) = lower(d.town) AND a.deleted_at IS NULL
                     AND COALESCE(lower(a.country), '') = d.chosen
     GROUP BY d.town
),
places AS (
    SELECT d.town, d.fixed_town, d.fixed_country, d.fixed_latitude, d.fixed_longitude,
           COALESCE(d.fixed_location, u.position) AS position,
           CASE WHEN d.fixed_location IS NOT NULL OR u.position IS NOT NULL THEN 'placed'
                WHEN d.fixed_town IS NULL AND d.countries > 1 THEN 'ambiguous'
                ELSE 'unplaced' END AS status,
           CASE WHEN d.fixed_location IS NOT NULL THEN 'coordinates'
                WHEN u.position IS NULL THEN NULL
                WHEN d.fixed_country IS NOT NULL THEN 'country'
                ELSE 'airports' END AS how,
           c.country AS country,
           COALESCE(u.airport_ids, '{}') AS airport_ids,
           d.candidate_countries, d.candidate_airports
      FROM decided d
      LEFT JOIN used u ON u.town = d.town
      LEFT JOIN counted c ON c.town = d.town AND c.country_key = d.chosen
)";

/// The rule's common table expressions (after `WITH`), ending in `places`
/// (`town`, `status`, `how`, `country`, `position` geography…), for
/// queries of other modules over the names in `$1::text[]`.
pub fn places_cte() -> &'static str {
    PLACES
}

/// The columns [`from_row`] reads, after `places`.
const COLUMNS: &str = "town, status, how, country, \
     ST_Y(position::geometry) AS latitude, ST_X(position::geometry) AS longitude, \
     airport_ids, candidate_countries, candidate_airports, \
     fixed_country, fixed_latitude, fixed_longitude";

/// The rule's query for the names in `$1::text[]`, by name. Public so its
/// plan can be checked (`tests/towns.rs`).
pub fn places_sql() -> String {
    format!("WITH {PLACES} SELECT {COLUMNS} FROM places ORDER BY town")
}

/// The places of `names` (each once, by name).
pub async fn places(client: &impl GenericClient, names: &[String]) -> Result<Vec<Place>, DbError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client.query(&places_sql(), &[&names]).await?;
    rows.iter().map(from_row).collect()
}

/// The places of `names` with the distance (metres, on the WGS84
/// spheroid) of each placed one from the point, and whether it is within
/// `radius_m` (`ST_DWithin`, the same measure).
pub async fn places_from(
    client: &impl GenericClient,
    names: &[String],
    (latitude, longitude): (f64, f64),
    radius_m: f64,
) -> Result<Vec<(Place, Option<f64>, bool)>, DbError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "WITH here AS (SELECT ST_SetSRID(ST_MakePoint($3, $2), 4326)::geography AS point), \
         {PLACES} \
         SELECT {COLUMNS}, ST_Distance(position, here.point) AS distance_m, \
                COALESCE(ST_DWithin(position, here.point, $4), false) AS within \
           FROM places, here ORDER BY distance_m NULLS LAST, town"
    );
    let rows = client
        .query(&sql, &[&names, &latitude, &longitude, &radius_m])
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                from_row(row)?,
                row.try_get("distance_m")?,
                row.try_get("within")?,
            ))
        })
        .collect()
}

fn from_row(row: &Row) -> Result<Place, DbError> {
    let status = match row.try_get::<_, &str>("status")? {
        "placed" => Status::Placed,
        "ambiguous" => Status::Ambiguous,
        "unplaced" => Status::Unplaced,
        other => return Err(DbError::Corrupt(format!("place status {other:?}"))),
    };
    let how = match row.try_get::<_, Option<&str>>("how")? {
        None => None,
        Some("airports") => Some(How::Airports),
        Some("country") => Some(How::Country),
        Some("coordinates") => Some(How::Coordinates),
        Some(other) => return Err(DbError::Corrupt(format!("place how {other:?}"))),
    };
    let countries: Vec<Option<String>> = row.try_get("candidate_countries")?;
    let counts: Vec<i64> = row.try_get("candidate_airports")?;
    let candidates = countries
        .into_iter()
        .zip(counts)
        .map(|(country, airports)| Candidate { country, airports })
        .collect();
    let fixed = match (
        row.try_get::<_, Option<String>>("fixed_country")?,
        row.try_get::<_, Option<f64>>("fixed_latitude")?,
        row.try_get::<_, Option<f64>>("fixed_longitude")?,
    ) {
        (Some(country), _, _) => Some(Fix::Country { country }),
        (None, Some(latitude), Some(longitude)) => Some(Fix::Coordinates {
            latitude,
            longitude,
        }),
        _ => None,
    };
    Ok(Place {
        town: row.try_get("town")?,
        status,
        how,
        country: row.try_get("country")?,
        latitude: row.try_get("latitude")?,
        longitude: row.try_get("longitude")?,
        airport_ids: row.try_get("airport_ids")?,
        candidates,
        fixed,
    })
}
