//! Demand as an SVG chart: bars for one key, a heat map for two. Every
//! group shown is named on an axis and carries its figures (a label when it
//! fits, and a `<title>` tooltip always); every chart has a legend; an axis
//! shows only values that have a group (no empty row or column) and at most
//! [`MAX_CATEGORIES`] of them (the largest, as rows come largest first), so
//! a chart costs the same whether an import has forty towns or forty
//! thousand, and says in its title what it left out. Ordinal keys (age
//! groups) keep their natural order; the others come largest first.

use std::collections::HashMap;

use super::svg::{text_width, Anchor, Style, Svg};
use super::{DemandKey, DemandRow};

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
const W: f64 = WIDTH as f64;
const H: f64 = HEIGHT as f64;
/// Where the plot starts below the title and the legend line.
const TOP: f64 = 78.0;
const INK: &str = "#222";
const MUTED: &str = "#666";
const BAR: &str = "#3465a4";
/// Where the heat map has no group: no statements, or too few residents.
const BLANK: &str = "#eeeeee";

/// Values an axis shows at most: more would not be readable at this size.
pub const MAX_CATEGORIES: usize = 40;

#[derive(Debug, thiserror::Error)]
#[error("could not draw the chart: {0}")]
pub struct ChartError(String);

/// Draws `rows` grouped by `keys` (one or two of them) as an SVG document.
pub fn render(title: &str, keys: &[DemandKey], rows: &[DemandRow]) -> Result<String, ChartError> {
    match keys {
        [key] => Ok(bars(title, *key, rows)),
        [x, y] => Ok(heat_map(title, (*x, *y), rows)),
        _ => Err(ChartError(format!("cannot chart {} keys", keys.len()))),
    }
}

/// The first [`MAX_CATEGORIES`] distinct values of `key` in order of first
/// appearance (rows come largest first), in their natural order when the key
/// is ordinal, their positions, and how many distinct values there are in
/// all. Linear in the rows.
struct Axis {
    names: Vec<String>,
    position: HashMap<String, usize>,
    total: usize,
}

/// The natural order of an ordinal key's value: an age group by the first
/// age it holds (`0-17` < `18-24` < … < `65+`).
fn ordinal(key: DemandKey, value: &str) -> Option<u32> {
    match key {
        DemandKey::AgeGroup => {
            let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        }
        _ => None,
    }
}

impl Axis {
    fn of(rows: &[DemandRow], key: DemandKey) -> Self {
        let mut names = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for row in rows {
            if let Some(value) = row.value(key) {
                if seen.insert(value) && names.len() < MAX_CATEGORIES {
                    names.push(value.to_owned());
                }
            }
        }
        if key == DemandKey::AgeGroup {
            // Stable: a value without an age (none today) keeps its place last.
            names.sort_by_key(|name| ordinal(key, name).unwrap_or(u32::MAX));
        }
        let position = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        Self {
            names,
            position,
            total: seen.len(),
        }
    }

    fn index(&self, row: &DemandRow, key: DemandKey) -> Option<usize> {
        self.position.get(row.value(key)?).copied()
    }

    /// What the title says when the axis left values out.
    fn note(&self, key: DemandKey) -> Option<String> {
        (self.total > self.names.len()).then(|| {
            format!(
                "the {} largest of {} {} values",
                self.names.len(),
                self.total,
                key.name()
            )
        })
    }
}

/// The title, saying what the axes left out.
fn caption(title: &str, notes: &[Option<String>]) -> String {
    let notes: Vec<&str> = notes.iter().flatten().map(String::as_str).collect();
    if notes.is_empty() {
        title.to_owned()
    } else {
        format!("{title} ({})", notes.join("; "))
    }
}

/// A new document with its title written at the top.
fn titled(title: &str) -> Svg {
    let mut svg = Svg::new(WIDTH, HEIGHT, title);
    // A long title (notes of what was left out) gets a smaller face.
    let size = if text_width(title, 20.0) > W - 40.0 {
        15.0
    } else {
        20.0
    };
    svg.text(
        (W / 2.0, 30.0),
        Style::new(size, Anchor::Middle, "title"),
        title,
        0.0,
    );
    svg
}

/// Nothing to draw: the title and a sentence saying so, no empty axes.
fn nothing(title: &str) -> String {
    let mut svg = titled(title);
    svg.text(
        (W / 2.0, H / 2.0),
        Style::new(16.0, Anchor::Middle, "empty").fill(MUTED),
        "No groups to show: no statements match, or every group is too small to show.",
        0.0,
    );
    svg.finish()
}

/// A round step for about `ticks` gridlines up to `max`.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    step.max(1.0)
}

/// A legend entry: a swatch and what it means.
fn legend_entry(svg: &mut Svg, (x, y): (f64, f64), fill: &str, text: &str) -> f64 {
    svg.rect((x, y - 11.0, 14.0, 14.0), fill, "legend-swatch", "");
    svg.text(
        (x + 20.0, y),
        Style::new(13.0, Anchor::Start, "legend"),
        text,
        0.0,
    );
    x + 20.0 + text_width(text, 13.0) + 24.0
}

/// Labels under a band of `slot`-wide columns: level when they all fit,
/// turned 40° otherwise. The height they need.
fn column_labels(names: &[String], slot: f64) -> (f64, f64) {
    let widest = names
        .iter()
        .map(|n| text_width(n, 12.0))
        .fold(0.0, f64::max);
    if widest + 4.0 <= slot {
        (0.0, 22.0)
    } else {
        (-40.0, (widest * 0.65 + 16.0).min(130.0))
    }
}

fn bars(title: &str, key: DemandKey, rows: &[DemandRow]) -> String {
    let axis = Axis::of(rows, key);
    let title = caption(title, &[axis.note(key)]);
    if axis.names.is_empty() {
        return nothing(&title);
    }
    let mut figures = vec![(0i64, 0i64); axis.names.len()];
    for row in rows {
        if let Some(i) = axis.index(row, key) {
            figures[i] = (row.statements, row.residents);
        }
    }
    let max = figures.iter().map(|f| f.0).max().unwrap_or(0).max(1) as f64;
    let (left, right) = (80.0, W - 24.0);
    let slot = (right - left) / axis.names.len() as f64;
    let (turn, label_height) = column_labels(&axis.names, slot);
    let bottom = H - label_height - 34.0;
    // Headroom above the tallest bar for its value.
    let step = nice_step(max * 1.12, 5.0);
    let top_value = (max * 1.12 / step).ceil() * step;
    let y_of = |v: f64| bottom - (bottom - TOP) * v / top_value;

    let mut svg = titled(&title);
    let next = legend_entry(
        &mut svg,
        (left, 56.0),
        BAR,
        "statements (bar height; value on each bar)",
    );
    svg.text(
        (next, 56.0),
        Style::new(13.0, Anchor::Start, "legend").fill(MUTED),
        "residents in each bar's tooltip",
        0.0,
    );
    let mut tick = 0.0;
    while tick <= top_value + 0.5 {
        let y = y_of(tick);
        svg.line((left, y), (right, y), "#e4e4e4");
        svg.text(
            (left - 6.0, y + 4.0),
            Style::new(11.0, Anchor::End, "tick"),
            &format!("{tick}"),
            0.0,
        );
        tick += step;
    }
    svg.text(
        (22.0, (TOP + bottom) / 2.0),
        Style::new(13.0, Anchor::Middle, "axis"),
        "statements",
        -90.0,
    );
    let bar_width = (slot * 0.8).max(1.0);
    for (i, (name, (statements, residents))) in axis.names.iter().zip(&figures).enumerate() {
        let x = left + slot * i as f64 + (slot - bar_width) / 2.0;
        let centre = x + bar_width / 2.0;
        let y = y_of(*statements as f64);
        svg.rect(
            (x, y, bar_width, bottom - y),
            BAR,
            "bar",
            &format!(
                "{} {name}: {statements} statements from {residents} residents",
                key.name()
            ),
        );
        let value = statements.to_string();
        if text_width(&value, 11.0) <= bar_width + 4.0 {
            svg.text(
                (centre, y - 4.0),
                Style::new(11.0, Anchor::Middle, "value"),
                &value,
                0.0,
            );
        } else {
            svg.text(
                (centre + 4.0, y - 4.0),
                Style::new(11.0, Anchor::Start, "value"),
                &value,
                -90.0,
            );
        }
        let label = Style::new(
            12.0,
            if turn == 0.0 {
                Anchor::Middle
            } else {
                Anchor::End
            },
            "x-label",
        );
        svg.text((centre, bottom + 16.0), label, name, turn);
    }
    svg.line((left, bottom), (right, bottom), INK);
    svg.text(
        (W / 2.0, H - 10.0),
        Style::new(13.0, Anchor::Middle, "axis"),
        key.name(),
        0.0,
    );
    svg.finish()
}

/// The heat map's colour of `share` (0..=1 of the largest count): light to dark blue.
fn shade(share: f64) -> String {
    let v = (235.0 - 180.0 * share.clamp(0.0, 1.0)).round() as u8;
    format!("#{v:02x}{v:02x}ff")
}

fn heat_map(title: &str, (x_key, y_key): (DemandKey, DemandKey), rows: &[DemandRow]) -> String {
    let xs = Axis::of(rows, x_key);
    let ys = Axis::of(rows, y_key);
    let title = caption(title, &[xs.note(x_key), ys.note(y_key)]);
    if xs.names.is_empty() || ys.names.is_empty() {
        return nothing(&title);
    }
    let (nx, ny) = (xs.names.len() as f64, ys.names.len() as f64);
    let max = rows.iter().map(|r| r.statements).max().unwrap_or(0).max(1) as f64;
    let row_label = ys
        .names
        .iter()
        .map(|n| text_width(n, 12.0))
        .fold(0.0, f64::max)
        .min(170.0);
    let left = 40.0 + row_label + 8.0;
    let right = W - 150.0;
    let cell_w = ((right - left) / nx).min(120.0);
    let (turn, label_height) = column_labels(&xs.names, cell_w);
    let bottom = H - label_height - 30.0;
    let cell_h = ((bottom - TOP) / ny).min(60.0);
    let (grid_w, grid_h) = (cell_w * nx, cell_h * ny);

    let mut svg = titled(&title);
    svg.rect(
        (left, TOP, grid_w, grid_h),
        BLANK,
        "blank",
        "no group: no statements, or too few residents to show",
    );
    for row in rows {
        let (Some(i), Some(j)) = (xs.index(row, x_key), ys.index(row, y_key)) else {
            continue;
        };
        let share = row.statements as f64 / max;
        let (x, y) = (left + cell_w * i as f64, TOP + cell_h * j as f64);
        svg.rect(
            (x, y, cell_w - 1.0, cell_h - 1.0),
            &shade(share),
            "cell",
            &format!(
                "{} {}, {} {}: {} statements from {} residents",
                x_key.name(),
                xs.names[i],
                y_key.name(),
                ys.names[j],
                row.statements,
                row.residents
            ),
        );
        let value = row.statements.to_string();
        if text_width(&value, 11.0) + 4.0 <= cell_w && cell_h >= 14.0 {
            let ink = if share > 0.55 { "#fff" } else { INK };
            svg.text(
                (x + cell_w / 2.0, y + cell_h / 2.0 + 4.0),
                Style::new(11.0, Anchor::Middle, "value").fill(ink),
                &value,
                0.0,
            );
        }
    }
    for (j, name) in ys.names.iter().enumerate() {
        let y = TOP + cell_h * (j as f64 + 0.5) + 4.0;
        svg.text(
            (left - 6.0, y),
            Style::new(12.0, Anchor::End, "y-label"),
            name,
            0.0,
        );
    }
    for (i, name) in xs.names.iter().enumerate() {
        let x = left + cell_w * (i as f64 + 0.5);
        let anchor = if turn == 0.0 {
            Anchor::Middle
        } else {
            Anchor::End
        };
        svg.text(
            (x, TOP + grid_h + 16.0),
            Style::new(12.0, anchor, "x-label"),
            name,
            turn,
        );
    }
    let axis = Style::new(13.0, Anchor::Middle, "axis");
    svg.text(
        (
            left + grid_w / 2.0,
            (TOP + grid_h + label_height + 24.0).min(H - 8.0),
        ),
        axis,
        x_key.name(),
        0.0,
    );
    svg.text((16.0, TOP + grid_h / 2.0), axis, y_key.name(), -90.0);
    legend(&mut svg, (left + grid_w + 30.0, TOP), max as i64);
    svg.finish()
}

/// The heat map's colour scale, from 0 to the largest count, and the blank.
fn legend(svg: &mut Svg, (x, y): (f64, f64), max: i64) {
    svg.text(
        (x, y + 4.0),
        Style::new(13.0, Anchor::Start, "legend"),
        "statements",
        0.0,
    );
    svg.defs(&format!(
        "<linearGradient id=\"scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\
         <stop offset=\"0\" stop-color=\"{}\"/><stop offset=\"1\" stop-color=\"{}\"/></linearGradient>",
        shade(0.0),
        shade(1.0)
    ));
    let (top, height) = (y + 14.0, 180.0);
    svg.rect((x, top, 18.0, height), "url(#scale)", "legend-scale", "");
    let tick = Style::new(11.0, Anchor::Start, "legend");
    for (value, at) in [(max, 0.0), (max / 2, 0.5), (0, 1.0)] {
        svg.text(
            (x + 24.0, top + height * at + 4.0),
            tick,
            &value.to_string(),
            0.0,
        );
    }
    svg.text(
        (x, top + height + 22.0),
        Style::new(11.0, Anchor::Start, "legend").fill(MUTED),
        "value in each cell",
        0.0,
    );
    svg.rect(
        (x, top + height + 36.0, 18.0, 14.0),
        BLANK,
        "legend-swatch",
        "",
    );
    svg.text(
        (x + 24.0, top + height + 47.0),
        tick.fill(MUTED),
        "no group",
        0.0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(keys: &[(DemandKey, &str)], statements: i64) -> DemandRow {
        DemandRow {
            keys: keys.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            statements,
            residents: 1,
        }
    }

    #[test]
    fn bars_name_every_group_and_escape_them() {
        let rows = [
            row(&[(DemandKey::Town, "Москва")], 7),
            row(&[(DemandKey::Town, "A & B")], 3),
        ];
        let svg = render("demand", &[DemandKey::Town], &rows).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("Москва"));
        assert!(svg.contains("A &amp; B"));
    }

    #[test]
    fn heat_maps_name_both_axes() {
        let rows = [
            row(
                &[
                    (DemandKey::Town, "Madrid"),
                    (DemandKey::Channel, "instagram"),
                ],
                5,
            ),
            row(
                &[(DemandKey::Town, "Sevilla"), (DemandKey::Channel, "radio")],
                2,
            ),
        ];
        let svg = render("demand", &[DemandKey::Town, DemandKey::Channel], &rows).unwrap();
        for name in ["Madrid", "Sevilla", "instagram", "radio"] {
            assert!(svg.contains(name), "{name} missing");
        }
    }

    #[test]
    fn many_groups_draw_the_largest_and_say_so() {
        // 30,000 groups of two keys, largest first: as fast as forty.
        let rows: Vec<DemandRow> = (0..30_000)
            .map(|i| {
                let town = format!("town-{}", i / 100);
                let course = format!("course-{}", i % 100);
                row(
                    &[(DemandKey::Town, &town), (DemandKey::Course, &course)],
                    30_000 - i,
                )
            })
            .collect();
        let started = std::time::Instant::now();
        let svg = render("demand", &[DemandKey::Town, DemandKey::Course], &rows).unwrap();
        println!("30,000 groups drawn in {:?}", started.elapsed());
        assert!(svg.contains("town-0") && svg.contains("course-39"));
        assert!(!svg.contains("town-40<") && !svg.contains("course-40<"));
        assert!(svg.contains("the 40 largest of 300 town values"), "title");
        assert!(svg.contains("the 40 largest of 100 course values"), "title");
        assert!(svg.len() < 1_000_000, "{} bytes", svg.len());
        let bars = render("demand", &[DemandKey::Town], &rows).unwrap();
        assert!(bars.contains("the 40 largest of 300 town values"));
    }

    #[test]
    fn an_empty_result_says_so_without_empty_axes() {
        for keys in [
            &[DemandKey::Course][..],
            &[DemandKey::Town, DemandKey::Course],
        ] {
            let svg = render("none", keys, &[]).unwrap();
            assert!(svg.ends_with("</svg>"));
            assert!(svg.contains("No groups to show"), "{svg}");
            assert!(
                !svg.contains("x-label") && !svg.contains("class=\"blank\""),
                "{svg}"
            );
        }
    }

    /// The texts of `class`, in document order.
    fn texts<'a>(svg: &'a str, class: &str) -> Vec<&'a str> {
        let marker = format!("<text class=\"{class}\"");
        svg.match_indices(&marker)
            .map(|(i, _)| {
                let start = i + svg[i..].find('>').unwrap() + 1;
                &svg[start..start + svg[start..].find("</text>").unwrap()]
            })
            .collect()
    }

    /// The `x` and `y` of every rectangle of `class`.
    fn rects(svg: &str, class: &str) -> Vec<(String, String)> {
        let marker = format!("<rect class=\"{class}\" x=\"");
        svg.match_indices(&marker)
            .map(|(i, _)| {
                let rest = &svg[i + marker.len()..];
                let x = &rest[..rest.find('"').unwrap()];
                let rest = &rest[rest.find("y=\"").unwrap() + 3..];
                (x.to_owned(), rest[..rest.find('"').unwrap()].to_owned())
            })
            .collect()
    }

    /// Town × age group as the demo's data gives them: largest first.
    fn towns_by_age() -> Vec<DemandRow> {
        let mut rows = Vec::new();
        for (town, base) in [("Kazan", 40), ("Madrid", 20)] {
            for (age, n) in [
                ("25-34", 9),
                ("18-24", 8),
                ("35-44", 7),
                ("45-54", 5),
                ("55-64", 4),
                ("0-17", 2),
                ("65+", 1),
            ] {
                rows.push(row(
                    &[(DemandKey::Town, town), (DemandKey::AgeGroup, age)],
                    base + n,
                ));
            }
        }
        rows.sort_by_key(|r| std::cmp::Reverse(r.statements));
        rows
    }

    #[test]
    fn age_groups_keep_their_natural_order() {
        let natural = ["0-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"];
        let rows = towns_by_age();
        let heat = render("demand", &[DemandKey::Town, DemandKey::AgeGroup], &rows).unwrap();
        // Written top to bottom: the youngest on top.
        assert_eq!(texts(&heat, "y-label"), natural);
        let ages: Vec<DemandRow> = rows
            .iter()
            .filter(|r| r.value(DemandKey::Town) == Some("Kazan"))
            .map(|r| {
                row(
                    &[(DemandKey::AgeGroup, r.value(DemandKey::AgeGroup).unwrap())],
                    r.statements,
                )
            })
            .collect();
        let bars = render("demand", &[DemandKey::AgeGroup], &ages).unwrap();
        assert_eq!(texts(&bars, "x-label"), natural);
        // Other keys stay largest first.
        assert_eq!(texts(&heat, "x-label"), ["Kazan", "Madrid"]);
        assert_eq!(ordinal(DemandKey::AgeGroup, "65+"), Some(65));
        assert_eq!(ordinal(DemandKey::Town, "65+"), None);
    }

    #[test]
    fn heat_maps_have_a_legend_and_every_value() {
        let rows = towns_by_age();
        let svg = render("demand", &[DemandKey::Town, DemandKey::AgeGroup], &rows).unwrap();
        let legend = texts(&svg, "legend");
        assert!(legend.contains(&"statements"), "{legend:?}");
        assert!(
            legend.contains(&"49") && legend.contains(&"0"),
            "the scale's ends: {legend:?}"
        );
        assert!(svg.contains("id=\"scale\""));
        // Each group's count, as a label and in its tooltip.
        let mut values: Vec<i64> = texts(&svg, "value")
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        let mut expected: Vec<i64> = rows.iter().map(|r| r.statements).collect();
        values.sort_unstable();
        expected.sort_unstable();
        assert_eq!(values, expected);
        assert!(
            svg.contains(
                "<title>town Kazan, age_group 18-24: 48 statements from 1 residents</title>"
            ),
            "{svg}"
        );
    }

    #[test]
    fn heat_maps_draw_no_empty_row_or_column() {
        // Madrid has no 65+ group, nobody anywhere is 0-17.
        let rows: Vec<DemandRow> = towns_by_age()
            .into_iter()
            .filter(|r| r.value(DemandKey::AgeGroup) != Some("0-17"))
            .filter(|r| {
                r.value(DemandKey::Town) != Some("Madrid")
                    || r.value(DemandKey::AgeGroup) != Some("65+")
            })
            .collect();
        let svg = render("demand", &[DemandKey::Town, DemandKey::AgeGroup], &rows).unwrap();
        let cells = rects(&svg, "cell");
        assert_eq!(cells.len(), rows.len());
        let columns: std::collections::BTreeSet<&String> = cells.iter().map(|c| &c.0).collect();
        let lines: std::collections::BTreeSet<&String> = cells.iter().map(|c| &c.1).collect();
        assert_eq!(texts(&svg, "x-label").len(), 2);
        assert_eq!(columns.len(), 2, "every column drawn has a cell");
        assert_eq!(
            texts(&svg, "y-label"),
            ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
        );
        assert_eq!(lines.len(), 6, "every row drawn has a cell");
        // The grid is exactly as tall and wide as its cells.
        let blank = rects(&svg, "blank");
        assert_eq!(blank.len(), 1);
    }

    #[test]
    fn bars_have_a_legend_and_their_values() {
        let rows = [
            row(&[(DemandKey::Channel, "tiktok")], 1234),
            row(&[(DemandKey::Channel, "radio")], 5),
        ];
        let svg = render("demand", &[DemandKey::Channel], &rows).unwrap();
        assert_eq!(texts(&svg, "value"), ["1234", "5"]);
        assert_eq!(
            rects(&svg, "bar").len(),
            2,
            "one bar per group, no empty slot"
        );
        assert!(texts(&svg, "legend")[0].starts_with("statements"));
        assert!(svg.contains("<title>channel radio: 5 statements from 1 residents</title>"));
    }

    #[test]
    fn round_steps() {
        assert_eq!(nice_step(49.0 * 1.12, 5.0), 20.0);
        assert_eq!(nice_step(3.0, 5.0), 1.0);
        assert_eq!(nice_step(1234.0, 5.0), 500.0);
    }
}
