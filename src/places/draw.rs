//! The map drawn with plotters' SVG backend: a graticule instead of tiles,
//! the airports as small marks, a circle per placed town (area by askers,
//! colour by the age-standardised ratio on a diverging scale centred on 1),
//! labels placed by `layout`, the legends, and a footnote naming what is
//! not on the map.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::layout::{graticule_step, place_labels, text_width, Mark, Projection, Rect};
use super::{annotate, legend};

pub const WIDTH: u32 = 1200;
/// The map's frame; the legends and the footnote are below it.
const FRAME: Rect = Rect {
    x0: 16.0,
    y0: 76.0,
    x1: 1184.0,
    y1: 676.0,
};
const LABEL_SIZE: f64 = 12.0;
const NOTE_SIZE: f64 = 12.0;

/// A placed town to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct MapTown {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    pub askers: u64,
    /// askers / expected; `None` when no asker was expected.
    pub ratio: Option<f64>,
}

/// An airport mark; `used` when it places a town.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapAirport {
    pub latitude: f64,
    pub longitude: f64,
    pub used: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapData {
    pub title: String,
    pub subtitle: String,
    pub towns: Vec<MapTown>,
    pub airports: Vec<MapAirport>,
    /// Sentences below the map (towns not on it, and why).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("could not draw the map: {0}")]
pub struct DrawError(String);

pub(super) fn failed<E: std::fmt::Debug>(error: E) -> DrawError {
    DrawError(format!("{error:?}"))
}

/// The largest circle's radius for `n` towns: big for a few, smaller for many.
fn max_radius(n: usize) -> f64 {
    let per_town = FRAME.width() * FRAME.height() / n.max(1) as f64;
    (per_town.sqrt() * 0.2).clamp(9.0, 36.0)
}

/// The projection for towns at `points`, leaving room for their circles.
pub fn fit(points: &[(f64, f64)]) -> Projection {
    let room = max_radius(points.len()) + 14.0;
    Projection::fit(points, FRAME.inset(room), 3.0)
}

/// The frame's corners as latitude range and (unwrapped) longitude range.
pub fn view(projection: &Projection) -> ((f64, f64), (f64, f64)) {
    let (lat_top, lon_left) = projection.unproject((FRAME.x0, FRAME.y0));
    let (lat_bottom, lon_right) = projection.unproject((FRAME.x1, FRAME.y1));
    ((lat_bottom, lat_top), (lon_left, lon_right))
}

/// The diverging colour of a ratio: blue below 1, near white at 1, red
/// above, saturating at ½ and 2 (a log scale, so ½ and 2 are as far from
/// 1); grey when there is no ratio. ColorBrewer's RdBu, readable by most
/// colour-blind people.
pub fn ratio_colour(ratio: Option<f64>) -> RGBColor {
    const STOPS: [(f64, (u8, u8, u8)); 5] = [
        (-1.0, (33, 102, 172)),
        (-0.5, (103, 169, 207)),
        (0.0, (247, 247, 247)),
        (0.5, (239, 138, 98)),
        (1.0, (178, 24, 43)),
    ];
    let Some(ratio) = ratio.filter(|r| !r.is_nan()) else {
        return RGBColor(190, 190, 190);
    };
    let t = if ratio <= 0.0 {
        -1.0
    } else {
        ratio.log2().clamp(-1.0, 1.0)
    };
    let i = STOPS
        .windows(2)
        .position(|w| t <= w[1].0)
        .unwrap_or(STOPS.len() - 2);
    let ((t0, a), (t1, b)) = (STOPS[i], STOPS[i + 1]);
    let f = (t - t0) / (t1 - t0);
    let mix = |x: u8, y: u8| (f64::from(x) + (f64::from(y) - f64::from(x)) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// plotters writes `font-size` as the size given / 1.24.
fn font(px: f64) -> FontDesc<'static> {
    ("sans-serif", px * 1.24).into_font()
}

pub(super) fn text_style(px: f64, colour: RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    font(px).color(&colour).pos(Pos::new(h, v))
}

pub(super) fn at(x: f64, y: f64) -> (i32, i32) {
    (x.round() as i32, y.round() as i32)
}

/// Splits `text` into lines of at most `width` pixels at `size`.
fn wrap(text: &str, width: f64, size: f64) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let candidate = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if text_width(&candidate, size) > width && !line.is_empty() {
            lines.push(std::mem::replace(&mut line, word.to_owned()));
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The most footnote lines; beyond, the last says how many towns more.
const MAX_NOTE_LINES: usize = 6;

/// Draws the map; also the names of towns whose labels found no room
/// (they are named in the footnote instead).
pub fn render(data: &MapData, projection: &Projection) -> Result<String, DrawError> {
    let r_max = max_radius(data.towns.len());
    let max_askers = data
        .towns
        .iter()
        .map(|t| t.askers)
        .max()
        .unwrap_or(0)
        .max(1);
    let radius = |askers: u64| {
        if askers == 0 {
            3.0
        } else {
            (r_max * (askers as f64 / max_askers as f64).sqrt()).max(3.0)
        }
    };
    let points: Vec<(f64, f64)> = data
        .towns
        .iter()
        .map(|t| projection.project(t.latitude, t.longitude))
        .collect();
    let marks: Vec<Mark> = data
        .towns
        .iter()
        .zip(&points)
        .map(|(t, (x, y))| Mark {
            x: *x,
            y: *y,
            r: radius(t.askers),
            w: text_width(&t.name, LABEL_SIZE) + 4.0,
            h: LABEL_SIZE * 1.3,
        })
        .collect();
    let mut order: Vec<usize> = (0..marks.len()).collect();
    order.sort_by(|a, b| {
        data.towns[*b]
            .askers
            .cmp(&data.towns[*a].askers)
            .then_with(|| data.towns[*a].name.cmp(&data.towns[*b].name))
    });
    let labels = place_labels(&marks, &order, FRAME.inset(2.0), &[]);
    let mut notes = data.notes.clone();
    let unlabelled: Vec<&str> = labels
        .iter()
        .zip(&data.towns)
        .filter(|(l, _)| l.is_none())
        .map(|(_, t)| t.name.as_str())
        .collect();
    if !unlabelled.is_empty() {
        notes.push(format!(
            "Drawn without a label for lack of room: {}.",
            unlabelled.join(", ")
        ));
    }
    let mut note_lines: Vec<String> = notes
        .iter()
        .flat_map(|n| wrap(n, FRAME.width() - 16.0, NOTE_SIZE))
        .collect();
    if note_lines.len() > MAX_NOTE_LINES {
        note_lines.truncate(MAX_NOTE_LINES);
        if let Some(last) = note_lines.last_mut() {
            last.push_str(" …");
        }
    }
    let height = (FRAME.y1 + 96.0 + note_lines.len() as f64 * NOTE_SIZE * 1.4 + 8.0).ceil() as u32;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(failed)?;
        let ink = RGBColor(34, 34, 34);
        let grey = RGBColor(110, 110, 110);
        root.draw(&Text::new(
            data.title.clone(),
            at(FRAME.x0, 14.0),
            font(20.0)
                .style(FontStyle::Bold)
                .color(&ink)
                .pos(Pos::new(HPos::Left, VPos::Top)),
        ))
        .map_err(failed)?;
        for (i, line) in wrap(&data.subtitle, FRAME.width(), 13.0)
            .iter()
            .take(2)
            .enumerate()
        {
            root.draw(&Text::new(
                line.clone(),
                at(FRAME.x0, 42.0 + i as f64 * 16.0),
                text_style(13.0, grey, HPos::Left, VPos::Top),
            ))
            .map_err(failed)?;
        }

        // The frame, a pale sea of graticule lines, the airports.
        root.draw(&Rectangle::new(
            [at(FRAME.x0, FRAME.y0), at(FRAME.x1, FRAME.y1)],
            RGBColor(246, 248, 250).filled(),
        ))
        .map_err(failed)?;
        graticule(&root, projection)?;
        for a in &data.airports {
            let (x, y) = projection.project(a.latitude, a.longitude);
            if !FRAME.inset(1.0).contains((x, y)) {
                continue;
            }
            let (colour, r) = if a.used {
                (RGBColor(60, 60, 60).mix(0.9), 2)
            } else {
                (RGBColor(150, 160, 170).mix(0.7), 1)
            };
            root.draw(&Circle::new(at(x, y), r, colour.filled()))
                .map_err(failed)?;
        }

        // Circles, largest first so the small stay visible on top.
        for &i in order.iter() {
            let (m, town) = (&marks[i], &data.towns[i]);
            let centre = at(m.x, m.y);
            let r = m.r.round() as i32;
            if town.askers == 0 {
                root.draw(&Circle::new(
                    centre,
                    r,
                    RGBColor(90, 90, 90).stroke_width(1),
                ))
                .map_err(failed)?;
                continue;
            }
            root.draw(&Circle::new(
                centre,
                r,
                ratio_colour(town.ratio).mix(0.88).filled(),
            ))
            .map_err(failed)?;
            root.draw(&Circle::new(
                centre,
                r,
                RGBColor(60, 60, 60).stroke_width(1),
            ))
            .map_err(failed)?;
        }

        // Labels: leaders first, then a light box under each name.
        for label in labels.iter().flatten() {
            if let Some((a, b)) = label.leader {
                root.draw(&PathElement::new(
                    vec![at(a.0, a.1), at(b.0, b.1)],
                    RGBColor(90, 90, 90).stroke_width(1),
                ))
                .map_err(failed)?;
            }
        }
        for (label, town) in labels.iter().zip(&data.towns) {
            let Some(label) = label else { continue };
            let r = label.rect;
            root.draw(&Rectangle::new(
                [at(r.x0, r.y0), at(r.x1, r.y1)],
                WHITE.mix(0.78).filled(),
            ))
            .map_err(failed)?;
            root.draw(&Text::new(
                town.name.clone(),
                at(r.x0 + 2.0, r.y0 + r.height() / 2.0),
                text_style(LABEL_SIZE, ink, HPos::Left, VPos::Center),
            ))
            .map_err(failed)?;
        }
        root.draw(&Rectangle::new(
            [at(FRAME.x0, FRAME.y0), at(FRAME.x1, FRAME.y1)],
            RGBColor(180, 186, 192).stroke_width(1),
        ))
        .map_err(failed)?;

        legend::legends(&root, FRAME, r_max, max_askers)?;
        let top = FRAME.y1 + 96.0;
        for (i, line) in note_lines.iter().enumerate() {
            root.draw(&Text::new(
                line.clone(),
                at(FRAME.x0, top + i as f64 * NOTE_SIZE * 1.4),
                text_style(NOTE_SIZE, RGBColor(60, 60, 60), HPos::Left, VPos::Top),
            ))
            .map_err(failed)?;
        }
        root.present().map_err(failed)?;
    }
    let svg = annotate::with_title(svg, &data.title, &data.subtitle);
    Ok(annotate::with_values(svg, &order, &marks, &data.towns))
}

/// Latitude and longitude lines at a round step, labelled at the frame's
/// left and top edges.
fn graticule<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    projection: &Projection,
) -> Result<(), DrawError> {
    let line = RGBColor(214, 221, 228).stroke_width(1);
    let label = text_style(10.0, RGBColor(130, 140, 150), HPos::Left, VPos::Top);
    let ((lat_lo, lat_hi), (lon_lo, lon_hi)) = view(projection);
    let step = graticule_step((lat_hi - lat_lo).max(lon_hi - lon_lo));
    let mut lat = (lat_lo / step).ceil() * step;
    while lat <= lat_hi.min(90.0) {
        if lat >= -90.0 {
            let (_, y) = projection.project(lat, 0.0);
            root.draw(&PathElement::new(
                vec![at(FRAME.x0, y), at(FRAME.x1, y)],
                line,
            ))
            .map_err(failed)?;
            let text = match lat {
                l if l > 0.0 => format!("{}°N", trim(l)),
                l if l < 0.0 => format!("{}°S", trim(-l)),
                _ => "0°".to_owned(),
            };
            root.draw(&Text::new(text, at(FRAME.x0 + 3.0, y + 2.0), label.clone()))
                .map_err(failed)?;
        }
        lat += step;
    }
    let centre = (lon_lo + lon_hi) / 2.0;
    let mut lon = (lon_lo / step).ceil() * step;
    while lon <= lon_hi {
        // A view wider than the globe would draw a meridian twice.
        if (lon - centre).abs() < 180.0 {
            let (x, _) = projection.project(0.0, lon);
            root.draw(&PathElement::new(
                vec![at(x, FRAME.y0), at(x, FRAME.y1)],
                line,
            ))
            .map_err(failed)?;
            let east = (lon + 180.0).rem_euclid(360.0) - 180.0;
            let text = match east {
                e if e > 0.0 && e < 180.0 => format!("{}°E", trim(e)),
                e if e < 0.0 => format!("{}°W", trim(-e)),
                0.0 => "0°".to_owned(),
                _ => "180°".to_owned(),
            };
            root.draw(&Text::new(text, at(x + 3.0, FRAME.y0 + 3.0), label.clone()))
                .map_err(failed)?;
        }
        lon += step;
    }
    Ok(())
}

/// A degree value without needless decimals.
pub(super) fn trim(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_colour_scale_diverges_from_one() {
        let white = ratio_colour(Some(1.0));
        assert_eq!(white, RGBColor(247, 247, 247));
        let (blue, red) = (ratio_colour(Some(0.5)), ratio_colour(Some(2.0)));
        assert!(blue.2 > blue.0 && red.0 > red.2);
        // Saturates beyond ½ and 2; symmetric on the log scale.
        assert_eq!(ratio_colour(Some(0.0)), blue);
        assert_eq!(ratio_colour(Some(10.0)), red);
        assert_eq!(ratio_colour(None), ratio_colour(Some(f64::NAN)));
    }

    #[test]
    fn notes_wrap_within_the_width() {
        let text = "Not on the map: ".to_owned() + &"Valencia (ambiguous), ".repeat(30);
        let lines = wrap(&text, 400.0, 12.0);
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| text_width(l, 12.0) <= 400.0));
    }
}
