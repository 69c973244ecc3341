//! Quota sets (`/os-quota-sets`) and quota classes (`/os-quota-class-sets`).
//! Also the small validation helpers the admin APIs share: Nova's
//! JSON-schema messages ("Invalid input for field/attribute ...").

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{query_pairs, Auth, Body, Mv, State};
use crate::error::{Error, Result};
use crate::quota::{self, Limits, INJECTED_RESOURCES, MAX_LIMIT, NETWORK_RESOURCES, RESOURCES};
use crate::Compute;

// ------------------------------------------------------------ validation

/// Python's `repr` of a JSON value, as jsonschema's messages show it.
pub(super) fn pyrepr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
        Value::Array(a) => format!("[{}]", a.iter().map(pyrepr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", pyrepr(&Value::String(k.clone())), pyrepr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Python's `str` of a JSON value (strings bare).
pub(super) fn pystr(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => pyrepr(other),
    }
}

/// A body field failing its schema, as Nova words it.
pub(super) fn invalid(field: &str, value: &Value, message: &str) -> Error {
    Error::bad(format!(
        "Invalid input for field/attribute {field}. Value: {}. {message}",
        pystr(value)
    ))
}

/// The body must be an object with exactly the member `key` (an object).
pub(super) fn envelope<'a>(body: &'a Value, key: &str) -> Result<&'a Map<String, Value>> {
    let Some(top) = body.as_object() else {
        return Err(Error::bad(format!(
            "{} is not of type 'object'",
            pyrepr(body)
        )));
    };
    let Some(inner) = top.get(key) else {
        return Err(Error::bad(format!("'{key}' is a required property")));
    };
    if let Some(extra) = top.keys().find(|k| k.as_str() != key) {
        return Err(Error::bad(format!(
            "Additional properties are not allowed ('{extra}' was unexpected)"
        )));
    }
    inner.as_object().ok_or_else(|| {
        invalid(
            key,
            inner,
            &format!("{} is not of type 'object'", pyrepr(inner)),
        )
    })
}

/// Members of `obj` not in `allowed`: jsonschema's additionalProperties.
pub(super) fn no_extra(field: &str, obj: &Map<String, Value>, allowed: &[&str]) -> Result<()> {
    let extra: Vec<String> = obj
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("'{k}'"))
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    let (verb, list) = if extra.len() == 1 {
        ("was", extra[0].clone())
    } else {
        ("were", extra.join(", "))
    };
    Err(invalid(
        field,
        &Value::Object(obj.clone()),
        &format!("Additional properties are not allowed ({list} {verb} unexpected)"),
    ))
}

/// From 2.75 on, unknown query parameters are refused.
pub(super) fn strict_query(
    mv: Mv,
    since: u16,
    pairs: &[(String, String)],
    allowed: &[&str],
) -> Result<()> {
    if !mv.at_least(since) {
        return Ok(());
    }
    let mut extra: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| !allowed.contains(&k.as_str()))
        .map(|(k, _)| format!("'{k}'"))
        .collect();
    extra.dedup();
    if extra.is_empty() {
        return Ok(());
    }
    let (verb, list) = if extra.len() == 1 {
        ("was", extra[0].clone())
    } else {
        ("were", extra.join(", "))
    };
    Err(Error::bad(format!(
        "Additional properties are not allowed ({list} {verb} unexpected)"
    )))
}

/// The first value of a query parameter.
pub(super) fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `parameter_types.boolean` (True/False in their string spellings).
pub(super) fn boolean(field: &str, v: &Value) -> Result<bool> {
    const TRUE: [&str; 8] = ["True", "TRUE", "true", "1", "ON", "On", "on", "YES"];
    const TRUE2: [&str; 2] = ["Yes", "yes"];
    const FALSE: [&str; 8] = ["False", "FALSE", "false", "0", "OFF", "Off", "off", "NO"];
    const FALSE2: [&str; 2] = ["No", "no"];
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if TRUE.contains(&s.as_str()) || TRUE2.contains(&s.as_str()) => Ok(true),
        Value::String(s) if FALSE.contains(&s.as_str()) || FALSE2.contains(&s.as_str()) => {
            Ok(false)
        }
        other => Err(invalid(
            field,
            other,
            &format!(
                "{} is not one of [True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', \
                 'Yes', 'yes', False, 'False', 'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', \
                 'No', 'no']",
                pyrepr(other)
            ),
        )),
    }
}

/// A quota value (`_common_quota`): an integer or a string of digits,
/// -1 .. 0x7FFFFFFF.
fn quota_value(field: &str, v: &Value) -> Result<i64> {
    match v {
        Value::Number(n) => {
            let Some(i) = n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)) else {
                return Err(invalid(
                    field,
                    v,
                    &format!("{n} is not of type 'integer', 'string'"),
                ));
            };
            if i < -1 {
                return Err(invalid(
                    field,
                    v,
                    &format!("{n} is less than the minimum of -1"),
                ));
            }
            if i > MAX_LIMIT {
                return Err(invalid(
                    field,
                    v,
                    &format!("{n} is greater than the maximum of {MAX_LIMIT}"),
                ));
            }
            Ok(i)
        }
        Value::String(s) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(
                    field,
                    v,
                    &format!("{} does not match '^-?[0-9]+$'", pyrepr(v)),
                ));
            }
            // Strings pass the schema unbounded; Nova then takes int().
            s.parse::<i64>().map_err(|_| {
                invalid(
                    field,
                    v,
                    &format!("{} does not match '^-?[0-9]+$'", pyrepr(v)),
                )
            })
        }
        other => Err(invalid(
            field,
            other,
            &format!("{} is not of type 'integer', 'string'", pyrepr(other)),
        )),
    }
}

/// Nova checks that the project exists in Keystone (same database here):
/// 400 "Project ID X is not a valid project." when it does not.
async fn verify_project(state: &Compute, project: &str) -> Result<()> {
    let found = store::sqlx::query("SELECT 1 FROM projects WHERE id = $1")
        .bind(project)
        .fetch_optional(state.db.pool())
        .await?;
    if found.is_none() {
        return Err(Error::bad(format!(
            "Project ID {project} is not a valid project."
        )));
    }
    Ok(())
}

// ------------------------------------------------------------ quota sets

/// Resources hidden at this version (quota sets: 2.36 and 2.57).
fn filtered_sets(mv: Mv) -> Vec<&'static str> {
    let mut f = Vec::new();
    if mv.at_least(36) {
        f.extend(NETWORK_RESOURCES);
    }
    if mv.at_least(57) {
        f.extend(INJECTED_RESOURCES);
    }
    f
}

fn format_set(id: Option<&str>, values: &BTreeMap<String, Value>, filtered: &[&str]) -> Value {
    let mut out = Map::new();
    if let Some(id) = id {
        out.insert("id".into(), json!(id));
    }
    for r in RESOURCES {
        if filtered.contains(&r) {
            continue;
        }
        if let Some(v) = values.get(r) {
            out.insert(r.into(), v.clone());
        }
    }
    Value::Object(out)
}

fn plain(l: &Limits) -> BTreeMap<String, Value> {
    l.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
}

async fn limits_for(state: &Compute, project: &str, user: Option<&str>) -> Result<Limits> {
    match user {
        Some(u) => quota::user_limits(state, project, u).await,
        None => quota::project_limits(state, project).await,
    }
}

const SET_QUERY: [&str; 1] = ["user_id"];

pub async fn show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let pairs = query_pairs(q.as_deref());
    strict_query(mv, 75, &pairs, &SET_QUERY)?;
    state.authorize(
        &caller,
        "os_compute_api:os-quota-sets:show",
        &Compute::project_target(&id, None),
    )?;
    verify_project(&state, &id).await?;
    let user = first(&pairs, "user_id");
    let l = limits_for(&state, &id, user).await?;
    Ok(Json(json!({
        "quota_set": format_set(Some(&id), &plain(&l), &filtered_sets(mv))
    })))
}

pub async fn detail(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let pairs = query_pairs(q.as_deref());
    strict_query(mv, 75, &pairs, &SET_QUERY)?;
    state.authorize(
        &caller,
        "os_compute_api:os-quota-sets:detail",
        &Compute::project_target(&id, None),
    )?;
    verify_project(&state, &id).await?;
    let user = first(&pairs, "user_id");
    let l = limits_for(&state, &id, user).await?;
    let used = quota::usages(&state, &id, user).await?;
    let values = l
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!({
                    "in_use": used.get(k).copied().unwrap_or(0),
                    "limit": v,
                    "reserved": 0,
                }),
            )
        })
        .collect();
    Ok(Json(json!({
        "quota_set": format_set(Some(&id), &values, &filtered_sets(mv))
    })))
}

pub async fn update(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    Body(body): Body,
) -> Result<Json<Value>> {
    let filtered = filtered_sets(mv);
    let set = envelope(&body, "quota_set")?;
    let mut allowed: Vec<&str> = RESOURCES
        .iter()
        .copied()
        .filter(|r| !filtered.contains(r))
        .collect();
    allowed.push("force");
    no_extra("quota_set", set, &allowed)?;
    let mut requested = Vec::new();
    let mut force = false;
    for (k, v) in set {
        if k == "force" {
            force = boolean("force", v)?;
        } else {
            requested.push((k.clone(), quota_value(k, v)?));
        }
    }
    let pairs = query_pairs(q.as_deref());
    strict_query(mv, 75, &pairs, &SET_QUERY)?;
    state.authorize(
        &caller,
        "os_compute_api:os-quota-sets:update",
        &Compute::project_target(&id, None),
    )?;
    verify_project(&state, &id).await?;
    let user = first(&pairs, "user_id");
    if !force {
        let settable = quota::settable(&state, &id, user).await?;
        let inf = |v: i64| if v == -1 { f64::INFINITY } else { v as f64 };
        for (k, v) in &requested {
            let (min, max) = settable.get(k).copied().unwrap_or((0, -1));
            if inf(*v) < inf(min) {
                return Err(Error::bad(format!(
                    "Quota limit {v} for {k} must be greater than or equal to already used \
                     and reserved {min}."
                )));
            }
            if inf(*v) > inf(max) {
                return Err(Error::bad(format!(
                    "Quota limit {v} for {k} must be less than or equal to {max}."
                )));
            }
        }
    }
    let mut tx = state.db.write().await?;
    for (k, v) in &requested {
        crate::db::quotas::limit_set(&mut tx, &id, user.unwrap_or(""), k, *v).await?;
    }
    tx.commit().await?;
    let l = limits_for(&state, &id, user).await?;
    Ok(Json(
        json!({ "quota_set": format_set(None, &plain(&l), &filtered) }),
    ))
}

pub async fn defaults(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "os_compute_api:os-quota-sets:defaults",
        &Compute::project_target(&id, None),
    )?;
    verify_project(&state, &id).await?;
    let d = quota::defaults(&state).await?;
    Ok(Json(json!({
        "quota_set": format_set(Some(&id), &plain(&d), &filtered_sets(mv))
    })))
}

pub async fn delete(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let pairs = query_pairs(q.as_deref());
    strict_query(mv, 75, &pairs, &SET_QUERY)?;
    state.authorize(
        &caller,
        "os_compute_api:os-quota-sets:delete",
        &Compute::project_target(&id, None),
    )?;
    let mut tx = state.db.write().await?;
    match first(&pairs, "user_id") {
        Some(u) => crate::db::quotas::user_delete(&mut tx, &id, u).await?,
        None => crate::db::quotas::project_delete(&mut tx, &id).await?,
    }
    tx.commit().await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// --------------------------------------------------------- quota classes

/// Resources hidden at this version (quota classes: server groups before
/// 2.50, the network ones from 2.50, the injected-file ones from 2.57).
fn filtered_classes(mv: Mv) -> Vec<&'static str> {
    let mut f = Vec::new();
    if mv.at_least(50) {
        f.extend(NETWORK_RESOURCES);
    }
    if mv.at_least(57) {
        f.extend(INJECTED_RESOURCES);
    }
    f
}

fn format_class(id: Option<&str>, l: &Limits, mv: Mv) -> Value {
    let mut hidden = filtered_classes(mv);
    if !mv.at_least(50) {
        hidden.extend(["server_groups", "server_group_members"]);
    }
    format_set(id, &plain(l), &hidden)
}

pub async fn class_show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "os_compute_api:os-quota-class-sets:show",
        &api_common::Target::new(),
    )?;
    let l = quota::class_limits(&state, &id).await?;
    Ok(Json(
        json!({ "quota_class_set": format_class(Some(&id), &l, mv) }),
    ))
}

pub async fn class_update(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let filtered = filtered_classes(mv);
    let set = envelope(&body, "quota_class_set")?;
    let allowed: Vec<&str> = RESOURCES
        .iter()
        .copied()
        .filter(|r| !filtered.contains(r))
        .collect();
    no_extra("quota_class_set", set, &allowed)?;
    let mut requested = Vec::new();
    for (k, v) in set {
        requested.push((k.clone(), quota_value(k, v)?));
    }
    state.authorize(
        &caller,
        "os_compute_api:os-quota-class-sets:update",
        &api_common::Target::new(),
    )?;
    if id.chars().count() > 255 {
        return Err(Error::bad(
            "Invalid input received: quota_class_name has more than 255 characters.",
        ));
    }
    let mut tx = state.db.write().await?;
    for (k, v) in &requested {
        crate::db::quotas::class_limit_set(&mut tx, &id, k, *v).await?;
    }
    tx.commit().await?;
    let l = quota::class_limits(&state, &id).await?;
    Ok(Json(
        json!({ "quota_class_set": format_class(None, &l, mv) }),
    ))
}
