//! Demand as an SVG chart (plotters' SVG backend, no fonts needed): bars for
//! one key, a heat map for two. Every group is named on an axis.

use plotters::prelude::*;

use super::{DemandKey, DemandRow};

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;

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

/// Distinct values of `key` in order of first appearance (rows come largest first).
fn categories(rows: &[DemandRow], key: DemandKey) -> Vec<String> {
    let mut seen = Vec::new();
    for row in rows {
        if let Some(value) = row.value(key) {
            if !seen.iter().any(|s: &String| s == value) {
                seen.push(value.to_owned());
            }
        }
    }
    seen
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
    let names = categories(rows, key);
    let count = i32::try_from(names.len()).unwrap_or(i32::MAX).max(1);
    let top = rows.iter().map(|r| r.statements).max().unwrap_or(0).max(1) + 1;
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
        .x_label_formatter(&|v| label_of(&names, v))
        .x_desc(key.name())
        .y_desc("statements")
        .draw()
        .map_err(failed)?;
    let data = rows.iter().filter_map(|row| {
        let value = row.value(key)?;
        let i = names.iter().position(|n| n == value)?;
        Some((i32::try_from(i).ok()?, row.statements))
    });
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
    let xs = categories(rows, x_key);
    let ys = categories(rows, y_key);
    let nx = i32::try_from(xs.len()).unwrap_or(i32::MAX).max(1);
    let ny = i32::try_from(ys.len()).unwrap_or(i32::MAX).max(1);
    let max = rows.iter().map(|r| r.statements).max().unwrap_or(0).max(1) as f64;
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
        .x_labels(xs.len() + 1)
        .y_labels(ys.len() + 1)
        .x_label_formatter(&|v| label_of(&xs, v))
        .y_label_formatter(&|v| label_of(&ys, v))
        .x_desc(x_key.name())
        .y_desc(y_key.name())
        .draw()
        .map_err(failed)?;
    let cells = rows.iter().filter_map(|row| {
        let x = xs
            .iter()
            .position(|v| Some(v.as_str()) == row.value(x_key))?;
        let y = ys
            .iter()
            .position(|v| Some(v.as_str()) == row.value(y_key))?;
        Some((
            i32::try_from(x).ok()?,
            i32::try_from(y).ok()?,
            row.statements,
        ))
    });
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
    fn an_empty_result_still_draws() {
        assert!(render("none", &[DemandKey::Course], &[])
            .unwrap()
            .contains("</svg>"));
    }
}
