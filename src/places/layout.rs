//! The map's geometry, pure: an equirectangular projection fitted to the
//! towns, text sizes, and label placement that never lets two labels
//! overlap (a label that finds no room is reported, never drawn over
//! another).

/// A rectangle in pixels, `x0 <= x1`, `y0 <= y1` (y grows downwards).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
}

impl Rect {
    pub fn new(x0: f64, y0: f64, x1: f64, y1: f64) -> Self {
        Self { x0, y0, x1, y1 }
    }

    pub fn width(&self) -> f64 {
        self.x1 - self.x0
    }

    pub fn height(&self) -> f64 {
        self.y1 - self.y0
    }

    pub fn intersects(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }

    pub fn within(&self, o: &Rect) -> bool {
        self.x0 >= o.x0 && self.x1 <= o.x1 && self.y0 >= o.y0 && self.y1 <= o.y1
    }

    pub fn contains(&self, (x, y): (f64, f64)) -> bool {
        x >= self.x0 && x <= self.x1 && y >= self.y0 && y <= self.y1
    }

    fn overlap(&self, o: &Rect) -> f64 {
        let w = self.x1.min(o.x1) - self.x0.max(o.x0);
        let h = self.y1.min(o.y1) - self.y0.max(o.y0);
        if w > 0.0 && h > 0.0 {
            w * h
        } else {
            0.0
        }
    }

    /// The point of the rectangle nearest to `(x, y)`.
    pub fn nearest(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (x.clamp(self.x0, self.x1), y.clamp(self.y0, self.y1))
    }

    pub fn inset(&self, by: f64) -> Rect {
        Rect::new(self.x0 + by, self.y0 + by, self.x1 - by, self.y1 - by)
    }
}

/// Equirectangular: x ∝ longitude · cos(φ0), y ∝ latitude, φ0 the middle
/// latitude of the towns; scaled and centred to fit a rectangle. The
/// longitudes are taken around the middle of the smallest arc holding them
/// all, so towns on both sides of the antimeridian stay together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    lon0: f64,
    lat0: f64,
    k: f64,
    scale: f64,
    cx: f64,
    cy: f64,
}

/// `lon` as degrees east of `lon0`, in (-180, 180].
fn east_of(lon: f64, lon0: f64) -> f64 {
    let d = (lon - lon0).rem_euclid(360.0);
    if d > 180.0 {
        d - 360.0
    } else {
        d
    }
}

impl Projection {
    /// Fits `points` (latitude, longitude) into `area`, showing at least
    /// `min_span` degrees of latitude (one town alone is not a whole map).
    pub fn fit(points: &[(f64, f64)], area: Rect, min_span: f64) -> Self {
        let (lat_lo, lat_hi) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (lat, _)| {
                (lo.min(*lat), hi.max(*lat))
            });
        let (lat_lo, lat_hi) = if lat_lo.is_finite() {
            (lat_lo, lat_hi)
        } else {
            (0.0, 0.0)
        };
        let lon0 = middle_longitude(points.iter().map(|p| p.1));
        let (e_lo, e_hi) = points
            .iter()
            .map(|(_, lon)| east_of(*lon, lon0))
            .fold((0.0f64, 0.0f64), |(lo, hi), e| (lo.min(e), hi.max(e)));
        let lat0 = (lat_lo + lat_hi) / 2.0;
        let k = lat0.to_radians().cos().max(0.2);
        let span_x = ((e_hi - e_lo) * k).max(min_span);
        let span_y = (lat_hi - lat_lo).max(min_span);
        let scale = (area.width() / span_x).min(area.height() / span_y);
        Self {
            lon0: lon0 + (e_lo + e_hi) / 2.0,
            lat0,
            k,
            scale,
            cx: (area.x0 + area.x1) / 2.0,
            cy: (area.y0 + area.y1) / 2.0,
        }
    }

    pub fn project(&self, latitude: f64, longitude: f64) -> (f64, f64) {
        (
            self.cx + east_of(longitude, self.lon0) * self.k * self.scale,
            self.cy - (latitude - self.lat0) * self.scale,
        )
    }

    /// The latitude and longitude at pixel `(x, y)` (longitude unwrapped:
    /// it may pass ±180).
    pub fn unproject(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            self.lat0 - (y - self.cy) / self.scale,
            self.lon0 + (x - self.cx) / (self.k * self.scale),
        )
    }

    /// Pixels per degree of latitude.
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

/// The middle of the smallest arc of longitudes holding all of them: the
/// opposite of the widest gap between neighbours around the circle.
fn middle_longitude(longitudes: impl Iterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = longitudes.map(|l| l.rem_euclid(360.0)).collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let (mut gap, mut after) = (sorted[0] + 360.0 - sorted[n - 1], sorted[0]);
    for w in sorted.windows(2) {
        if w[1] - w[0] > gap {
            gap = w[1] - w[0];
            after = w[1];
        }
    }
    // The arc runs from `after` eastwards over 360 - gap degrees.
    let mid = after + (360.0 - gap) / 2.0;
    east_of(mid, 0.0)
}

/// A "nice" graticule step (degrees) giving a few lines over `span`.
pub fn graticule_step(span: f64) -> f64 {
    const STEPS: [f64; 10] = [0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0];
    STEPS.into_iter().find(|s| span / s <= 8.0).unwrap_or(60.0)
}

/// The width of `text` in pixels at `size` px in a common sans-serif
/// (DejaVu Sans, among the widest, so other fonts fit in it too).
pub fn text_width(text: &str, size: f64) -> f64 {
    let em: f64 = text
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '\'' | '|' | '.' | ',' | ':' | ';' | '!' => 0.30,
            ' ' | 'f' | 't' | 'I' | 'J' | '(' | ')' | '[' | ']' | '-' => 0.38,
            'r' => 0.42,
            's' | 'c' | 'z' | 'x' | 'y' | 'v' | 'k' => 0.58,
            'm' | 'w' => 0.98,
            'M' | 'W' => 1.0,
            'A'..='Z' => 0.74,
            'a'..='z' | '0'..='9' => 0.64,
            c if c.is_ascii() => 0.6,
            // CJK and other wide scripts.
            c if ('\u{2e80}'..='\u{9fff}').contains(&c)
                || ('\u{ac00}'..='\u{d7af}').contains(&c) =>
            {
                1.0
            }
            _ => 0.7,
        })
        .sum();
    em * size
}

/// A town to label: its circle and its label's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    pub x: f64,
    pub y: f64,
    pub r: f64,
    pub w: f64,
    pub h: f64,
}

impl Mark {
    fn bounds(&self) -> Rect {
        Rect::new(
            self.x - self.r,
            self.y - self.r,
            self.x + self.r,
            self.y + self.r,
        )
    }
}

/// Where a label went: its box, and a leader line from the circle when it
/// sits away from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Label {
    pub rect: Rect,
    pub leader: Option<((f64, f64), (f64, f64))>,
}

const GAP: f64 = 3.0;

/// The box of a label whose nearest side to the circle's centre touches
/// the point at `angle` (radians, clockwise from east), `distance` from it.
fn candidate(m: &Mark, angle: f64, distance: f64) -> Rect {
    let (c, s) = (angle.cos(), angle.sin());
    let (px, py) = (m.x + distance * c, m.y + distance * s);
    let x0 = if c > 0.35 {
        px
    } else if c < -0.35 {
        px - m.w
    } else {
        px - m.w / 2.0
    };
    let y0 = if s > 0.35 {
        py
    } else if s < -0.35 {
        py - m.h
    } else {
        py - m.h / 2.0
    };
    Rect::new(x0, y0, x0 + m.w, y0 + m.h)
}

/// Places a label for each mark, in `order` (most important first): beside
/// its circle where there is room, else further out with a leader line.
/// A label never overlaps another label, an obstacle, or leaves `bounds`;
/// it avoids circles as far as it can (a circle's centre most of all).
/// `None` for a mark that found no room.
pub fn place_labels(
    marks: &[Mark],
    order: &[usize],
    bounds: Rect,
    obstacles: &[Rect],
) -> Vec<Option<Label>> {
    let mut placed: Vec<Option<Label>> = vec![None; marks.len()];
    let mut taken: Vec<Rect> = obstacles.to_vec();
    let angles: Vec<f64> = (0..16)
        .map(|i| f64::from(i) * std::f64::consts::PI / 8.0)
        .collect();
    // Beside the circle first: east, west, the diagonals, north, south.
    let beside = [0.0f64, 180.0, -45.0, 45.0, -135.0, 135.0, -90.0, 90.0];
    for &i in order {
        let m = &marks[i];
        let cost = |rect: &Rect| -> Option<f64> {
            if !rect.within(&bounds) || taken.iter().any(|t| t.intersects(rect)) {
                return None;
            }
            let mut cost = 0.0;
            for (j, other) in marks.iter().enumerate() {
                let b = other.bounds();
                if !b.intersects(rect) {
                    continue;
                }
                // Its own circle is only reached by the far candidates' corners.
                cost += rect.overlap(&b) * if j == i { 4.0 } else { 1.0 };
                if rect.contains((other.x, other.y)) {
                    cost += 10_000.0;
                }
            }
            Some(cost)
        };
        let mut best: Option<(f64, Rect, bool)> = None;
        for degrees in beside {
            let a = degrees.to_radians();
            // The diagonals sit off the circle's corner, not its bounding box.
            let rect = candidate(m, a, m.r + GAP);
            if let Some(c) = cost(&rect) {
                if best.is_none_or(|(b, _, _)| c < b) {
                    best = Some((c, rect, false));
                }
                if c == 0.0 {
                    break;
                }
            }
        }
        let mut step = 1;
        while best.is_none_or(|(c, _, _)| c > 0.0) && step <= 14 {
            let distance = m.r + GAP + 8.0 * f64::from(step) + f64::from(step * step);
            for &a in &angles {
                let rect = candidate(m, a, distance);
                if let Some(c) = cost(&rect) {
                    // A leader line costs a little, more the longer it is.
                    let c = c + 20.0 + distance;
                    if best.is_none_or(|(b, _, _)| c < b) {
                        best = Some((c, rect, true));
                    }
                }
            }
            step += 1;
        }
        if let Some((_, rect, far)) = best {
            let leader = far.then(|| {
                let end = rect.nearest((m.x, m.y));
                let (dx, dy) = (end.0 - m.x, end.1 - m.y);
                let d = dx.hypot(dy).max(1e-9);
                ((m.x + dx / d * m.r, m.y + dy / d * m.r), end)
            });
            taken.push(rect);
            placed[i] = Some(Label { rect, leader });
        }
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_projection_fits_and_keeps_the_antimeridian_together() {
        let area = Rect::new(0.0, 0.0, 1000.0, 500.0);
        let p = Projection::fit(&[(40.0, -3.7), (39.5, -0.4)], area, 1.0);
        let (a, b) = (p.project(40.0, -3.7), p.project(39.5, -0.4));
        assert!(a.0 < b.0 && a.1 < b.1, "{a:?} {b:?}");
        for (x, y) in [a, b] {
            assert!((-0.001..=1000.001).contains(&x) && (-0.001..=500.001).contains(&y));
        }
        // Fiji and Samoa straddle ±180: neighbours, not a world apart.
        let p = Projection::fit(&[(-17.8, 177.4), (-13.8, -171.8)], area, 1.0);
        let (fiji, samoa) = (p.project(-17.8, 177.4), p.project(-13.8, -171.8));
        assert!(fiji.0 < samoa.0, "{fiji:?} {samoa:?}");
        assert!(samoa.0 - fiji.0 <= 1000.001);
        let (lat, lon) = p.unproject(samoa);
        assert!((lat + 13.8).abs() < 1e-9 && (east_of(lon, 0.0) + 171.8).abs() < 1e-9);
        // One town: centred, with some land around it.
        let p = Projection::fit(&[(51.5, -0.1)], area, 4.0);
        let (x, y) = p.project(51.5, -0.1);
        assert!((x - 500.0).abs() < 1e-9 && (y - 250.0).abs() < 1e-9);
        assert!((p.scale() - 125.0).abs() < 1e-9);
    }

    #[test]
    fn graticule_steps_are_few_and_round() {
        assert_eq!(graticule_step(3.0), 0.5);
        assert_eq!(graticule_step(16.0), 2.0);
        assert_eq!(graticule_step(360.0), 45.0);
    }

    fn mark(x: f64, y: f64) -> Mark {
        Mark {
            x,
            y,
            r: 6.0,
            w: 50.0,
            h: 14.0,
        }
    }

    fn check(marks: &[Mark], labels: &[Option<Label>], bounds: Rect) {
        let boxes: Vec<Rect> = labels.iter().flatten().map(|l| l.rect).collect();
        for (i, a) in boxes.iter().enumerate() {
            assert!(a.within(&bounds), "{a:?}");
            for b in &boxes[i + 1..] {
                assert!(!a.intersects(b), "{a:?} overlaps {b:?}");
            }
        }
        for (m, label) in marks
            .iter()
            .zip(labels)
            .filter_map(|(m, l)| l.map(|l| (m, l)))
        {
            assert!(
                !label.rect.contains((m.x, m.y)),
                "a label covers its own town"
            );
        }
    }

    #[test]
    fn crowded_labels_move_out_with_leaders_and_never_overlap() {
        let bounds = Rect::new(0.0, 0.0, 800.0, 600.0);
        let marks: Vec<Mark> = (0..30)
            .map(|i| {
                mark(
                    400.0 + f64::from(i % 6) * 9.0,
                    300.0 + f64::from(i / 6) * 9.0,
                )
            })
            .collect();
        let order: Vec<usize> = (0..marks.len()).collect();
        let labels = place_labels(&marks, &order, bounds, &[]);
        assert!(labels.iter().all(Option::is_some), "every label found room");
        assert!(labels.iter().flatten().any(|l| l.leader.is_some()));
        check(&marks, &labels, bounds);
        // A lone town's label sits beside it, east.
        let lone = place_labels(&[mark(100.0, 100.0)], &[0], bounds, &[]);
        let label = lone[0].unwrap();
        assert!(label.leader.is_none());
        assert!(label.rect.x0 > 106.0 && label.rect.y0 < 100.0 && label.rect.y1 > 100.0);
    }

    #[test]
    fn no_room_is_reported_not_overdrawn() {
        // Room for one label east of the pair, none for a second.
        let bounds = Rect::new(0.0, 0.0, 120.0, 20.0);
        let labels = place_labels(&[mark(30.0, 10.0), mark(35.0, 10.0)], &[0, 1], bounds, &[]);
        assert!(labels[0].is_some());
        assert!(labels[1].is_none(), "{labels:?}");
    }

    #[test]
    fn wider_text_is_wider() {
        assert!(text_width("Madrid", 12.0) > text_width("Lille", 12.0));
        assert!(text_width("Москва", 12.0) > 30.0);
        assert!(text_width("東京", 12.0) >= 24.0);
    }

    proptest! {
        #[test]
        fn labels_never_overlap(points in proptest::collection::vec((0.0f64..600.0, 0.0f64..400.0), 1..40)) {
            let bounds = Rect::new(0.0, 0.0, 600.0, 400.0);
            let marks: Vec<Mark> = points.iter().map(|(x, y)| mark(*x, *y)).collect();
            let order: Vec<usize> = (0..marks.len()).collect();
            let labels = place_labels(&marks, &order, bounds, &[Rect::new(500.0, 0.0, 600.0, 50.0)]);
            check(&marks, &labels, bounds);
            for l in labels.iter().flatten() {
                prop_assert!(!l.rect.intersects(&Rect::new(500.0, 0.0, 600.0, 50.0)));
            }
        }
    }
}
