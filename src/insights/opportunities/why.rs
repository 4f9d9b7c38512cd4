//! The one plain sentence of a ranked cell, built from its facts only:
//! "data-analytics, not offered yet: 41 % of Kazan's residents aged 18-24
//! who came through tiktok ask (31–52 %), 2.8× the course's rate
//! (1.9–3.9×), rising 2.8× in 28 days (q < 0.001); nearest airport KZN
//! 14 km".

use super::Opportunity;

pub(super) fn sentence(o: &Opportunity, window: &str) -> String {
    let course = if o.new_course {
        format!("{}, not offered yet", o.course)
    } else {
        o.course.clone()
    };
    let who = if o.channel == "unknown" {
        format!(
            "{}'s residents aged {} (channel unknown)",
            o.town, o.age_group
        )
    } else {
        format!(
            "{}'s residents aged {} who came through {}",
            o.town, o.age_group, o.channel
        )
    };
    let place = match &o.airport {
        Some(a) => format!("nearest airport {} {:.0} km", a.iata, a.distance_km),
        None => format!("{} is not placed near an airport", o.town),
    };
    format!(
        "{course}: {} of {who} ask ({}–{}), {} the course's rate ({}–{}×), {}; {place}",
        percent(o.rate),
        percent_number(o.rate_low),
        percent(o.rate_high),
        times(o.ratio),
        number(o.ratio_low),
        number(o.ratio_high),
        trend(o, &span(window)),
    )
}

/// What /emerging said of the cell.
fn trend(o: &Opportunity, span: &str) -> String {
    match (o.current, o.growth_q) {
        (Some(current), Some(q)) if o.rising && o.previous == Some(0) => {
            format!("new in the last {span} ({current} askers, {})", q_text(q))
        }
        (Some(_), Some(q)) if o.rising => format!(
            "rising {} in {span} ({})",
            o.growth.map_or_else(|| "?".to_owned(), times),
            q_text(q)
        ),
        (Some(current), Some(q)) => format!(
            "not rising in {span} ({current} askers, {} before, {})",
            o.previous.unwrap_or(0),
            q_text(q)
        ),
        _ => format!("too few askers in the last {span} to tell a trend"),
    }
}

fn q_text(q: f64) -> String {
    if q < 0.001 {
        "q < 0.001".to_owned()
    } else {
        format!("q = {}", significant(q))
    }
}

/// `28d` as "28 days", `12h` as "12 hours"; other forms as written.
fn span(window: &str) -> String {
    let (number, unit) = window.split_at(window.find(|c: char| !c.is_ascii_digit()).unwrap_or(0));
    let unit = match (unit, number == "1") {
        ("d", true) => "day",
        ("d", false) => "days",
        ("h", true) => "hour",
        ("h", false) => "hours",
        ("m", true) => "minute",
        ("m", false) => "minutes",
        _ => return window.to_owned(),
    };
    format!("{number} {unit}")
}

/// Two significant digits, as a reader compares them.
fn significant(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.1}")
    } else if x >= 0.1 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn number(x: f64) -> String {
    significant(x)
}

fn times(x: f64) -> String {
    format!("{}×", significant(x))
}

/// A share as a percentage, whole above 10 %, one decimal below.
fn percent_number(x: f64) -> String {
    let p = x * 100.0;
    if p >= 10.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

fn percent(x: f64) -> String {
    format!("{} %", percent_number(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_figures_read_plainly() {
        assert_eq!(span("28d"), "28 days");
        assert_eq!(span("1d"), "1 day");
        assert_eq!(span("12h"), "12 hours");
        assert_eq!(span("90s"), "90s");
        assert_eq!(percent(0.413), "41 %");
        assert_eq!(percent(0.042), "4.2 %");
        assert_eq!(times(2.83), "2.8×");
        assert_eq!(times(12.4), "12×");
        assert_eq!(q_text(0.0004), "q < 0.001");
        assert_eq!(q_text(0.0123), "q = 0.012");
        assert_eq!(q_text(0.42), "q = 0.42");
    }
}
