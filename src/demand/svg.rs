//! A few SVG elements written as text. The demand charts are written by hand
//! rather than with plotters because every mark carries a `<title>` (the
//! tooltip with its figures, read by screen readers too), which plotters'
//! backends cannot emit; what is drawn is only rectangles, lines and text.

use std::fmt::Write;

/// Escapes text for an XML attribute or text node.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// How wide `text` is at `size` px in a sans-serif face, roughly: enough to
/// decide whether a label fits, not to typeset.
pub fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.58
}

/// An SVG document being written.
pub struct Svg {
    out: String,
}

/// Where a text's anchor is.
#[derive(Clone, Copy)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Middle => "middle",
            Self::End => "end",
        }
    }
}

/// How a text is set: size in px, anchor, colour, class.
#[derive(Clone, Copy)]
pub struct Style<'a> {
    pub size: f64,
    pub anchor: Anchor,
    pub fill: &'a str,
    pub class: &'a str,
}

impl<'a> Style<'a> {
    pub fn new(size: f64, anchor: Anchor, class: &'a str) -> Self {
        Self {
            size,
            anchor,
            fill: "#222",
            class,
        }
    }

    pub fn fill(self, fill: &'a str) -> Self {
        Self { fill, ..self }
    }
}

impl Svg {
    pub fn new(width: u32, height: u32, title: &str) -> Self {
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" role=\"img\">\
             <title>{}</title><rect width=\"{width}\" height=\"{height}\" fill=\"#fff\"/>",
            escape(title)
        );
        Self { out }
    }

    /// A filled rectangle with a tooltip (when `title` is not empty).
    pub fn rect(
        &mut self,
        (x, y, w, h): (f64, f64, f64, f64),
        fill: &str,
        class: &str,
        title: &str,
    ) {
        let _ = write!(
            self.out,
            "<rect class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" fill=\"{fill}\""
        );
        if title.is_empty() {
            self.out.push_str("/>");
        } else {
            let _ = write!(self.out, "><title>{}</title></rect>", escape(title));
        }
    }

    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str) {
        let _ = write!(
            self.out,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{stroke}\"/>"
        );
    }

    /// Text of `class` at (`x`, `y`) (on its baseline), turned by `rotate` degrees.
    pub fn text(&mut self, (x, y): (f64, f64), style: Style<'_>, text: &str, rotate: f64) {
        let Style {
            size,
            anchor,
            fill,
            class,
        } = style;
        let _ = write!(
            self.out,
            "<text class=\"{class}\" x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"{}\" fill=\"{fill}\"",
            anchor.name()
        );
        if rotate != 0.0 {
            let _ = write!(self.out, " transform=\"rotate({rotate} {x:.1} {y:.1})\"");
        }
        let _ = write!(self.out, ">{}</text>", escape(text));
    }

    /// Raw markup that this module wrote (a gradient definition).
    pub fn defs(&mut self, markup: &str) {
        let _ = write!(self.out, "<defs>{markup}</defs>");
    }

    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_titles_are_escaped() {
        let mut svg = Svg::new(10, 10, "A & B");
        svg.rect((0.0, 0.0, 1.0, 1.0), "#000", "cell", "<x> \"y\"");
        svg.text(
            (1.0, 1.0),
            Style::new(10.0, Anchor::Start, "t"),
            "a\u{1}b",
            0.0,
        );
        let svg = svg.finish();
        assert!(svg.contains("<title>A &amp; B</title>"));
        assert!(svg.contains("<title>&lt;x&gt; &quot;y&quot;</title>"));
        assert!(svg.contains(">a\u{fffd}b</text>"));
        assert!(svg.ends_with("</svg>"));
    }
}
