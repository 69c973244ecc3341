//! Flavors (`/flavors`), their access lists (`os-flavor-access`, the
//! `addTenantAccess` / `removeTenantAccess` actions) and extra specs
//! (`os-extra_specs`), as Nova's v2.1 API serves them at 2.1 to 2.79.
//!
//! Input is checked in the order Nova's JSON schemas check it, with
//! python-jsonschema's messages wrapped as Nova wraps them; then policy;
//! then the database.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{base_url, query_pairs, Auth, Body, Mv, State};
use crate::db::flavors::{self as db, Flavor, NewFlavor};
use crate::error::{Error, Result};
use crate::{Caller, Compute};

/// Nova's `[api] max_limit`.
pub(crate) const MAX_LIMIT: i64 = 1000;
/// Nova's `db.constants.MAX_INT`.
const MAX_INT: i64 = 0x7FFF_FFFF;
const SQL_SP_FLOAT_MAX: f64 = 3.40282e+38;

/// Building blocks for Nova's schema messages.
pub(crate) mod check {
    use serde_json::{Map, Value};

    use crate::error::Error;

    fn py_str_repr(s: &str) -> String {
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
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c == quote => {
                    out.push('\\');
                    out.push(c);
                }
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push(quote);
        out
    }

    /// Python's `repr()` of a decoded JSON value.
    pub fn repr(v: &Value) -> String {
        match v {
            Value::Null => "None".into(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => py_str_repr(s),
            Value::Array(a) => format!("[{}]", a.iter().map(repr).collect::<Vec<_>>().join(", ")),
            Value::Object(o) => format!(
                "{{{}}}",
                o.iter()
                    .map(|(k, v)| format!("{}: {}", py_str_repr(k), repr(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Python's `str()` of a decoded JSON value.
    pub fn py_str(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => repr(other),
        }
    }

    /// A schema error at a body field, as Nova words it.
    pub fn field(name: &str, value: &Value, msg: impl std::fmt::Display) -> Error {
        Error::bad(format!(
            "Invalid input for field/attribute {name}. Value: {}. {msg}",
            py_str(value)
        ))
    }

    /// A schema error at a query parameter, as Nova words it.
    pub fn query(name: &str, value: &str, msg: impl std::fmt::Display) -> Error {
        Error::bad(format!(
            "Invalid input for query parameters {name}. Value: {value}. {msg}"
        ))
    }

    pub fn not_type(v: &Value, types: &[&str]) -> String {
        format!(
            "{} is not of type {}",
            repr(v),
            types
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// jsonschema's type test (an integral float is an integer).
    pub fn is_type(v: &Value, t: &str) -> bool {
        match t {
            "object" => v.is_object(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
            _ => false,
        }
    }

    pub fn type_check(v: &Value, types: &[&str]) -> Result<(), String> {
        if types.iter().any(|t| is_type(v, t)) {
            Ok(())
        } else {
            Err(not_type(v, types))
        }
    }

    pub fn min_length(s: &str, min: usize) -> Result<(), String> {
        if s.chars().count() < min {
            let r = super::check::repr(&Value::String(s.into()));
            Err(if min == 1 {
                format!("{r} should be non-empty")
            } else {
                format!("{r} is too short")
            })
        } else {
            Ok(())
        }
    }

    pub fn max_length(s: &str, max: usize) -> Result<(), String> {
        if s.chars().count() > max {
            let r = repr(&Value::String(s.into()));
            Err(if max == 0 {
                format!("{r} is expected to be empty")
            } else {
                format!("{r} is too long")
            })
        } else {
            Ok(())
        }
    }

    pub fn no_match(s: &str, pattern: &str) -> String {
        format!(
            "{} does not match {}",
            repr(&Value::String(s.into())),
            repr(&Value::String(pattern.into()))
        )
    }

    pub fn not_one_of(v: &Value, options: &[Value]) -> String {
        format!(
            "{} is not one of {}",
            repr(v),
            repr(&Value::Array(options.to_vec()))
        )
    }

    pub fn required(prop: &str) -> String {
        format!("'{prop}' is a required property")
    }

    /// `additionalProperties: false` without pattern properties.
    pub fn additional(extras: &[&String]) -> String {
        let mut e: Vec<&String> = extras.to_vec();
        e.sort();
        let verb = if e.len() == 1 { "was" } else { "were" };
        format!(
            "Additional properties are not allowed ({} {verb} unexpected)",
            e.iter()
                .map(|s| repr(&Value::String((*s).clone())))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// The keys of `obj` not in `allowed`.
    pub fn extras<'a>(obj: &'a Map<String, Value>, allowed: &[&str]) -> Vec<&'a String> {
        obj.keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .collect()
    }

    /// Unicode printable as Nova's name regexes define it (not a control,
    /// format, private-use or unassigned character; no line or paragraph
    /// separator; only the Basic Multilingual Plane below U+FFFF).
    fn printable(c: char) -> bool {
        let u = c as u32;
        !(c.is_control()
            || u >= 0xFFFF
            || u == 0xAD
            || (0x600..=0x605).contains(&u)
            || u == 0x61C
            || u == 0x6DD
            || u == 0x70F
            || u == 0x180E
            || (0x200B..=0x200F).contains(&u)
            || (0x2028..=0x202E).contains(&u)
            || (0x2060..=0x206F).contains(&u)
            || (0xD800..=0xF8FF).contains(&u)
            || u == 0xFEFF
            || (0xFFF0..=0xFFFB).contains(&u))
    }

    fn space(c: char) -> bool {
        c == ' ' || (c.is_whitespace() && !c.is_control() && c != '\u{2028}' && c != '\u{2029}')
    }

    /// Nova's `name` format: printable characters, not starting or
    /// ending with whitespace.
    pub fn name_format(s: &str) -> Result<(), Error> {
        let ok = s.chars().all(printable)
            && !s.starts_with(|c: char| space(c) || !printable(c))
            && !s.ends_with(|c: char| space(c) || !printable(c));
        if ok {
            Ok(())
        } else {
            Err(Error::bad(
                "An invalid 'name' value was provided. The name must be: printable characters. \
                 Can not start or end with whitespace.",
            ))
        }
    }

    /// Nova's description pattern: printable characters and spaces.
    pub fn description_ok(s: &str) -> bool {
        s.chars().all(printable)
    }

    /// Python's `int()` on a string.
    pub fn py_int(s: &str) -> Option<i64> {
        let t = s.trim();
        let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    }

    /// Nova's `non_negative_integer` query parameter (`limit`).
    pub fn query_limit(name: &str, values: &[&str]) -> Result<(), Error> {
        for v in values {
            if !v.chars().all(|c| c.is_ascii_digit()) {
                return Err(query(name, v, no_match(v, "^[0-9]*$")));
            }
            min_length(v, 1).map_err(|m| query(name, v, m))?;
        }
        Ok(())
    }

    /// `+`-for-space form encoding, as Python's `urlencode`.
    pub fn urlencode(pairs: &[(String, String)]) -> String {
        fn quote(s: &str) -> String {
            let mut out = String::new();
            for b in s.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                        out.push(b as char)
                    }
                    b' ' => out.push('+'),
                    b => out.push_str(&format!("%{b:02X}")),
                }
            }
            out
        }
        pairs
            .iter()
            .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The query of a `next` link: every parameter once (sorted, the
    /// last of repeated ones), `marker` replaced.
    pub fn next_query(pairs: &[(String, String)], marker: &str) -> String {
        let mut sorted: Vec<(String, String)> = pairs.to_vec();
        sorted.sort();
        let mut map: Vec<(String, String)> = Vec::new();
        for (k, v) in sorted {
            match map.iter_mut().find(|(mk, _)| *mk == k) {
                Some(e) => e.1 = v,
                None => map.push((k, v)),
            }
        }
        match map.iter_mut().find(|(k, _)| k == "marker") {
            Some(e) => e.1 = marker.to_string(),
            None => map.push(("marker".into(), marker.to_string())),
        }
        urlencode(&map)
    }
}

use check::{field, repr};

fn links(base: &str, collection: &str, id: &str) -> Value {
    json!([
        { "rel": "self", "href": format!("{base}/v2.1/{collection}/{id}") },
        { "rel": "bookmark", "href": format!("{base}/{collection}/{id}") },
    ])
}

fn rxtx_value(f: f64) -> Value {
    if f == 0.0 {
        json!("")
    } else {
        json!(f)
    }
}

/// The detailed view of a flavor at `mv`.
pub(crate) fn render(f: &Flavor, mv: Mv, base: &str, with_specs: bool) -> Value {
    let mut v = json!({
        "id": f.id,
        "name": f.name,
        "ram": f.memory_mb,
        "disk": f.root_gb,
        "swap": if mv.at_least(75) || f.swap != 0 { json!(f.swap) } else { json!("") },
        "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb,
        "OS-FLV-DISABLED:disabled": f.disabled,
        "vcpus": f.vcpus,
        "os-flavor-access:is_public": f.is_public,
        "rxtx_factor": rxtx_value(f.rxtx_factor),
        "links": links(base, "flavors", &f.id),
    });
    if mv.at_least(55) {
        v["description"] = json!(f.description);
    }
    if with_specs {
        v["extra_specs"] = json!(f.extra_specs);
    }
    v
}

fn render_brief(f: &Flavor, mv: Mv, base: &str) -> Value {
    let mut v = json!({ "id": f.id, "name": f.name, "links": links(base, "flavors", &f.id) });
    if mv.at_least(55) {
        v["description"] = json!(f.description);
    }
    v
}

impl Compute {
    /// A flavor as the caller may see it: admins see every flavor, others
    /// public ones and those their project is on the access list of.
    pub(crate) async fn visible_flavor(&self, caller: &Caller, id: &str) -> Result<Flavor> {
        let f = db::flavor_get(&self.db, id)
            .await?
            .ok_or_else(|| Error::flavor_not_found(id))?;
        if !caller.is_admin && !db::flavor_accessible(&self.db, &f, caller.project()).await? {
            return Err(Error::flavor_not_found(id));
        }
        Ok(f)
    }

    /// True when flavor bodies carry `extra_specs` (2.61, and the caller
    /// may list extra specs).
    fn embeds_specs(&self, caller: &Caller, mv: Mv) -> bool {
        mv.at_least(61)
            && self.allowed(
                caller,
                "os_compute_api:os-flavor-extra-specs:index",
                &Compute::project_target(caller.project(), Some(caller.user())),
            )
    }
}

const SORT_KEYS: [&str; 15] = [
    "created_at",
    "description",
    "disabled",
    "ephemeral_gb",
    "flavorid",
    "id",
    "is_public",
    "memory_mb",
    "name",
    "root_gb",
    "rxtx_factor",
    "swap",
    "updated_at",
    "vcpu_weight",
    "vcpus",
];

#[derive(PartialEq, PartialOrd)]
enum Key<'a> {
    Null,
    Int(i64),
    Float(f64),
    Str(&'a str),
}

fn sort_value<'a>(l: &'a db::Listed, key: &str) -> Key<'a> {
    let f = &l.flavor;
    match key {
        "created_at" | "id" => Key::Int(l.created_at),
        "updated_at" => l.updated_at.map(Key::Int).unwrap_or(Key::Null),
        "description" => f.description.as_deref().map(Key::Str).unwrap_or(Key::Null),
        "disabled" => Key::Int(i64::from(f.disabled)),
        "is_public" => Key::Int(i64::from(f.is_public)),
        "ephemeral_gb" => Key::Int(f.ephemeral_gb),
        "memory_mb" => Key::Int(f.memory_mb),
        "root_gb" => Key::Int(f.root_gb),
        "swap" => Key::Int(f.swap),
        "vcpus" => Key::Int(f.vcpus),
        "name" => Key::Str(&f.name),
        "rxtx_factor" => Key::Float(f.rxtx_factor),
        "vcpu_weight" => Key::Null,
        _ => Key::Str(&f.id),
    }
}

/// The order of Nova's `paginate_query(sort_key, then the internal id)`.
fn order(a: &db::Listed, b: &db::Listed, key: &str, desc: bool) -> Ordering {
    let o = sort_value(a, key)
        .partial_cmp(&sort_value(b, key))
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.created_at.cmp(&b.created_at))
        .then_with(|| a.flavor.id.cmp(&b.flavor.id));
    if desc {
        o.reverse()
    } else {
        o
    }
}

/// The last value of a query parameter (as WebOb's `params.get`).
fn last<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn values<'a>(q: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    q.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `additionalProperties: false` on a query (2.75 on).
pub(crate) fn query_extras(q: &[(String, String)], allowed: &[&str]) -> Result<()> {
    let mut extra: Vec<&String> = q
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    extra.dedup();
    let mut uniq: Vec<&String> = Vec::new();
    for e in extra {
        if !uniq.contains(&e) {
            uniq.push(e);
        }
    }
    if uniq.is_empty() {
        Ok(())
    } else {
        Err(Error::bad(check::additional(&uniq)))
    }
}

struct Page {
    flavors: Vec<Flavor>,
    next: Option<String>,
}

async fn list_flavors(
    state: &Compute,
    caller: &Caller,
    mv: Mv,
    raw: Option<&str>,
    collection: &str,
    base: &str,
) -> Result<Page> {
    let q = query_pairs(raw);
    // The query schema.
    check::query_limit("limit", &values(&q, "limit"))?;
    for v in values(&q, "sort_key") {
        if !SORT_KEYS.contains(&v) {
            let opts: Vec<Value> = SORT_KEYS.iter().map(|k| json!(k)).collect();
            return Err(check::query(
                "sort_key",
                v,
                check::not_one_of(&json!(v), &opts),
            ));
        }
    }
    for v in values(&q, "sort_dir") {
        if v != "asc" && v != "desc" {
            let opts = [json!("asc"), json!("desc")];
            return Err(check::query(
                "sort_dir",
                v,
                check::not_one_of(&json!(v), &opts),
            ));
        }
    }
    if mv.at_least(75) {
        query_extras(
            &q,
            &[
                "limit",
                "marker",
                "is_public",
                "minRam",
                "minDisk",
                "sort_key",
                "sort_dir",
            ],
        )?;
    }
    let sort_key = last(&q, "sort_key")
        .filter(|s| !s.is_empty())
        .unwrap_or("flavorid");
    let desc = last(&q, "sort_dir")
        .filter(|s| !s.is_empty())
        .unwrap_or("asc")
        == "desc";
    let limit = match last(&q, "limit") {
        Some(l) => l.parse::<i64>().unwrap_or(i64::MAX).min(MAX_LIMIT),
        None => MAX_LIMIT,
    };
    let marker = last(&q, "marker");
    // Filters: admins choose with is_public; others see public, enabled
    // flavors and the private ones shared with their project.
    let (is_public, only_enabled) = if caller.is_admin {
        let p = match last(&q, "is_public") {
            None => Some(true),
            Some(v) if v.eq_ignore_ascii_case("none") => None,
            Some(v) => Some(
                crate::extra_specs::bool_from_string(v)
                    .ok_or_else(|| Error::bad(format!("Invalid is_public filter [{v}]")))?,
            ),
        };
        (p, false)
    } else {
        (Some(true), true)
    };
    let min_ram = match last(&q, "minRam") {
        Some(v) => Some(
            check::py_int(v).ok_or_else(|| Error::bad(format!("Invalid minRam filter [{v}]")))?,
        ),
        None => None,
    };
    let min_disk = match last(&q, "minDisk") {
        Some(v) => Some(
            check::py_int(v).ok_or_else(|| Error::bad(format!("Invalid minDisk filter [{v}]")))?,
        ),
        None => None,
    };
    let project = caller.ctx.project_id();
    let visible = db::flavor_list(
        &state.db,
        if caller.is_admin {
            None
        } else {
            Some(caller.project())
        },
    )
    .await?;
    let shared: Vec<String> = match project {
        Some(p) => db::accessible_ids(&state.db, p).await?,
        None => Vec::new(),
    };
    let marker_row = match marker {
        Some(m) => Some(
            visible
                .iter()
                .find(|l| l.flavor.id == m)
                .ok_or_else(|| Error::bad(format!("marker [{m}] not found")))?,
        ),
        None => None,
    };
    let mut rows: Vec<&db::Listed> = visible
        .iter()
        .filter(|l| {
            let f = &l.flavor;
            let public_ok = match is_public {
                None => true,
                Some(true) => f.is_public || shared.contains(&f.id),
                Some(false) => !f.is_public,
            };
            public_ok
                && !(only_enabled && f.disabled)
                && min_ram.is_none_or(|m| f.memory_mb >= m)
                && min_disk.is_none_or(|m| f.root_gb >= m)
        })
        .collect();
    rows.sort_by(|a, b| order(a, b, sort_key, desc));
    if let Some(m) = marker_row {
        rows.retain(|l| order(l, m, sort_key, desc) == Ordering::Greater);
    }
    rows.truncate(usize::try_from(limit.max(0)).unwrap_or(0));
    let max_items = match last(&q, "limit") {
        Some(l) => l.parse::<i64>().unwrap_or(i64::MAX).min(MAX_LIMIT),
        None => MAX_LIMIT,
    };
    let next = match rows.last() {
        Some(l) if max_items > 0 && rows.len() as i64 == max_items => Some(format!(
            "{base}/v2.1/{collection}?{}",
            check::next_query(&q, &l.flavor.id)
        )),
        _ => None,
    };
    let mut flavors = Vec::with_capacity(rows.len());
    for l in rows {
        flavors.push(l.flavor.clone());
    }
    Ok(Page { flavors, next })
}

fn page_body(items: Vec<Value>, next: Option<String>) -> Json<Value> {
    let mut body = json!({ "flavors": items });
    if let Some(href) = next {
        body["flavors_links"] = json!([{ "rel": "next", "href": href }]);
    }
    Json(body)
}

pub async fn index(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>> {
    let base = base_url(&state, &headers);
    let page = list_flavors(&state, &caller, mv, raw.as_deref(), "flavors", &base).await?;
    let items = page
        .flavors
        .iter()
        .map(|f| render_brief(f, mv, &base))
        .collect();
    Ok(page_body(items, page.next))
}

pub async fn detail(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>> {
    let base = base_url(&state, &headers);
    let page = list_flavors(&state, &caller, mv, raw.as_deref(), "flavors/detail", &base).await?;
    let with_specs = state.embeds_specs(&caller, mv);
    let mut items = Vec::with_capacity(page.flavors.len());
    for mut f in page.flavors {
        if with_specs {
            f.extra_specs = db::extra_specs(&state.db, &f.id).await?;
        }
        items.push(render(&f, mv, &base, with_specs));
    }
    Ok(page_body(items, page.next))
}

pub async fn show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let f = state.visible_flavor(&caller, &id).await?;
    let base = base_url(&state, &headers);
    let with_specs = state.embeds_specs(&caller, mv);
    Ok(Json(json!({ "flavor": render(&f, mv, &base, with_specs) })))
}

/// `flavor_param_positive` / `flavor_param_non_negative`, then Nova's
/// `validate_integer`.
fn flavor_int(name: &str, label: &str, v: &Value, min: i64) -> Result<i64> {
    check::type_check(v, &["integer", "string"]).map_err(|m| field(name, v, m))?;
    let n: i128 = match v {
        Value::String(s) => {
            if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
                return Err(field(name, v, check::no_match(s, "^[0-9]+$")));
            }
            s.parse::<i128>().unwrap_or(i128::MAX)
        }
        other => match other.as_i64() {
            Some(i) => i128::from(i),
            None => other.as_f64().map(|f| f as i128).unwrap_or(i128::MAX),
        },
    };
    let shown = match v {
        Value::String(_) => n.to_string(),
        other => other.to_string(),
    };
    if n < i128::from(min) {
        return Err(field(
            name,
            v,
            format!("{shown} is less than the minimum of {min}"),
        ));
    }
    if n > i128::from(MAX_INT) {
        return Err(field(
            name,
            v,
            format!("{shown} is greater than the maximum of {MAX_INT}"),
        ));
    }
    // Python's int(str(value)) refuses "2.0".
    if v.is_f64() {
        return Err(Error::bad(format!(
            "Invalid input received: {label} must be an integer"
        )));
    }
    Ok(n as i64)
}

fn check_description(v: &Value) -> Result<Option<String>> {
    check::type_check(v, &["string", "null"]).map_err(|m| field("description", v, m))?;
    match v {
        Value::String(s) => {
            check::max_length(s, 65535).map_err(|m| field("description", v, m))?;
            if !check::description_ok(s) {
                return Err(field(
                    "description",
                    v,
                    check::no_match(s, "^[printable characters]*$"),
                ));
            }
            Ok(Some(s.clone()))
        }
        _ => Ok(None),
    }
}

fn is_public_options() -> Vec<Value> {
    let mut v = vec![json!(true)];
    v.extend(
        [
            "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
        ]
        .iter()
        .map(|s| json!(s)),
    );
    v.push(json!(false));
    v.extend(
        [
            "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no",
        ]
        .iter()
        .map(|s| json!(s)),
    );
    v
}

/// Nova's flavor create schema for `mv`, then `flavors.create`'s checks.
fn parse_create(body: &Value, mv: Mv) -> Result<NewFlavor> {
    let Some(top) = body.as_object() else {
        return Err(Error::bad(check::not_type(body, &["object"])));
    };
    let mut out = None;
    if let Some(fv) = top.get("flavor") {
        let Some(f) = fv.as_object() else {
            return Err(field("flavor", fv, check::not_type(fv, &["object"])));
        };
        let mut name = None;
        let mut id = None;
        let mut ints = [0i64; 5];
        let mut rxtx = 1.0;
        let mut is_public = true;
        let mut description = None;
        if let Some(v) = f.get("name") {
            check::type_check(v, &["string"]).map_err(|m| field("name", v, m))?;
            let s = v.as_str().unwrap_or_default();
            check::name_format(s)?;
            check::min_length(s, 1).map_err(|m| field("name", v, m))?;
            check::max_length(s, 255).map_err(|m| field("name", v, m))?;
            name = Some(s.trim().to_string());
        }
        if let Some(v) = f.get("id") {
            check::type_check(v, &["string", "number", "null"]).map_err(|m| field("id", v, m))?;
            id = match v {
                Value::String(s) => {
                    check::min_length(s, 1).map_err(|m| field("id", v, m))?;
                    check::max_length(s, 255).map_err(|m| field("id", v, m))?;
                    let ok = s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || ". _-".contains(c))
                        && !s.starts_with(' ')
                        && !s.ends_with(' ');
                    if !ok {
                        return Err(field(
                            "id",
                            v,
                            check::no_match(s, "^(?! )[a-zA-Z0-9. _-]+(?<! )$"),
                        ));
                    }
                    Some(s.clone())
                }
                Value::Number(n) if n.as_f64() != Some(0.0) => Some(match n.as_f64() {
                    Some(f) if n.is_f64() => format!("{f:?}"),
                    _ => n.to_string(),
                }),
                _ => None,
            };
        }
        for (i, (key, label, min)) in [
            ("ram", "ram", 1),
            ("vcpus", "vcpus", 1),
            ("disk", "disk", 0),
            ("OS-FLV-EXT-DATA:ephemeral", "ephemeral", 0),
            ("swap", "swap", 0),
        ]
        .iter()
        .enumerate()
        {
            if let Some(v) = f.get(*key) {
                ints[i] = flavor_int(key, label, v, *min)?;
            }
        }
        if let Some(v) = f.get("rxtx_factor") {
            check::type_check(v, &["number", "string"]).map_err(|m| field("rxtx_factor", v, m))?;
            let out_of_range = || {
                Error::bad(format!(
                    "Invalid input received: 'rxtx_factor' argument must be a float between 0 and {SQL_SP_FLOAT_MAX:e}"
                ).replace("3.40282e38", "3.40282e+38"))
            };
            rxtx = match v {
                Value::String(s) => {
                    let ok = match s.split_once('.') {
                        Some((a, b)) => {
                            !a.is_empty()
                                && !b.is_empty()
                                && a.chars().all(|c| c.is_ascii_digit())
                                && b.chars().all(|c| c.is_ascii_digit())
                        }
                        None => !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()),
                    };
                    if !ok {
                        return Err(field(
                            "rxtx_factor",
                            v,
                            check::no_match(s, r"^[0-9]+(\.[0-9]+)?$"),
                        ));
                    }
                    let f: f64 = s.parse().map_err(|_| out_of_range())?;
                    if f > SQL_SP_FLOAT_MAX {
                        return Err(field(
                            "rxtx_factor",
                            v,
                            format!("{} is greater than the maximum of 3.40282e+38", s),
                        ));
                    }
                    f
                }
                other => {
                    let f = other.as_f64().unwrap_or(0.0);
                    if f <= 0.0 {
                        return Err(field(
                            "rxtx_factor",
                            v,
                            format!("{other} is less than or equal to the minimum of 0"),
                        ));
                    }
                    if f > SQL_SP_FLOAT_MAX {
                        return Err(field(
                            "rxtx_factor",
                            v,
                            format!("{other} is greater than the maximum of 3.40282e+38"),
                        ));
                    }
                    f
                }
            };
            if rxtx <= 0.0 || rxtx > SQL_SP_FLOAT_MAX {
                return Err(out_of_range());
            }
        }
        if let Some(v) = f.get("os-flavor-access:is_public") {
            check::type_check(v, &["boolean", "string"])
                .map_err(|m| field("os-flavor-access:is_public", v, m))?;
            let opts = is_public_options();
            if !opts.contains(v) {
                return Err(field(
                    "os-flavor-access:is_public",
                    v,
                    check::not_one_of(v, &opts),
                ));
            }
            is_public = match v {
                Value::Bool(b) => *b,
                Value::String(s) => crate::extra_specs::bool_from_string(s).unwrap_or(true),
                _ => true,
            };
        }
        if mv.at_least(55) {
            if let Some(v) = f.get("description") {
                description = check_description(v)?;
            }
        }
        for req in ["name", "ram", "vcpus", "disk"] {
            if !f.contains_key(req) {
                return Err(field("flavor", fv, check::required(req)));
            }
        }
        let mut allowed = vec![
            "name",
            "id",
            "ram",
            "vcpus",
            "disk",
            "OS-FLV-EXT-DATA:ephemeral",
            "swap",
            "rxtx_factor",
            "os-flavor-access:is_public",
        ];
        if mv.at_least(55) {
            allowed.push("description");
        }
        let extra = check::extras(f, &allowed);
        if !extra.is_empty() {
            return Err(field("flavor", fv, check::additional(&extra)));
        }
        out = Some(NewFlavor {
            id: id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            name: name.unwrap_or_default(),
            memory_mb: ints[0],
            vcpus: ints[1],
            root_gb: ints[2],
            ephemeral_gb: ints[3],
            swap: ints[4],
            rxtx_factor: rxtx,
            is_public,
            description,
        });
    }
    let Some(out) = out else {
        return Err(Error::bad(check::required("flavor")));
    };
    let extra = check::extras(top, &["flavor"]);
    if !extra.is_empty() {
        return Err(Error::bad(check::additional(&extra)));
    }
    Ok(out)
}

/// Creates a flavor, refusing a taken id or name with Nova's messages.
pub(crate) async fn create_flavor(state: &Compute, new: &NewFlavor) -> Result<()> {
    let mut tx = state.db.write().await?;
    if db::id_exists(&mut tx, &new.id).await? {
        return Err(Error::conflict(format!(
            "Flavor with ID {} already exists.",
            new.id
        )));
    }
    if db::name_exists(&mut tx, &new.name).await? {
        return Err(Error::conflict(format!(
            "Flavor with name {} already exists.",
            new.name
        )));
    }
    match db::flavor_create(&mut tx, new).await {
        Ok(()) => {
            tx.commit().await?;
            Ok(())
        }
        // A concurrent create (PostgreSQL): say which of the two it took.
        Err(e) if store::is_unique_violation(&e) => {
            drop(tx);
            if db::flavor_get(&state.db, &new.id).await?.is_some() {
                Err(Error::conflict(format!(
                    "Flavor with ID {} already exists.",
                    new.id
                )))
            } else {
                Err(Error::conflict(format!(
                    "Flavor with name {} already exists.",
                    new.name
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn create(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<Value>> {
    let new = parse_create(&body, mv)?;
    state.authorize(
        &caller,
        "os_compute_api:os-flavor-manage:create",
        &api_common::Target::new(),
    )?;
    create_flavor(&state, &new).await?;
    let f = db::flavor_get(&state.db, &new.id)
        .await?
        .ok_or_else(|| Error::flavor_not_found(&new.id))?;
    let base = base_url(&state, &headers);
    let with_specs = state.embeds_specs(&caller, mv);
    Ok(Json(json!({ "flavor": render(&f, mv, &base, with_specs) })))
}

pub async fn update(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    if !mv.at_least(55) {
        return Err(Error::not_found("The resource could not be found."));
    }
    let Some(top) = body.as_object() else {
        return Err(Error::bad(check::not_type(&body, &["object"])));
    };
    let mut description = None;
    if let Some(fv) = top.get("flavor") {
        let Some(f) = fv.as_object() else {
            return Err(field("flavor", fv, check::not_type(fv, &["object"])));
        };
        if let Some(v) = f.get("description") {
            description = Some(check_description(v)?);
        }
        if !f.contains_key("description") {
            return Err(field("flavor", fv, check::required("description")));
        }
        let extra = check::extras(f, &["description"]);
        if !extra.is_empty() {
            return Err(field("flavor", fv, check::additional(&extra)));
        }
    }
    let Some(description) = description else {
        return Err(Error::bad(check::required("flavor")));
    };
    let extra = check::extras(top, &["flavor"]);
    if !extra.is_empty() {
        return Err(Error::bad(check::additional(&extra)));
    }
    state.authorize(
        &caller,
        "os_compute_api:os-flavor-manage:update",
        &api_common::Target::new(),
    )?;
    // Nova looks the flavor up with the caller's context (admins see all).
    state.visible_flavor(&caller, &id).await?;
    let mut tx = state.db.write().await?;
    if !db::flavor_set_description(&mut tx, &id, description.as_deref()).await? {
        return Err(Error::flavor_not_found(&id));
    }
    tx.commit().await?;
    let f = state.visible_flavor(&caller, &id).await?;
    let base = base_url(&state, &headers);
    let with_specs = state.embeds_specs(&caller, mv);
    Ok(Json(json!({ "flavor": render(&f, mv, &base, with_specs) })))
}

pub async fn delete(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.authorize(
        &caller,
        "os_compute_api:os-flavor-manage:delete",
        &api_common::Target::new(),
    )?;
    let mut tx = state.db.write().await?;
    if !db::flavor_delete(&mut tx, &id).await? {
        return Err(Error::flavor_not_found(&id));
    }
    tx.commit().await?;
    Ok(StatusCode::ACCEPTED)
}

// ----------------------------------------------------------- access lists

fn access_body(id: &str, projects: &[String]) -> Json<Value> {
    let list: Vec<Value> = projects
        .iter()
        .map(|p| json!({ "flavor_id": id, "tenant_id": p }))
        .collect();
    Json(json!({ "flavor_access": list }))
}

pub async fn access_index(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "os_compute_api:os-flavor-access",
        &Compute::project_target(caller.project(), Some(caller.user())),
    )?;
    let f = state.visible_flavor(&caller, &id).await?;
    if f.is_public {
        return Err(Error::not_found(
            "Access list not available for public flavors.",
        ));
    }
    Ok(access_body(
        &f.id,
        &db::access_list(&state.db, &f.id).await?,
    ))
}

/// The `tenant` of an access action body.
fn tenant_of(body: &Value, action: &str) -> Result<String> {
    let Some(top) = body.as_object() else {
        return Err(Error::bad(check::not_type(body, &["object"])));
    };
    let mut tenant = None;
    if let Some(av) = top.get(action) {
        let Some(a) = av.as_object() else {
            return Err(field(action, av, check::not_type(av, &["object"])));
        };
        if let Some(v) = a.get("tenant") {
            check::type_check(v, &["string"]).map_err(|m| field("tenant", v, m))?;
            let s = v.as_str().unwrap_or_default();
            check::min_length(s, 1).map_err(|m| field("tenant", v, m))?;
            check::max_length(s, 255).map_err(|m| field("tenant", v, m))?;
            tenant = Some(s.to_string());
        }
        if tenant.is_none() {
            return Err(field(action, av, check::required("tenant")));
        }
        let extra = check::extras(a, &["tenant"]);
        if !extra.is_empty() {
            return Err(field(action, av, check::additional(&extra)));
        }
    }
    let Some(tenant) = tenant else {
        return Err(Error::bad(check::required(action)));
    };
    let extra = check::extras(top, &[action]);
    if !extra.is_empty() {
        return Err(Error::bad(check::additional(&extra)));
    }
    Ok(tenant)
}

/// `POST /flavors/{id}/action`: addTenantAccess, removeTenantAccess.
pub async fn action(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let name = body
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .ok_or_else(|| Error::bad("Malformed request body"))?;
    let target = api_common::Target::new();
    match name.as_str() {
        "addTenantAccess" => {
            let tenant = tenant_of(&body, &name)?;
            state.authorize(
                &caller,
                "os_compute_api:os-flavor-access:add_tenant_access",
                &target,
            )?;
            if !db::project_exists(&state.db, &tenant).await? {
                return Err(Error::bad(format!(
                    "Project ID {tenant} is not a valid project."
                )));
            }
            let f = state.visible_flavor(&caller, &id).await?;
            if mv.at_least(7) && f.is_public {
                return Err(Error::conflict("Can not add access to a public flavor."));
            }
            let mut tx = state.db.write().await?;
            if db::flavor_get_tx(&mut tx, &f.id).await?.is_none() {
                return Err(Error::flavor_not_found(&id));
            }
            if !db::access_add(&mut tx, &f.id, &tenant).await? {
                return Err(Error::conflict(format!(
                    "Flavor access already exists for flavor {} and project {tenant} combination.",
                    f.id
                )));
            }
            tx.commit().await?;
            Ok(access_body(
                &f.id,
                &db::access_list(&state.db, &f.id).await?,
            ))
        }
        "removeTenantAccess" => {
            let tenant = tenant_of(&body, &name)?;
            state.authorize(
                &caller,
                "os_compute_api:os-flavor-access:remove_tenant_access",
                &target,
            )?;
            let f = state.visible_flavor(&caller, &id).await?;
            let mut tx = state.db.write().await?;
            if !db::access_remove(&mut tx, &f.id, &tenant).await? {
                return Err(Error::not_found(format!(
                    "Flavor access not found for {} / {tenant} combination.",
                    f.id
                )));
            }
            tx.commit().await?;
            Ok(access_body(
                &f.id,
                &db::access_list(&state.db, &f.id).await?,
            ))
        }
        other => Err(Error::bad(format!("There is no such action: {other}"))),
    }
}

// ------------------------------------------------------------ extra specs

const SPEC_KEY_PATTERN: &str = "^[a-zA-Z0-9-_:. ]{1,255}$";

fn spec_key_ok(k: &str) -> bool {
    let n = k.chars().count();
    (1..=255).contains(&n)
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:. ".contains(c))
}

/// Nova's extra spec metadata schema on `specs` (values: string or
/// number, at most 255 characters), then the value checks; returns the
/// specs as stored (numbers as text).
fn check_specs(
    specs: &Map<String, Value>,
    holder: Option<(&str, &Value)>,
    mv: Mv,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in specs {
        if !spec_key_ok(k) {
            continue;
        }
        check::type_check(v, &["string", "number"]).map_err(|m| field(k, v, m))?;
        if let Value::String(s) = v {
            check::max_length(s, 255).map_err(|m| field(k, v, m))?;
        }
    }
    let bad: Vec<&String> = specs.keys().filter(|k| !spec_key_ok(k)).collect();
    if !bad.is_empty() {
        let mut bad = bad;
        bad.sort();
        let verb = if bad.len() == 1 { "does" } else { "do" };
        let msg = format!(
            "{} {verb} not match any of the regexes: {}",
            bad.iter()
                .map(|k| repr(&Value::String((*k).clone())))
                .collect::<Vec<_>>()
                .join(", "),
            repr(&json!(SPEC_KEY_PATTERN))
        );
        return Err(match holder {
            Some((name, value)) => field(name, value, msg),
            None => Error::bad(msg),
        });
    }
    for (k, v) in specs {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => match n.as_f64() {
                Some(f) if n.is_f64() => format!("{f:?}"),
                _ => n.to_string(),
            },
            _ => String::new(),
        };
        if text.chars().count() > 255 {
            return Err(Error::bad(
                "Invalid input received: extra_specs value has more than 255 characters.",
            ));
        }
        // Nova validates extra specs against its registry from 2.86 on.
        if mv.at_least(86) {
            crate::extra_specs::validate(k, &text).map_err(Error::bad)?;
        }
        out.insert(k.clone(), text);
    }
    Ok(out)
}

fn reader_target(caller: &Caller) -> api_common::Target {
    Compute::project_target(caller.project(), Some(caller.user()))
}

pub async fn specs_index(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "os_compute_api:os-flavor-extra-specs:index",
        &reader_target(&caller),
    )?;
    let f = state.visible_flavor(&caller, &id).await?;
    Ok(Json(json!({ "extra_specs": f.extra_specs })))
}

pub async fn specs_create(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let Some(top) = body.as_object() else {
        return Err(Error::bad(check::not_type(&body, &["object"])));
    };
    let specs = match top.get("extra_specs") {
        Some(sv) => {
            let Some(s) = sv.as_object() else {
                return Err(field("extra_specs", sv, check::not_type(sv, &["object"])));
            };
            Some((s, sv))
        }
        None => None,
    };
    // Shape first (the schema), the values once policy allows.
    if let Some((s, sv)) = specs {
        check_specs(
            s,
            Some(("extra_specs", sv)),
            crate::api::Mv(crate::microversion::MIN),
        )?;
    }
    let Some((specs, sv)) = specs else {
        return Err(Error::bad(check::required("extra_specs")));
    };
    let extra = check::extras(top, &["extra_specs"]);
    if !extra.is_empty() {
        return Err(Error::bad(check::additional(&extra)));
    }
    state.authorize(
        &caller,
        "os_compute_api:os-flavor-extra-specs:create",
        &api_common::Target::new(),
    )?;
    let stored = check_specs(specs, Some(("extra_specs", sv)), mv)?;
    let f = state.visible_flavor(&caller, &id).await?;
    let mut tx = state.db.write().await?;
    if db::flavor_get_tx(&mut tx, &f.id).await?.is_none() {
        return Err(Error::flavor_not_found(&id));
    }
    db::extra_specs_set(&mut tx, &f.id, &stored).await?;
    tx.commit().await?;
    Ok(Json(body))
}

pub async fn specs_show(
    state: State,
    Auth(caller): Auth,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "os_compute_api:os-flavor-extra-specs:show",
        &reader_target(&caller),
    )?;
    let f = state.visible_flavor(&caller, &id).await?;
    match f.extra_specs.get(&key) {
        Some(v) => Ok(Json(json!({ key: v }))),
        None => Err(Error::not_found(format!(
            "Flavor {id} has no extra specs with key {key}."
        ))),
    }
}

pub async fn specs_update(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path((id, key)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let Some(specs) = body.as_object() else {
        return Err(Error::bad(check::not_type(&body, &["object"])));
    };
    check_specs(specs, None, crate::api::Mv(crate::microversion::MIN))?;
    if specs.is_empty() {
        return Err(Error::bad(format!("{} should be non-empty", repr(&body))));
    }
    if specs.len() > 1 {
        return Err(Error::bad(format!(
            "{} has too many properties",
            repr(&body)
        )));
    }
    state.authorize(
        &caller,
        "os_compute_api:os-flavor-extra-specs:update",
        &api_common::Target::new(),
    )?;
    let stored = check_specs(specs, None, mv)?;
    if !specs.contains_key(&key) {
        return Err(Error::bad("Request body and URI mismatch"));
    }
    let f = state.visible_flavor(&caller, &id).await?;
    let mut tx = state.db.write().await?;
    if db::flavor_get_tx(&mut tx, &f.id).await?.is_none() {
        return Err(Error::flavor_not_found(&id));
    }
    db::extra_specs_set(&mut tx, &f.id, &stored).await?;
    tx.commit().await?;
    Ok(Json(body))
}

pub async fn specs_delete(
    state: State,
    Auth(caller): Auth,
    Path((id, key)): Path<(String, String)>,
) -> Result<Response> {
    state.authorize(
        &caller,
        "os_compute_api:os-flavor-extra-specs:delete",
        &api_common::Target::new(),
    )?;
    let f = state.visible_flavor(&caller, &id).await?;
    let mut tx = state.db.write().await?;
    if !db::extra_spec_delete(&mut tx, &f.id, &key).await? {
        return Err(Error::not_found(format!(
            "Flavor {id} has no extra specs with key {key}."
        )));
    }
    tx.commit().await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_reprs() {
        assert_eq!(repr(&json!("a'b")), "\"a'b\"");
        assert_eq!(
            repr(&json!({"a": [1, true, null]})),
            "{'a': [1, True, None]}"
        );
        assert_eq!(check::py_str(&json!("x")), "x");
    }

    #[test]
    fn next_links_keep_sorted_parameters() {
        let q = vec![
            ("limit".to_string(), "2".to_string()),
            ("marker".to_string(), "old".to_string()),
            ("is_public".to_string(), "none".to_string()),
        ];
        assert_eq!(
            check::next_query(&q, "a b"),
            "is_public=none&limit=2&marker=a+b"
        );
    }

    #[test]
    fn flavor_create_schema_messages() {
        let mv = Mv(crate::microversion::Version(1));
        let e = parse_create(
            &json!({"flavor": {"name": "x", "ram": 0, "vcpus": 1, "disk": 1}}),
            mv,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid input for field/attribute ram. Value: 0. 0 is less than the minimum of 1"
        );
        let e = parse_create(
            &json!({"flavor": {"name": "x", "ram": "abc", "vcpus": 1, "disk": 1}}),
            mv,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid input for field/attribute ram. Value: abc. 'abc' does not match '^[0-9]+$'"
        );
        let e =
            parse_create(&json!({"flavor": {"name": "x", "vcpus": 1, "disk": 1}}), mv).unwrap_err();
        assert!(
            e.to_string().ends_with("'ram' is a required property"),
            "{e}"
        );
        let e = parse_create(
            &json!({"flavor": {"name": " x", "ram": 1, "vcpus": 1, "disk": 1}}),
            mv,
        )
        .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("An invalid 'name' value was provided."));
        let e = parse_create(
            &json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 1, "description": "d"}}),
            mv,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .ends_with("Additional properties are not allowed ('description' was unexpected)"),
            "{e}"
        );
        let ok = parse_create(
            &json!({"flavor": {"name": "x", "ram": "512", "vcpus": 1, "disk": 0, "id": 7, "rxtx_factor": "2.5"}}),
            mv,
        )
        .unwrap();
        assert_eq!(
            (ok.id.as_str(), ok.memory_mb, ok.rxtx_factor),
            ("7", 512, 2.5)
        );
    }
}
