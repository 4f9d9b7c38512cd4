//! What the statistics answer: the types both their SQL and their
//! in-memory computation build, and the handlers serialise.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::citizens::CitizenId;

/// How `birthdays` groups the buyers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupBy {
    /// Keys `"1"`…`"12"`: the month of the relative's birthday.
    #[default]
    Month,
    /// Keys are the buyer's channel (`"unknown"` when unset); presents count
    /// every relative, a year's worth.
    Channel,
}

/// The channel key of citizens without one.
pub const UNKNOWN_CHANNEL: &str = "unknown";

/// One buyer and how many presents they buy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Presents {
    pub citizen_id: CitizenId,
    pub presents: i32,
}

/// Buyers per group, in key order; serialises as a JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Birthdays(pub Vec<(String, Vec<Presents>)>);

impl Serialize for Birthdays {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, buyers) in &self.0 {
            map.serialize_entry(key, buyers)?;
        }
        map.end()
    }
}

/// Age percentiles of one town's citizens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgePercentiles {
    pub town: String,
    pub p50: f64,
    pub p75: f64,
    pub p99: f64,
}
