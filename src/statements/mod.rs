//! Statements: the model that parses (from the API or straight from a topic)
//! and the request bodies that carry it. The batch write a job performs in
//! one transaction, the counts it folds, dead letters and the lookups a
//! statement is checked against live in the submodules, re-exported here.
//! Knows PostgreSQL through `db`; never Kafka or HTTP.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

mod checks;
mod counts;
mod dead_letters;
mod fence;
mod parse;
mod rows;
mod write;

pub use checks::{citizen_ids, unknown_citizens};
pub use counts::{catch_up_counts, fold_counts, Counts};
pub use dead_letters::{dead_letters, DeadLetter};
pub use write::{
    write_batch, write_batch_after, write_replayed, Batch, Received, Rejected, Written,
};

/// A statement that parsed and passed its own rules (not yet the citizen check).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Statement {
    /// Unique within the import: not blank, at most 256 bytes of UTF-8, no NUL.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*[^\s\u0000\u0085][^\u0000]*$"
    )]
    pub statement_id: String,
    /// Optional on ingestion (taken from the path); must match it if given.
    #[schema(required = false)]
    pub import_id: i64,
    /// A citizen of the import.
    #[schema(minimum = 0, maximum = 2147483647)]
    pub citizen_id: i32,
    /// Not blank, at most 256 bytes of UTF-8, no NUL.
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*[^\s\u0000\u0085][^\u0000]*$"
    )]
    pub course: String,
    /// Not blank, at most 256 bytes of UTF-8, no NUL; `null` or absent for none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000]*[^\s\u0000\u0085][^\u0000]*$"
    )]
    pub channel: Option<String>,
    /// A finite number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[^\u0000]*$")]
    pub text: Option<String>,
    /// When the statement was made (RFC 3339). Without one, the job stores
    /// the timestamp of the Kafka record that carried it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ts: Option<DateTime<Utc>>,
}

/// Why a statement was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason: reason.into(),
    }
}

impl Statement {
    /// The bytes produced to the topic.
    pub fn to_payload(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement always serialises")
    }
}

/// Reads a request body of statements, a JSON array (`ndjson` false) or
/// NDJSON (one value a line), handing each item to `each` with its index as
/// soon as it is parsed: the body is never held as a tree, so memory stays
/// near the body's size whatever it holds. The number of items, or the line
/// where the body stopped parsing and why.
pub fn read_items(
    body: &[u8],
    ndjson: bool,
    mut each: impl FnMut(usize, Value),
) -> Result<usize, (usize, String)> {
    if !ndjson {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let count =
            serde::Deserializer::deserialize_seq(&mut deserializer, Items { each: &mut each })
                .and_then(|count| deserializer.end().map(|()| count))
                .map_err(|e| (e.line(), format!("invalid JSON array: {e}")))?;
        return Ok(count);
    }
    let mut count = 0;
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = serde_json::from_slice(line).map_err(|e| {
            (
                index + 1,
                format!("invalid JSON on line {}: {e}", index + 1),
            )
        })?;
        each(count, value);
        count += 1;
    }
    Ok(count)
}

/// The array's elements, one `Value` at a time.
struct Items<'a, F> {
    each: &'a mut F,
}

impl<'de, F: FnMut(usize, Value)> serde::de::Visitor<'de> for Items<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of statements")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while let Some(value) = seq.next_element::<Value>()? {
            (self.each)(count, value);
            count += 1;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn good() -> Value {
        json!({"statement_id": "s-1", "import_id": 7, "citizen_id": 3, "course": "rust",
               "channel": "radio", "score": 0.5, "text": "want it", "ts": "2026-11-28T10:00:00Z"})
    }

    #[test]
    fn a_complete_statement_parses_and_round_trips() {
        let s = Statement::from_value(&good(), None).unwrap();
        assert_eq!(s.import_id, 7);
        assert_eq!(s.channel.as_deref(), Some("radio"));
        assert_eq!(Statement::from_payload(&s.to_payload()).unwrap(), s);
    }

    #[test]
    fn each_required_field_is_named_when_missing() {
        for field in ["statement_id", "citizen_id", "course"] {
            let mut value = good();
            value.as_object_mut().unwrap().remove(field);
            let error = Statement::from_value(&value, Some(7)).unwrap_err();
            assert_eq!(error.field, field);
        }
        let mut value = good();
        value.as_object_mut().unwrap().remove("import_id");
        assert_eq!(
            Statement::from_value(&value, None).unwrap_err().field,
            "import_id"
        );
        assert_eq!(Statement::from_value(&value, Some(9)).unwrap().import_id, 9);
        value.as_object_mut().unwrap().remove("channel");
        assert_eq!(
            Statement::from_value(&value, Some(9)).unwrap().channel,
            None
        );
    }

    #[test]
    fn channel_score_text_and_ts_are_optional() {
        for absent in [None, Some(Value::Null)] {
            let mut value = good();
            for field in ["channel", "score", "text", "ts"] {
                match &absent {
                    None => value.as_object_mut().unwrap().remove(field),
                    Some(null) => value
                        .as_object_mut()
                        .unwrap()
                        .insert(field.into(), null.clone()),
                };
            }
            let s = Statement::from_value(&value, None).unwrap();
            assert_eq!(
                (s.channel.as_ref(), s.score, s.text.as_ref(), s.ts),
                (None, None, None, None)
            );
            // What is absent stays absent on the topic.
            let payload: Value = serde_json::from_slice(&s.to_payload()).unwrap();
            assert_eq!(
                payload,
                json!({"statement_id": "s-1", "import_id": 7, "citizen_id": 3, "course": "rust"})
            );
            assert_eq!(Statement::from_payload(&s.to_payload()).unwrap(), s);
        }
    }

    #[test]
    fn wrong_values_are_refused() {
        let cases = [
            ("statement_id", json!("  ")),
            ("citizen_id", json!(-1)),
            ("citizen_id", json!("3")),
            ("score", json!("high")),
            ("text", json!(3)),
            ("ts", json!("yesterday")),
            ("ts", json!(1_700_000_000)),
            // What PostgreSQL text or its indexes cannot hold.
            ("statement_id", json!("a\u{0}b")),
            ("course", json!("a\u{0}b")),
            ("channel", json!("a\u{0}b")),
            ("text", json!("a\u{0}b")),
            ("statement_id", json!("s".repeat(257))),
            ("course", json!("c".repeat(257))),
            ("channel", json!("c".repeat(257))),
            ("channel", json!(5)),
            ("import_id", json!(8)),
        ];
        for (field, bad) in cases {
            let mut value = good();
            value[field] = bad;
            assert_eq!(
                Statement::from_value(&value, Some(7)).unwrap_err().field,
                field
            );
        }
        assert_eq!(
            Statement::from_payload(b"{not json").unwrap_err().field,
            "payload"
        );
        assert_eq!(
            Statement::from_value(&json!([1]), None).unwrap_err().field,
            "statement"
        );
    }

    fn items(body: &[u8], ndjson: bool) -> Result<Vec<Value>, (usize, String)> {
        let mut items = Vec::new();
        let count = read_items(body, ndjson, |i, v| {
            assert_eq!(i, items.len());
            items.push(v);
        })?;
        assert_eq!(count, items.len());
        Ok(items)
    }

    #[test]
    fn bodies_are_arrays_or_ndjson() {
        let array = br#" [{"a":1},{"b":2}] "#;
        assert_eq!(items(array, false).unwrap().len(), 2);
        let nd = b"{\"a\":1}\n\n{\"b\":2}\n";
        assert_eq!(items(nd, true).unwrap().len(), 2);
        assert_eq!(items(b"{\"a\":1}\n{oops", true).unwrap_err().0, 2);
        assert!(items(b"{\"a\":1}\n{\"b\":2}", false).is_err());
        assert!(items(b"[1] [2]", false).is_err(), "trailing data");
        assert!(items(b"{}", false).is_err());
        assert_eq!(items(b"[]", false).unwrap().len(), 0);
        assert_eq!(items(b"[\n1,\n{", false).unwrap_err().0, 3);
    }

    #[test]
    fn items_are_handed_over_one_at_a_time() {
        // Five million zeros: counted, none kept by the reader itself.
        let mut body = Vec::with_capacity(10_000_002);
        body.push(b'[');
        for i in 0..5_000_000 {
            if i > 0 {
                body.push(b',');
            }
            body.push(b'0');
        }
        body.push(b']');
        let mut seen = 0usize;
        assert_eq!(
            read_items(&body, false, |_, v| {
                assert_eq!(v, Value::from(0));
                seen += 1;
            }),
            Ok(5_000_000)
        );
        assert_eq!(seen, 5_000_000);
    }
}
