//! The airports CSV: a header row whose names match case-insensitively in any
//! order (an `id` column is optional), then one airport per record. `\N` and
//! empty fields are NULL. Records are parsed one at a time, keeping their line
//! numbers, and bad ones are collected (the first [`MAX_ERRORS`] reported).
//! The header's names map to columns in `header.rs`, a record's fields to a
//! row in `row.rs`; this module reads the records and collects the report.

use std::collections::HashMap;
use std::io::Read;

use csv::{ReaderBuilder, StringRecord};
use serde::Serialize;

mod header;
mod row;

pub use header::{Column, Header};
pub use row::Row;

/// How many bad rows an error report lists.
pub const MAX_ERRORS: usize = 100;

/// The longest line (header or record) read, in bytes: an airport's record
/// is a few hundred; a longer line is refused before it is held, so a
/// record (and its field list) never grows with the body.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One bad line and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

/// Why a file was refused: the first [`MAX_ERRORS`] problems and how many bad rows in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedFile {
    pub errors: Vec<RowError>,
    pub total: usize,
}

impl RefusedFile {
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

/// Reads records one at a time from any reader (the upload feeds it the
/// request body as it arrives), yielding good rows and collecting bad ones.
pub struct Parser<R> {
    reader: csv::Reader<LineLimit<R>>,
    header: Header,
    record: StringRecord,
    errors: Vec<RowError>,
    bad_rows: usize,
    ids: HashMap<i64, u64>,
    fatal: Option<String>,
}

impl<R: Read> Parser<R> {
    /// Reads and checks the header row.
    pub fn new(input: R) -> Result<Self, RefusedFile> {
        let mut reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(LineLimit::new(input, MAX_LINE_BYTES));
        let mut record = StringRecord::new();
        let header = match reader.read_record(&mut record) {
            Ok(true) => Header::parse(&record).map_err(|reason| RefusedFile::one(1, reason))?,
            Ok(false) => {
                return Err(RefusedFile::one(
                    1,
                    "the file is empty; a header row is required",
                ))
            }
            Err(error) => return Err(RefusedFile::one(1, describe(&error))),
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
    pub fn finish(self) -> Result<(), RefusedFile> {
        if self.failed() {
            Err(RefusedFile {
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

/// A reader that fails once a line runs past `max` bytes (newlines inside
/// quoted fields count as line ends: that bounds a record's pieces, and a
/// real airports file has none).
struct LineLimit<R> {
    inner: R,
    max: usize,
    run: usize,
}

impl<R> LineLimit<R> {
    fn new(inner: R, max: usize) -> Self {
        Self { inner, max, run: 0 }
    }
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &byte in &buf[..n] {
            if byte == b'\n' {
                self.run = 0;
            } else {
                self.run += 1;
                if self.run > self.max {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("a line is longer than {} bytes", self.max),
                    ));
                }
            }
        }
        Ok(n)
    }
}

fn describe(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::Utf8 { .. } => "the record is not valid UTF-8".to_owned(),
        csv::ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => e.to_string(),
        csv::ErrorKind::Io(e) => format!("could not read the input: {e}"),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(super) fn parse_all(input: &str) -> Result<Vec<Row>, RefusedFile> {
        let mut parser = Parser::new(input.as_bytes())?;
        let mut rows = Vec::new();
        while let Some(row) = parser.next_row() {
            rows.push(row);
        }
        parser.finish().map(|()| rows)
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
    fn a_line_longer_than_the_limit_stops_the_read() {
        let long = "x".repeat(MAX_LINE_BYTES + 1);
        let rejected = parse_all(&long).unwrap_err();
        assert_eq!(rejected.errors[0].line, 1);
        assert!(
            rejected.errors[0].reason.contains("longer than"),
            "{:?}",
            rejected.errors
        );
        let input = format!("name,latitude,longitude\nA,1,2\n{long},1,2\nB,1,2\n");
        let rejected = parse_all(&input).unwrap_err();
        assert!(
            rejected.errors[0].reason.contains("longer than"),
            "{:?}",
            rejected.errors
        );
        // Right at the limit is fine.
        let name = "n".repeat(MAX_LINE_BYTES - 4);
        assert_eq!(
            parse_all(&format!("name,latitude,longitude\n{name},1,2\n"))
                .unwrap()
                .len(),
            1
        );
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

    proptest! {
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
