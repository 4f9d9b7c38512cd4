//! Airports: reference data for "near which airport". Typed models that parse
//! their input (a value that exists is valid), the CSV reader, the
//! confirmation links and the PostgreSQL queries. No HTTP here.

pub mod confirm;
pub mod csv;
mod store;
mod types;
mod upload;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

pub use store::{
    by_ids, confirm, create, delete, get, list, near, of_cities, patch, soft_delete, Confirmed,
    ListFilter, NearQuery, Page,
};
pub use types::{Dst, Latitude, Longitude, Name, Timezone, NUL};
pub use upload::{upload, UploadOutcome};

use crate::db::DbError;

/// Everything that can go wrong with airports, for `http` to map.
#[derive(Debug, thiserror::Error)]
pub enum AirportError {
    #[error("airport {0} not found")]
    NotFound(i64),
    #[error("the upload was rejected: {} bad rows", .0.total)]
    Refused(csv::RefusedFile),
    #[error("the body exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("could not read the body: {0}")]
    Read(String),
    #[error("{0}")]
    Invalid(String),
    #[error("this confirmation link was already used")]
    TokenUsed,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for AirportError {
    fn from(error: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        // The table's CHECKs back the parsers up; should one fire, it is the input's fault.
        match error.code() {
            Some(c) if *c == SqlState::CHECK_VIOLATION || *c == SqlState::NOT_NULL_VIOLATION => {
                AirportError::Invalid("the airport breaks a table constraint".to_owned())
            }
            _ => AirportError::Db(DbError::Postgres(error)),
        }
    }
}

impl From<deadpool_postgres::PoolError> for AirportError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        AirportError::Db(DbError::Pool(error))
    }
}

/// An airport as stored (soft-deleted rows carry `deleted_at`).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Airport {
    pub id: i64,
    pub name: String,
    pub city: Option<String>,
    pub country: Option<String>,
    pub iata: Option<String>,
    pub icao: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    pub altitude: Option<i32>,
    pub timezone: Option<f64>,
    pub dst: Option<String>,
    pub tz: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<DateTime<Utc>>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// An airport found by [`near`], with its distance from the query point.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NearAirport {
    #[serde(flatten)]
    pub airport: Airport,
    pub distance_km: f64,
}

/// A new airport: name and position required, the rest optional. Empty
/// strings are NULL, as in the CSV.
// The utoipa derives are metadata for the OpenAPI document (the body of
// `PUT /airports`, the query of `GET /airports/create`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NewAirport {
    /// Not empty and not `\N`.
    #[schema(value_type = String, min_length = 1, pattern = r"^[^\u0000]+$")]
    #[param(value_type = String, min_length = 1, pattern = r"^[^\u0000]+$")]
    pub name: Name,
    #[serde(default, deserialize_with = "text")]
    #[schema(pattern = r"^[^\u0000]*$")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "text")]
    #[schema(pattern = r"^[^\u0000]*$")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub country: Option<String>,
    #[serde(default, deserialize_with = "text")]
    #[schema(pattern = r"^[^\u0000]*$")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub iata: Option<String>,
    #[serde(default, deserialize_with = "text")]
    #[schema(pattern = r"^[^\u0000]*$")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub icao: Option<String>,
    #[schema(value_type = f64, minimum = -90, maximum = 90)]
    #[param(value_type = f64, minimum = -90, maximum = 90)]
    pub latitude: Latitude,
    #[schema(value_type = f64, minimum = -180, maximum = 180)]
    #[param(value_type = f64, minimum = -180, maximum = 180)]
    pub longitude: Longitude,
    /// Feet, a 32-bit integer (`2095.0` is read as 2095).
    #[serde(default, deserialize_with = "altitude")]
    pub altitude: Option<i32>,
    /// Hours from UTC, up to two decimals, within [-12, 14].
    #[serde(default)]
    #[schema(value_type = Option<f64>, minimum = -12, maximum = 14, multiple_of = 0.01)]
    #[param(value_type = Option<f64>, minimum = -12, maximum = 14, multiple_of = 0.01)]
    pub timezone: Option<Timezone>,
    /// One character (E, A, S, O, Z, N, U); in a query, empty is none.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1, pattern = r"^[^\u0000]$")]
    #[param(value_type = Option<String>, max_length = 1, pattern = r"^[^\u0000]?$")]
    pub dst: Option<Dst>,
    #[serde(default, deserialize_with = "text")]
    #[schema(pattern = r"^[^\u0000]*$")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub tz: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "text")]
    #[schema(pattern = r"^[^\u0000]*$")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "text")]
    #[schema(pattern = r"^[^\u0000]*$")]
    #[param(pattern = r"^[^\u0000]*$")]
    pub source: Option<String>,
}

/// A partial update: an absent field is kept, `null` clears a nullable one.
/// Name and position can change but never become NULL. At least one field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AirportPatch {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = String, min_length = 1, pattern = r"^[^\u0000]+$")]
    pub name: Option<Name>,
    #[serde(
        default,
        deserialize_with = "nullable_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000]*$")]
    pub city: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000]*$")]
    pub country: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000]*$")]
    pub iata: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000]*$")]
    pub icao: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = f64, minimum = -90, maximum = 90)]
    pub latitude: Option<Latitude>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = f64, minimum = -180, maximum = 180)]
    pub longitude: Option<Longitude>,
    #[serde(
        default,
        deserialize_with = "nullable_altitude",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<i32>)]
    pub altitude: Option<Option<i32>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>, minimum = -12, maximum = 14, multiple_of = 0.01)]
    pub timezone: Option<Option<Timezone>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 1, pattern = r"^[^\u0000]$")]
    pub dst: Option<Option<Dst>>,
    #[serde(
        default,
        deserialize_with = "nullable_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000]*$")]
    pub tz: Option<Option<String>>,
    #[serde(
        default,
        rename = "type",
        deserialize_with = "nullable_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000]*$")]
    pub kind: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "nullable_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, pattern = r"^[^\u0000]*$")]
    pub source: Option<Option<String>>,
}

impl AirportPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The names of the fields it changes (as its JSON form names them),
    /// for the audit trail.
    pub fn field_names(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields.into_iter().map(|(k, _)| k).collect(),
            _ => Vec::new(),
        }
    }
}

/// A parsed airport (new or a change) whose text PostgreSQL can store.
pub trait Storable {
    /// The first text field holding a NUL character, which PostgreSQL text
    /// cannot store (the name's type refuses one by itself).
    fn unstorable(&self) -> Option<&'static str>;
}

fn first_with_nul<'a>(
    fields: impl IntoIterator<Item = (&'static str, Option<&'a str>)>,
) -> Option<&'static str> {
    fields
        .into_iter()
        .find(|(_, value)| value.is_some_and(|v| v.contains('\0')))
        .map(|(name, _)| name)
}

impl Storable for NewAirport {
    fn unstorable(&self) -> Option<&'static str> {
        first_with_nul([
            ("city", self.city.as_deref()),
            ("country", self.country.as_deref()),
            ("iata", self.iata.as_deref()),
            ("icao", self.icao.as_deref()),
            ("tz", self.tz.as_deref()),
            ("type", self.kind.as_deref()),
            ("source", self.source.as_deref()),
        ])
    }
}

impl Storable for AirportPatch {
    fn unstorable(&self) -> Option<&'static str> {
        fn text(field: &Option<Option<String>>) -> Option<&str> {
            field.as_ref().and_then(|v| v.as_deref())
        }
        first_with_nul([
            ("city", text(&self.city)),
            ("country", text(&self.country)),
            ("iata", text(&self.iata)),
            ("icao", text(&self.icao)),
            ("tz", text(&self.tz)),
            ("type", text(&self.kind)),
            ("source", text(&self.source)),
        ])
    }
}

/// A field that, when given, must hold a value (`null` is refused).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A nullable field: absent → `None`, `null` → `Some(None)`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An optional altitude: an integer in JSON's sense, so `2095.0` is 2095
/// (JSON Schema's `integer` includes it), but `2095.5` is refused.
fn altitude<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let Some(value) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    if value.fract() == 0.0 && (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&value) {
        Ok(Some(value as i32))
    } else {
        Err(serde::de::Error::custom(format!(
            "altitude {value} is not a 32-bit integer"
        )))
    }
}

fn nullable_altitude<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i32>>, D::Error> {
    altitude(d).map(Some)
}

/// Optional text where `""` and `\N` mean NULL, as in the CSV.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.and_then(null_if_empty))
}

fn nullable_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    text(d).map(Some)
}

/// `""` and `\N` are NULL.
pub fn null_if_empty(value: String) -> Option<String> {
    (!value.is_empty() && value != "\\N").then_some(value)
}

/// Fields whose query-string values are numbers rather than text.
const NUMERIC_FIELDS: &[&str] = &["latitude", "longitude", "altitude", "timezone"];

/// Turns query-string pairs (`GET /airports/create?name=…`) into the JSON
/// object a body would carry, so both go through the same typed parsing:
/// numeric fields become numbers when they parse, `""` and `\N` become null.
pub fn pairs_to_json(pairs: Vec<(String, String)>) -> Result<serde_json::Value, String> {
    let mut object = serde_json::Map::new();
    for (key, value) in pairs {
        let json = if value.is_empty() || value == "\\N" {
            serde_json::Value::Null
        } else if NUMERIC_FIELDS.contains(&key.as_str()) {
            number(&value).unwrap_or(serde_json::Value::String(value))
        } else {
            serde_json::Value::String(value)
        };
        if object.insert(key.clone(), json).is_some() {
            return Err(format!("{key} is given more than once"));
        }
    }
    Ok(serde_json::Value::Object(object))
}

fn number(text: &str) -> Option<serde_json::Value> {
    if let Ok(i) = text.parse::<i64>() {
        return Some(i.into());
    }
    let f: f64 = text.parse().ok()?;
    serde_json::Number::from_f64(f).map(serde_json::Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_new_airport_needs_name_and_position_and_knows_its_fields() {
        let ok: NewAirport = serde_json::from_value(json!({
            "name": "X", "latitude": 1.5, "longitude": -2, "city": "", "type": "airport"
        }))
        .unwrap();
        assert_eq!(ok.city, None);
        assert_eq!(ok.kind.as_deref(), Some("airport"));
        for bad in [
            json!({"latitude": 1, "longitude": 2}),
            json!({"name": "X", "latitude": 91, "longitude": 2}),
            json!({"name": "X", "latitude": 1, "longitude": 2, "colour": "red"}),
            json!({"name": "X", "latitude": "1", "longitude": 2}),
            json!({"name": "", "latitude": 1, "longitude": 2}),
            json!({"name": "X", "latitude": 1, "longitude": 2, "dst": "EE"}),
        ] {
            assert!(
                serde_json::from_value::<NewAirport>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_altitude_is_an_integer_however_json_writes_it() {
        let read = |altitude: serde_json::Value| {
            serde_json::from_value::<NewAirport>(
                json!({"name": "X", "latitude": 1, "longitude": 2, "altitude": altitude}),
            )
            .map(|a| a.altitude)
        };
        assert_eq!(read(json!(2095)).unwrap(), Some(2095));
        assert_eq!(read(json!(2095.0)).unwrap(), Some(2095));
        assert_eq!(read(json!(-12.0)).unwrap(), Some(-12));
        assert_eq!(read(json!(null)).unwrap(), None);
        for bad in [json!(2095.5), json!(3e10), json!("12"), json!(true)] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
        let patch: AirportPatch = serde_json::from_value(json!({"altitude": 7.0})).unwrap();
        assert_eq!(patch.altitude, Some(Some(7)));
    }

    #[test]
    fn a_patch_tells_absent_from_null() {
        let patch: AirportPatch =
            serde_json::from_value(json!({"city": null, "altitude": 7})).unwrap();
        assert_eq!(patch.city, Some(None));
        assert_eq!(patch.altitude, Some(Some(7)));
        assert_eq!(patch.country, None);
        assert!(serde_json::from_value::<AirportPatch>(json!({"name": null})).is_err());
        assert!(serde_json::from_value::<AirportPatch>(json!({"nope": 1})).is_err());
        assert!(serde_json::from_value::<AirportPatch>(json!({"altitude": "high"})).is_err());
        // It survives the round trip through a confirmation token.
        let back: AirportPatch =
            serde_json::from_value(serde_json::to_value(&patch).unwrap()).unwrap();
        assert_eq!(back, patch);
    }

    #[test]
    fn query_pairs_become_typed_json() {
        let pairs = vec![
            ("name".to_owned(), "X".to_owned()),
            ("latitude".to_owned(), "40.5".to_owned()),
            ("altitude".to_owned(), "12".to_owned()),
            ("city".to_owned(), String::new()),
            ("iata".to_owned(), "123".to_owned()),
        ];
        let value = pairs_to_json(pairs).unwrap();
        assert_eq!(
            value,
            json!({"name": "X", "latitude": 40.5, "altitude": 12, "city": null, "iata": "123"})
        );
        let twice = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(pairs_to_json(twice).is_err());
    }
}
