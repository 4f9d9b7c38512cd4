//! Places (SPEC section 5, "Places"): where a town is, by the live
//! airports of its name, and what lies near a point; the map of an
//! import's demand. No HTTP here: errors are [`PlacesError`].
//!
//! - `rule`: the placing rule in SQL (PostGIS does the geometry);
//! - `fixes`: the analysts' fixes (`PUT`/`DELETE /towns/{name}`);
//! - `towns`: every town with its place, an import's towns with their airports;
//! - `near`: an import's towns within a radius, with their demand;
//!   `nearest`: a town's nearest live airport (for opportunities);
//! - `map`, `layout`, `draw`, `legend`: the map as SVG (plotters);
//! - `csv`: `near` as CSV.

mod annotate;
pub mod csv;
mod draw;
pub mod fixes;
pub mod layout;
mod legend;
pub mod map;
pub mod near;
pub mod nearest;
pub mod rule;
pub mod towns;

use serde::Serialize;

pub use fixes::{FixBody, TownName};
pub use map::MapQuery;
pub use near::{Center, Near, NearQuery};
pub use nearest::{nearest_airports, NearestAirport, PlacedAirports};
pub use towns::{TownAirport, TownAirports, TownEntry, TownPage, TownsQuery};

use crate::db::DbError;
use crate::insights::{InsightsError, ParamError};

/// Whether a town has a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It has a position.
    Placed,
    /// Two or more countries tie for the most airports of its name.
    Ambiguous,
    /// No live airport has its name (or none in the country it was fixed to).
    Unplaced,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Ambiguous => "ambiguous",
            Self::Unplaced => "unplaced",
        }
    }
}

/// How a placed town got its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// The rule: the airports of the country with the most of them.
    Airports,
    /// A fixed country: its airports of the town's name.
    Country,
    /// Fixed coordinates.
    Coordinates,
}

impl How {
    pub fn name(self) -> &'static str {
        match self {
            Self::Airports => "airports",
            Self::Country => "country",
            Self::Coordinates => "coordinates",
        }
    }
}

/// A country with live airports of a town's name, and how many.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Candidate {
    /// `null` for airports without a country.
    pub country: Option<String>,
    pub airports: i64,
}

/// A town's fixed place, as `PUT /towns/{name}` set it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Fix {
    Country { country: String },
    Coordinates { latitude: f64, longitude: f64 },
}

/// A town's place as the rule (or its fix) decides it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub town: String,
    pub status: Status,
    /// Set when placed.
    pub how: Option<How>,
    /// The country whose airports placed it.
    pub country: Option<String>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    /// The airports whose mean position it is, by id.
    pub airport_ids: Vec<i64>,
    /// Every country with live airports of its name, most airports first.
    pub candidates: Vec<Candidate>,
    pub fixed: Option<Fix>,
}

impl Place {
    pub fn position(&self) -> Option<(f64, f64)> {
        self.latitude.zip(self.longitude)
    }

    /// Why the town is where it is (or nowhere), in one sentence.
    pub fn why(&self) -> String {
        let town = &self.town;
        let country = |c: &Option<String>| c.clone().unwrap_or_else(|| "no country".to_owned());
        let airports = |n: usize| {
            if n == 1 {
                "its one live airport".to_owned()
            } else {
                format!("the mean position of its {n} live airports")
            }
        };
        let others = |skip: Option<&str>| {
            let rest: Vec<String> = self
                .candidates
                .iter()
                .filter(|c| c.country.as_deref() != skip)
                .map(|c| format!("{} {}", country(&c.country), c.airports))
                .collect();
            if rest.is_empty() {
                String::new()
            } else {
                format!(
                    " (other countries with airports of this name: {})",
                    rest.join(", ")
                )
            }
        };
        match (self.status, self.how, &self.fixed) {
            (Status::Placed, Some(How::Coordinates), _) => {
                "fixed to the given coordinates with PUT /towns".to_owned()
            }
            (Status::Placed, Some(How::Country), _) => format!(
                "fixed to {} with PUT /towns: {} there{}",
                country(&self.country),
                airports(self.airport_ids.len()),
                others(self.country.as_deref())
            ),
            (Status::Placed, _, _) => {
                let lead = if self.candidates.len() > 1 {
                    ", the country with the most airports of this name"
                } else {
                    ""
                };
                format!(
                    "{} in {}{lead}{}",
                    airports(self.airport_ids.len()),
                    country(&self.country),
                    others(self.country.as_deref())
                )
            }
            (Status::Ambiguous, _, _) => {
                let top = self.candidates.first().map_or(0, |c| c.airports);
                let tied: Vec<String> = self
                    .candidates
                    .iter()
                    .filter(|c| c.airports == top)
                    .map(|c| country(&c.country))
                    .collect();
                format!(
                    "{} have {top} live airport{} each named {town}: a tie, so no place until \
                     PUT /towns/{town} names the country",
                    tied.join(" and "),
                    if top == 1 { "" } else { "s" },
                )
            }
            (Status::Unplaced, _, Some(Fix::Country { country: fixed })) => format!(
                "fixed to {fixed} with PUT /towns, which has no live airport named {town} now{}",
                others(None)
            ),
            (Status::Unplaced, _, _) => format!("no live airport has the city {town}"),
        }
    }
}

/// Everything that can go wrong with places, for `http` to map.
#[derive(Debug, thiserror::Error)]
pub enum PlacesError {
    /// Input that breaks a rule: the parameter or field, and why.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Something named that does not exist: the parameter, and what.
    #[error("{reason}")]
    NotFound { field: String, reason: String },
    #[error("import {0} does not exist")]
    NoImport(i64),
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Insights(#[from] InsightsError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("places: {0}")]
    Internal(String),
}

impl PlacesError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<crate::airports::AirportError> for PlacesError {
    fn from(e: crate::airports::AirportError) -> Self {
        match e {
            crate::airports::AirportError::Db(e) => Self::Db(e),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for PlacesError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for PlacesError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(status: Status, how: Option<How>, candidates: &[(&str, i64)], used: usize) -> Place {
        Place {
            town: "Valencia".into(),
            status,
            how,
            country: (status == Status::Placed).then(|| candidates[0].0.to_owned()),
            latitude: None,
            longitude: None,
            airport_ids: (0..used as i64).collect(),
            candidates: candidates
                .iter()
                .map(|(c, n)| Candidate {
                    country: Some((*c).to_owned()),
                    airports: *n,
                })
                .collect(),
            fixed: None,
        }
    }

    #[test]
    fn each_outcome_says_why() {
        let london = place(
            Status::Placed,
            Some(How::Airports),
            &[("United Kingdom", 6), ("United States", 2), ("Canada", 1)],
            6,
        );
        assert_eq!(
            london.why(),
            "the mean position of its 6 live airports in United Kingdom, the country with the \
             most airports of this name (other countries with airports of this name: \
             United States 2, Canada 1)"
        );
        let tie = place(
            Status::Ambiguous,
            None,
            &[("Spain", 1), ("Venezuela", 1)],
            0,
        );
        assert!(
            tie.why()
                .starts_with("Spain and Venezuela have 1 live airport each named Valencia"),
            "{}",
            tie.why()
        );
        let mut fixed = place(
            Status::Placed,
            Some(How::Country),
            &[("Spain", 1), ("Venezuela", 1)],
            1,
        );
        fixed.fixed = Some(Fix::Country {
            country: "Spain".into(),
        });
        assert_eq!(
            fixed.why(),
            "fixed to Spain with PUT /towns: its one live airport there (other countries with \
             airports of this name: Venezuela 1)"
        );
        let nowhere = place(Status::Unplaced, None, &[], 0);
        assert_eq!(nowhere.why(), "no live airport has the city Valencia");
    }
}
