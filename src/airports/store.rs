//! Airport queries. Soft-deleted rows are invisible to every read and write
//! except the hard delete.

use deadpool_postgres::GenericClient;
use serde::Deserialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::confirm::{Action, Verified};
use super::{Airport, AirportError, AirportPatch, NearAirport, NewAirport};
use crate::audit::Origin;
use crate::db::{DbError, Pool};

/// The columns a new airport is written with (its id comes from the
/// sequence), in the order of [`insert`]'s parameters and of the upload's
/// COPY rows.
pub(super) const WRITTEN: &str =
    "name, city, country, iata, icao, latitude, longitude, altitude, timezone, dst, tz, type, source";

/// The columns every read returns, in [`from_row`]'s order.
const COLUMNS: &str = "id, name, city, country, iata, icao, latitude, longitude, altitude, \
     timezone::float8, dst, tz, type, source, deleted_at, created_at, updated_at";

fn from_row(row: &Row) -> Result<Airport, tokio_postgres::Error> {
    Ok(Airport {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        city: row.try_get(2)?,
        country: row.try_get(3)?,
        iata: row.try_get(4)?,
        icao: row.try_get(5)?,
        latitude: row.try_get(6)?,
        longitude: row.try_get(7)?,
        altitude: row.try_get(8)?,
        timezone: row.try_get(9)?,
        dst: row.try_get(10)?,
        tz: row.try_get(11)?,
        kind: row.try_get(12)?,
        source: row.try_get(13)?,
        deleted_at: row.try_get(14)?,
        created_at: row.try_get(15)?,
        updated_at: row.try_get(16)?,
    })
}

/// The largest page `list` and `near` return.
pub const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: i64 = 100;

/// `GET /airports` filters (case-insensitive equality) and keyset paging by id.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListFilter {
    #[param(pattern = r"^[^\u0000]*$")]
    pub city: Option<String>,
    #[param(pattern = r"^[^\u0000]*$")]
    pub country: Option<String>,
    #[param(pattern = r"^[^\u0000]*$")]
    pub iata: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Return airports with ids above this one (the previous page's `next_after`).
    pub after: Option<i64>,
}

/// One page of airports and the cursor of the next page, if there may be one.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Page {
    pub airports: Vec<Airport>,
    pub next_after: Option<i64>,
}

fn limit(requested: Option<i64>) -> Result<i64, AirportError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(AirportError::Invalid(format!(
            "limit {n} is outside [1, {MAX_LIMIT}]"
        ))),
    }
}

pub async fn list(pool: &Pool, filter: &ListFilter) -> Result<Page, AirportError> {
    let limit = limit(filter.limit)?;
    // PostgreSQL refuses a text parameter holding NUL: an error, not a 500.
    for (name, value) in [
        ("city", &filter.city),
        ("country", &filter.country),
        ("iata", &filter.iata),
    ] {
        if value.as_deref().is_some_and(|v| v.contains('\0')) {
            return Err(AirportError::Invalid(format!("{name} {}", super::NUL)));
        }
    }
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM airports
         WHERE deleted_at IS NULL
           AND ($1::text IS NULL OR lower(city) = lower($1))
           AND ($2::text IS NULL OR lower(country) = lower($2))
           AND ($3::text IS NULL OR upper(iata) = upper($3))
           AND ($4::bigint IS NULL OR id > $4)
         ORDER BY id
         LIMIT $5"
    );
    let rows = client
        .query(
            &sql,
            &[
                &filter.city,
                &filter.country,
                &filter.iata,
                &filter.after,
                &limit,
            ],
        )
        .await?;
    let airports = rows
        .iter()
        .map(from_row)
        .collect::<Result<Vec<Airport>, _>>()
        .map_err(DbError::from)?;
    let next_after = (airports.len() as i64 == limit)
        .then(|| airports.last().map(|a| a.id))
        .flatten();
    Ok(Page {
        airports,
        next_after,
    })
}

pub async fn get(pool: &Pool, id: i64) -> Result<Airport, AirportError> {
    let client = pool.get().await?;
    let sql = format!("SELECT {COLUMNS} FROM airports WHERE id = $1 AND deleted_at IS NULL");
    client
        .query_opt(&sql, &[&id])
        .await?
        .map(|row| from_row(&row))
        .transpose()
        .map_err(DbError::from)?
        .ok_or(AirportError::NotFound(id))
}

pub async fn create(
    pool: &Pool,
    airport: &NewAirport,
    origin: &Origin,
) -> Result<Airport, AirportError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let created = insert(&tx, airport).await?;
    origin
        .entry("created")
        .airport(created.id)
        .record(&tx)
        .await?;
    tx.commit().await?;
    Ok(created)
}

async fn insert(client: &impl GenericClient, a: &NewAirport) -> Result<Airport, AirportError> {
    let sql = format!(
        "INSERT INTO airports ({WRITTEN})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         RETURNING {COLUMNS}"
    );
    let dst = a.dst.map(String::from);
    let row = client
        .query_one(
            &sql,
            &[
                &a.name.as_str(),
                &a.city,
                &a.country,
                &a.iata,
                &a.icao,
                &a.latitude.get(),
                &a.longitude.get(),
                &a.altitude,
                &a.timezone,
                &dst,
                &a.tz,
                &a.kind,
                &a.source,
            ],
        )
        .await?;
    Ok(from_row(&row).map_err(DbError::from)?)
}

pub async fn patch(
    pool: &Pool,
    id: i64,
    patch: &AirportPatch,
    origin: &Origin,
) -> Result<Airport, AirportError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let updated = update(&tx, id, patch).await?;
    origin
        .entry("updated")
        .airport(id)
        .detail(serde_json::json!({ "fields": patch.field_names() }))
        .record(&tx)
        .await?;
    tx.commit().await?;
    Ok(updated)
}

async fn update(
    client: &impl GenericClient,
    id: i64,
    p: &AirportPatch,
) -> Result<Airport, AirportError> {
    type Param = Box<dyn ToSql + Sync + Send>;
    let mut sets: Vec<(&str, Param)> = Vec::new();
    let mut set = |column: &'static str, value: Param| sets.push((column, value));
    if let Some(v) = &p.name {
        set("name", Box::new(v.as_str().to_owned()));
    }
    if let Some(v) = &p.city {
        set("city", Box::new(v.clone()));
    }
    if let Some(v) = &p.country {
        set("country", Box::new(v.clone()));
    }
    if let Some(v) = &p.iata {
        set("iata", Box::new(v.clone()));
    }
    if let Some(v) = &p.icao {
        set("icao", Box::new(v.clone()));
    }
    if let Some(v) = p.latitude {
        set("latitude", Box::new(v.get()));
    }
    if let Some(v) = p.longitude {
        set("longitude", Box::new(v.get()));
    }
    if let Some(v) = p.altitude {
        set("altitude", Box::new(v));
    }
    if let Some(v) = p.timezone {
        set("timezone", Box::new(v));
    }
    if let Some(v) = p.dst {
        set("dst", Box::new(v.map(String::from)));
    }
    if let Some(v) = &p.tz {
        set("tz", Box::new(v.clone()));
    }
    if let Some(v) = &p.kind {
        set("type", Box::new(v.clone()));
    }
    if let Some(v) = &p.source {
        set("source", Box::new(v.clone()));
    }
    if sets.is_empty() {
        return Err(AirportError::Invalid(
            "the update names no field to change".to_owned(),
        ));
    }
    // Column names come from the list above, never from the input.
    let assignments: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, (column, _))| format!("{column} = ${}", i + 2))
        .collect();
    let sql = format!(
        "UPDATE airports SET {}, updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL
         RETURNING {COLUMNS}",
        assignments.join(", ")
    );
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id];
    params.extend(sets.iter().map(|(_, v)| &**v as &(dyn ToSql + Sync)));
    client
        .query_opt(&sql, &params)
        .await?
        .map(|row| from_row(&row))
        .transpose()
        .map_err(DbError::from)?
        .ok_or(AirportError::NotFound(id))
}

/// Hard delete.
pub async fn delete(pool: &Pool, id: i64, origin: &Origin) -> Result<(), AirportError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let deleted = tx
        .execute(
            "DELETE FROM airports WHERE id = $1 AND deleted_at IS NULL",
            &[&id],
        )
        .await?;
    if deleted == 0 {
        return Err(AirportError::NotFound(id));
    }
    origin.entry("deleted").airport(id).record(&tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Sets `deleted_at`: from then on the row is invisible; returns it as it ended.
pub async fn soft_delete(pool: &Pool, id: i64, origin: &Origin) -> Result<Airport, AirportError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let sql = format!(
        "UPDATE airports SET deleted_at = now(), updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL
         RETURNING {COLUMNS}"
    );
    let airport = tx
        .query_opt(&sql, &[&id])
        .await?
        .map(|row| from_row(&row))
        .transpose()
        .map_err(DbError::from)?
        .ok_or(AirportError::NotFound(id))?;
    origin.entry("soft_deleted").airport(id).record(&tx).await?;
    tx.commit().await?;
    Ok(airport)
}

/// `GET /airports/near`: a point and a radius.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NearQuery {
    #[param(value_type = f64, minimum = -90, maximum = 90)]
    pub lat: super::Latitude,
    #[param(value_type = f64, minimum = -180, maximum = 180)]
    pub lon: super::Longitude,
    /// Radius in km, in (0, 20040].
    #[param(exclusive_minimum = 0, maximum = 20040)]
    pub radius_km: f64,
    /// At most this many airports, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The largest radius `near` accepts: half the Earth's circumference.
const MAX_RADIUS_KM: f64 = 20_040.0;

/// Airports within `radius_km` of the point, nearest first, with distances
/// on the WGS84 spheroid (PostGIS geography). `ST_DWithin` uses the GiST
/// index, so only the airports inside the radius are measured and sorted.
pub async fn near(pool: &Pool, query: &NearQuery) -> Result<Vec<NearAirport>, AirportError> {
    if !(query.radius_km > 0.0 && query.radius_km <= MAX_RADIUS_KM) {
        return Err(AirportError::Invalid(format!(
            "radius_km must be in (0, {MAX_RADIUS_KM}]"
        )));
    }
    let limit = limit(query.limit)?;
    let client = pool.get().await?;
    let sql = format!(
        "WITH here AS (SELECT ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography AS point)
         SELECT {COLUMNS}, ST_Distance(location, here.point) / 1000.0 AS distance_km
         FROM airports, here
         WHERE deleted_at IS NULL AND ST_DWithin(location, here.point, $3::float8 * 1000.0)
         ORDER BY distance_km, id
         LIMIT $4"
    );
    let rows = client
        .query(
            &sql,
            &[&query.lat.get(), &query.lon.get(), &query.radius_km, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| {
            Ok(NearAirport {
                airport: from_row(row)?,
                distance_km: row.try_get("distance_km")?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(DbError::from)?)
}

/// What a confirmation link did.
#[derive(Debug, Clone)]
pub enum Confirmed {
    Created(Airport),
    Updated(Airport),
}

/// Performs a verified link's action once: its nonce is recorded in the same
/// transaction, so a replay (or a failed action) changes nothing.
pub async fn confirm(
    pool: &Pool,
    verified: &Verified,
    origin: &Origin,
) -> Result<Confirmed, AirportError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let fresh = tx
        .execute(
            "INSERT INTO confirmation_tokens (nonce, action, expires_at)
             VALUES ($1, $2, $3) ON CONFLICT (nonce) DO NOTHING",
            &[
                &verified.nonce,
                &verified.action.name(),
                &verified.expires_at,
            ],
        )
        .await?;
    if fresh == 0 {
        return Err(AirportError::TokenUsed);
    }
    let done = match &verified.action {
        Action::Create { airport } => Confirmed::Created(insert(&tx, airport).await?),
        Action::Update { id, patch } => Confirmed::Updated(update(&tx, *id, patch).await?),
    };
    let entry = match (&done, &verified.action) {
        (Confirmed::Created(airport), _) => origin.entry("created").airport(airport.id),
        (Confirmed::Updated(airport), Action::Update { patch, .. }) => origin
            .entry("updated")
            .airport(airport.id)
            .detail(serde_json::json!({ "fields": patch.field_names() })),
        (Confirmed::Updated(airport), _) => origin.entry("updated").airport(airport.id),
    };
    entry.record(&tx).await?;
    // Expired nonces can never be replayed (the expiry check comes first).
    tx.execute(
        "DELETE FROM confirmation_tokens WHERE expires_at < now() - interval '1 day'",
        &[],
    )
    .await?;
    tx.commit().await?;
    Ok(done)
}

/// The live airports whose `city` is one of `names` (case-insensitive),
/// each with the name it matched, by name and id. Probes
/// `airports_city_idx` (`lower(city), id` over live rows).
pub async fn of_cities(
    client: &impl GenericClient,
    names: &[String],
) -> Result<Vec<(String, Airport)>, AirportError> {
    let qualified = COLUMNS
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {qualified}, n.town
           FROM (SELECT DISTINCT t.town FROM unnest($1::text[]) AS t(town)) n
           JOIN airports a ON lower(a.city) = lower(n.town) AND a.deleted_at IS NULL
          ORDER BY n.town, a.id"
    );
    let rows = client.query(&sql, &[&names]).await?;
    rows.iter()
        .map(|row| Ok((row.try_get("town")?, from_row(row)?)))
        .collect()
}

/// The live airports among `ids`, by id.
pub async fn by_ids(
    client: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<Airport>, AirportError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM airports WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id"
    );
    let rows = client.query(&sql, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(from_row)
        .collect::<Result<_, _>>()
        .map_err(DbError::from)?)
}
