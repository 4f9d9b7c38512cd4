//! Checks a real answer against the schema the service's own OpenAPI
//! document declares for it: the JSON Schema subset utoipa writes ($ref,
//! type, properties, required, additionalProperties, items, enum, oneOf,
//! anyOf, allOf). Stricter than JSON Schema on one point: an object schema
//! without `additionalProperties` allows only its declared properties, so a
//! field the service answers but the document does not describe fails.

use serde_json::Value;

/// The schema of the `status` answer (`application/json`) of `method path`.
pub fn response_schema<'a>(
    document: &'a Value,
    method: &str,
    path: &str,
    status: u16,
) -> &'a Value {
    let schema = &document["paths"][path][method]["responses"][status.to_string()]["content"]
        ["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "the document declares no JSON {status} answer for {method} {path}"
    );
    schema
}

/// Ok when `value` conforms to `schema` (resolved in `document`); else
/// where and why it does not.
pub fn conforms(document: &Value, schema: &Value, value: &Value) -> Result<(), String> {
    check(document, schema, value, "$")
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            let target = document
                .pointer(pointer)
                .unwrap_or_else(|| panic!("unresolved {reference}"));
            resolve(document, target)
        }
        None => schema,
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_allows(declared: &Value, actual: &str) -> bool {
    let allows = |t: &str| t == actual || (t == "number" && actual == "integer");
    match declared {
        Value::String(t) => allows(t),
        Value::Array(types) => types.iter().filter_map(Value::as_str).any(allows),
        _ => true,
    }
}

/// The parts of an `allOf` as one object schema, when each is a plain object
/// schema (properties, required, nothing to combine further).
fn merged_objects(document: &Value, parts: &[Value]) -> Option<Value> {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for part in parts {
        let part = resolve(document, part);
        let simple = ["allOf", "oneOf", "anyOf", "additionalProperties"]
            .iter()
            .all(|k| part.get(k).is_none());
        let own = part.get("properties").and_then(Value::as_object)?;
        if !simple {
            return None;
        }
        properties.extend(own.clone());
        required.extend(
            part.get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
    }
    Some(serde_json::json!({"type": "object", "properties": properties, "required": required}))
}

fn check(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(document, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        match merged_objects(document, all) {
            // What utoipa writes for `#[serde(flatten)]`: one object whose
            // properties are its parts' together.
            Some(merged) => check(document, &merged, value, at)?,
            None => {
                for part in all {
                    check(document, part, value, at)?;
                }
            }
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(any) = schema.get(key).and_then(Value::as_array) {
            let reasons: Vec<String> = any
                .iter()
                .filter_map(|part| check(document, part, value, at).err())
                .collect();
            if reasons.len() == any.len() {
                return Err(format!("{at}: matches none of {key}: {reasons:?}"));
            }
        }
    }
    if let Some(declared) = schema.get("type") {
        if !type_allows(declared, type_of(value)) {
            return Err(format!("{at}: {value} is not of type {declared}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    match value {
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, element) in items.iter().enumerate() {
                    check(document, item, element, &format!("{at}[{i}]"))?;
                }
            }
        }
        Value::Object(object)
            if schema.get("properties").is_some()
                || schema.get("additionalProperties").is_some() =>
        {
            let properties = schema.get("properties").and_then(Value::as_object);
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(required) {
                    return Err(format!("{at}: lacks the required {required:?}"));
                }
            }
            for (key, field) in object {
                let declared = properties.and_then(|p| p.get(key));
                match (declared, schema.get("additionalProperties")) {
                    (Some(property), _) => {
                        check(document, property, field, &format!("{at}.{key}"))?
                    }
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(extra)) if extra.is_object() => {
                        check(document, extra, field, &format!("{at}.{key}"))?
                    }
                    (None, _) => return Err(format!("{at}: {key:?} is not in the document")),
                }
            }
        }
        _ => {}
    }
    Ok(())
}
