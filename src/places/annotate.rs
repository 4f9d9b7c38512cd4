//! What plotters cannot write into the map's SVG: its `<title>` and
//! `<desc>`, and a `<title>` tooltip with each town's figures.

use super::draw::{trim, MapTown};
use super::layout::Mark;

/// Every town's figures as a `<title>` tooltip over its circle (plotters
/// cannot give an element a title): transparent circles in the same order,
/// so the small ones on top answer for themselves.
pub(super) fn with_values(
    svg: String,
    order: &[usize],
    marks: &[Mark],
    towns: &[MapTown],
) -> String {
    let Some(end) = svg.rfind("</svg>") else {
        return svg;
    };
    let mut tips = String::from("<g class=\"values\">");
    for &i in order {
        let (m, town) = (&marks[i], &towns[i]);
        let ratio = town.ratio.map_or_else(
            || "no asker expected".to_owned(),
            |r| format!("{}× the age-adjusted expectation", trim(r)),
        );
        let text = format!("{}: {} askers, {ratio}", town.name, town.askers);
        tips.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{:.1}\" fill=\"transparent\"><title>{}</title></circle>",
            m.x,
            m.y,
            m.r.max(4.0),
            escape_xml(&text)
        ));
    }
    tips.push_str("</g>");
    format!("{}{tips}{}", &svg[..end], &svg[end..])
}

fn escape_xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Adds `<title>` and `<desc>` (read by screen readers and shown as a
/// tooltip) after the opening `<svg …>` tag.
pub(super) fn with_title(svg: String, title: &str, desc: &str) -> String {
    let escape = escape_xml;
    match svg
        .find("<svg")
        .and_then(|i| svg[i..].find('>').map(|j| i + j + 1))
    {
        Some(end) => format!(
            "{}\n<title>{}</title>\n<desc>{}</desc>{}",
            &svg[..end],
            escape(title),
            escape(desc),
            &svg[end..]
        ),
        None => svg,
    }
}

#[cfg(test)]
mod tests {
    use super::super::draw::{fit, render, MapData};
    use super::*;

    #[test]
    fn every_town_has_its_figures_as_a_tooltip() {
        let town = |name: &str, askers, ratio| MapTown {
            name: name.to_owned(),
            latitude: 55.75,
            longitude: 37.6,
            askers,
            ratio,
        };
        let data = MapData {
            title: "map".into(),
            subtitle: String::new(),
            towns: vec![town("Moscow", 240, Some(1.31)), town("A & B", 0, None)],
            airports: vec![],
            notes: vec![],
        };
        let projection = fit(&[(55.75, 37.6), (55.8, 37.7)]);
        let svg = render(&data, &projection).unwrap();
        assert!(
            svg.contains("<title>Moscow: 240 askers, 1.31× the age-adjusted expectation</title>"),
            "{svg}"
        );
        assert!(svg.contains("<title>A &amp; B: 0 askers, no asker expected</title>"));
        assert!(svg.ends_with("</g></svg>") || svg.trim_end().ends_with("</g></svg>"));
    }

    #[test]
    fn the_title_is_escaped_into_the_document() {
        let svg = with_title("<svg a=\"1\">\n<rect/></svg>".into(), "A & B", "<x>");
        assert!(svg.starts_with("<svg a=\"1\">\n<title>A &amp; B</title>\n<desc>&lt;x&gt;</desc>"));
    }
}
