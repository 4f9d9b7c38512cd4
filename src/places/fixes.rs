//! Fixing a town's place (`PUT /towns/{name}`) and giving it back to the
//! rule (`DELETE /towns/{name}`). A refused fix writes nothing: the body is
//! checked whole first, and a country is stored only in the statement that
//! finds its airports.

use serde_json::Value;

use super::{rule, Fix, Place, PlacesError};
use crate::audit::Origin;
use crate::db::Pool;

/// A town name as imports carry it (the citizens' rules: 1 to 256
/// characters, a letter or digit among them, no NUL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TownName(String);

impl TownName {
    /// `field` names the parameter in errors.
    pub fn parse(raw: &str, field: &str) -> Result<Self, PlacesError> {
        crate::citizens::Place::parse(raw)
            .map(|p| Self(p.as_str().to_owned()))
            .map_err(|e| PlacesError::invalid(field, e.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The body of `PUT /towns/{name}`: `{"country": "Spain"}` or
/// `{"latitude": 39.47, "longitude": -0.38}`.
#[derive(Debug, Clone, PartialEq, utoipa::ToSchema)]
#[schema(as = TownFix)]
#[allow(dead_code)] // The schema's shape; `Fix` is what is parsed.
pub struct FixBody {
    /// A country with a live airport of the town's name (case-insensitive).
    #[schema(min_length = 1, max_length = 256, pattern = r"^[^\u0000]*$")]
    country: Option<String>,
    /// With `longitude`, instead of `country`.
    #[schema(minimum = -90, maximum = 90)]
    latitude: Option<f64>,
    #[schema(minimum = -180, maximum = 180)]
    longitude: Option<f64>,
}

/// The longest country name a fix takes.
const MAX_COUNTRY: usize = 256;

/// Parses a fix, naming the field at fault.
pub fn parse_fix(body: &Value) -> Result<Fix, PlacesError> {
    let Value::Object(fields) = body else {
        return Err(PlacesError::invalid(
            "body",
            "must be an object: {\"country\": …} or {\"latitude\": …, \"longitude\": …}",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["country", "latitude", "longitude"].contains(&k.as_str()))
    {
        let shown: String = unknown.chars().take(64).collect();
        return Err(PlacesError::invalid(
            shown,
            "is not a field of a fix (country, or latitude and longitude)",
        ));
    }
    let coordinate = |name: &str, bound: f64| -> Result<Option<f64>, PlacesError> {
        match fields.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_f64()
                .filter(|v| v.is_finite() && v.abs() <= bound)
                .map(Some)
                .ok_or_else(|| {
                    PlacesError::invalid(name, format!("must be a number from -{bound} to {bound}"))
                }),
            Some(_) => Err(PlacesError::invalid(
                name,
                format!("must be a number from -{bound} to {bound}"),
            )),
        }
    };
    let latitude = coordinate("latitude", 90.0)?;
    let longitude = coordinate("longitude", 180.0)?;
    match (fields.get("country"), latitude, longitude) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(PlacesError::invalid(
            "country",
            "give either a country or coordinates, not both",
        )),
        (Some(Value::String(country)), None, None) => {
            let country = country.trim();
            if country.is_empty() || country.chars().count() > MAX_COUNTRY {
                return Err(PlacesError::invalid(
                    "country",
                    "must be 1 to 256 characters",
                ));
            }
            if country.contains('\0') {
                return Err(PlacesError::invalid(
                    "country",
                    "must not contain NUL characters",
                ));
            }
            Ok(Fix::Country {
                country: country.to_owned(),
            })
        }
        (Some(_), None, None) => Err(PlacesError::invalid("country", "must be a string")),
        (None, Some(latitude), Some(longitude)) => Ok(Fix::Coordinates {
            latitude,
            longitude,
        }),
        (None, Some(_), None) => Err(PlacesError::invalid(
            "longitude",
            "is required with latitude",
        )),
        (None, None, Some(_)) => Err(PlacesError::invalid(
            "latitude",
            "is required with longitude",
        )),
        (None, None, None) => Err(PlacesError::invalid(
            "country",
            "a fix needs a country, or latitude and longitude",
        )),
    }
}

/// Fixes `town`'s place; its place now, and whether the town had no fix
/// before. A country must have a live airport of the town's name; it is
/// stored as the airports spell it. Audited in the fix's transaction.
pub async fn put(
    pool: &Pool,
    town: &TownName,
    fix: &Fix,
    origin: &Origin,
) -> Result<(Place, bool), PlacesError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = match fix {
        Fix::Country { country } => {
            tx.query_opt(
                "INSERT INTO town_places AS p (town, country)
                     SELECT $1, min(a.country) FROM airports a
                      WHERE lower(a.city) = lower($1) AND lower(a.country) = lower($2)
                        AND a.deleted_at IS NULL
                     HAVING count(*) > 0
                     ON CONFLICT ((lower(town))) DO UPDATE
                        SET town = EXCLUDED.town, country = EXCLUDED.country,
                            latitude = NULL, longitude = NULL, updated_at = now()
                     RETURNING (xmax = 0) AS created",
                &[&town.as_str(), &country],
            )
            .await?
        }
        Fix::Coordinates {
            latitude,
            longitude,
        } => Some(
            tx.query_one(
                "INSERT INTO town_places AS p (town, latitude, longitude)
                     VALUES ($1, $2, $3)
                     ON CONFLICT ((lower(town))) DO UPDATE
                        SET town = EXCLUDED.town, country = NULL, latitude = EXCLUDED.latitude,
                            longitude = EXCLUDED.longitude, updated_at = now()
                     RETURNING (xmax = 0) AS created",
                &[&town.as_str(), latitude, longitude],
            )
            .await?,
        ),
    };
    let Some(row) = row else {
        let Fix::Country { country } = fix else {
            return Err(PlacesError::Internal(
                "a coordinates fix was not stored".into(),
            ));
        };
        return Err(no_such_country(&tx, town, country).await?);
    };
    let created: bool = row.try_get("created")?;
    // Place names are not personal data: the town and the fix are recorded.
    let detail = match fix {
        Fix::Country { country } => {
            serde_json::json!({ "town": town.as_str(), "country": country })
        }
        Fix::Coordinates { .. } => {
            serde_json::json!({ "town": town.as_str(), "fix": "coordinates" })
        }
    };
    origin
        .entry(if created { "created" } else { "updated" })
        .detail(detail)
        .record(&tx)
        .await?;
    let place = rule::places(&tx, &[town.as_str().to_owned()])
        .await?
        .pop()
        .ok_or_else(|| PlacesError::Internal("the fixed town has no place row".into()))?;
    tx.commit().await?;
    Ok((place, created))
}

/// The 400 for a country without an airport of the town's name, naming
/// the countries that have one.
async fn no_such_country(
    client: &impl deadpool_postgres::GenericClient,
    town: &TownName,
    country: &str,
) -> Result<PlacesError, PlacesError> {
    let place = rule::places(client, &[town.as_str().to_owned()]).await?;
    let have: Vec<String> = place
        .iter()
        .flat_map(|p| &p.candidates)
        .map(|c| {
            format!(
                "{} ({})",
                c.country.as_deref().unwrap_or("no country"),
                c.airports
            )
        })
        .collect();
    let shown: String = country.chars().take(64).collect();
    let reason = if have.is_empty() {
        format!(
            "no live airport is named {}: {shown:?} cannot place it (fix it with coordinates)",
            town.as_str()
        )
    } else {
        format!(
            "{shown:?} has no live airport named {}; countries that do: {}",
            town.as_str(),
            have.join(", ")
        )
    };
    Ok(PlacesError::invalid("country", reason))
}

/// Gives `town` back to the rule; false when it had no fix (nothing is
/// audited then).
pub async fn delete(pool: &Pool, town: &TownName, origin: &Origin) -> Result<bool, PlacesError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let deleted = tx
        .execute(
            "DELETE FROM town_places WHERE lower(town) = lower($1)",
            &[&town.as_str()],
        )
        .await?
        > 0;
    if deleted {
        origin
            .entry("deleted")
            .detail(serde_json::json!({ "town": town.as_str() }))
            .record(&tx)
            .await?;
    }
    tx.commit().await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(body: Value) -> String {
        match parse_fix(&body).unwrap_err() {
            PlacesError::Invalid { field, .. } => field,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_fix_is_a_country_or_both_coordinates() {
        assert_eq!(
            parse_fix(&json!({"country": " Spain "})).unwrap(),
            Fix::Country {
                country: "Spain".into()
            }
        );
        assert_eq!(
            parse_fix(&json!({"latitude": 39.47, "longitude": -0.38})).unwrap(),
            Fix::Coordinates {
                latitude: 39.47,
                longitude: -0.38
            }
        );
        assert_eq!(field(json!({"latitude": 91, "longitude": 0})), "latitude");
        assert_eq!(
            field(json!({"latitude": 0, "longitude": -180.5})),
            "longitude"
        );
        assert_eq!(field(json!({"latitude": "1", "longitude": 0})), "latitude");
        assert_eq!(field(json!({"latitude": 1})), "longitude");
        assert_eq!(field(json!({"longitude": 1})), "latitude");
        assert_eq!(field(json!({})), "country");
        assert_eq!(field(json!({"country": ""})), "country");
        assert_eq!(field(json!({"country": "a\u{0}b"})), "country");
        assert_eq!(field(json!({"country": 7})), "country");
        assert_eq!(field(json!({"country": "x".repeat(257)})), "country");
        assert_eq!(
            field(json!({"country": "Spain", "latitude": 1, "longitude": 2})),
            "country"
        );
        assert_eq!(field(json!({"country": "Spain", "city": "x"})), "city");
        assert_eq!(field(json!([1])), "body");
    }

    #[test]
    fn town_names_follow_the_citizens_rules() {
        assert_eq!(
            TownName::parse("Valencia", "name").unwrap().as_str(),
            "Valencia"
        );
        for bad in ["", "a\0b", "---", &"x".repeat(257)] {
            match TownName::parse(bad, "name").unwrap_err() {
                PlacesError::Invalid { field, .. } => assert_eq!(field, "name"),
                other => panic!("{other}"),
            }
        }
    }
}
