//! `near` as CSV, with the insights' writer (RFC 4180, formulas
//! neutralised): the towns within the radius nearest first, then the towns
//! without a place (no distance), so the file too keeps them in view.

use super::near::Near;
use crate::insights::csv::{Cell, Table};

const HEADER: [&str; 15] = [
    "town",
    "status",
    "distance_km",
    "country",
    "latitude",
    "longitude",
    "population",
    "askers",
    "statements",
    "rate",
    "rate_low",
    "rate_high",
    "expected",
    "ratio",
    "why",
];

pub fn near(near: &Near) -> Vec<u8> {
    let mut table = Table::new(&HEADER);
    for t in &near.towns {
        table.row(&[
            Cell::Text(&t.town),
            Cell::Text("placed"),
            Cell::Number(Some(t.distance_km)),
            Cell::Text(t.country.as_deref().unwrap_or_default()),
            Cell::Number(Some(t.latitude)),
            Cell::Number(Some(t.longitude)),
            Cell::Int(t.population),
            Cell::Int(t.askers),
            Cell::Int(t.statements),
            Cell::Number(t.rate),
            Cell::Number(t.rate_low),
            Cell::Number(t.rate_high),
            Cell::Number(t.expected),
            Cell::Number(t.ratio),
            Cell::Text(""),
        ]);
    }
    for t in &near.not_placed {
        table.row(&[
            Cell::Text(&t.town),
            Cell::Text(t.status.name()),
            Cell::Number(None),
            Cell::Text(""),
            Cell::Number(None),
            Cell::Number(None),
            Cell::Int(t.population),
            Cell::Int(t.askers),
            Cell::Int(t.statements),
            Cell::Number(None),
            Cell::Number(None),
            Cell::Number(None),
            Cell::Number(None),
            Cell::Number(None),
            Cell::Text(&t.why),
        ]);
    }
    table.finish()
}
