//! Demand as an SVG chart (plotters' SVG backend, no fonts needed): bars for
//! one key, a heat map for two. Every group shown is named on an axis; an
//! axis shows at most [`MAX_CATEGORIES`] values (the largest, as rows come
//! largest first), so a chart costs the same whether an import has forty
//! towns or forty thousand, and says in its title what it left out.

use std::collections::HashMap;

use plotters::prelude::*;

use super::{DemandKey, DemandRow};

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;

/// Values an axis shows at most: more would not be readable at this size.
pub const MAX_CATEGORIES: usize = 40;

#[derive(Debug, thiserror::Error)]
#[error("could not draw the chart: {0}")]
pub struct ChartError(String);

fn failed<E: std::fmt::Debug>(error: E) -> ChartError {
    ChartError(format!("{error:?}"))
}

/// Draws `rows` grouped by `keys` (one or two of them) as an SVG document.
pub fn render(title: &str, keys: &[DemandKey], rows: &[DemandRow]) -> Result<String, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        match keys {
            [key] => bars(&root, title, *key, rows)?,
            [x, y] => heat_map(&root, title, (*x, *y), rows)?,
            _ => return Err(ChartError(format!("cannot chart {} keys", keys.len()))),
        }
        root.present().map_err(failed)?;
    }
    Ok(svg)
}

/// The first [`MAX_CATEGORIES`] distinct values of `key` in order of first
/// appearance (rows come largest first), their positions, and how many
/// distinct values there are in all. Linear in the rows.
struct Axis {
    names: Vec<String>,
    position: HashMap<String, usize>,
    total: usize,
}

impl Axis {
    fn of(rows: &[DemandRow], key: DemandKey) -> Self {
        let mut position: HashMap<String, usize> = HashMap::new();
        let mut names = Vec::new();
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for row in rows {
            if let Some(value) = row.value(key) {
                if seen.insert(value) && names.len() < MAX_CATEGORIES {
                    position.insert(value.to_owned(), names.len());
                    names.push(value.to_owned());
                }
            }
        }
        Self {
            names,
            position,
            total: seen.len(),
        }
    }

    fn index(&self, row: &DemandRow, key: DemandKey) -> Option<i32> {
        let i = *self.position.get(row.value(key)?)?;
        i32::try_from(i).ok()
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

fn label_of(categories: &[String], value: &SegmentValue<i32>) -> String {
    match value {
        SegmentValue::CenterOf(i) => usize::try_from(*i)
            .ok()
            .and_then(|i| categories.get(i))
            .cloned()
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    key: DemandKey,
    rows: &[DemandRow],
) -> Result<(), ChartError> {
    let axis = Axis::of(rows, key);
    let names = &axis.names;
    let count = i32::try_from(names.len()).unwrap_or(i32::MAX).max(1);
    let top = rows.iter().map(|r| r.statements).max().unwrap_or(0).max(1) + 1;
    let title = caption(title, &[axis.note(key)]);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d((0..count).into_segmented(), 0..top)
        .map_err(failed)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() + 1)
        .x_label_formatter(&|v| label_of(names, v))
        .x_desc(key.name())
        .y_desc("statements")
        .draw()
        .map_err(failed)?;
    let data = rows
        .iter()
        .filter_map(|row| Some((axis.index(row, key)?, row.statements)));
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(RGBColor(52, 101, 164).filled())
                .margin(4)
                .data(data),
        )
        .map_err(failed)?;
    Ok(())
}

fn heat_map<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    (x_key, y_key): (DemandKey, DemandKey),
    rows: &[DemandRow],
) -> Result<(), ChartError> {
    let xs = Axis::of(rows, x_key);
    let ys = Axis::of(rows, y_key);
    let nx = i32::try_from(xs.names.len()).unwrap_or(i32::MAX).max(1);
    let ny = i32::try_from(ys.names.len()).unwrap_or(i32::MAX).max(1);
    let max = rows.iter().map(|r| r.statements).max().unwrap_or(0).max(1) as f64;
    let title = caption(title, &[xs.note(x_key), ys.note(y_key)]);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(120)
        .build_cartesian_2d((0..nx).into_segmented(), (0..ny).into_segmented())
        .map_err(failed)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(xs.names.len() + 1)
        .y_labels(ys.names.len() + 1)
        .x_label_formatter(&|v| label_of(&xs.names, v))
        .y_label_formatter(&|v| label_of(&ys.names, v))
        .x_desc(x_key.name())
        .y_desc(y_key.name())
        .draw()
        .map_err(failed)?;
    let cells = rows
        .iter()
        .filter_map(|row| Some((xs.index(row, x_key)?, ys.index(row, y_key)?, row.statements)));
    chart
        .draw_series(cells.map(|(x, y, statements)| {
            // Light for little demand, dark for the most.
            let share = statements as f64 / max;
            let shade = (235.0 - 180.0 * share) as u8;
            Rectangle::new(
                [
                    (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                    (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                ],
                RGBColor(shade, shade, 255).filled(),
            )
        }))
        .map_err(failed)?;
    Ok(())
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
    fn an_empty_result_still_draws() {
        assert!(render("none", &[DemandKey::Course], &[])
            .unwrap()
            .contains("</svg>"));
    }
}
