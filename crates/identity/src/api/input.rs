//! Validation of request bodies and query strings, with messages that say
//! which field is wrong and why.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub type Obj = Map<String, Value>;

/// Parses the body and returns the object under `key` (`{"project": {...}}`).
pub fn entity(body: &[u8], key: &str) -> Result<Obj> {
    let v: Value = api_common::http::parse_json(body)?;
    match v {
        Value::Object(mut m) => match m.remove(key) {
            Some(Value::Object(o)) => Ok(o),
            Some(other) => Err(Error::invalid(format!(
                "Invalid input for field '{key}': {other} is not of type 'object'"
            ))),
            None => Err(Error::invalid(format!("'{key}' is a required property"))),
        },
        other => Err(Error::invalid(format!(
            "Invalid input: {other} is not of type 'object'"
        ))),
    }
}

fn type_error(field: &str, v: &Value, ty: &str) -> Error {
    Error::invalid(format!(
        "Invalid input for field '{field}': {v} is not of type '{ty}'"
    ))
}

/// An optional string no longer than `max` characters (`null` counts as absent).
pub fn opt_str(m: &Obj, field: &str, max: usize) -> Result<Option<String>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            if s.chars().count() > max {
                return Err(Error::invalid(format!(
                    "Invalid input for field '{field}': the value is longer than {max} characters"
                )));
            }
            Ok(Some(s.clone()))
        }
        Some(v) => Err(type_error(field, v, "string")),
    }
}

/// A name: a non-blank string of at most `max` characters.
pub fn name(m: &Obj, field: &str, max: usize) -> Result<Option<String>> {
    let n = opt_str(m, field, max)?;
    if let Some(n) = &n {
        if n.trim().is_empty() {
            return Err(Error::invalid(format!(
                "Invalid input for field '{field}': the value must not be empty or blank"
            )));
        }
    }
    Ok(n)
}

pub fn req_name(m: &Obj, field: &str, max: usize) -> Result<String> {
    name(m, field, max)?.ok_or_else(|| Error::invalid(format!("'{field}' is a required property")))
}

pub fn opt_bool(m: &Obj, field: &str) -> Result<Option<bool>> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(type_error(field, v, "boolean")),
    }
}

/// Refuses fields not in `allowed` (for resources whose upstream schema does).
pub fn only(m: &Obj, entity: &str, allowed: &[&str]) -> Result<()> {
    for k in m.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(Error::invalid(format!(
                "Invalid input for '{entity}': additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
    }
    Ok(())
}

/// Fields outside `core`, kept as the resource's extra attributes.
pub fn extra(m: &Obj, core: &[&str], previous: &str) -> String {
    let mut e = match serde_json::from_str::<Value>(previous) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    };
    for (k, v) in m {
        if !core.contains(&k.as_str()) && k != "links" {
            e.insert(k.clone(), v.clone());
        }
    }
    Value::Object(e).to_string()
}

pub fn flag(b: bool) -> i64 {
    i64::from(b)
}

pub type Query = HashMap<String, String>;

/// Keystone's reading of boolean query parameters: present and not
/// "0"/"false" means true.
pub fn query_bool(q: &Query, key: &str) -> Option<bool> {
    q.get(key)
        .map(|v| !matches!(v.to_lowercase().as_str(), "0" | "false" | "no" | "off"))
}

/// Applies `name`, `name__contains`, `name__icontains`, `__startswith`,
/// `__istartswith`, `__endswith`, `__iendswith` filters for `field`.
pub fn text_matches(q: &Query, field: &str, value: &str) -> bool {
    for (k, want) in q {
        let Some(op) = k.strip_prefix(field) else {
            continue;
        };
        let (v, w) = (value.to_lowercase(), want.to_lowercase());
        let ok = match op {
            "" => value == want,
            "__contains" => value.contains(want.as_str()),
            "__icontains" => v.contains(&w),
            "__startswith" => value.starts_with(want.as_str()),
            "__istartswith" => v.starts_with(&w),
            "__endswith" => value.ends_with(want.as_str()),
            "__iendswith" => v.ends_with(&w),
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A list response with Keystone's `links` and, when `list_limit` cut it,
/// `truncated`.
pub fn list(key: &str, mut items: Vec<Value>, self_url: String, limit: Option<usize>) -> Value {
    let mut out = Map::new();
    let mut truncated = false;
    if let Some(l) = limit {
        if items.len() > l {
            items.truncate(l);
            truncated = true;
        }
    }
    out.insert(key.into(), Value::Array(items));
    out.insert(
        "links".into(),
        serde_json::json!({ "self": self_url, "previous": null, "next": null }),
    );
    if truncated {
        out.insert("truncated".into(), Value::Bool(true));
    }
    Value::Object(out)
}

/// A 409 for a unique-constraint violation, else the database error.
pub fn conflict(e: store::sqlx::Error, what: &str) -> Error {
    if store::is_unique_violation(&e) {
        Error::Conflict(format!(
            "Conflict occurred attempting to store {what} - Duplicate entry."
        ))
    } else {
        Error::from(e)
    }
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_are_checked() {
        let body = br#"{"project": {"name": " ", "enabled": "yes", "x": 1}}"#;
        let m = entity(body, "project").unwrap();
        assert!(req_name(&m, "name", 64).is_err());
        assert!(opt_bool(&m, "enabled").is_err());
        assert!(entity(b"{", "project").is_err());
        assert!(entity(br#"{"user": {}}"#, "project").is_err());
        assert!(entity(br#"{"project": 5}"#, "project").is_err());
        let long = format!(r#"{{"project": {{"name": "{}"}}}}"#, "a".repeat(65));
        let m = entity(long.as_bytes(), "project").unwrap();
        assert!(req_name(&m, "name", 64).is_err());
        assert!(only(&m, "project", &["name"]).is_ok());
        assert!(only(&m, "project", &["description"]).is_err());
    }

    #[test]
    fn inexact_filters() {
        let mut q = Query::new();
        q.insert("name__icontains".into(), "DEM".into());
        assert!(text_matches(&q, "name", "demo"));
        assert!(!text_matches(&q, "name", "prod"));
        q.insert("name__startswith".into(), "x".into());
        assert!(!text_matches(&q, "name", "demo"));
        assert_eq!(query_bool(&q, "missing"), None);
        q.insert("effective".into(), "".into());
        assert_eq!(query_bool(&q, "effective"), Some(true));
    }
}
