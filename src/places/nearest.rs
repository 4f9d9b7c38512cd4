//! A placed town's nearest live airport with an IATA code, for answers
//! that name "the airport of a town" (opportunities, issue 30).

use std::collections::HashMap;

use serde::Serialize;

use super::{rule, PlacesError};
use crate::db::Pool;
use crate::insights::opportunities::{Airport, Airports};
use crate::insights::InsightsError;

/// The nearest live airport (with an IATA code) to a placed town.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NearestAirport {
    pub id: i64,
    pub iata: String,
    pub name: String,
    /// From the town's place, on the WGS84 spheroid, km, one decimal.
    pub distance_km: f64,
}

/// For each of `names` that is placed, its nearest live airport with an
/// IATA code (an unplaced or ambiguous town has none: it is absent). The
/// GiST index finds a few candidates by sphere distance (`<->`), which are
/// then ordered by the spheroid's.
pub async fn nearest_airports(
    pool: &Pool,
    names: &[String],
) -> Result<HashMap<String, NearestAirport>, PlacesError> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let client = pool.get().await?;
    let sql = format!(
        "WITH {} \
         SELECT DISTINCT ON (p.town) p.town, a.id, a.iata, a.name, \
                ST_Distance(p.position, a.location) AS distance_m \
           FROM places p \
           CROSS JOIN LATERAL ( \
                SELECT id, iata, name, location FROM airports \
                 WHERE deleted_at IS NULL AND iata IS NOT NULL AND iata <> '' \
                 ORDER BY location <-> p.position LIMIT 4) a \
          WHERE p.position IS NOT NULL \
          ORDER BY p.town, distance_m, a.id",
        rule::places_cte()
    );
    let rows = client.query(&sql, &[&names]).await?;
    rows.iter()
        .map(|row| {
            let distance_m: f64 = row.try_get("distance_m")?;
            Ok((
                row.try_get("town")?,
                NearestAirport {
                    id: row.try_get("id")?,
                    iata: row.try_get("iata")?,
                    name: row.try_get("name")?,
                    distance_km: (distance_m / 100.0).round() / 10.0,
                },
            ))
        })
        .collect()
}

/// The opportunities' airports (`insights::opportunities::Airports`), from
/// the airports table and the towns' places.
pub struct PlacedAirports<'a>(pub &'a Pool);

impl Airports for PlacedAirports<'_> {
    async fn nearest(&self, towns: Vec<String>) -> Result<HashMap<String, Airport>, InsightsError> {
        let nearest = nearest_airports(self.0, &towns)
            .await
            .map_err(|e| match e {
                PlacesError::Db(e) => InsightsError::Db(e),
                PlacesError::Insights(e) => e,
                other => InsightsError::Internal(other.to_string()),
            })?;
        Ok(nearest
            .into_iter()
            .map(|(town, a)| {
                let airport = Airport {
                    iata: a.iata,
                    name: a.name,
                    distance_km: a.distance_km,
                };
                (town, airport)
            })
            .collect())
    }
}
