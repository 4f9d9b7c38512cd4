//! One record of the CSV as an airport: every field parsed by its column,
//! each bad one named.

use csv::StringRecord;

use crate::limits::{excerpt, ECHO_CHARS};

fn shown(value: &str) -> String {
    excerpt(value, ECHO_CHARS)
}

use super::{Column, Header, RowError};
use crate::airports::{null_if_empty, Dst, Latitude, Longitude, Name, NewAirport, Timezone, NUL};

/// One good record.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: u64,
    pub id: Option<i64>,
    pub airport: NewAirport,
}

impl Header {
    /// Parses one record into a row, naming every bad field.
    pub fn row(&self, line: u64, record: &StringRecord) -> Result<Row, RowError> {
        let fail = |reason: String| RowError { line, reason };
        if record.len() != self.columns().len() {
            return Err(fail(format!(
                "expected {} fields, found {}",
                self.columns().len(),
                record.len()
            )));
        }
        let mut fields: [Option<&str>; 14] = [None; 14];
        let mut problems = Vec::new();
        for (column, value) in self.columns().iter().zip(record.iter()) {
            if value.contains('\0') {
                // PostgreSQL text cannot hold it (the name's type says so itself).
                if *column != Column::Name {
                    problems.push(format!("{} {NUL}", column.name()));
                }
            }
            fields[*column as usize] = (!value.is_empty() && value != "\\N").then_some(value);
        }
        let get = |column: Column| fields[column as usize];
        let id = field(get(Column::Id), &mut problems, |v| {
            v.trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| format!("id {} is not a positive integer", shown(v)))
        });
        let name = field(get(Column::Name), &mut problems, |v| {
            Name::try_from(v.to_owned())
        });
        let latitude = field(get(Column::Latitude), &mut problems, str::parse::<Latitude>);
        let longitude = field(
            get(Column::Longitude),
            &mut problems,
            str::parse::<Longitude>,
        );
        let altitude = field(get(Column::Altitude), &mut problems, |v| {
            v.trim()
                .parse::<i32>()
                .map_err(|_| format!("altitude {} is not an integer", shown(v)))
        });
        let timezone = field(get(Column::Timezone), &mut problems, str::parse::<Timezone>);
        let dst = field(get(Column::Dst), &mut problems, str::parse::<Dst>);
        for required in Column::REQUIRED {
            if get(required).is_none() {
                problems.push(format!("{} is required", required.name()));
            }
        }
        let (true, Some(name), Some(latitude), Some(longitude)) =
            (problems.is_empty(), name, latitude, longitude)
        else {
            return Err(fail(problems.join("; ")));
        };
        let text = |column: Column| get(column).map(str::to_owned).and_then(null_if_empty);
        Ok(Row {
            line,
            id,
            airport: NewAirport {
                name,
                city: text(Column::City),
                country: text(Column::Country),
                iata: text(Column::Iata),
                icao: text(Column::Icao),
                latitude,
                longitude,
                altitude,
                timezone,
                dst,
                tz: text(Column::Tz),
                kind: text(Column::Type),
                source: text(Column::Source),
            },
        })
    }
}

/// Parses a present field, noting the problem when it does not parse.
fn field<T>(
    value: Option<&str>,
    problems: &mut Vec<String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match parse(value?) {
        Ok(parsed) => Some(parsed),
        Err(problem) => {
            problems.push(problem);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::airports::csv::tests::parse_all;
    use proptest::prelude::*;

    const HEADER: &str =
        "name,city,country,iata,icao,latitude,longitude,altitude,timezone,dst,tz,type,source\n";

    #[test]
    fn the_openflights_shape_parses() {
        let input = format!(
            "{HEADER}\"Magdeburg \"\"City\"\" Airport\",\"Magdeburg\",\"Germany\",\"ZMG\",\"EDBM\",52.073612,11.626389,259,1,\"E\",\"Europe/Berlin\",\"airport\",\"OurAirports\"\n\
             \"Nowhere, Field\",\"\",\"Spain\",\\N,\"LEXX\",40.1,-3.5,0,\\N,\\N,\\N,\"airport\",\"OurAirports\"\n"
        );
        let rows = parse_all(&input).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].airport.name.as_str(), "Magdeburg \"City\" Airport");
        assert_eq!(rows[0].airport.timezone.unwrap().hundredths(), 100);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[1].airport.name.as_str(), "Nowhere, Field");
        assert_eq!(rows[1].airport.city, None);
        assert_eq!(rows[1].airport.iata, None);
        assert_eq!(rows[1].airport.timezone, None);
        assert_eq!(rows[1].line, 3);
    }

    fn text_field() -> impl Strategy<Value = String> {
        // Anything, quotes, commas, newlines and non-ASCII included, except
        // the two spellings of NULL and the NUL character (refused, below).
        any::<String>().prop_filter("not NULL, no NUL", |s| {
            !s.is_empty() && s != "\\N" && !s.contains('\0')
        })
    }

    proptest! {
        #[test]
        fn a_nul_anywhere_in_a_text_field_is_refused_naming_it(
            text in text_field(),
            at in any::<prop::sample::Index>(),
            column in prop::sample::select(vec!["name", "city", "country", "tz", "type"]),
        ) {
            let mut with_nul = text.clone();
            let at = with_nul
                .char_indices()
                .map(|(i, _)| i)
                .nth(at.index(text.chars().count()))
                .unwrap_or(0);
            with_nul.insert(at, '\0');
            let mut writer = csv::Writer::from_writer(Vec::new());
            let fourth = if column == "name" { "city" } else { column };
            writer.write_record(["name", "latitude", "longitude", fourth]).unwrap();
            let name = if column == "name" { with_nul.clone() } else { "A".to_owned() };
            let other = if column == "name" { "x".to_owned() } else { with_nul };
            writer.write_record([name, "1".into(), "2".into(), other]).unwrap();
            let bytes = writer.into_inner().unwrap();
            let rejected = parse_all(std::str::from_utf8(&bytes).unwrap()).unwrap_err();
            let reason = &rejected.errors[0].reason;
            prop_assert!(reason.contains(&format!("{column} must not contain NUL")), "{}", reason);
            prop_assert_eq!(rejected.errors[0].line, 2);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_strings_round_trip_through_csv(
            name in text_field(),
            city in proptest::option::of(text_field()),
            tz in proptest::option::of(text_field()),
            latitude in -90.0f64..=90.0,
            longitude in -180.0f64..=180.0,
            altitude in proptest::option::of(any::<i32>()),
        ) {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(["NAME", "City", "latitude", "longitude", "altitude", "tz"]).unwrap();
            writer.write_record([
                name.clone(),
                city.clone().unwrap_or_default(),
                latitude.to_string(),
                longitude.to_string(),
                altitude.map_or_else(|| "\\N".to_owned(), |a| a.to_string()),
                tz.clone().unwrap_or_else(|| "\\N".to_owned()),
            ]).unwrap();
            let bytes = writer.into_inner().unwrap();
            let rows = parse_all(std::str::from_utf8(&bytes).unwrap()).unwrap();
            prop_assert_eq!(rows.len(), 1);
            let airport = &rows[0].airport;
            prop_assert_eq!(airport.name.as_str(), name.as_str());
            prop_assert_eq!(&airport.city, &city);
            prop_assert_eq!(&airport.tz, &tz);
            prop_assert_eq!(airport.latitude.get(), latitude);
            prop_assert_eq!(airport.longitude.get(), longitude);
            prop_assert_eq!(airport.altitude, altitude);
        }
    }
}
