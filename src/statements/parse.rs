//! Parsing and validating one statement, from the API's JSON values or from a
//! topic's message payloads.
//!
//! A job parses every message it reads, so payloads are deserialised straight
//! into [`Fields`] (borrowed strings, the other keys skipped) instead of a
//! `serde_json::Value` tree (a map, a key and a value allocation per field)
//! then the struct. Both paths share the rules in [`Fields::statement`]; a
//! payload the direct path cannot take (not an object, invalid JSON, a field
//! given twice) goes the `Value` way, so the errors (and the last-wins rule
//! for repeated keys) are exactly those of the `Value` parser.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{invalid, Invalid, Statement};

/// One field's JSON value, as much as the rules look at it. Numbers keep
/// `serde_json::Number`'s classes so `as_i64`/`as_f64` answer the same.
#[derive(Debug, Clone, PartialEq)]
enum Field<'a> {
    Null,
    Str(Cow<'a, str>),
    /// A non-negative integer.
    PosInt(u64),
    /// A negative integer.
    NegInt(i64),
    Float(f64),
    /// A boolean, an array or an object.
    Other,
}

impl<'a> Field<'a> {
    fn from_value(value: &'a Value) -> Self {
        match value {
            Value::Null => Field::Null,
            Value::String(s) => Field::Str(Cow::Borrowed(s)),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Field::PosInt(u),
                (None, Some(i), _) => Field::NegInt(i),
                (None, None, Some(f)) => Field::Float(f),
                (None, None, None) => Field::Other,
            },
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => Field::Other,
        }
    }

    /// `Value::as_i64`.
    fn as_i64(&self) -> Option<i64> {
        match *self {
            Field::PosInt(u) => i64::try_from(u).ok(),
            Field::NegInt(i) => Some(i),
            _ => None,
        }
    }

    /// `Value::as_f64`.
    fn as_f64(&self) -> Option<f64> {
        match *self {
            Field::PosInt(u) => Some(u as f64),
            Field::NegInt(i) => Some(i as f64),
            Field::Float(f) => Some(f),
            _ => None,
        }
    }
}

/// The fields of a statement object that the rules read (absent: `None`).
#[derive(Debug, Default)]
struct Fields<'a> {
    statement_id: Option<Field<'a>>,
    import_id: Option<Field<'a>>,
    citizen_id: Option<Field<'a>>,
    course: Option<Field<'a>>,
    channel: Option<Field<'a>>,
    score: Option<Field<'a>>,
    text: Option<Field<'a>>,
    ts: Option<Field<'a>>,
}

/// The longest `statement_id`, `course` and `channel`, in bytes: they are
/// keys of indexes (the statement's primary key, the demand counts), whose
/// rows PostgreSQL limits to about 2.7 KB, and 256 bytes name any course.
pub const MAX_KEY_BYTES: usize = 256;

/// What PostgreSQL text can hold: no NUL character (a batch holding one
/// could never be stored), and for keys at most [`MAX_KEY_BYTES`].
fn storable(name: &'static str, s: Cow<'_, str>, key: bool) -> Result<String, Invalid> {
    if s.contains('\0') {
        return Err(invalid(name, "must not contain NUL characters"));
    }
    if key && s.len() > MAX_KEY_BYTES {
        return Err(invalid(
            name,
            format!("must be at most {MAX_KEY_BYTES} bytes"),
        ));
    }
    Ok(s.into_owned())
}

fn text_field(field: Option<Field<'_>>, name: &'static str) -> Result<String, Invalid> {
    match field {
        None | Some(Field::Null) => Err(invalid(name, "is required")),
        Some(Field::Str(s)) if s.trim().is_empty() => Err(invalid(name, "must not be empty")),
        Some(Field::Str(s)) => storable(name, s, true),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

impl<'a> Fields<'a> {
    fn from_object(object: &'a serde_json::Map<String, Value>) -> Self {
        let get = |name: &str| object.get(name).map(Field::from_value);
        Fields {
            statement_id: get("statement_id"),
            import_id: get("import_id"),
            citizen_id: get("citizen_id"),
            course: get("course"),
            channel: get("channel"),
            score: get("score"),
            text: get("text"),
            ts: get("ts"),
        }
    }

    /// The rules, checked in this order; the first one broken is reported.
    fn statement(self, default_import: Option<i64>) -> Result<Statement, Invalid> {
        let statement_id = text_field(self.statement_id, "statement_id")?;
        let import_id = match (self.import_id, default_import) {
            (None | Some(Field::Null), Some(default)) => default,
            (None | Some(Field::Null), None) => return Err(invalid("import_id", "is required")),
            (Some(v), default) => {
                let id = v
                    .as_i64()
                    .ok_or_else(|| invalid("import_id", "must be an integer"))?;
                if default.is_some_and(|d| d != id) {
                    return Err(invalid("import_id", "does not match the import"));
                }
                id
            }
        };
        let citizen_id = match self.citizen_id {
            None | Some(Field::Null) => return Err(invalid("citizen_id", "is required")),
            Some(v) => v
                .as_i64()
                .and_then(|id| i32::try_from(id).ok())
                .filter(|id| *id >= 0)
                .ok_or_else(|| invalid("citizen_id", "must be a non-negative integer"))?,
        };
        let course = text_field(self.course, "course")?;
        let channel = match self.channel {
            None | Some(Field::Null) => None,
            Some(Field::Str(s)) if !s.trim().is_empty() => Some(storable("channel", s, true)?),
            Some(_) => return Err(invalid("channel", "must be a non-empty string or null")),
        };
        let score = match self.score {
            None | Some(Field::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .filter(|s| s.is_finite())
                    .ok_or_else(|| invalid("score", "must be a number"))?,
            ),
        };
        let text = match self.text {
            None | Some(Field::Null) => None,
            Some(Field::Str(s)) => Some(storable("text", s, false)?),
            Some(_) => return Err(invalid("text", "must be a string")),
        };
        let ts = match self.ts {
            None | Some(Field::Null) => None,
            Some(Field::Str(s)) => Some(
                DateTime::parse_from_rfc3339(&s)
                    .map_err(|_| invalid("ts", "must be an RFC 3339 timestamp"))?
                    .with_timezone(&Utc),
            ),
            Some(_) => return Err(invalid("ts", "must be an RFC 3339 timestamp")),
        };
        Ok(Statement {
            statement_id,
            import_id,
            citizen_id,
            course,
            channel,
            score,
            text,
            ts,
        })
    }
}

impl Statement {
    /// Parses one statement. `import_id` may be omitted when `default_import`
    /// is given (the API's path), and must equal it when both are present.
    pub fn from_value(value: &Value, default_import: Option<i64>) -> Result<Self, Invalid> {
        let Value::Object(object) = value else {
            return Err(invalid("statement", "must be a JSON object"));
        };
        Fields::from_object(object).statement(default_import)
    }

    /// Parses a message payload as read from a topic: exactly what parsing
    /// it to a `Value` then [`Statement::from_value`] would give.
    pub fn from_payload(payload: &[u8]) -> Result<Self, Invalid> {
        // `from_str` skips the per-string UTF-8 checks `from_slice` makes,
        // so the whole payload is checked first; the errors come from below.
        let direct = std::str::from_utf8(payload)
            .ok()
            .and_then(|text| serde_json::from_str::<Fields>(text).ok());
        match direct {
            Some(fields) => fields.statement(None),
            None => {
                let value: Value = serde_json::from_slice(payload)
                    .map_err(|e| invalid("payload", format!("invalid JSON: {e}")))?;
                Self::from_value(&value, None)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Other)
    }

    // As `serde_json::Number::from`: only negative integers are `NegInt`.
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(u64::try_from(v).map_or(Field::NegInt(v), Field::PosInt))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::PosInt(v))
    }

    // As `Value`'s visitor: a non-finite float becomes null.
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(if v.is_finite() {
            Field::Float(v)
        } else {
            Field::Null
        })
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }

    // Nested values are walked with this visitor too (not `IgnoredAny`, which
    // skips without serde_json's depth limit): the same documents fail.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Field>()?.is_some() {}
        Ok(Field::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<Key, Field>()?.is_some() {}
        Ok(Field::Other)
    }
}

/// A key of a statement object.
enum Key {
    StatementId,
    ImportId,
    CitizenId,
    Course,
    Channel,
    Score,
    Text,
    Ts,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            "statement_id" => Key::StatementId,
            "import_id" => Key::ImportId,
            "citizen_id" => Key::CitizenId,
            "course" => Key::Course,
            "channel" => Key::Channel,
            "score" => Key::Score,
            "text" => Key::Text,
            "ts" => Key::Ts,
            _ => Key::Other,
        })
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a statement object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            let slot = match key {
                Key::StatementId => &mut fields.statement_id,
                Key::ImportId => &mut fields.import_id,
                Key::CitizenId => &mut fields.citizen_id,
                Key::Course => &mut fields.course,
                Key::Channel => &mut fields.channel,
                Key::Score => &mut fields.score,
                Key::Text => &mut fields.text,
                Key::Ts => &mut fields.ts,
                Key::Other => {
                    map.next_value::<Field>()?;
                    continue;
                }
            };
            // A repeated field goes the `Value` way (the last one wins there).
            if slot.is_some() {
                return Err(de::Error::custom("repeated field"));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The parser this module replaced (a `Value`, then the rules on it),
    /// kept as the oracle the direct path must agree with (its rules follow
    /// the contract: `score`, `text` and `ts` became optional).
    mod oracle {
        use super::super::{invalid, Invalid, Statement};
        use chrono::{DateTime, Utc};
        use serde_json::Value;

        fn text_field(
            object: &serde_json::Map<String, Value>,
            field: &'static str,
        ) -> Result<String, Invalid> {
            match object.get(field) {
                None | Some(Value::Null) => Err(invalid(field, "is required")),
                Some(Value::String(s)) if s.trim().is_empty() => {
                    Err(invalid(field, "must not be empty"))
                }
                Some(Value::String(s)) if s.contains('\u{0}') => {
                    Err(invalid(field, "must not contain NUL characters"))
                }
                Some(Value::String(s)) if s.len() > 256 => {
                    Err(invalid(field, "must be at most 256 bytes"))
                }
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(invalid(field, "must be a string")),
            }
        }

        pub fn from_value(
            value: &Value,
            default_import: Option<i64>,
        ) -> Result<Statement, Invalid> {
            let Value::Object(object) = value else {
                return Err(invalid("statement", "must be a JSON object"));
            };
            let statement_id = text_field(object, "statement_id")?;
            let import_id = match (object.get("import_id"), default_import) {
                (None | Some(Value::Null), Some(default)) => default,
                (None | Some(Value::Null), None) => {
                    return Err(invalid("import_id", "is required"))
                }
                (Some(v), default) => {
                    let id = v
                        .as_i64()
                        .ok_or_else(|| invalid("import_id", "must be an integer"))?;
                    if default.is_some_and(|d| d != id) {
                        return Err(invalid("import_id", "does not match the import"));
                    }
                    id
                }
            };
            let citizen_id = match object.get("citizen_id") {
                None | Some(Value::Null) => return Err(invalid("citizen_id", "is required")),
                Some(v) => v
                    .as_i64()
                    .and_then(|id| i32::try_from(id).ok())
                    .filter(|id| *id >= 0)
                    .ok_or_else(|| invalid("citizen_id", "must be a non-negative integer"))?,
            };
            let course = text_field(object, "course")?;
            let channel = match object.get("channel") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => {
                    return Err(invalid("channel", "must be a non-empty string or null"))
                }
                Some(Value::String(s)) if s.contains('\u{0}') => {
                    return Err(invalid("channel", "must not contain NUL characters"))
                }
                Some(Value::String(s)) if s.len() > 256 => {
                    return Err(invalid("channel", "must be at most 256 bytes"))
                }
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(invalid("channel", "must be a non-empty string or null")),
            };
            // Optional (SPEC section 3): absent or null is None.
            let score = match object.get("score") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_f64()
                        .filter(|s| s.is_finite())
                        .ok_or_else(|| invalid("score", "must be a number"))?,
                ),
            };
            let text = match object.get("text") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.contains('\u{0}') => {
                    return Err(invalid("text", "must not contain NUL characters"))
                }
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(invalid("text", "must be a string")),
            };
            let ts = match object.get("ts") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(
                    DateTime::parse_from_rfc3339(s)
                        .map_err(|_| invalid("ts", "must be an RFC 3339 timestamp"))?
                        .with_timezone(&Utc),
                ),
                Some(_) => return Err(invalid("ts", "must be an RFC 3339 timestamp")),
            };
            Ok(Statement {
                statement_id,
                import_id,
                citizen_id,
                course,
                channel,
                score,
                text,
                ts,
            })
        }

        pub fn from_payload(payload: &[u8]) -> Result<Statement, Invalid> {
            let value: Value = serde_json::from_slice(payload)
                .map_err(|e| invalid("payload", format!("invalid JSON: {e}")))?;
            from_value(&value, None)
        }
    }

    /// JSON text for a field's value: every class the rules tell apart.
    fn json_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("\"\"".to_owned()),
            Just("\"  \"".to_owned()),
            Just("\"radio\"".to_owned()),
            Just("\"s\\u0031 \\\"q\\\" \\n\"".to_owned()),
            Just("\"nul\\u0000here\"".to_owned()),
            Just(format!("\"{}\"", "k".repeat(256))),
            Just(format!("\"{}\"", "k".repeat(257))),
            Just(format!("\"{}é\"", "k".repeat(255))),
            Just("\"2026-11-28T12:00:00Z\"".to_owned()),
            Just("\"2026-11-28T12:00:00+03:00\"".to_owned()),
            Just("\"2026-13-28T12:00:00Z\"".to_owned()),
            Just("\"12\"".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (-5i64..2_000).prop_map(|n| n.to_string()),
            Just("2147483648".to_owned()),
            Just("-0".to_owned()),
            Just("1.0".to_owned()),
            Just("1e400".to_owned()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:?}")),
            "\"[ -~]{0,8}\"".prop_map(|s| s.replace('\\', "\\\\")),
        ];
        leaf.prop_recursive(3, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(inner, 0..3).prop_map(|v| {
                    let pairs: Vec<String> = v
                        .iter()
                        .enumerate()
                        .map(|(i, x)| format!("\"k{i}\":{x}"))
                        .collect();
                    format!("{{{}}}", pairs.join(","))
                }),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("statement_id"),
            Just("import_id"),
            Just("citizen_id"),
            Just("course"),
            Just("channel"),
            Just("score"),
            Just("text"),
            Just("ts"),
            Just("other"),
            Just("statement\\u005fid"),
        ]
        .prop_map(str::to_owned)
    }

    /// A valid statement with some of its fields replaced, dropped or
    /// repeated, plus extra keys: mostly valid, often one rule broken.
    fn object() -> impl Strategy<Value = String> {
        let base = [
            ("statement_id", "\"s-1\""),
            ("import_id", "7"),
            ("citizen_id", "3"),
            ("course", "\"rust\""),
            ("channel", "\"radio\""),
            ("score", "0.5"),
            ("text", "\"want it\""),
            ("ts", "\"2026-11-28T10:00:00Z\""),
        ];
        (
            prop::collection::vec((key(), json_value()), 0..4),
            prop::collection::vec(0usize..8, 0..3),
            any::<bool>(),
        )
            .prop_map(move |(extra, dropped, extra_first)| {
                let mut pairs: Vec<(String, String)> = base
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !dropped.contains(i))
                    .map(|(_, (k, v))| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                if extra_first {
                    pairs.splice(0..0, extra);
                } else {
                    pairs.extend(extra);
                }
                let body: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!(" {{{}}}\n", body.join(", "))
            })
    }

    /// Payloads: objects as above, any JSON value, and broken bytes.
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            6 => object().prop_map(String::into_bytes),
            1 => json_value().prop_map(String::into_bytes),
            1 => (object(), any::<prop::sample::Index>()).prop_map(|(o, i)| {
                // Truncated somewhere.
                let bytes = o.into_bytes();
                bytes[..i.index(bytes.len())].to_vec()
            }),
            1 => (object(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(o, i, b)| {
                // One byte replaced (possibly invalid UTF-8).
                let mut bytes = o.into_bytes();
                let at = i.index(bytes.len());
                bytes[at] = b;
                bytes
            }),
            1 => prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    fn agree(payload: &[u8]) {
        let old = oracle::from_payload(payload);
        let new = Statement::from_payload(payload);
        assert_eq!(new, old, "{}", String::from_utf8_lossy(payload));
        if let Ok(value) = serde_json::from_slice::<Value>(payload) {
            for default in [None, Some(7), Some(8)] {
                assert_eq!(
                    Statement::from_value(&value, default),
                    oracle::from_value(&value, default)
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_direct_parser_agrees_with_the_value_parser(payload in payload()) {
            agree(&payload);
        }
    }

    #[test]
    fn edge_cases_agree() {
        let deep = format!(
            "{{\"x\":{}1{}, \"statement_id\":\"a\"}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        let mut invalid_utf8 = br#"{"statement_id":"a","import_id":7,"citizen_id":1,"course":"c","score":1,"text":"t","ts":"2026-01-01T00:00:00Z","x":"?"}"#.to_vec();
        let at = invalid_utf8.len() - 3;
        invalid_utf8[at] = 0xff;
        let cases: [&[u8]; 12] = [
            br#"{"statement_id":"a","statement_id":"b","import_id":7,"citizen_id":1,"course":"c","score":1,"text":"t","ts":"2026-01-01T00:00:00Z"}"#,
            &invalid_utf8,
            br#"["a",7,1,"c",null,1,"t","2026-01-01T00:00:00Z"]"#,
            br#"{"statement_id":"a","import_id":-0,"citizen_id":1,"course":"c","score":1,"text":"t","ts":"2026-01-01T00:00:00Z"}"#,
            br#"{"statement_id":"a","import_id":9223372036854775808,"citizen_id":1,"course":"c","score":1,"text":"t","ts":"2026-01-01T00:00:00Z"}"#,
            br#"{"statement_id":"a","import_id":7,"citizen_id":1,"course":"c","score":18446744073709551615,"text":"t","ts":"2026-01-01T00:00:00Z"}"#,
            br#"{"statement_id":"a","import_id":7,"citizen_id":1,"course":"c","score":1,"text":"t","ts":"2026-01-01T00:00:00Z"} x"#,
            br#"{"statement_id":"\ud800","import_id":7}"#,
            b"\xef\xbb\xbf{}",
            b"",
            b"null",
            deep.as_bytes(),
        ];
        for case in cases {
            agree(case);
        }
    }
}
