//! The map's legends, below its frame: the diverging colour scale, the
//! circle sizes, the airport marks.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::draw::{at, failed, ratio_colour, text_style, DrawError};
use super::layout::{text_width, Rect};

/// The colour scale, the circle sizes and the marks, below the frame.
pub(super) fn legends<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    frame: Rect,
    r_max: f64,
    max_askers: u64,
) -> Result<(), DrawError> {
    let ink = RGBColor(50, 50, 50);
    let small = |x: f64, y: f64, text: &str, h: HPos| {
        Text::new(
            text.to_owned(),
            at(x, y),
            text_style(11.0, ink, h, VPos::Top),
        )
    };
    let top = frame.y1 + 12.0;
    // Colour: askers ÷ expected on a log scale from ½ to 2.
    let (x0, width) = (frame.x0 + 4.0, 240.0);
    root.draw(&small(
        x0,
        top,
        "Colour: askers ÷ expected at the import's age-specific rates",
        HPos::Left,
    ))
    .map_err(failed)?;
    let bar = top + 18.0;
    for i in 0..120 {
        let t = f64::from(i) / 119.0 * 2.0 - 1.0;
        let x = x0 + width * f64::from(i) / 120.0;
        root.draw(&Rectangle::new(
            [at(x, bar), at(x + width / 120.0 + 1.0, bar + 12.0)],
            ratio_colour(Some(2f64.powf(t))).filled(),
        ))
        .map_err(failed)?;
    }
    root.draw(&Rectangle::new(
        [at(x0, bar), at(x0 + width, bar + 12.0)],
        RGBColor(120, 120, 120).stroke_width(1),
    ))
    .map_err(failed)?;
    // Short tick labels: 60 px apart, they must not run into each other.
    for (t, text) in [
        (-1.0, "≤ ½"),
        (-0.5, "0.71"),
        (0.0, "1"),
        (0.5, "1.41"),
        (1.0, "≥ 2"),
    ] {
        let x = x0 + width * (t + 1.0) / 2.0;
        root.draw(&PathElement::new(
            vec![at(x, bar + 12.0), at(x, bar + 16.0)],
            ink.stroke_width(1),
        ))
        .map_err(failed)?;
        let h = match t {
            t if t < -0.9 => HPos::Left,
            t if t > 0.9 => HPos::Right,
            _ => HPos::Center,
        };
        root.draw(&small(x, bar + 18.0, text, h)).map_err(failed)?;
    }
    root.draw(&small(x0, bar + 34.0, "fewer than expected", HPos::Left))
        .map_err(failed)?;
    root.draw(&small(
        x0 + width,
        bar + 34.0,
        "more than expected",
        HPos::Right,
    ))
    .map_err(failed)?;
    let swatch = x0 + width + 24.0;
    root.draw(&Circle::new(
        at(swatch + 6.0, bar + 6.0),
        6,
        ratio_colour(None).filled(),
    ))
    .map_err(failed)?;
    root.draw(&small(swatch + 16.0, bar, "no asker expected", HPos::Left))
        .map_err(failed)?;
    root.draw(&Circle::new(
        at(swatch + 6.0, bar + 26.0),
        3,
        RGBColor(90, 90, 90).stroke_width(1),
    ))
    .map_err(failed)?;
    root.draw(&small(swatch + 16.0, bar + 20.0, "no askers", HPos::Left))
        .map_err(failed)?;

    // Area: askers, three reference circles standing on one line.
    let x = 640.0;
    let heading = if r_max > 30.0 {
        "Circle area: askers (drawn smaller than on the map)"
    } else {
        "Circle area: askers"
    };
    root.draw(&small(x, top, heading, HPos::Left))
        .map_err(failed)?;
    let base = top + 18.0 + 2.0 * r_max.min(30.0);
    let scale = r_max.min(30.0) / r_max;
    let mut left = x + 4.0;
    for value in reference_values(max_askers) {
        let r = (r_max * (value as f64 / max_askers as f64).sqrt() * scale).max(3.0);
        root.draw(&Circle::new(
            at(left + r, base - r),
            r.round() as i32,
            RGBColor(80, 80, 80).stroke_width(1),
        ))
        .map_err(failed)?;
        root.draw(&small(
            left + 2.0 * r + 4.0,
            base - 12.0,
            &value.to_string(),
            HPos::Left,
        ))
        .map_err(failed)?;
        left += 2.0 * r + 14.0 + text_width(&value.to_string(), 11.0);
    }

    // Marks.
    let x = 960.0;
    root.draw(&small(x, top, "Airports", HPos::Left))
        .map_err(failed)?;
    root.draw(&Circle::new(
        at(x + 4.0, top + 24.0),
        2,
        RGBColor(60, 60, 60).filled(),
    ))
    .map_err(failed)?;
    root.draw(&small(x + 12.0, top + 18.0, "placing a town", HPos::Left))
        .map_err(failed)?;
    root.draw(&Circle::new(
        at(x + 4.0, top + 42.0),
        1,
        RGBColor(150, 160, 170).filled(),
    ))
    .map_err(failed)?;
    root.draw(&small(x + 12.0, top + 36.0, "other", HPos::Left))
        .map_err(failed)?;
    Ok(())
}

/// Up to three round askers counts to show circle sizes with: the largest,
/// and round fractions of it.
fn reference_values(max: u64) -> Vec<u64> {
    let round = |v: f64| -> u64 {
        if v < 1.0 {
            return 0;
        }
        let magnitude = 10f64.powf(v.log10().floor());
        let lead = (v / magnitude).floor();
        let lead = [1.0, 2.0, 5.0]
            .into_iter()
            .rev()
            .find(|s| *s <= lead)
            .unwrap_or(1.0);
        (lead * magnitude) as u64
    };
    let mut values = vec![max];
    for fraction in [0.25, 0.05] {
        let v = round(max as f64 * fraction);
        if v > 0 && !values.contains(&v) {
            values.push(v);
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values_are_round() {
        assert_eq!(reference_values(137), vec![137, 20, 5]);
        assert_eq!(reference_values(3), vec![3]);
    }
}
