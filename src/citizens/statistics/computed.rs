//! The statistics computed from an import's typed citizens, exactly as the
//! SQL in `queries` computes them from the stored rows. `POST /imports` holds
//! the citizens it has just written, so it works the answers out while the
//! COPY runs and keeps them for the import's first version: the first ask is
//! then a version check, not a scan of 10,000 rows. Any later version (a
//! PATCH, on any instance) is answered by the SQL again.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};

use super::answers::{AgePercentiles, Birthdays, Presents, UNKNOWN_CHANNEL};
use crate::citizens::{Citizen, CitizenId};

/// `BIRTHDAYS_BY_MONTH`: in each month (keys `"1"`…`"12"`), every citizen
/// with a relative born in it and how many such relatives, by citizen id.
/// Relations are symmetric, so each citizen gives its birth month to every
/// relative it lists.
pub fn birthdays_by_month(citizens: &[Citizen]) -> Birthdays {
    let mut buyers: [Vec<i32>; 12] = Default::default();
    for c in citizens {
        let month = c.birth_date.date().month0() as usize;
        buyers[month].extend(c.relatives.iter().map(|r| r.get()));
    }
    Birthdays(
        buyers
            .into_iter()
            .enumerate()
            .map(|(month, mut ids)| {
                ids.sort_unstable();
                let mut presents: Vec<Presents> = Vec::new();
                for id in ids {
                    match presents.last_mut() {
                        Some(last) if last.citizen_id.get() == id => last.presents += 1,
                        _ => presents.push(Presents {
                            citizen_id: id_of(id),
                            presents: 1,
                        }),
                    }
                }
                ((month + 1).to_string(), presents)
            })
            .collect(),
    )
}

/// `BIRTHDAYS_BY_CHANNEL`: per channel (`"unknown"` when unset, in byte
/// order), the citizens with relatives and how many they have, by id; a
/// channel whose citizens have none still appears, empty.
pub fn birthdays_by_channel(citizens: &[Citizen]) -> Birthdays {
    let mut groups: BTreeMap<&str, Vec<Presents>> = BTreeMap::new();
    for c in citizens {
        let key = c.channel.as_ref().map_or(UNKNOWN_CHANNEL, |ch| ch.as_str());
        let buyers = groups.entry(key).or_default();
        if !c.relatives.is_empty() {
            buyers.push(Presents {
                citizen_id: c.citizen_id,
                presents: i32::try_from(c.relatives.len()).unwrap_or(i32::MAX),
            });
        }
    }
    Birthdays(
        groups
            .into_iter()
            .map(|(key, mut buyers)| {
                buyers.sort_unstable_by_key(|p| p.citizen_id);
                (key.to_owned(), buyers)
            })
            .collect(),
    )
}

/// `AGE_PERCENTILES`: per town in byte order, `percentile_cont` of the full
/// years on `today` at 0.5, 0.75 and 0.99, rounded as `round(x::numeric, 2)`.
pub fn age_percentiles(citizens: &[Citizen], today: NaiveDate) -> Vec<AgePercentiles> {
    let mut towns: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for c in citizens {
        let age = f64::from(c.birth_date.age_on(today));
        towns.entry(c.town.as_str()).or_default().push(age);
    }
    towns
        .into_iter()
        .map(|(town, mut ages)| {
            ages.sort_unstable_by(f64::total_cmp);
            AgePercentiles {
                town: town.to_owned(),
                p50: round2(percentile_cont(&ages, 0.5)),
                p75: round2(percentile_cont(&ages, 0.75)),
                p99: round2(percentile_cont(&ages, 0.99)),
            }
        })
        .collect()
}

fn id_of(id: i32) -> CitizenId {
    CitizenId::from_path(i64::from(id)).expect("relatives are valid citizen ids")
}

/// PostgreSQL's `percentile_cont` over sorted, non-empty `values`: the rank
/// `p * (n - 1)` interpolated between its neighbours as `lo + frac * (hi - lo)`,
/// in the same float operations.
fn percentile_cont(values: &[f64], p: f64) -> f64 {
    let rank = p * (values.len() - 1) as f64;
    let (first, second) = (rank.floor(), rank.ceil());
    let lo = values[first as usize];
    if first == second {
        return lo;
    }
    let hi = values[second as usize];
    lo + (rank - first) * (hi - lo)
}

/// `round(x::numeric, 2)::float8`: the cast to numeric keeps 15 significant
/// digits (`%.15g`, DBL_DIG), `round` goes half away from zero, and the
/// result is the double nearest the 2-decimal number.
fn round2(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // d.dddddddddddddde±X: the 15 significant digits, correctly rounded.
    let text = format!("{:.14e}", x.abs());
    let (mantissa, exponent) = text.split_once('e').expect("exponent form");
    let digits: i128 = mantissa.replace('.', "").parse().expect("digits");
    let exponent: i32 = exponent.parse().expect("exponent");
    // |x| = digits * 10^(exponent - 14); in hundredths, 10^(exponent - 12).
    let shift = exponent - 12;
    let hundredths = if shift >= 0 {
        match 10i128
            .checked_pow(shift as u32)
            .and_then(|s| digits.checked_mul(s))
        {
            Some(h) => h,
            None => return x, // far beyond any age: nothing to round
        }
    } else if -shift > 30 {
        0
    } else {
        let divisor = 10i128.pow((-shift) as u32);
        let (q, r) = (digits / divisor, digits % divisor);
        q + i128::from(2 * r >= divisor)
    };
    let rounded = hundredths as f64 / 100.0;
    if x < 0.0 {
        -rounded
    } else {
        rounded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let ages = [10.0, 20.0, 30.0, 40.0, 50.0];
        assert_eq!(percentile_cont(&ages, 0.5), 30.0);
        assert_eq!(round2(percentile_cont(&ages, 0.99)), 49.6);
        assert_eq!(round2(percentile_cont(&[1.0, 2.0, 4.0], 0.99)), 3.96);
        assert_eq!(round2(percentile_cont(&[7.0], 0.75)), 7.0);
        let a = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 100.0];
        assert_eq!(round2(percentile_cont(&a, 0.99)), 94.3);
    }

    #[test]
    fn rounding_is_half_away_from_zero_after_15_digits() {
        assert_eq!(round2(30.125), 30.13);
        assert_eq!(round2(30.124999), 30.12);
        assert_eq!(round2(-1.005), -1.01); // -1.005 prints as -1.00500000000000
        assert_eq!(round2(2.675), 2.68); // 2.67499999999999982236431605997495353221893310546875
        assert_eq!(round2(0.0), 0.0);
        assert_eq!(round2(49.6), 49.6);
        assert_eq!(round2(1e-9), 0.0);
    }
}
