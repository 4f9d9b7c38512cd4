//! The ranking's documented properties.

use proptest::prelude::*;

use super::*;
use crate::insights::stats;

/// A cell of `population` residents of whom `askers` ask, in a course the
/// import asks for at `overall` (so `expected` = population × overall).
fn cell_of(town: &str, population: u64, askers: u64, overall: f64) -> Opportunity {
    let (rate_low, rate_high) = stats::wilson(askers, population).unwrap();
    let expected = population as f64 * overall;
    let (low, high) = stats::garwood(askers);
    Opportunity {
        rank: 0,
        course: "data-analytics".into(),
        town: town.into(),
        age_group: "18-24".into(),
        channel: "tiktok".into(),
        score: score(rate_low, low / expected, false, false),
        population,
        askers,
        statements: askers,
        rate: askers as f64 / population as f64,
        rate_low,
        rate_high,
        expected,
        ratio: askers as f64 / expected,
        ratio_low: low / expected,
        ratio_high: high / expected,
        p: 0.5,
        q: 0.5,
        current: None,
        previous: None,
        growth: None,
        growth_low: None,
        growth_high: None,
        growth_q: None,
        rising: false,
        new_course: false,
        airport: None,
        why: String::new(),
    }
}

fn rising(mut cell: Opportunity) -> Opportunity {
    cell.rising = true;
    cell.current = Some(20);
    cell.previous = Some(5);
    cell.growth = Some(4.0);
    cell.growth_q = Some(0.001);
    cell.score = score(cell.rate_low, cell.ratio_low, true, cell.new_course);
    cell
}

fn towns(ranked: &[Opportunity]) -> Vec<&str> {
    ranked.iter().map(|c| c.town.as_str()).collect()
}

#[test]
fn three_residents_at_100_percent_do_not_outrank_300_at_40_percent() {
    // At any overall rate of the course the 40 % is above, and even with
    // no minimum population: the lower bounds shrink the handful.
    for overall in [0.01, 0.05, 0.1, 0.2, 0.3, 0.39] {
        let few = cell_of("Few", 3, 3, overall);
        let many = cell_of("Many", 300, 120, overall);
        assert!(
            many.score > few.score,
            "{overall}: {} {}",
            many.score,
            few.score
        );
        let (ranked, _) = rank(vec![few.clone(), many.clone()], 1, None, 10);
        assert_eq!(towns(&ranked), ["Many", "Few"], "{overall}");
        // With the default minimum population the handful is not ranked at all.
        let (ranked, considered) = rank(vec![few, many], DEFAULT_MIN_POPULATION, None, 10);
        assert_eq!((towns(&ranked), considered), (vec!["Many"], 1));
    }
}

#[test]
fn rising_beats_flat_at_equal_rate() {
    let flat = cell_of("Flat", 200, 60, 0.1);
    let up = rising(cell_of("Up", 200, 60, 0.1));
    // "Flat" sorts first by its keys; the trend must win over them.
    let (ranked, _) = rank(vec![flat, up], 20, None, 10);
    assert_eq!(towns(&ranked), ["Up", "Flat"]);
    assert_eq!(ranked.iter().map(|c| c.rank).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn a_new_course_beats_an_offered_one_at_equal_figures() {
    let offered = cell_of("A", 200, 60, 0.1);
    let mut new = cell_of("B", 200, 60, 0.1);
    new.new_course = true;
    new.score = score(new.rate_low, new.ratio_low, false, true);
    let (ranked, _) = rank(vec![offered, new], 20, None, 10);
    assert_eq!(towns(&ranked), ["B", "A"]);
}

#[test]
fn ties_go_by_the_cells_keys_whatever_the_input_order() {
    let mut cells: Vec<Opportunity> = ["Sochi", "Berlin", "Kazan"]
        .into_iter()
        .map(|t| cell_of(t, 100, 30, 0.1))
        .collect();
    cells.push({
        let mut c = cell_of("Berlin", 100, 30, 0.1);
        c.channel = "radio".into();
        c
    });
    let expected = [
        "Berlin/radio",
        "Berlin/tiktok",
        "Kazan/tiktok",
        "Sochi/tiktok",
    ];
    for _ in 0..4 {
        cells.rotate_left(1);
        let (ranked, _) = rank(cells.clone(), 20, None, 10);
        let order: Vec<String> = ranked
            .iter()
            .map(|c| format!("{}/{}", c.town, c.channel))
            .collect();
        assert_eq!(order, expected);
    }
}

#[test]
fn limit_min_population_and_min_opportunity_cut_after_ranking() {
    let cells = vec![
        cell_of("A", 500, 200, 0.1),
        cell_of("B", 500, 100, 0.1),
        cell_of("C", 19, 19, 0.1),
        cell_of("D", 500, 60, 0.1),
    ];
    let (ranked, considered) = rank(cells.clone(), 20, None, 2);
    assert_eq!((towns(&ranked), considered), (vec!["A", "B"], 3));
    let floor = cells[1].score;
    let (ranked, considered) = rank(cells, 20, Some(floor), 10);
    assert_eq!((towns(&ranked), considered), (vec!["A", "B"], 2));
}

#[test]
fn the_sentence_names_the_facts() {
    let mut cell = rising(cell_of("Kazan", 75, 31, 0.146));
    cell.new_course = true;
    cell.airport = Some(Airport {
        iata: "KZN".into(),
        name: "Kazan International Airport".into(),
        distance_km: 14.2,
    });
    let text = why::sentence(&cell, "28d");
    assert_eq!(
        text,
        "data-analytics, not offered yet: 41 % of Kazan's residents aged 18-24 who came \
         through tiktok ask (31–53 %), 2.8× the course's rate (1.9–4.0×), rising 4.0× in \
         28 days (q = 0.001); nearest airport KZN 14 km"
    );
    cell.airport = None;
    cell.channel = "unknown".into();
    cell.rising = false;
    cell.growth_q = Some(0.3);
    let text = why::sentence(&cell, "7d");
    assert!(
        text.contains("residents aged 18-24 (channel unknown)"),
        "{text}"
    );
    assert!(
        text.contains("not rising in 7 days (20 askers, 5 before, q = 0.30)"),
        "{text}"
    );
    assert!(
        text.ends_with("Kazan is not placed near an airport"),
        "{text}"
    );
    cell.current = None;
    assert!(why::sentence(&cell, "28d").contains("too few askers in the last 28 days"));
}

fn arbitrary_cell() -> impl Strategy<Value = Opportunity> {
    (
        prop::sample::select(vec!["A", "B", "C", "D"]),
        1u64..2000,
        0.0f64..=1.0,
        0.005f64..0.5,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(town, population, share, overall, up, new)| {
            let askers = ((population as f64 * share).round() as u64).max(1);
            let mut c = cell_of(town, population, askers, overall);
            if up {
                c = rising(c);
            }
            c.new_course = new;
            c.score = score(c.rate_low, c.ratio_low, c.rising, new);
            c
        })
}

proptest! {
    /// Best first, numbered 1.., within the limits, independent of input order.
    #[test]
    fn ranking_is_ordered_bounded_and_order_free(
        cells in prop::collection::vec(arbitrary_cell(), 0..40),
        min_population in 1u64..100,
        limit in 1usize..20,
    ) {
        let (ranked, considered) = rank(cells.clone(), min_population, None, limit);
        prop_assert_eq!(considered, cells.iter().filter(|c| c.population >= min_population).count());
        prop_assert_eq!(ranked.len(), considered.min(limit));
        for (i, pair) in ranked.windows(2).enumerate() {
            prop_assert!(order(&pair[0], &pair[1]).is_le());
            prop_assert_eq!(pair[0].rank, i + 1);
        }
        prop_assert!(ranked.iter().all(|c| c.population >= min_population));
        let mut reversed = cells;
        reversed.reverse();
        let (again, _) = rank(reversed, min_population, None, limit);
        let scores = |r: &[Opportunity]| r.iter().map(|c| (c.score, c.town.clone())).collect::<Vec<_>>();
        prop_assert_eq!(scores(&again), scores(&ranked));
    }

    /// One more asker in the same cell never lowers its score; the boosts never do.
    #[test]
    fn more_askers_and_boosts_never_lower_the_score(
        population in 2u64..5000, share in 0.0f64..1.0, overall in 0.005f64..0.5,
    ) {
        let askers = ((population as f64 * share) as u64).clamp(1, population - 1);
        let base = cell_of("A", population, askers, overall);
        let more = cell_of("A", population, askers + 1, overall);
        prop_assert!(more.score >= base.score);
        prop_assert!(score(base.rate_low, base.ratio_low, true, false) > base.score);
        prop_assert!(score(base.rate_low, base.ratio_low, false, true) > base.score);
    }
}
