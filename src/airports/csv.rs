//! The airports CSV: a header row whose names match case-insensitively in any
//! order (an `id` column is optional), then one airport per record. `\N` and
//! empty fields are NULL. Records are parsed one at a time, keeping their line
//! numbers, and bad ones are collected (the first [`MAX_ERRORS`] reported).

use std::collections::HashMap;
use std::io::Read;

use csv::{ReaderBuilder, StringRecord};
use serde::Serialize;

use super::{null_if_empty, Dst, Latitude, Longitude, Name, NewAirport, Timezone};

/// How many bad rows an error report lists.
pub const MAX_ERRORS: usize = 100;

/// A column the CSV may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    Id,
    Name,
    City,
    Country,
    Iata,
    Icao,
    Latitude,
    Longitude,
    Altitude,
    Timezone,
    Dst,
    Tz,
    Type,
    Source,
}

impl Column {
    pub const ALL: [Column; 14] = [
        Column::Id,
        Column::Name,
        Column::City,
        Column::Country,
        Column::Iata,
        Column::Icao,
        Column::Latitude,
        Column::Longitude,
        Column::Altitude,
        Column::Timezone,
        Column::Dst,
        Column::Tz,
        Column::Type,
        Column::Source,
    ];

    const REQUIRED: [Column; 3] = [Column::Name, Column::Latitude, Column::Longitude];

    /// The column's name in the header and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Name => "name",
            Column::City => "city",
            Column::Country => "country",
            Column::Iata => "iata",
            Column::Icao => "icao",
            Column::Latitude => "latitude",
            Column::Longitude => "longitude",
            Column::Altitude => "altitude",
            Column::Timezone => "timezone",
            Column::Dst => "dst",
            Column::Tz => "tz",
            Column::Type => "type",
            Column::Source => "source",
        }
    }

    fn from_header(name: &str) -> Option<Self> {
        let name = name.trim();
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
    }
}

/// One bad line and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

/// Why a file was refused: the first [`MAX_ERRORS`] problems and how many bad rows in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub errors: Vec<RowError>,
    pub total: usize,
}

impl Rejected {
    fn one(line: u64, reason: impl Into<String>) -> Self {
        Self {
            errors: vec![RowError {
                line,
                reason: reason.into(),
            }],
            total: 1,
        }
    }
}

/// The header: which column each position holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    columns: Vec<Column>,
}

impl Header {
    /// Maps header names to columns; unknown, repeated and missing required
    /// names are all reported.
    pub fn parse(record: &StringRecord) -> Result<Self, String> {
        let mut columns = Vec::with_capacity(record.len());
        let mut problems = Vec::new();
        for (i, raw) in record.iter().enumerate() {
            // A byte-order mark may precede the first name.
            let raw = if i == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            match Column::from_header(raw) {
                Some(column) if columns.contains(&column) => {
                    problems.push(format!("column {raw:?} appears twice"));
                }
                Some(column) => columns.push(column),
                None => problems.push(format!("unknown column {raw:?}")),
            }
        }
        for required in Column::REQUIRED {
            if !columns.contains(&required) {
                problems.push(format!("required column {:?} is missing", required.name()));
            }
        }
        if problems.is_empty() {
            Ok(Self { columns })
        } else {
            let known: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
            Err(format!(
                "bad header: {} (known columns: {})",
                problems.join("; "),
                known.join(", ")
            ))
        }
    }

    pub fn has(&self, column: Column) -> bool {
        self.columns.contains(&column)
    }

    /// The columns in header order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Parses one record into a row, naming every bad field.
    pub fn row(&self, line: u64, record: &StringRecord) -> Result<Row, RowError> {
        let fail = |reason: String| RowError { line, reason };
        if record.len() != self.columns.len() {
            return Err(fail(format!(
                "expected {} fields, found {}",
                self.columns.len(),
                record.len()
            )));
        }
        let mut fields: [Option<&str>; 14] = [None; 14];
        for (column, value) in self.columns.iter().zip(record.iter()) {
            fields[*column as usize] = (!value.is_empty() && value != "\\N").then_some(value);
        }
        let get = |column: Column| fields[column as usize];
        let mut problems = Vec::new();
        let id = field(get(Column::Id), &mut problems, |v| {
            v.trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| format!("id {v:?} is not a positive integer"))
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
                .map_err(|_| format!("altitude {v:?} is not an integer"))
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

/// One good record.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub line: u64,
    pub id: Option<i64>,
    pub airport: NewAirport,
}

/// Reads records one at a time from any reader (the upload feeds it the
/// request body as it arrives), yielding good rows and collecting bad ones.
pub struct Parser<R> {
    reader: csv::Reader<R>,
    header: Header,
    record: StringRecord,
    errors: Vec<RowError>,
    bad_rows: usize,
    ids: HashMap<i64, u64>,
    fatal: Option<String>,
}

impl<R: Read> Parser<R> {
    /// Reads and checks the header row.
    pub fn new(input: R) -> Result<Self, Rejected> {
        let mut reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut record = StringRecord::new();
        let header = match reader.read_record(&mut record) {
            Ok(true) => Header::parse(&record).map_err(|reason| Rejected::one(1, reason))?,
            Ok(false) => {
                return Err(Rejected::one(
                    1,
                    "the file is empty; a header row is required",
                ))
            }
            Err(error) => return Err(Rejected::one(1, describe(&error))),
        };
        Ok(Self {
            reader,
            header,
            record,
            errors: Vec::new(),
            bad_rows: 0,
            ids: HashMap::new(),
            fatal: None,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// True once any row was bad: the file will be refused.
    pub fn failed(&self) -> bool {
        self.bad_rows > 0 || self.fatal.is_some()
    }

    fn reject(&mut self, line: u64, reason: String) {
        self.bad_rows += 1;
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(RowError { line, reason });
        }
    }

    /// The next good row, or `None` at the end of input (bad rows are recorded
    /// and skipped; a read failure ends the input).
    pub fn next_row(&mut self) -> Option<Row> {
        loop {
            match self.reader.read_record(&mut self.record) {
                Ok(false) => return None,
                Ok(true) => {
                    let line = self.record.position().map_or(0, csv::Position::line);
                    match self.header.row(line, &self.record) {
                        Ok(row) => {
                            if let Some(id) = row.id {
                                if let Some(first) = self.ids.insert(id, line) {
                                    self.reject(
                                        line,
                                        format!("id {id} repeats the id of line {first}"),
                                    );
                                    continue;
                                }
                            }
                            return Some(row);
                        }
                        Err(error) => self.reject(error.line, error.reason),
                    }
                }
                Err(error) => match error.kind() {
                    // A record that is not UTF-8 is one bad row; reading goes on.
                    csv::ErrorKind::Utf8 { pos, .. } => {
                        let line = pos.as_ref().map_or(0, csv::Position::line);
                        self.reject(line, describe(&error));
                    }
                    _ => {
                        let line = error.position().map_or(0, csv::Position::line);
                        self.fatal = Some(describe(&error));
                        self.reject(line, describe(&error));
                        return None;
                    }
                },
            }
        }
    }

    /// After the last row: whether the whole file was good, or why it is refused.
    pub fn finish(self) -> Result<(), Rejected> {
        if self.failed() {
            Err(Rejected {
                errors: self.errors,
                total: self.bad_rows,
            })
        } else {
            Ok(())
        }
    }

    /// The read failure that ended the input early, if any.
    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }
}

fn describe(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Utf8 { .. } => "the record is not valid UTF-8".to_owned(),
        csv::ErrorKind::Io(e) => format!("could not read the input: {e}"),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEADER: &str =
        "name,city,country,iata,icao,latitude,longitude,altitude,timezone,dst,tz,type,source\n";

    fn parse_all(input: &str) -> Result<Vec<Row>, Rejected> {
        let mut parser = Parser::new(input.as_bytes())?;
        let mut rows = Vec::new();
        while let Some(row) = parser.next_row() {
            rows.push(row);
        }
        parser.finish().map(|()| rows)
    }

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

    #[test]
    fn headers_match_case_insensitively_in_any_order_with_an_optional_id() {
        let rows = parse_all("Longitude,ID,NAME,Latitude,DST\n-3.5,7,X,40,E\n").unwrap();
        assert_eq!(rows[0].id, Some(7));
        assert_eq!(rows[0].airport.longitude.get(), -3.5);
        assert!(rows[0].airport.dst.is_some());
        let bom = parse_all("\u{feff}name,latitude,longitude\nX,1,2\n").unwrap();
        assert_eq!(bom.len(), 1);
    }

    #[test]
    fn bad_headers_are_refused_on_line_one() {
        for header in [
            "name,latitude,longitude,colour\n",
            "name,latitude\n",
            "name,name,latitude,longitude\n",
            "",
        ] {
            let rejected = parse_all(header).unwrap_err();
            assert_eq!(rejected.errors[0].line, 1, "{header:?}");
        }
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let input = "id,name,latitude,longitude,altitude,timezone\n\
                     1,A,1,2,3,1\n\
                     2,B,123,2,3,1\n\
                     3,C,1,2\n\
                     4,D,1,2,high,1\n\
                     1,E,1,2,3,1\n\
                     5,,1,2,3,1\n\
                     6,F,1,2,3,99\n";
        let rejected = parse_all(input).unwrap_err();
        let lines: Vec<u64> = rejected.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7, 8]);
        assert!(rejected.errors[0].reason.contains("latitude"));
        assert!(rejected.errors[1]
            .reason
            .contains("expected 6 fields, found 4"));
        assert!(rejected.errors[2].reason.contains("altitude"));
        assert!(rejected.errors[3].reason.contains("line 2"));
        assert!(rejected.errors[4].reason.contains("name"));
        assert!(rejected.errors[5].reason.contains("timezone"));
        assert_eq!(rejected.total, 6);
    }

    #[test]
    fn reports_stop_at_one_hundred_but_count_everything() {
        let mut input = String::from("name,latitude,longitude\n");
        for _ in 0..250 {
            input.push_str("X,100,0\n");
        }
        let rejected = parse_all(&input).unwrap_err();
        assert_eq!(rejected.errors.len(), MAX_ERRORS);
        assert_eq!(rejected.total, 250);
    }

    #[test]
    fn invalid_utf8_is_a_bad_row() {
        let mut input = b"name,latitude,longitude\nA,1,2\n".to_vec();
        input.extend_from_slice(b"\xff\xfe,1,2\nB,1,2\n");
        let mut parser = Parser::new(&input[..]).unwrap();
        while parser.next_row().is_some() {}
        let rejected = parser.finish().unwrap_err();
        assert_eq!(rejected.errors[0].line, 3);
    }

    fn text_field() -> impl Strategy<Value = String> {
        // Anything, quotes, commas, newlines and non-ASCII included, except
        // the two spellings of NULL.
        any::<String>().prop_filter("not NULL", |s| !s.is_empty() && s != "\\N")
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

        #[test]
        fn garbage_never_panics(input in any::<Vec<u8>>()) {
            let mut full = b"name,latitude,longitude,timezone,dst\n".to_vec();
            full.extend(input);
            let mut parser = Parser::new(&full[..]).unwrap();
            while parser.next_row().is_some() {}
            let _ = parser.finish();
        }
    }
}
