//! Regions, services and endpoints.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::catalog::{self as db, EndpointRow, RegionRow, ServiceRow};
use crate::error::{Error, Result};
use crate::render;

fn none() -> api_common::Target {
    api_common::Target::new()
}

const INTERFACES: &[&str] = &["public", "internal", "admin"];

// Regions.

async fn region_404(state: &State, id: &str) -> Result<RegionRow> {
    db::region_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("region", id))
}

pub async fn regions_list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_regions", &none())?;
    let items = db::region_list(&state.db)
        .await?
        .iter()
        .filter(|r| {
            q.get("parent_region_id")
                .is_none_or(|p| r.parent_region_id.as_ref() == Some(p))
        })
        .map(|r| render::region(&base, r))
        .collect();
    Ok(Json(input::list(
        "regions",
        items,
        format!("{base}/v3/regions"),
        state.cfg.list_limit,
    )))
}

pub async fn region_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_region", &none())?;
    let r = region_404(&state, &id).await?;
    Ok(Json(json!({ "region": render::region(&base, &r) })))
}

async fn region_insert(
    state: &State,
    base: &str,
    id: Option<String>,
    body: &[u8],
) -> Result<(StatusCode, Json<Value>)> {
    let m = input::entity(body, "region")?;
    let body_id = input::opt_str(&m, "id", 255)?;
    let id = match (id, body_id) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::invalid(
                "The region id in the URL and the body differ.",
            ))
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => input::new_id(),
    };
    let r = RegionRow {
        id,
        description: input::opt_str(&m, "description", 255)?.unwrap_or_default(),
        parent_region_id: input::opt_str(&m, "parent_region_id", 255)?,
        extra: input::extra(&m, &["id", "description", "parent_region_id"], "{}"),
    };
    if let Some(p) = &r.parent_region_id {
        if db::region_get(&state.db, p).await?.is_none() {
            return Err(Error::invalid(format!(
                "The parent region {p} does not exist."
            )));
        }
    }
    let mut tx = state.db.write().await?;
    db::region_create(&mut tx, &r)
        .await
        .map_err(|e| input::conflict(e, &format!("region - Duplicate ID, {}", r.id)))?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "region": render::region(base, &r) })),
    ))
}

pub async fn region_create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_region", &none())?;
    region_insert(&state, &base, None, &body).await
}

pub async fn region_create_with_id(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_region", &none())?;
    region_insert(&state, &base, Some(id), &body).await
}

pub async fn region_update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_region", &none())?;
    let mut r = region_404(&state, &id).await?;
    let m = input::entity(&body, "region")?;
    if let Some(d) = input::opt_str(&m, "description", 255)? {
        r.description = d;
    }
    if m.contains_key("parent_region_id") {
        r.parent_region_id = input::opt_str(&m, "parent_region_id", 255)?;
        if let Some(p) = &r.parent_region_id {
            if *p == id || db::region_get(&state.db, p).await?.is_none() {
                return Err(Error::invalid(format!(
                    "The parent region {p} is not valid."
                )));
            }
        }
    }
    r.extra = input::extra(&m, &["id", "description", "parent_region_id"], &r.extra);
    let mut tx = state.db.write().await?;
    db::region_update(&mut tx, &r).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "region": render::region(&base, &r) })))
}

pub async fn region_delete(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_region", &none())?;
    region_404(&state, &id).await?;
    if db::region_has_children(&state.db, &id).await? {
        return Err(Error::Forbidden(format!(
            "Unable to delete region {id} because it or its child regions have associated endpoints."
        )));
    }
    let mut tx = state.db.write().await?;
    db::region_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Services.

const SERVICE_CORE: &[&str] = &["id", "type", "name", "description", "enabled"];

async fn service_404(state: &State, id: &str) -> Result<ServiceRow> {
    db::service_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("service", id))
}

pub async fn services_list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_services", &none())?;
    let items = db::service_list(&state.db)
        .await?
        .iter()
        .filter(|s| q.get("type").is_none_or(|t| s.kind == *t))
        .filter(|s| q.get("name").is_none_or(|n| s.name.as_ref() == Some(n)))
        .map(|s| render::service(&base, s))
        .collect();
    Ok(Json(input::list(
        "services",
        items,
        format!("{base}/v3/services"),
        state.cfg.list_limit,
    )))
}

pub async fn service_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_service", &none())?;
    let s = service_404(&state, &id).await?;
    Ok(Json(json!({ "service": render::service(&base, &s) })))
}

pub async fn service_create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_service", &none())?;
    let m = input::entity(&body, "service")?;
    let s = ServiceRow {
        id: input::new_id(),
        kind: input::req_name(&m, "type", 255)?,
        name: input::opt_str(&m, "name", 255)?,
        description: input::opt_str(&m, "description", 65_535)?,
        enabled: input::flag(input::opt_bool(&m, "enabled")?.unwrap_or(true)),
        extra: input::extra(&m, SERVICE_CORE, "{}"),
    };
    let mut tx = state.db.write().await?;
    db::service_create(&mut tx, &s).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "service": render::service(&base, &s) })),
    ))
}

pub async fn service_update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_service", &none())?;
    let mut s = service_404(&state, &id).await?;
    let m = input::entity(&body, "service")?;
    if let Some(t) = input::name(&m, "type", 255)? {
        s.kind = t;
    }
    if m.contains_key("name") {
        s.name = input::opt_str(&m, "name", 255)?;
    }
    if m.contains_key("description") {
        s.description = input::opt_str(&m, "description", 65_535)?;
    }
    if let Some(e) = input::opt_bool(&m, "enabled")? {
        s.enabled = input::flag(e);
    }
    s.extra = input::extra(&m, SERVICE_CORE, &s.extra);
    let mut tx = state.db.write().await?;
    db::service_update(&mut tx, &s).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "service": render::service(&base, &s) })))
}

pub async fn service_delete(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_service", &none())?;
    service_404(&state, &id).await?;
    let mut tx = state.db.write().await?;
    db::service_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Endpoints.

const ENDPOINT_CORE: &[&str] = &[
    "id",
    "service_id",
    "interface",
    "url",
    "region_id",
    "region",
    "enabled",
];

async fn endpoint_404(state: &State, id: &str) -> Result<EndpointRow> {
    db::endpoint_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("endpoint", id))
}

fn check_interface(i: &str) -> Result<()> {
    if INTERFACES.contains(&i) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid input for field 'interface': {i:?} is not one of public, internal, admin"
        )))
    }
}

fn check_url(u: &str) -> Result<()> {
    let ok = (u.starts_with("http://") || u.starts_with("https://"))
        && u.len() > 8
        && !u.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid input for field 'url': {u:?} is not a valid URL"
        )))
    }
}

async fn region_of(state: &State, m: &input::Obj) -> Result<Option<Option<String>>> {
    let id = match (m.contains_key("region_id"), m.contains_key("region")) {
        (true, _) => input::opt_str(m, "region_id", 255)?,
        (false, true) => input::opt_str(m, "region", 255)?,
        (false, false) => return Ok(None),
    };
    if let Some(r) = &id {
        if db::region_get(&state.db, r).await?.is_none() {
            return Err(Error::invalid(format!("The region {r} does not exist.")));
        }
    }
    Ok(Some(id))
}

pub async fn endpoints_list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_endpoints", &none())?;
    if let Some(i) = q.get("interface") {
        check_interface(i)?;
    }
    let items = db::endpoint_list(&state.db)
        .await?
        .iter()
        .filter(|e| q.get("interface").is_none_or(|i| e.interface == *i))
        .filter(|e| q.get("service_id").is_none_or(|s| e.service_id == *s))
        .filter(|e| {
            q.get("region_id")
                .is_none_or(|r| e.region_id.as_ref() == Some(r))
        })
        .map(|e| render::endpoint(&base, e))
        .collect();
    Ok(Json(input::list(
        "endpoints",
        items,
        format!("{base}/v3/endpoints"),
        state.cfg.list_limit,
    )))
}

pub async fn endpoint_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_endpoint", &none())?;
    let e = endpoint_404(&state, &id).await?;
    Ok(Json(json!({ "endpoint": render::endpoint(&base, &e) })))
}

pub async fn endpoint_create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_endpoint", &none())?;
    let m = input::entity(&body, "endpoint")?;
    let service_id = input::req_name(&m, "service_id", 64)?;
    let interface = input::req_name(&m, "interface", 10)?;
    check_interface(&interface)?;
    let url = input::req_name(&m, "url", 225)?;
    check_url(&url)?;
    if db::service_get(&state.db, &service_id).await?.is_none() {
        return Err(Error::invalid(format!(
            "The service {service_id} does not exist."
        )));
    }
    let e = EndpointRow {
        id: input::new_id(),
        service_id,
        interface,
        url,
        region_id: region_of(&state, &m).await?.flatten(),
        enabled: input::flag(input::opt_bool(&m, "enabled")?.unwrap_or(true)),
        extra: input::extra(&m, ENDPOINT_CORE, "{}"),
    };
    let mut tx = state.db.write().await?;
    db::endpoint_create(&mut tx, &e).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "endpoint": render::endpoint(&base, &e) })),
    ))
}

pub async fn endpoint_update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_endpoint", &none())?;
    let mut e = endpoint_404(&state, &id).await?;
    let m = input::entity(&body, "endpoint")?;
    if let Some(s) = input::name(&m, "service_id", 64)? {
        if db::service_get(&state.db, &s).await?.is_none() {
            return Err(Error::invalid(format!("The service {s} does not exist.")));
        }
        e.service_id = s;
    }
    if let Some(i) = input::name(&m, "interface", 10)? {
        check_interface(&i)?;
        e.interface = i;
    }
    if let Some(u) = input::name(&m, "url", 225)? {
        check_url(&u)?;
        e.url = u;
    }
    if let Some(r) = region_of(&state, &m).await? {
        e.region_id = r;
    }
    if let Some(en) = input::opt_bool(&m, "enabled")? {
        e.enabled = input::flag(en);
    }
    e.extra = input::extra(&m, ENDPOINT_CORE, &e.extra);
    let mut tx = state.db.write().await?;
    db::endpoint_update(&mut tx, &e).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "endpoint": render::endpoint(&base, &e) })))
}

pub async fn endpoint_delete(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_endpoint", &none())?;
    endpoint_404(&state, &id).await?;
    let mut tx = state.db.write().await?;
    db::endpoint_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
