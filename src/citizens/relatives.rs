//! Rules that span the whole import: citizen ids are unique, and every
//! relative is a citizen of the same import who lists the citizen back (a
//! citizen may be their own relative). Duplicates within one list are refused
//! while parsing.

use std::collections::{HashMap, HashSet};

use super::fields::CitizenId;
use super::parse::Problems;
use super::{Citizen, Invalid};

pub fn check_import(citizens: &[Citizen]) -> Result<(), Invalid> {
    let mut problems = Problems::default();
    let mut index_of: HashMap<CitizenId, usize> = HashMap::with_capacity(citizens.len());
    for (i, citizen) in citizens.iter().enumerate() {
        if let Some(first) = index_of.insert(citizen.citizen_id, i) {
            // Keep the first holder as the id's owner for the relative checks.
            index_of.insert(citizen.citizen_id, first);
            problems.add(
                format!("citizens[{i}].citizen_id"),
                format!(
                    "(citizen {}) is also the id of citizens[{first}]",
                    citizen.citizen_id
                ),
            );
        }
    }
    if !problems.is_empty() {
        return problems.finish("invalid import", ());
    }
    let pairs: HashSet<(CitizenId, CitizenId)> = citizens
        .iter()
        .flat_map(|c| c.relatives.iter().map(|r| (c.citizen_id, *r)))
        .collect();
    for (i, citizen) in citizens.iter().enumerate() {
        let id = citizen.citizen_id;
        for (j, relative) in citizen.relatives.iter().enumerate() {
            let path = format!("citizens[{i}].relatives[{j}]");
            match index_of.get(relative) {
                None => problems.add(
                    path,
                    format!("(citizen {id}) relative {relative} is not a citizen of this import"),
                ),
                Some(k) if !pairs.contains(&(*relative, id)) => problems.add(
                    path,
                    format!(
                        "(citizen {id}) relative {relative} (citizens[{k}]) does not list \
                         {id} among their relatives"
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    problems.finish("invalid import", ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::citizens::parse;
    use chrono::NaiveDate;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    fn body(relatives: &[(u32, Vec<u32>)]) -> Value {
        let citizens: Vec<Value> = relatives
            .iter()
            .map(|(id, relatives)| {
                json!({
                    "citizen_id": id, "town": "Керчь", "street": "Иосифа Бродского",
                    "building": "2", "apartment": 11, "name": "Романова Мария Леонидовна",
                    "birth_date": "23.11.1986", "gender": "female", "relatives": relatives,
                })
            })
            .collect();
        json!({ "citizens": citizens })
    }

    fn check(relatives: &[(u32, Vec<u32>)]) -> Result<(), Invalid> {
        check_import(&parse::import(&body(relatives), today()).unwrap())
    }

    #[test]
    fn mutual_relatives_and_self_relatives_pass() {
        check(&[(1, vec![2, 3]), (2, vec![1]), (3, vec![1, 3])]).unwrap();
        check(&[(1, vec![1])]).unwrap();
        check(&[]).unwrap();
    }

    #[test]
    fn one_sided_and_unknown_relatives_are_named() {
        let error = check(&[(1, vec![2]), (2, vec![])]).unwrap_err();
        assert_eq!(error.fields[0].0, "citizens[0].relatives[0]");
        assert!(error.fields[0].1.contains("does not list 1"), "{error:?}");
        let error = check(&[(1, vec![9])]).unwrap_err();
        assert_eq!(error.fields[0].0, "citizens[0].relatives[0]");
        assert!(error.fields[0].1.contains("not a citizen"));
    }

    #[test]
    fn duplicate_ids_are_named() {
        let error = check(&[(1, vec![]), (2, vec![]), (1, vec![])]).unwrap_err();
        assert_eq!(error.fields[0].0, "citizens[2].citizen_id");
        assert!(error.fields[0].1.contains("citizens[0]"));
    }

    /// Relations as a set of unordered pairs (a pair `(a, a)` is a self-relative).
    fn lists(n: u32, pairs: &HashSet<(u32, u32)>) -> Vec<(u32, Vec<u32>)> {
        (0..n)
            .map(|id| {
                let mut relatives: Vec<u32> = pairs
                    .iter()
                    .filter_map(|&(a, b)| {
                        if a == id {
                            Some(b)
                        } else if b == id {
                            Some(a)
                        } else {
                            None
                        }
                    })
                    .collect();
                relatives.sort_unstable();
                relatives.dedup();
                (id, relatives)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn symmetric_relations_always_pass(
            n in 1u32..30,
            raw in prop::collection::hash_set((0u32..30, 0u32..30), 0..60),
        ) {
            let pairs: HashSet<_> = raw.into_iter().filter(|&(a, b)| a < n && b < n).collect();
            prop_assert!(check(&lists(n, &pairs)).is_ok());
        }

        #[test]
        fn dropping_one_side_of_a_pair_fails_naming_it(
            n in 2u32..30,
            raw in prop::collection::hash_set((0u32..30, 0u32..30), 1..60),
            pick in any::<prop::sample::Index>(),
        ) {
            let pairs: HashSet<_> = raw
                .into_iter()
                .filter(|&(a, b)| a < n && b < n && a != b)
                .collect();
            prop_assume!(!pairs.is_empty());
            let mut lists = lists(n, &pairs);
            let pairs: Vec<_> = pairs.into_iter().collect();
            let (a, b) = pairs[pick.index(pairs.len())];
            lists[a as usize].1.retain(|r| *r != b);
            let error = check(&lists).unwrap_err();
            let position = lists[b as usize].1.iter().position(|r| *r == a).unwrap();
            let path = format!("citizens[{b}].relatives[{position}]");
            prop_assert!(error.fields.iter().any(|(p, _)| *p == path), "{:?}", error);
        }

        #[test]
        fn an_unknown_relative_fails(n in 1u32..30, holder in 0u32..30) {
            let holder = holder % n;
            let mut lists = lists(n, &HashSet::new());
            lists[holder as usize].1.push(n + 5);
            let error = check(&lists).unwrap_err();
            prop_assert_eq!(&error.fields[0].0, &format!("citizens[{holder}].relatives[0]"));
        }
    }
}
