//! JSON bodies → citizens and patches, strictly: every field present (for an
//! import), of the right type, non-null, and no field the API does not know.
//! Every problem is reported with the path of the offending value
//! (`citizens[3].birth_date`) and, where known, the citizen's id.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde_json::Value;

use super::fields::{Apartment, BirthDate, CitizenId, FieldError, Gender, Place, Text};
use super::{Citizen, CitizenPatch, Invalid, MAX_CITIZENS};

/// Collects problems up to a bound, so a broken 10,000-citizen body gives a
/// useful answer of bounded size.
#[derive(Debug, Default)]
pub(super) struct Problems {
    fields: Vec<(String, String)>,
    truncated: bool,
}

pub(super) const MAX_PROBLEMS: usize = 100;

impl Problems {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        if self.fields.len() < MAX_PROBLEMS {
            let path = path.into();
            // One message per path: the first is the most telling.
            if !self.fields.iter().any(|(p, _)| *p == path) {
                self.fields.push((path, message.into()));
            }
        } else {
            self.truncated = true;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `Ok(value)` when nothing was reported.
    pub(super) fn finish<T>(self, what: &str, value: T) -> Result<T, Invalid> {
        if self.fields.is_empty() {
            return Ok(value);
        }
        let (path, first) = &self.fields[0];
        let more = match (self.fields.len(), self.truncated) {
            (1, _) => String::new(),
            (n, false) => format!(" (and {} more problems)", n - 1),
            (n, true) => format!(" (and more than {} more problems)", n - 1),
        };
        Err(Invalid {
            message: format!("{what}: {path} {first}{more}"),
            fields: self.fields,
        })
    }
}

/// The fields of a citizen, in the order the API writes them.
const CITIZEN_FIELDS: [&str; 10] = [
    "citizen_id",
    "town",
    "street",
    "building",
    "apartment",
    "name",
    "birth_date",
    "gender",
    "relatives",
    "channel",
];

/// Parses `{"citizens":[…]}` field by field. Whole-import rules (unique ids,
/// mutual relatives) are checked afterwards by `relatives::check_import`.
pub fn import(body: &Value, today: NaiveDate) -> Result<Vec<Citizen>, Invalid> {
    let mut problems = Problems::default();
    let Some(object) = body.as_object() else {
        problems.add("body", "must be a JSON object");
        return problems.finish("invalid import", Vec::new());
    };
    for key in object.keys().filter(|k| *k != "citizens") {
        problems.add(key.as_str(), FieldError::Unknown.to_string());
    }
    let citizens = match object.get("citizens") {
        None => {
            problems.add("citizens", FieldError::Missing.to_string());
            return problems.finish("invalid import", Vec::new());
        }
        Some(Value::Array(citizens)) => citizens,
        Some(Value::Null) => {
            problems.add("citizens", FieldError::Null.to_string());
            return problems.finish("invalid import", Vec::new());
        }
        Some(_) => {
            problems.add("citizens", "must be an array of citizens");
            return problems.finish("invalid import", Vec::new());
        }
    };
    if citizens.len() > MAX_CITIZENS {
        problems.add(
            "citizens",
            format!(
                "must hold at most {MAX_CITIZENS} citizens (got {})",
                citizens.len()
            ),
        );
        return problems.finish("invalid import", Vec::new());
    }
    let mut parsed = Vec::with_capacity(citizens.len());
    for (index, value) in citizens.iter().enumerate() {
        if let Some(citizen) = citizen(value, index, today, &mut problems) {
            parsed.push(citizen);
        }
    }
    problems.finish("invalid import", parsed)
}

/// One element of `citizens`; `None` after reporting its problems.
fn citizen(
    value: &Value,
    index: usize,
    today: NaiveDate,
    problems: &mut Problems,
) -> Option<Citizen> {
    let at = format!("citizens[{index}]");
    let Some(object) = value.as_object() else {
        problems.add(at, "must be a JSON object");
        return None;
    };
    // The id names the citizen in every other message, when it is readable.
    let who = match object.get("citizen_id").map(CitizenId::from_json) {
        Some(Ok(id)) => format!("(citizen {id}) "),
        _ => String::new(),
    };
    let mut fail = |field: &str, error: FieldError| {
        problems.add(format!("{at}.{field}"), format!("{who}{error}"));
    };
    for key in object.keys() {
        if !CITIZEN_FIELDS.contains(&key.as_str()) {
            fail(key, FieldError::Unknown);
        }
    }
    let mut take = |field: &'static str, optional: bool| -> Option<&Value> {
        let value = object.get(field);
        if value.is_none() && !optional {
            fail(field, FieldError::Missing);
        }
        value
    };
    let citizen_id = take("citizen_id", false);
    let town = take("town", false);
    let street = take("street", false);
    let building = take("building", false);
    let apartment = take("apartment", false);
    let name = take("name", false);
    let birth_date = take("birth_date", false);
    let gender = take("gender", false);
    let relatives_value = take("relatives", false);
    let channel = take("channel", true);

    let mut check = |field: &str, result: Result<(), FieldError>| {
        if let Err(error) = result {
            fail(field, error);
        }
    };
    macro_rules! parse {
        ($field:literal, $value:expr, $parse:expr) => {
            match $value.map($parse) {
                Some(Ok(v)) => Some(v),
                Some(Err(e)) => {
                    check($field, Err(e));
                    None
                }
                None => None,
            }
        };
    }
    let citizen_id = parse!("citizen_id", citizen_id, CitizenId::from_json);
    let town = parse!("town", town, Place::from_json);
    let street = parse!("street", street, Place::from_json);
    let building = parse!("building", building, Place::from_json);
    let apartment = parse!("apartment", apartment, Apartment::from_json);
    let name = parse!("name", name, Text::from_json);
    let birth_date = parse!("birth_date", birth_date, |v| BirthDate::from_json(v, today));
    let gender = parse!("gender", gender, Gender::from_json);
    let channel = parse!("channel", channel, Text::from_json);
    let relatives = match relatives_value.map(relatives) {
        Some(Ok(ids)) => Some(ids),
        Some(Err((path, error))) => {
            problems.add(format!("{at}.relatives{path}"), format!("{who}{error}"));
            None
        }
        None => None,
    };
    Some(Citizen {
        citizen_id: citizen_id?,
        town: town?,
        street: street?,
        building: building?,
        apartment: apartment?,
        name: name?,
        birth_date: birth_date?,
        gender: gender?,
        relatives: relatives?,
        channel,
    })
}

/// A `relatives` array: citizen ids, each at most once. On error, the suffix
/// of the path (`[2]` for an element) and the reason.
fn relatives(value: &Value) -> Result<Vec<CitizenId>, (String, String)> {
    let items = match value {
        Value::Array(items) => items,
        Value::Null => return Err((String::new(), FieldError::Null.to_string())),
        _ => return Err((String::new(), "must be an array of citizen ids".to_owned())),
    };
    // No citizen can have more relatives than an import has citizens: a
    // longer list is refused before any id is looked at (or looked up).
    if items.len() > MAX_CITIZENS {
        return Err((
            String::new(),
            format!(
                "must list at most {MAX_CITIZENS} relatives (got {})",
                items.len()
            ),
        ));
    }
    let mut seen = HashSet::with_capacity(items.len());
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let id = CitizenId::from_json(item).map_err(|e| (format!("[{i}]"), e.to_string()))?;
        if !seen.insert(id) {
            return Err((format!("[{i}]"), format!("lists relative {id} twice")));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Parses a PATCH body: a non-empty object of known fields other than
/// `citizen_id`, none null.
pub fn patch(body: &Value, today: NaiveDate) -> Result<CitizenPatch, Invalid> {
    let mut problems = Problems::default();
    let Some(object) = body.as_object() else {
        problems.add("body", "must be a JSON object");
        return problems.finish("invalid patch", CitizenPatch::default());
    };
    if object.is_empty() {
        problems.add("body", "must change at least one field");
        return problems.finish("invalid patch", CitizenPatch::default());
    }
    let mut patch = CitizenPatch::default();
    for (key, value) in object {
        let mut fail = |error: FieldError| problems.add(key.as_str(), error.to_string());
        macro_rules! set {
            ($slot:expr, $parse:expr) => {
                match $parse(value) {
                    Ok(v) => $slot = Some(v),
                    Err(e) => fail(e),
                }
            };
        }
        match key.as_str() {
            "citizen_id" => problems.add("citizen_id", "cannot be changed"),
            "town" => set!(patch.town, Place::from_json),
            "street" => set!(patch.street, Place::from_json),
            "building" => set!(patch.building, Place::from_json),
            "apartment" => set!(patch.apartment, Apartment::from_json),
            "name" => set!(patch.name, Text::from_json),
            "birth_date" => set!(patch.birth_date, |v| BirthDate::from_json(v, today)),
            "gender" => set!(patch.gender, Gender::from_json),
            "channel" => set!(patch.channel, Text::from_json),
            "relatives" => match relatives(value) {
                Ok(ids) => patch.relatives = Some(ids),
                Err((path, error)) => problems.add(format!("relatives{path}"), error),
            },
            _ => fail(FieldError::Unknown),
        }
    }
    problems.finish("invalid patch", patch)
}

/// Keys of a citizen object, for tests that build bodies.
#[cfg(test)]
pub(super) fn citizen_fields() -> &'static [&'static str] {
    &CITIZEN_FIELDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
    }

    fn valid(id: u32, relatives: &[u32]) -> Value {
        json!({
            "citizen_id": id, "town": "Москва", "street": "Льва Толстого",
            "building": "16к7стр5", "apartment": 7, "name": "Иванов Иван Иванович",
            "birth_date": "26.12.1986", "gender": "male", "relatives": relatives,
        })
    }

    fn fields(error: &Invalid) -> Vec<(&str, &str)> {
        error
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn a_valid_citizen_parses_with_or_without_channel() {
        let mut with_channel = valid(2, &[]);
        with_channel["channel"] = json!("instagram");
        let body = json!({ "citizens": [valid(1, &[1]), with_channel] });
        let citizens = import(&body, today()).unwrap();
        assert_eq!(citizens.len(), 2);
        assert_eq!(citizens[0].channel, None);
        assert_eq!(citizens[1].channel.as_ref().unwrap().as_str(), "instagram");
        assert_eq!(citizens[0].relatives, [CitizenId::from_path(1).unwrap()]);
    }

    #[test]
    fn every_field_is_required_and_non_null() {
        for field in citizen_fields().iter().filter(|f| **f != "channel") {
            let mut citizen = valid(5, &[]);
            citizen.as_object_mut().unwrap().remove(*field);
            let error = import(&json!({ "citizens": [citizen.clone()] }), today()).unwrap_err();
            let path = format!("citizens[0].{field}");
            assert_eq!(fields(&error)[0].0, path, "{field}");
            assert!(fields(&error)[0].1.ends_with("is required"));
            if *field != "citizen_id" {
                assert!(fields(&error)[0].1.starts_with("(citizen 5)"));
            }
            citizen[*field] = Value::Null;
            let error = import(&json!({ "citizens": [citizen] }), today()).unwrap_err();
            assert_eq!(fields(&error)[0].0, path);
            assert!(error.fields[0].1.ends_with("must not be null"), "{field}");
        }
        let mut citizen = valid(5, &[]);
        citizen["channel"] = Value::Null;
        assert!(import(&json!({ "citizens": [citizen] }), today()).is_err());
    }

    #[test]
    fn extra_fields_and_wrong_shapes_are_refused() {
        let mut citizen = valid(1, &[]);
        citizen["age"] = json!(3);
        let error = import(&json!({ "citizens": [citizen] }), today()).unwrap_err();
        assert_eq!(fields(&error)[0].0, "citizens[0].age");
        let error = import(&json!({ "citizens": [], "x": 1 }), today()).unwrap_err();
        assert_eq!(fields(&error)[0].0, "x");
        for body in [json!([]), json!("x"), json!(null)] {
            assert_eq!(fields(&import(&body, today()).unwrap_err())[0].0, "body");
        }
        for body in [
            json!({}),
            json!({"citizens": {}}),
            json!({"citizens": null}),
        ] {
            assert_eq!(
                fields(&import(&body, today()).unwrap_err())[0].0,
                "citizens"
            );
        }
        let error = import(&json!({ "citizens": [1] }), today()).unwrap_err();
        assert_eq!(fields(&error)[0].0, "citizens[0]");
        assert!(import(&json!({ "citizens": [] }), today())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn relatives_must_be_unique_integers() {
        let error = import(&json!({ "citizens": [valid(1, &[1, 1])] }), today()).unwrap_err();
        assert_eq!(fields(&error)[0].0, "citizens[0].relatives[1]");
        let mut citizen = valid(1, &[]);
        citizen["relatives"] = json!([1, "2"]);
        let error = import(&json!({ "citizens": [citizen.clone()] }), today()).unwrap_err();
        assert_eq!(fields(&error)[0].0, "citizens[0].relatives[1]");
        citizen["relatives"] = json!(2);
        let error = import(&json!({ "citizens": [citizen] }), today()).unwrap_err();
        assert_eq!(fields(&error)[0].0, "citizens[0].relatives");
    }

    #[test]
    fn problems_are_bounded_and_summarised() {
        let citizens: Vec<Value> = (0..500).map(|_| json!({})).collect();
        let error = import(&json!({ "citizens": citizens }), today()).unwrap_err();
        assert_eq!(error.fields.len(), MAX_PROBLEMS);
        assert!(error.message.contains("more than"), "{}", error.message);
    }

    #[test]
    fn relatives_lists_are_no_longer_than_an_import() {
        let long: Vec<u32> = (0..=MAX_CITIZENS as u32).collect();
        let error = patch(&json!({ "relatives": long }), today()).unwrap_err();
        assert_eq!(
            fields(&error),
            [("relatives", "must list at most 10000 relatives (got 10001)")]
        );
        let most: Vec<u32> = (0..MAX_CITIZENS as u32).collect();
        assert_eq!(
            patch(&json!({ "relatives": most }), today())
                .unwrap()
                .relatives
                .unwrap()
                .len(),
            MAX_CITIZENS
        );
    }

    #[test]
    fn too_many_citizens_are_refused_before_parsing_them() {
        let citizens = vec![Value::Null; MAX_CITIZENS + 1];
        let error = import(&json!({ "citizens": citizens }), today()).unwrap_err();
        assert_eq!(fields(&error).len(), 1);
        assert_eq!(fields(&error)[0].0, "citizens");
    }

    #[test]
    fn patches_are_non_empty_known_and_non_null() {
        let patch = patch(&json!({"name": "Иван", "relatives": [3]}), today()).unwrap();
        assert_eq!(patch.name.unwrap().as_str(), "Иван");
        assert_eq!(patch.relatives.unwrap().len(), 1);
        assert!(patch.town.is_none());
        for (body, path) in [
            (json!({}), "body"),
            (json!([]), "body"),
            (json!({"citizen_id": 1}), "citizen_id"),
            (json!({"name": null}), "name"),
            (json!({"channel": null}), "channel"),
            (json!({"nickname": "x"}), "nickname"),
            (json!({"relatives": [1, 1]}), "relatives[1]"),
            (json!({"apartment": -1}), "apartment"),
            (json!({"birth_date": "1.1.2000"}), "birth_date"),
        ] {
            let error = super::patch(&body, today()).unwrap_err();
            assert_eq!(fields(&error)[0].0, path, "{body}");
        }
    }
}
