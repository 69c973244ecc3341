//! Unified limits: registered (default) limits and project/domain limits,
//! with the flat enforcement model.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::limits::{self as db, LimitRow, RegisteredLimitRow};
use crate::db::{catalog, domains, projects};
use crate::error::{Error, Result};
use crate::render;

fn none() -> api_common::Target {
    api_common::Target::new()
}

fn opt_region(r: &str) -> Value {
    if r.is_empty() {
        Value::Null
    } else {
        json!(r)
    }
}

fn registered_json(base: &str, r: &RegisteredLimitRow) -> Value {
    json!({
        "id": r.id,
        "service_id": r.service_id,
        "region_id": opt_region(&r.region_id),
        "resource_name": r.resource_name,
        "default_limit": r.default_limit,
        "description": r.description,
        "links": render::links(base, &format!("registered_limits/{}", r.id)),
    })
}

fn limit_json(base: &str, l: &LimitRow) -> Value {
    json!({
        "id": l.id,
        "project_id": l.project_id,
        "domain_id": l.domain_id,
        "service_id": l.service_id,
        "region_id": opt_region(&l.region_id),
        "resource_name": l.resource_name,
        "resource_limit": l.resource_limit,
        "description": l.description,
        "links": render::links(base, &format!("limits/{}", l.id)),
    })
}

fn items(body: &[u8], key: &str) -> Result<Vec<input::Obj>> {
    let v: Value = api_common::http::parse_json(body)?;
    match v.get(key) {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::Object(o) => Ok(o.clone()),
                other => Err(Error::invalid(format!(
                    "Invalid input for field '{key}': {other} is not of type 'object'"
                ))),
            })
            .collect(),
        Some(Value::Array(_)) => Err(Error::invalid(format!(
            "Invalid input for field '{key}': [] is too short"
        ))),
        _ => Err(Error::invalid(format!("'{key}' is a required property"))),
    }
}

fn non_negative(m: &input::Obj, field: &str) -> Result<Option<i64>> {
    match m.get(field) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= -1 => Ok(Some(n)),
            _ => Err(Error::invalid(format!(
                "Invalid input for field '{field}': {v} is not an integer of at least -1"
            ))),
        },
    }
}

async fn check_service_region(state: &State, service: &str, region: &str) -> Result<()> {
    if catalog::service_get(&state.db, service).await?.is_none() {
        return Err(Error::invalid(format!(
            "Invalid service {service}: it does not exist."
        )));
    }
    if !region.is_empty() && catalog::region_get(&state.db, region).await?.is_none() {
        return Err(Error::invalid(format!(
            "Invalid region {region}: it does not exist."
        )));
    }
    Ok(())
}

pub async fn model(Base(base): Base) -> Json<Value> {
    Json(json!({
        "model": {
            "name": "flat",
            "description": "Limit enforcement and validation does not take project hierarchy into consideration."
        },
        "links": { "self": format!("{base}/v3/limits/model") }
    }))
}

pub async fn registered_list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_registered_limits", &none())?;
    let list = db::registered_limit_list(&state.db)
        .await?
        .iter()
        .filter(|r| q.get("service_id").is_none_or(|s| r.service_id == *s))
        .filter(|r| q.get("region_id").is_none_or(|x| r.region_id == *x))
        .filter(|r| q.get("resource_name").is_none_or(|x| r.resource_name == *x))
        .map(|r| registered_json(&base, r))
        .collect();
    Ok(Json(input::list(
        "registered_limits",
        list,
        format!("{base}/v3/registered_limits"),
        None,
    )))
}

pub async fn registered_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_registered_limit", &none())?;
    let r = db::registered_limit_get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("registered limit", id))?;
    Ok(Json(
        json!({ "registered_limit": registered_json(&base, &r) }),
    ))
}

pub async fn registered_create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_registered_limits", &none())?;
    let mut rows = Vec::new();
    for m in items(&body, "registered_limits")? {
        input::only(
            &m,
            "registered_limit",
            &[
                "service_id",
                "region_id",
                "resource_name",
                "default_limit",
                "description",
            ],
        )?;
        let r = RegisteredLimitRow {
            id: input::new_id(),
            service_id: input::req_name(&m, "service_id", 255)?,
            region_id: input::opt_str(&m, "region_id", 255)?.unwrap_or_default(),
            resource_name: input::req_name(&m, "resource_name", 255)?,
            default_limit: non_negative(&m, "default_limit")?
                .ok_or_else(|| Error::invalid("'default_limit' is a required property"))?,
            description: input::opt_str(&m, "description", 65_535)?,
        };
        check_service_region(&state, &r.service_id, &r.region_id).await?;
        rows.push(r);
    }
    let mut tx = state.db.write().await?;
    for r in &rows {
        db::registered_limit_create(&mut tx, r).await.map_err(|e| {
            input::conflict(
                e,
                &format!(
                    "registered_limit - Duplicate entry for resource {}",
                    r.resource_name
                ),
            )
        })?;
    }
    state.commit(tx).await?;
    let out: Vec<Value> = rows.iter().map(|r| registered_json(&base, r)).collect();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "registered_limits": out })),
    ))
}

pub async fn registered_update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_registered_limit", &none())?;
    let mut r = db::registered_limit_get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("registered limit", id.clone()))?;
    let m = input::entity(&body, "registered_limit")?;
    input::only(
        &m,
        "registered_limit",
        &[
            "service_id",
            "region_id",
            "resource_name",
            "default_limit",
            "description",
        ],
    )?;
    if let Some(s) = input::name(&m, "service_id", 255)? {
        r.service_id = s;
    }
    if m.contains_key("region_id") {
        r.region_id = input::opt_str(&m, "region_id", 255)?.unwrap_or_default();
    }
    if let Some(n) = input::name(&m, "resource_name", 255)? {
        r.resource_name = n;
    }
    if let Some(d) = non_negative(&m, "default_limit")? {
        r.default_limit = d;
    }
    if m.contains_key("description") {
        r.description = input::opt_str(&m, "description", 65_535)?;
    }
    check_service_region(&state, &r.service_id, &r.region_id).await?;
    let mut tx = state.db.write().await?;
    db::registered_limit_update(&mut tx, &r)
        .await
        .map_err(|e| input::conflict(e, "registered_limit - Duplicate entry"))?;
    state.commit(tx).await?;
    Ok(Json(
        json!({ "registered_limit": registered_json(&base, &r) }),
    ))
}

pub async fn registered_delete(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_registered_limit", &none())?;
    let r = db::registered_limit_get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("registered limit", id.clone()))?;
    let in_use = db::limit_list(&state.db).await?.iter().any(|l| {
        l.service_id == r.service_id
            && l.region_id == r.region_id
            && l.resource_name == r.resource_name
    });
    if in_use {
        return Err(Error::Forbidden(format!(
            "Unable to delete registered limit {id}: project or domain limits refer to it."
        )));
    }
    let mut tx = state.db.write().await?;
    db::registered_limit_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn limit_target(l: &LimitRow) -> api_common::Target {
    api_common::Target::new()
        .with_opt("target.limit.project_id", l.project_id.clone())
        .with_opt("target.limit.domain_id", l.domain_id.clone())
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_limits", &none())?;
    let creds = caller.0.creds();
    let list = db::limit_list(&state.db)
        .await?
        .iter()
        .filter(|l| q.get("service_id").is_none_or(|s| l.service_id == *s))
        .filter(|l| q.get("region_id").is_none_or(|x| l.region_id == *x))
        .filter(|l| q.get("resource_name").is_none_or(|x| l.resource_name == *x))
        .filter(|l| {
            q.get("project_id")
                .is_none_or(|x| l.project_id.as_ref() == Some(x))
        })
        .filter(|l| {
            q.get("domain_id")
                .is_none_or(|x| l.domain_id.as_ref() == Some(x))
        })
        .filter(|l| state.allowed(&creds, "identity:get_limit", &limit_target(l)))
        .map(|l| limit_json(&base, l))
        .collect();
    Ok(Json(input::list(
        "limits",
        list,
        format!("{base}/v3/limits"),
        None,
    )))
}

pub async fn show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let l = db::limit_get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("limit", id))?;
    state.authorize(&caller.0, "identity:get_limit", &limit_target(&l))?;
    Ok(Json(json!({ "limit": limit_json(&base, &l) })))
}

pub async fn create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_limits", &none())?;
    let registered = db::registered_limit_list(&state.db).await?;
    let existing = db::limit_list(&state.db).await?;
    let mut rows: Vec<LimitRow> = Vec::new();
    for m in items(&body, "limits")? {
        input::only(
            &m,
            "limit",
            &[
                "service_id",
                "region_id",
                "project_id",
                "domain_id",
                "resource_name",
                "resource_limit",
                "description",
            ],
        )?;
        let l = LimitRow {
            id: input::new_id(),
            project_id: input::opt_str(&m, "project_id", 64)?,
            domain_id: input::opt_str(&m, "domain_id", 64)?,
            service_id: input::req_name(&m, "service_id", 255)?,
            region_id: input::opt_str(&m, "region_id", 255)?.unwrap_or_default(),
            resource_name: input::req_name(&m, "resource_name", 255)?,
            resource_limit: non_negative(&m, "resource_limit")?
                .ok_or_else(|| Error::invalid("'resource_limit' is a required property"))?,
            description: input::opt_str(&m, "description", 65_535)?,
        };
        match (&l.project_id, &l.domain_id) {
            (Some(p), None) => {
                if projects::project_get(&state.db, p).await?.is_none() {
                    return Err(Error::invalid(format!(
                        "Invalid project {p}: it does not exist."
                    )));
                }
            }
            (None, Some(d)) => {
                if domains::domain_get(&state.db, d).await?.is_none() {
                    return Err(Error::invalid(format!(
                        "Invalid domain {d}: it does not exist."
                    )));
                }
            }
            _ => {
                return Err(Error::invalid(
                    "A limit names exactly one of project_id and domain_id.",
                ))
            }
        }
        check_service_region(&state, &l.service_id, &l.region_id).await?;
        let is_registered = registered.iter().any(|r| {
            r.service_id == l.service_id
                && r.region_id == l.region_id
                && r.resource_name == l.resource_name
        });
        if !is_registered {
            return Err(Error::Forbidden(format!(
                "No registered limit for resource {} of service {}: register one first.",
                l.resource_name, l.service_id
            )));
        }
        let same = |x: &LimitRow| {
            x.service_id == l.service_id
                && x.region_id == l.region_id
                && x.resource_name == l.resource_name
                && x.project_id == l.project_id
                && x.domain_id == l.domain_id
        };
        if existing.iter().any(same) || rows.iter().any(same) {
            return Err(Error::Conflict(format!(
                "Conflict occurred attempting to store limit - Duplicate entry for resource {}.",
                l.resource_name
            )));
        }
        rows.push(l);
    }
    let mut tx = state.db.write().await?;
    for l in &rows {
        db::limit_create(&mut tx, l).await?;
    }
    state.commit(tx).await?;
    let out: Vec<Value> = rows.iter().map(|l| limit_json(&base, l)).collect();
    Ok((StatusCode::CREATED, Json(json!({ "limits": out }))))
}

pub async fn update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_limit", &none())?;
    let mut l = db::limit_get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("limit", id.clone()))?;
    let m = input::entity(&body, "limit")?;
    input::only(&m, "limit", &["resource_limit", "description"])?;
    if let Some(n) = non_negative(&m, "resource_limit")? {
        l.resource_limit = n;
    }
    if m.contains_key("description") {
        l.description = input::opt_str(&m, "description", 65_535)?;
    }
    let mut tx = state.db.write().await?;
    db::limit_update(&mut tx, &l).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "limit": limit_json(&base, &l) })))
}

pub async fn delete(state: State, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_limit", &none())?;
    db::limit_get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::not_found("limit", id.clone()))?;
    let mut tx = state.db.write().await?;
    db::limit_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
