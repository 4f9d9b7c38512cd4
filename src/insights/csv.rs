//! The insights as CSV (RFC 4180: comma, CRLF, quotes where needed, one
//! header row): the same rows in the same order as the JSON. A text cell
//! that a spreadsheet would read as a formula (it starts with `=`, `+`,
//! `-`, `@`, a tab or a carriage return) gets a leading `'`, as OWASP
//! recommends against CSV injection; numbers are written as numbers.

use super::emerging::Emerging;
use super::opportunities::Opportunities;
use super::params::Key;
use super::rates::Rates;
use super::scan::Label;
use super::trend::Trend;

/// One cell.
pub enum Cell<'a> {
    Text(&'a str),
    Int(u64),
    /// A count that may be unknown (an empty cell).
    Count(Option<u64>),
    Number(Option<f64>),
    Bool(Option<bool>),
}

/// `value` as a spreadsheet will not run it.
pub fn neutralise(value: &str) -> std::borrow::Cow<'_, str> {
    match value.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{value}").into(),
        _ => value.into(),
    }
}

/// A CSV table in memory, as every insights route writes one (also used
/// by `places` for `near`).
pub struct Table {
    writer: csv::Writer<Vec<u8>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(Vec::new());
        // Writing to memory cannot fail.
        let _ = writer.write_record(header);
        Self { writer }
    }

    pub fn row(&mut self, cells: &[Cell]) {
        let fields: Vec<String> = cells
            .iter()
            .map(|c| match c {
                Cell::Text(t) => neutralise(t).into_owned(),
                Cell::Int(n) | Cell::Count(Some(n)) => n.to_string(),
                Cell::Count(None) => String::new(),
                // Shortest text that reads back as the same double.
                Cell::Number(Some(x)) => format!("{x:?}"),
                Cell::Number(None) | Cell::Bool(None) => String::new(),
                Cell::Bool(Some(b)) => b.to_string(),
            })
            .collect();
        let _ = self.writer.write_record(&fields);
    }

    pub fn finish(self) -> Vec<u8> {
        self.writer.into_inner().unwrap_or_default()
    }
}

fn header<'a>(keys: &'a [Key], figures: &[&'a str]) -> Vec<&'a str> {
    let mut header: Vec<&str> = keys.iter().map(|k| k.name()).collect();
    if keys.contains(&Key::Course) {
        header.push("new_course");
    }
    header.extend_from_slice(figures);
    header
}

fn labels<'a>(label: &'a Label, cells: &mut Vec<Cell<'a>>) {
    cells.extend(label.values.iter().map(|(_, v)| Cell::Text(v)));
    if label.new_course.is_some() {
        cells.push(Cell::Bool(label.new_course));
    }
}

/// A rate's columns, as `/insights/rates` and `/insights/opportunities`
/// both give them (see [`rate_cells`]).
const RATE_COLUMNS: [&str; 12] = [
    "population",
    "askers",
    "statements",
    "rate",
    "rate_low",
    "rate_high",
    "expected",
    "ratio",
    "ratio_low",
    "ratio_high",
    "p",
    "q",
];

/// The cells of [`RATE_COLUMNS`]: the three counts, then the nine figures
/// in the columns' order.
fn rate_cells<'a>(counts: [u64; 3], figures: [Option<f64>; 9]) -> impl Iterator<Item = Cell<'a>> {
    counts
        .into_iter()
        .map(Cell::Int)
        .chain(figures.into_iter().map(Cell::Number))
}

pub fn rates(keys: &[Key], rates: &Rates) -> Vec<u8> {
    let mut table = Table::new(&header(keys, &RATE_COLUMNS));
    for r in &rates.rows {
        let mut cells = Vec::new();
        labels(&r.label, &mut cells);
        cells.extend(rate_cells(
            [r.population, r.askers, r.statements],
            [
                r.rate,
                r.rate_low,
                r.rate_high,
                r.expected,
                r.ratio,
                r.ratio_low,
                r.ratio_high,
                r.p,
                r.q,
            ],
        ));
        table.row(&cells);
    }
    table.finish()
}

/// One row per group and bucket, groups in the JSON's order.
pub fn trend(keys: &[Key], trend: &Trend) -> Vec<u8> {
    let mut table = Table::new(&header(keys, &["bucket", "statements", "askers"]));
    let starts: Vec<String> = trend
        .buckets
        .iter()
        .map(|b| b.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .collect();
    for s in &trend.series {
        for (i, start) in starts.iter().enumerate() {
            let mut cells = Vec::new();
            labels(&s.label, &mut cells);
            cells.extend([
                Cell::Text(start),
                Cell::Int(s.statements[i]),
                Cell::Int(s.askers[i]),
            ]);
            table.row(&cells);
        }
    }
    table.finish()
}

pub fn emerging(keys: &[Key], emerging: &Emerging) -> Vec<u8> {
    let mut table = Table::new(&header(
        keys,
        &[
            "current",
            "previous",
            "ratio",
            "ratio_low",
            "ratio_high",
            "new",
            "p",
            "q",
        ],
    ));
    for r in &emerging.rows {
        let mut cells = Vec::new();
        labels(&r.label, &mut cells);
        cells.extend([
            Cell::Int(r.current),
            Cell::Int(r.previous),
            Cell::Number(r.ratio),
            Cell::Number(r.ratio_low),
            Cell::Number(r.ratio_high),
            Cell::Bool(Some(r.new)),
            Cell::Number(Some(r.p)),
            Cell::Number(Some(r.q)),
        ]);
        table.row(&cells);
    }
    table.finish()
}

/// The ranked cells, the airport flattened into three columns.
pub fn opportunities(answer: &Opportunities) -> Vec<u8> {
    let mut columns = vec!["rank", "course", "town", "age_group", "channel", "score"];
    columns.extend(RATE_COLUMNS);
    columns.extend([
        "current",
        "previous",
        "growth",
        "growth_low",
        "growth_high",
        "growth_q",
        "rising",
        "new_course",
        "airport_iata",
        "airport_name",
        "airport_distance_km",
        "why",
    ]);
    let mut table = Table::new(&columns);
    for r in &answer.rows {
        let airport = r.airport.as_ref();
        let mut cells = vec![
            Cell::Int(r.rank as u64),
            Cell::Text(&r.course),
            Cell::Text(&r.town),
            Cell::Text(&r.age_group),
            Cell::Text(&r.channel),
            Cell::Number(Some(r.score)),
        ];
        cells.extend(rate_cells(
            [r.population, r.askers, r.statements],
            [
                r.rate,
                r.rate_low,
                r.rate_high,
                r.expected,
                r.ratio,
                r.ratio_low,
                r.ratio_high,
                r.p,
                r.q,
            ]
            .map(Some),
        ));
        cells.extend([
            Cell::Count(r.current),
            Cell::Count(r.previous),
            Cell::Number(r.growth),
            Cell::Number(r.growth_low),
            Cell::Number(r.growth_high),
            Cell::Number(r.growth_q),
            Cell::Bool(Some(r.rising)),
            Cell::Bool(Some(r.new_course)),
            Cell::Text(airport.map_or("", |a| &a.iata)),
            Cell::Text(airport.map_or("", |a| &a.name)),
            Cell::Number(airport.map(|a| a.distance_km)),
            Cell::Text(&r.why),
        ]);
        table.row(&cells);
    }
    table.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised_and_plain_text_kept() {
        for (raw, shown) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+7", "'+7"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("Madrid", "Madrid"),
            ("18-24", "18-24"),
            ("", ""),
        ] {
            assert_eq!(neutralise(raw), shown);
        }
    }

    #[test]
    fn cells_are_quoted_as_rfc_4180_says() {
        let mut table = Table::new(&["town", "rate"]);
        table.row(&[Cell::Text("A, \"B\""), Cell::Number(Some(-0.5))]);
        table.row(&[Cell::Text("=1+1"), Cell::Number(None)]);
        let text = String::from_utf8(table.finish()).unwrap();
        assert_eq!(text, "town,rate\r\n\"A, \"\"B\"\"\",-0.5\r\n'=1+1,\r\n");
    }
}
