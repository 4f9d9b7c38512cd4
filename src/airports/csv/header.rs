//! The CSV header: the columns an airports file may carry, and which one each
//! position of a record holds.

use csv::StringRecord;

use crate::limits::{excerpt, Capped, ECHO_CHARS};

/// Header problems named in a refusal.
pub const MAX_HEADER_PROBLEMS: usize = 10;

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

    pub(super) const REQUIRED: [Column; 3] = [Column::Name, Column::Latitude, Column::Longitude];

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

/// The header: which column each position holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    columns: Vec<Column>,
}

impl Header {
    /// Maps header names to columns; unknown, repeated and missing required
    /// names are reported (the first [`MAX_HEADER_PROBLEMS`], each name cut
    /// short: a header of millions of junk names gets a short answer).
    pub fn parse(record: &StringRecord) -> Result<Self, String> {
        let mut columns = Vec::with_capacity(Column::ALL.len());
        let mut problems = Capped::new(MAX_HEADER_PROBLEMS);
        for (i, raw) in record.iter().enumerate() {
            // A byte-order mark may precede the first name.
            let raw = if i == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            match Column::from_header(raw) {
                Some(column) if columns.contains(&column) => problems
                    .push_with(|| format!("column {} appears twice", excerpt(raw, ECHO_CHARS))),
                Some(column) => columns.push(column),
                None => {
                    problems.push_with(|| format!("unknown column {}", excerpt(raw, ECHO_CHARS)))
                }
            }
        }
        for required in Column::REQUIRED {
            if !columns.contains(&required) {
                problems.push_with(|| format!("required column {:?} is missing", required.name()));
            }
        }
        if problems.is_empty() {
            return Ok(Self { columns });
        }
        let total = problems.total();
        let shown = problems.items().len();
        let known: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
        // The count and the known columns first: the list may be cut.
        let count = if total > shown {
            format!("{total} problems, the first {shown}")
        } else {
            format!("{total} problem(s)")
        };
        Err(format!(
            "bad header ({count}; known columns: {}): {}",
            known.join(", "),
            problems.into_items().join("; ")
        ))
    }

    pub fn has(&self, column: Column) -> bool {
        self.columns.contains(&column)
    }

    /// The columns in header order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }
}

#[cfg(test)]
mod tests {
    use crate::airports::csv::tests::parse_all;

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
    fn a_header_of_junk_gets_a_short_answer() {
        let junk = vec!["\u{1}".repeat(10); 1000].join(",");
        let rejected = parse_all(&format!("{junk}\n")).unwrap_err();
        let reason = &rejected.errors[0].reason;
        assert_eq!(rejected.errors[0].line, 1);
        assert!(reason.len() < 2_000, "{} bytes", reason.len());
        assert!(reason.contains("1003 problems, the first 10"), "{reason}");
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
}
