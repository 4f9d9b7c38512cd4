//! The fast path of `POST /imports`: a valid body deserialised straight into
//! borrowed, typed fields with no `serde_json::Value` tree in between. It
//! only ever says "valid, here it is" or "not sure": any problem (a missing,
//! extra, duplicated, null or mistyped field, a bad value, invalid JSON) gives
//! `None`, and the caller runs the thorough `parse::import`, which names every
//! problem. So it accepts a subset of what `parse::import` accepts, with the
//! same result (property-tested), and every error answer is unchanged.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use chrono::NaiveDate;
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::fields::{Apartment, BirthDate, CitizenId, Gender, Place, Text};
use super::{Citizen, MAX_CITIZENS};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Import<'a> {
    #[serde(borrow)]
    citizens: Vec<Object<Raw<'a>>>,
}

/// One citizen as written; strings borrow from the body unless escaped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw<'a> {
    citizen_id: u64,
    #[serde(borrow)]
    town: Cow<'a, str>,
    #[serde(borrow)]
    street: Cow<'a, str>,
    #[serde(borrow)]
    building: Cow<'a, str>,
    apartment: u64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    birth_date: Cow<'a, str>,
    #[serde(borrow)]
    gender: Cow<'a, str>,
    relatives: Vec<u64>,
    /// Absent is `None`; `null` fails (the API refuses a null channel).
    #[serde(default, borrow, deserialize_with = "present")]
    channel: Option<Cow<'a, str>>,
}

/// `T` read from a JSON object only: derived struct impls also take an
/// array of the fields' values, which the API refuses.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Fields<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Fields(PhantomData)).map(Object)
    }
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    <Cow<'de, str> as Deserialize>::deserialize(d).map(Some)
}

/// The citizens of a valid `{"citizens":[…]}` body, or `None` when anything
/// is off (the caller then asks `parse::import` what).
pub fn import(body: &[u8], today: NaiveDate) -> Option<Vec<Citizen>> {
    let Object(import): Object<Import<'_>> = serde_json::from_slice(body).ok()?;
    if import.citizens.len() > MAX_CITIZENS {
        return None;
    }
    import
        .citizens
        .into_iter()
        .map(|Object(raw)| citizen(raw, today))
        .collect()
}

fn citizen(raw: Raw<'_>, today: NaiveDate) -> Option<Citizen> {
    let mut seen = HashSet::with_capacity(raw.relatives.len());
    let relatives = raw
        .relatives
        .iter()
        .map(|&r| CitizenId::from_u64(r).filter(|r| seen.insert(*r)))
        .collect::<Option<Vec<_>>>()?;
    Some(Citizen {
        citizen_id: CitizenId::from_u64(raw.citizen_id)?,
        town: Place::parse(&raw.town).ok()?,
        street: Place::parse(&raw.street).ok()?,
        building: Place::parse(&raw.building).ok()?,
        apartment: Apartment::from_u64(raw.apartment)?,
        name: Text::parse(&raw.name).ok()?,
        birth_date: BirthDate::parse(&raw.birth_date, today).ok()?,
        gender: Gender::parse(&raw.gender).ok()?,
        relatives,
        channel: match raw.channel {
            Some(channel) => Some(Text::parse(&channel).ok()?),
            None => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::citizens::parse;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    /// What the thorough parser makes of a body, `None` when it refuses it
    /// (or it is not JSON at all).
    fn thorough(body: &[u8]) -> Option<Vec<Citizen>> {
        let value: Value = serde_json::from_slice(body).ok()?;
        parse::import(&value, today()).ok()
    }

    fn valid(id: u32, relatives: &[u32]) -> Value {
        json!({
            "citizen_id": id, "town": "Москва", "street": "Льва Толстого",
            "building": "16к7стр5", "apartment": 7, "name": "Иванов Иван Иванович",
            "birth_date": "26.12.1986", "gender": "male", "relatives": relatives,
        })
    }

    #[test]
    fn a_valid_import_takes_the_fast_path() {
        let mut second = valid(2, &[1]);
        second["channel"] = json!("telegram \"tg\"");
        let body = serde_json::to_vec(&json!({ "citizens": [valid(1, &[2]), second] })).unwrap();
        let citizens = import(&body, today()).unwrap();
        assert_eq!(Some(citizens), thorough(&body));
        assert_eq!(import(br#"{"citizens":[]}"#, today()), Some(Vec::new()));
    }

    #[test]
    fn odd_but_valid_bodies_fall_back() {
        // Duplicate keys (the last one wins in the thorough parser) and
        // citizens written as arrays of values are not for the fast path.
        let duplicate = br#"{"citizens":[],"citizens":[]}"#;
        assert_eq!(import(duplicate, today()), None);
        assert_eq!(thorough(duplicate), Some(Vec::new()));
        let citizen = r#"[1,"a","b","c",1,"n","01.01.2000","male",[]]"#;
        assert_eq!(
            import(format!(r#"{{"citizens":[{citizen}]}}"#).as_bytes(), today()),
            None
        );
        assert_eq!(import(b"[[]]", today()), None);
        assert_eq!(import(br#"{"citizens":[{"channel":null}]}"#, today()), None);
    }

    /// Any JSON value a field might be sent as, valid or not.
    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            Just(json!(true)),
            any::<i64>().prop_map(Value::from),
            (0u64..4).prop_map(Value::from),
            Just(json!(2_147_483_647)),
            Just(json!(2_147_483_648u64)),
            Just(json!(u64::MAX)),
            Just(json!(1.0)),
            Just(json!(-0.0)),
            "[a-zа-я0-9 .,/\"\\\\-]{0,5}".prop_map(Value::from),
            Just(json!("male")),
            Just(json!("female")),
            Just(json!("26.12.1986")),
            Just(json!("29.02.2023")),
            Just(json!("01.01.2999")),
            Just(json!("-- /")),
            Just(json!("a\u{0}b")),
            Just(json!("я".repeat(257))),
            prop::collection::vec(0u64..4, 0..4).prop_map(|v| json!(v)),
            Just(json!([1, "2"])),
            Just(json!([-1])),
            Just(json!({})),
        ]
    }

    /// A citizen: a valid one, then up to three edits (a field removed, set
    /// to any value, or an unknown field added); or not an object at all.
    fn any_citizen() -> impl Strategy<Value = Value> {
        let fields = super::super::parse::citizen_fields();
        let edit = (0usize..3, 0usize..fields.len(), any_value());
        prop_oneof![
            8 => (0u32..4, prop::collection::vec(0u32..4, 0..3), prop::collection::vec(edit, 0..3))
                .prop_map(|(id, relatives, edits)| {
                    let mut citizen = valid(id, &relatives);
                    for (kind, field, value) in edits {
                        match kind {
                            0 => drop(citizen.as_object_mut().unwrap().remove(fields[field])),
                            1 => citizen[fields[field]] = value,
                            _ => citizen["nickname"] = value,
                        }
                    }
                    citizen
                }),
            1 => any_value(),
        ]
    }

    fn any_body() -> impl Strategy<Value = Value> {
        prop_oneof![
            8 => prop::collection::vec(any_citizen(), 0..4).prop_map(|c| json!({ "citizens": c })),
            1 => (prop::collection::vec(any_citizen(), 0..2), any_value())
                .prop_map(|(c, extra)| json!({ "citizens": c, "extra": extra })),
            1 => any_value().prop_map(|c| json!({ "citizens": c })),
            1 => any_value(),
        ]
    }

    proptest! {
        /// On bodies as a JSON library writes them, the fast path accepts
        /// exactly what the thorough parser accepts, with the same citizens.
        #[test]
        fn agrees_with_the_thorough_parser(body in any_body()) {
            let bytes = serde_json::to_vec(&body).unwrap();
            prop_assert_eq!(import(&bytes, today()), thorough(&bytes));
        }

        /// On any bytes at all, what the fast path accepts the thorough
        /// parser accepts too, with the same citizens.
        #[test]
        fn never_accepts_what_the_thorough_parser_refuses(
            body in any_body(),
            cut in any::<prop::sample::Index>(),
            noise in "[\\[\\]{}:,\"0-9a-z ]{0,3}",
        ) {
            let text = serde_json::to_string(&body).unwrap();
            let at = cut.index(text.len() + 1);
            let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let edited = format!("{}{noise}{}", &text[..at], &text[at..]);
            if let Some(citizens) = import(edited.as_bytes(), today()) {
                prop_assert_eq!(Some(citizens), thorough(edited.as_bytes()));
            }
        }
    }
}
