//! Request-body validation with JSON-schema semantics (Draft 4, as upstream
//! placement uses) and python-jsonschema's error messages, which upstream's
//! API returns verbatim ("JSON does not validate: ...") and its functional
//! tests check.

use regex::Regex;
use serde_json::Value;

/// A schema node.
#[derive(Debug, Clone)]
pub enum Schema {
    Any,
    Null,
    Bool,
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Number {
        min: Option<f64>,
        max: Option<f64>,
    },
    Str {
        min_len: Option<usize>,
        max_len: Option<usize>,
        pattern: Option<(String, Regex)>,
        uuid: bool,
        one_of: Option<Vec<&'static str>>,
    },
    Array {
        items: Option<Box<Schema>>,
        min_items: Option<usize>,
        max_items: Option<usize>,
        unique: bool,
    },
    Object(Box<ObjectSchema>),
    AnyOf(Vec<Schema>),
    /// A union of basic types (`{"type": ["integer", "null"]}`): only the
    /// type is checked against the list, the first matching branch validates.
    Types(Vec<Schema>),
}

#[derive(Debug, Clone, Default)]
pub struct ObjectSchema {
    pub properties: Vec<(&'static str, Schema)>,
    pub pattern_properties: Vec<(String, Regex, Schema)>,
    pub required: Vec<&'static str>,
    /// `additionalProperties`: None = allowed (any), Some(None) = false,
    /// Some(Some(schema)) = schema for the rest.
    pub additional: Option<Option<Schema>>,
    pub min_properties: Option<usize>,
    pub max_properties: Option<usize>,
}

impl Schema {
    pub fn string() -> Schema {
        Schema::Str {
            min_len: None,
            max_len: None,
            pattern: None,
            uuid: false,
            one_of: None,
        }
    }
    pub fn uuid() -> Schema {
        Schema::Str {
            min_len: None,
            max_len: None,
            pattern: None,
            uuid: true,
            one_of: None,
        }
    }
    pub fn string_len(min_len: Option<usize>, max_len: Option<usize>) -> Schema {
        Schema::Str {
            min_len,
            max_len,
            pattern: None,
            uuid: false,
            one_of: None,
        }
    }
    pub fn pattern(p: &str) -> Schema {
        Schema::Str {
            min_len: None,
            max_len: None,
            pattern: Regex::new(p).ok().map(|r| (p.to_string(), r)),
            uuid: false,
            one_of: None,
        }
    }
    pub fn pattern_len(p: &str, min_len: Option<usize>, max_len: Option<usize>) -> Schema {
        Schema::Str {
            min_len,
            max_len,
            pattern: Regex::new(p).ok().map(|r| (p.to_string(), r)),
            uuid: false,
            one_of: None,
        }
    }
    pub fn enumeration(values: Vec<&'static str>) -> Schema {
        Schema::Str {
            min_len: None,
            max_len: None,
            pattern: None,
            uuid: false,
            one_of: Some(values),
        }
    }
    pub fn integer(min: Option<i64>, max: Option<i64>) -> Schema {
        Schema::Integer { min, max }
    }
    pub fn array(items: Schema) -> Schema {
        Schema::Array {
            items: Some(Box::new(items)),
            min_items: None,
            max_items: None,
            unique: false,
        }
    }
    pub fn object(o: ObjectSchema) -> Schema {
        Schema::Object(Box::new(o))
    }
    pub fn nullable(self) -> Schema {
        Schema::Types(vec![self, Schema::Null])
    }

    fn type_name(&self) -> &'static str {
        match self {
            Schema::Null => "null",
            Schema::Bool => "boolean",
            Schema::Integer { .. } => "integer",
            Schema::Number { .. } => "number",
            Schema::Str { .. } => "string",
            Schema::Array { .. } => "array",
            Schema::Object(_) => "object",
            Schema::Any | Schema::AnyOf(_) | Schema::Types(_) => "",
        }
    }

    fn type_matches(&self, v: &Value) -> bool {
        match self {
            Schema::Null => v.is_null(),
            Schema::Bool => v.is_boolean(),
            Schema::Integer { .. } => is_integer(v),
            Schema::Number { .. } => v.is_number(),
            Schema::Str { .. } => v.is_string(),
            Schema::Array { .. } => v.is_array(),
            Schema::Object(_) => v.is_object(),
            Schema::Any | Schema::AnyOf(_) => true,
            Schema::Types(ts) => ts.iter().any(|t| t.type_matches(v)),
        }
    }
}

fn is_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// A `patternProperties` entry (None if the pattern does not compile).
pub fn pattern_prop(p: &str, s: Schema) -> Option<(String, Regex, Schema)> {
    Regex::new(p).ok().map(|r| (p.to_string(), r, s))
}

/// One validation failure.
#[derive(Debug, Clone)]
pub struct Violation {
    pub message: String,
    pub validator: &'static str,
    pub path: Vec<String>,
    /// Where in the schema (python-jsonschema's `relative_schema_path`
    /// without the failing keyword).
    pub schema_path: Vec<String>,
    weak: bool,
}

impl Violation {
    /// The whole text upstream puts after "JSON does not validate: ".
    pub fn describe(&self) -> String {
        let fmt = |parts: &[String]| {
            parts
                .iter()
                .map(|p| match p.parse::<usize>() {
                    Ok(i) => format!("[{i}]"),
                    Err(_) => format!("[{}]", py_str(p)),
                })
                .collect::<String>()
        };
        format!(
            "{}  Failed validating '{}' in schema{}  On instance{}",
            self.message,
            self.validator,
            fmt(&self.schema_path),
            fmt(&self.path)
        )
    }
}

/// Validates `v` against `schema`, returning the error python-jsonschema's
/// `best_match` would pick: the shallowest, non-`anyOf` one first, then the
/// first found.
pub fn validate(schema: &Schema, v: &Value) -> Result<(), Violation> {
    let mut errors = Vec::new();
    check(schema, v, &mut Vec::new(), &mut Vec::new(), &mut errors);
    let mut best: Option<Violation> = None;
    for e in errors {
        let better = match &best {
            None => true,
            Some(b) => (e.path.len(), e.weak) < (b.path.len(), b.weak),
        };
        if better {
            best = Some(e);
        }
    }
    match best {
        Some(b) => Err(b),
        None => Ok(()),
    }
}

/// Validates a request body and turns a failure into upstream's 400.
pub fn validate_body(schema: &Schema, v: &Value) -> crate::error::Result<()> {
    validate(schema, v).map_err(|e| {
        crate::error::Error::bad_request(format!("JSON does not validate: {}", e.describe()))
    })
}

struct Paths<'a> {
    path: &'a [String],
    schema_path: &'a [String],
}

fn push(errors: &mut Vec<Violation>, at: Paths<'_>, validator: &'static str, message: String) {
    errors.push(Violation {
        message,
        validator,
        path: at.path.to_vec(),
        schema_path: at.schema_path.to_vec(),
        weak: validator == "anyOf",
    });
}

fn check(
    schema: &Schema,
    v: &Value,
    path: &mut Vec<String>,
    sp: &mut Vec<String>,
    errors: &mut Vec<Violation>,
) {
    match schema {
        Schema::Any => {}
        Schema::AnyOf(branches) => {
            let ok = branches.iter().any(|b| {
                let mut errs = Vec::new();
                check(b, v, &mut path.clone(), &mut sp.clone(), &mut errs);
                errs.is_empty()
            });
            if !ok {
                push(
                    errors,
                    Paths {
                        path,
                        schema_path: sp,
                    },
                    "anyOf",
                    format!("{} is not valid under any of the given schemas", py_repr(v)),
                );
            }
        }
        Schema::Types(ts) => match ts.iter().find(|t| t.type_matches(v)) {
            Some(t) => check(t, v, path, sp, errors),
            None => {
                let names: Vec<String> =
                    ts.iter().map(|t| format!("'{}'", t.type_name())).collect();
                push(
                    errors,
                    Paths {
                        path,
                        schema_path: sp,
                    },
                    "type",
                    format!("{} is not of type {}", py_repr(v), names.join(", ")),
                );
            }
        },
        s if !s.type_matches(v) => {
            push(
                errors,
                Paths {
                    path,
                    schema_path: sp,
                },
                "type",
                format!("{} is not of type '{}'", py_repr(v), s.type_name()),
            );
        }
        Schema::Null | Schema::Bool => {}
        Schema::Integer { min, max } => {
            let n = v.as_f64().unwrap_or(0.0);
            if let Some(m) = min {
                if n < *m as f64 {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "minimum",
                        format!("{} is less than the minimum of {m}", py_repr(v)),
                    );
                }
            }
            if let Some(m) = max {
                if n > *m as f64 {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "maximum",
                        format!("{} is greater than the maximum of {m}", py_repr(v)),
                    );
                }
            }
        }
        Schema::Number { min, max } => {
            let n = v.as_f64().unwrap_or(0.0);
            if let Some(m) = min {
                if n < *m {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "minimum",
                        format!(
                            "{} is less than the minimum of {}",
                            py_repr(v),
                            py_float(*m)
                        ),
                    );
                }
            }
            if let Some(m) = max {
                if n > *m {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "maximum",
                        format!(
                            "{} is greater than the maximum of {}",
                            py_repr(v),
                            py_float(*m)
                        ),
                    );
                }
            }
        }
        Schema::Str {
            min_len,
            max_len,
            pattern,
            uuid,
            one_of,
        } => {
            let s = v.as_str().unwrap_or_default();
            let len = s.chars().count();
            if let Some(values) = one_of {
                if !values.contains(&s) {
                    let list: Vec<String> = values.iter().map(|x| format!("'{x}'")).collect();
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "enum",
                        format!("{} is not one of [{}]", py_repr(v), list.join(", ")),
                    );
                }
            }
            if let Some(m) = max_len {
                if len > *m {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "maxLength",
                        format!("{} is too long", py_repr(v)),
                    );
                }
            }
            if let Some(m) = min_len {
                if len < *m {
                    let msg = if *m == 1 {
                        format!("{} should be non-empty", py_repr(v))
                    } else {
                        format!("{} is too short", py_repr(v))
                    };
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "minLength",
                        msg,
                    );
                }
            }
            if let Some((src, re)) = pattern {
                if !re.is_match(s) {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "pattern",
                        format!("{} does not match '{}'", py_repr(v), src),
                    );
                }
            }
            if *uuid && !is_uuid(s) {
                push(
                    errors,
                    Paths {
                        path,
                        schema_path: sp,
                    },
                    "format",
                    format!("{} is not a 'uuid'", py_repr(v)),
                );
            }
        }
        Schema::Array {
            items,
            min_items,
            max_items,
            unique,
        } => {
            let arr = v.as_array().map(Vec::as_slice).unwrap_or_default();
            if let Some(m) = min_items {
                if arr.len() < *m {
                    let msg = if *m == 1 {
                        format!("{} should be non-empty", py_repr(v))
                    } else {
                        format!("{} is too short", py_repr(v))
                    };
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "minItems",
                        msg,
                    );
                }
            }
            if let Some(m) = max_items {
                if arr.len() > *m {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "maxItems",
                        format!("{} is too long", py_repr(v)),
                    );
                }
            }
            if *unique {
                let dup = arr.iter().enumerate().any(|(i, a)| arr[..i].contains(a));
                if dup {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "uniqueItems",
                        format!("{} has non-unique elements", py_repr(v)),
                    );
                }
            }
            if let Some(item) = items {
                sp.push("items".into());
                for (i, x) in arr.iter().enumerate() {
                    path.push(i.to_string());
                    check(item, x, path, sp, errors);
                    path.pop();
                }
                sp.pop();
            }
        }
        Schema::Object(o) => {
            let Some(map) = v.as_object() else { return };
            for (name, sub) in &o.properties {
                if let Some(x) = map.get(*name) {
                    path.push(name.to_string());
                    sp.push("properties".into());
                    sp.push(name.to_string());
                    check(sub, x, path, sp, errors);
                    sp.truncate(sp.len() - 2);
                    path.pop();
                }
            }
            for req in &o.required {
                if !map.contains_key(*req) {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "required",
                        format!("'{req}' is a required property"),
                    );
                }
            }
            let mut extras = Vec::new();
            for (k, x) in map {
                if o.properties.iter().any(|(n, _)| n == k) {
                    continue;
                }
                let mut matched = false;
                for (src, re, sub) in &o.pattern_properties {
                    if re.is_match(k) {
                        matched = true;
                        path.push(k.clone());
                        sp.push("patternProperties".into());
                        sp.push(src.clone());
                        check(sub, x, path, sp, errors);
                        sp.truncate(sp.len() - 2);
                        path.pop();
                    }
                }
                if matched {
                    continue;
                }
                match &o.additional {
                    None => {}
                    Some(None) => extras.push(k.clone()),
                    Some(Some(sub)) => {
                        path.push(k.clone());
                        sp.push("additionalProperties".into());
                        check(sub, x, path, sp, errors);
                        sp.pop();
                        path.pop();
                    }
                }
            }
            if !extras.is_empty() {
                let msg = if o.pattern_properties.is_empty() {
                    let names: Vec<String> = extras.iter().map(|e| format!("'{e}'")).collect();
                    let verb = if extras.len() == 1 { "was" } else { "were" };
                    format!(
                        "Additional properties are not allowed ({} {verb} unexpected)",
                        names.join(", ")
                    )
                } else {
                    let pats: Vec<String> = o
                        .pattern_properties
                        .iter()
                        .map(|(p, _, _)| format!("'{p}'"))
                        .collect();
                    let names: Vec<String> = extras.iter().map(|e| format!("'{e}'")).collect();
                    let verb = if extras.len() == 1 { "does" } else { "do" };
                    format!(
                        "{} {verb} not match any of the regexes: {}",
                        names.join(", "),
                        pats.join(", ")
                    )
                };
                push(
                    errors,
                    Paths {
                        path,
                        schema_path: sp,
                    },
                    "additionalProperties",
                    msg,
                );
            }
            if let Some(m) = o.min_properties {
                if map.len() < m {
                    let msg = if m == 1 {
                        format!("{} should be non-empty", py_repr(v))
                    } else {
                        format!("{} does not have enough properties", py_repr(v))
                    };
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "minProperties",
                        msg,
                    );
                }
            }
            if let Some(m) = o.max_properties {
                if map.len() > m {
                    push(
                        errors,
                        Paths {
                            path,
                            schema_path: sp,
                        },
                        "maxProperties",
                        format!("{} has too many properties", py_repr(v)),
                    );
                }
            }
        }
    }
}

/// True for the forms python's `uuid.UUID()` accepts (what jsonschema's
/// "uuid" format checks in upstream's validator): 32 hex digits with or
/// without hyphens, optional braces or `urn:uuid:` prefix.
pub fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

fn py_float(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Python's `repr()` of a JSON value (how jsonschema prints instances).
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                n.to_string()
            } else {
                py_float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => py_str(s),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(py_repr).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, x)| format!("{}: {}", py_str(k), py_repr(x)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

pub fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(props: Vec<(&'static str, Schema)>, required: Vec<&'static str>) -> Schema {
        Schema::object(ObjectSchema {
            properties: props,
            required,
            additional: Some(None),
            ..Default::default()
        })
    }

    #[test]
    fn messages_match_python_jsonschema() {
        let s = obj(
            vec![
                ("name", Schema::string_len(Some(1), Some(200))),
                ("uuid", Schema::uuid()),
            ],
            vec!["name"],
        );
        let e = validate(&s, &json!({"nam": 1})).unwrap_err();
        assert_eq!(e.message, "'name' is a required property");
        let e = validate(&s, &json!({"name": "x", "bad_field": 1})).unwrap_err();
        assert_eq!(
            e.message,
            "Additional properties are not allowed ('bad_field' was unexpected)"
        );
        let e = validate(&s, &json!({"name": ""})).unwrap_err();
        assert_eq!(e.message, "'' should be non-empty");
        let e = validate(&s, &json!({"name": "a", "uuid": "x"})).unwrap_err();
        assert_eq!(e.message, "'x' is not a 'uuid'");
        assert!(e.describe().contains("Failed validating 'format'"));
        let e = validate(&Schema::integer(Some(1), None), &json!(0)).unwrap_err();
        assert_eq!(e.message, "0 is less than the minimum of 1");
        let e = validate(&Schema::integer(None, None).nullable(), &json!("x")).unwrap_err();
        assert_eq!(e.message, "'x' is not of type 'integer', 'null'");
        let e = validate(&Schema::integer(None, None), &json!(true)).unwrap_err();
        assert_eq!(e.message, "True is not of type 'integer'");
        let e = validate(&Schema::pattern("^[A-Z0-9_]+$"), &json!("instance")).unwrap_err();
        assert_eq!(e.message, "'instance' does not match '^[A-Z0-9_]+$'");
        assert!(validate(&s, &json!({"name": "ok"})).is_ok());
    }

    #[test]
    fn repr_is_pythonic() {
        assert_eq!(
            py_repr(&json!({"a": [1, 2.5, null, true]})),
            "{'a': [1, 2.5, None, True]}"
        );
        assert_eq!(py_repr(&json!("it's")), "\"it's\"");
    }
}
