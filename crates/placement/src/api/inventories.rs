//! /resource_providers/{uuid}/inventories[/{class}].

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::providers::get_or_404;
use super::{cache_headers, json_body, json_response, no_content, provider_url, Ctx};
use crate::cache::{commit, Changes};
use crate::db::{self, InventoryRow};
use crate::error::{codes, Error, Result};
use crate::schema::{pattern_prop, validate_body, ObjectSchema, Schema};

pub const MAX_INT: i64 = 0x7FFF_FFFF;
const SQL_SP_FLOAT_MAX: f64 = 3.40282e+38;
pub const RC_PATTERN: &str = "^[A-Z0-9_]+$";

fn inventory_props() -> Vec<(&'static str, Schema)> {
    vec![
        ("resource_provider_generation", Schema::integer(None, None)),
        ("total", Schema::integer(Some(1), Some(MAX_INT))),
        ("reserved", Schema::integer(Some(0), Some(MAX_INT))),
        ("min_unit", Schema::integer(Some(1), Some(MAX_INT))),
        ("max_unit", Schema::integer(Some(1), Some(MAX_INT))),
        ("step_size", Schema::integer(Some(1), Some(MAX_INT))),
        (
            "allocation_ratio",
            Schema::Number {
                min: None,
                max: Some(SQL_SP_FLOAT_MAX),
            },
        ),
    ]
}

/// The schema of one inventory (PUT .../inventories/{class}).
pub fn base_schema() -> Schema {
    Schema::object(ObjectSchema {
        properties: inventory_props(),
        required: vec!["total", "resource_provider_generation"],
        additional: Some(None),
        ..Default::default()
    })
}

fn post_schema() -> Schema {
    let mut props = inventory_props();
    props.push(("resource_class", Schema::pattern(RC_PATTERN)));
    Schema::object(ObjectSchema {
        properties: props,
        required: vec!["total", "resource_class"],
        additional: Some(None),
        ..Default::default()
    })
}

/// The schema of PUT .../inventories (also used by the reshaper).
pub fn put_all_schema() -> Schema {
    let mut props = inventory_props();
    props.retain(|(n, _)| *n != "resource_provider_generation");
    let one = Schema::object(ObjectSchema {
        properties: props,
        required: vec!["total"],
        additional: Some(None),
        ..Default::default()
    });
    Schema::object(ObjectSchema {
        properties: vec![
            ("resource_provider_generation", Schema::integer(None, None)),
            (
                "inventories",
                Schema::object(ObjectSchema {
                    pattern_properties: pattern_prop(RC_PATTERN, one).into_iter().collect(),
                    additional: Some(None),
                    ..Default::default()
                }),
            ),
        ],
        required: vec!["resource_provider_generation", "inventories"],
        additional: Some(None),
        ..Default::default()
    })
}

/// Builds an inventory from validated JSON with upstream's defaults.
pub fn from_json(class: &str, v: &Value) -> InventoryRow {
    let int = |k: &str, d: i64| {
        v.get(k)
            .and_then(Value::as_f64)
            .map(|f| f as i64)
            .unwrap_or(d)
    };
    InventoryRow {
        resource_class: class.to_string(),
        total: int("total", 0),
        reserved: int("reserved", 0),
        min_unit: int("min_unit", 1),
        max_unit: int("max_unit", MAX_INT),
        step_size: int("step_size", 1),
        allocation_ratio: v
            .get("allocation_ratio")
            .and_then(Value::as_f64)
            .unwrap_or(1.0),
        updated_at: 0,
    }
}

pub fn render_one(inv: &InventoryRow, generation: Option<i64>) -> Value {
    let mut v = json!({
        "total": inv.total,
        "reserved": inv.reserved,
        "min_unit": inv.min_unit,
        "max_unit": inv.max_unit,
        "step_size": inv.step_size,
        "allocation_ratio": inv.allocation_ratio,
    });
    if let Some(g) = generation.filter(|g| *g != 0) {
        v["resource_provider_generation"] = json!(g);
    }
    v
}

fn render_all(invs: &[InventoryRow], generation: i64) -> Value {
    let mut m = Map::new();
    for i in invs {
        m.insert(i.resource_class.clone(), render_one(i, None));
    }
    json!({"resource_provider_generation": generation, "inventories": m})
}

/// Upstream's capacity check: before 1.26 reserved must be below total,
/// from 1.26 it may equal it.
pub fn check_capacity(ctx: &Ctx, uuid: &str, invs: &[InventoryRow]) -> Result<()> {
    for inv in invs {
        let cap = inv.capacity();
        let (bad, msg) = if ctx.at_least(26) {
            (cap < 0, "The reserved value is greater than total.")
        } else {
            (
                cap <= 0,
                "The reserved value is greater than or equal to total.",
            )
        };
        if bad {
            return Err(Error::bad_request(format!(
                "Unable to update inventory for resource provider {uuid}: Invalid inventory for '{}' on resource provider '{uuid}'. {msg}",
                inv.resource_class
            )));
        }
    }
    Ok(())
}

fn generation_conflict() -> Error {
    Error::conflict("resource provider generation conflict").with_code(codes::CONCURRENT_UPDATE)
}

fn newest(invs: &[InventoryRow]) -> Option<i64> {
    invs.iter().map(|i| i.updated_at).max()
}

pub async fn list(ctx: Ctx, Path(uuid): Path<String>) -> Result<Response> {
    ctx.can("placement:resource_providers:inventories:list")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let Some(rp) = db::provider_get(&mut conn, &uuid).await? else {
        return Err(Error::not_found(format!(
            "No resource provider with uuid {uuid} found : No resource provider with uuid {uuid} found"
        )));
    };
    let invs = db::inventory_list(&mut conn, &uuid).await?;
    let mut res = json_response(StatusCode::OK, &render_all(&invs, rp.generation));
    cache_headers(&mut res, ctx.v, newest(&invs));
    Ok(res)
}

pub async fn show(ctx: Ctx, Path((uuid, class)): Path<(String, String)>) -> Result<Response> {
    ctx.can("placement:resource_providers:inventories:show")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let Some(rp) = db::provider_get(&mut conn, &uuid).await? else {
        return Err(Error::not_found(format!(
            "No resource provider with uuid {uuid} found : No resource provider with uuid {uuid} found"
        )));
    };
    let invs = db::inventory_list(&mut conn, &uuid).await?;
    let Some(inv) = invs.iter().find(|i| i.resource_class == class) else {
        return Err(Error::not_found(format!(
            "No inventory of class {class} for {uuid}"
        )));
    };
    let mut res = json_response(StatusCode::OK, &render_one(inv, Some(rp.generation)));
    cache_headers(&mut res, ctx.v, Some(inv.updated_at));
    Ok(res)
}

pub async fn create(
    ctx: Ctx,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    super::require_json(&headers)?;
    ctx.can("placement:resource_providers:inventories:create")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let rp = get_or_404(&mut tx.tx, &uuid).await?;
    let data = json_body(&headers, &body)?;
    validate_body(&post_schema(), &data)?;
    let class = data["resource_class"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut inv = from_json(&class, &data);
    check_capacity(&ctx, &uuid, std::slice::from_ref(&inv)).map_err(|e| {
        Error::bad_request(
            e.message
                .replacen("Unable to update", "Unable to create", 1),
        )
    })?;
    if !db::class_exists(&mut tx.tx, &class).await? {
        return Err(Error::bad_request(format!(
            "Unable to create inventory for resource provider {uuid}: No such resource class {class}."
        )));
    }
    let existing = db::inventory_list(&mut tx.tx, &uuid).await?;
    if existing.iter().any(|i| i.resource_class == class) {
        return Err(Error::conflict(format!(
            "Update conflict: Inventory for '{class}' on resource provider '{uuid}' already exists."
        ))
        .with_code(codes::CONCURRENT_UPDATE));
    }
    db::inventory_insert(&mut tx.tx, &uuid, &inv).await?;
    if !db::provider_bump_generation(&mut tx.tx, &uuid, rp.generation).await? {
        return Err(Error::concurrent_update());
    }
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    inv.updated_at = store::now_micros();
    let mut res = json_response(
        StatusCode::CREATED,
        &render_one(&inv, Some(rp.generation + 1)),
    );
    let location = format!("{}/inventories/{class}", provider_url(ctx.prefix(), &uuid));
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    cache_headers(&mut res, ctx.v, Some(inv.updated_at));
    Ok(res)
}

pub async fn update(
    ctx: Ctx,
    Path((uuid, class)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    super::require_json(&headers)?;
    ctx.can("placement:resource_providers:inventories:update")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let rp = get_or_404(&mut tx.tx, &uuid).await?;
    let data = json_body(&headers, &body)?;
    validate_body(&base_schema(), &data)?;
    if data["resource_provider_generation"].as_i64() != Some(rp.generation) {
        return Err(generation_conflict());
    }
    let mut inv = from_json(&class, &data);
    check_capacity(&ctx, &uuid, std::slice::from_ref(&inv))?;
    if !db::class_exists(&mut tx.tx, &class).await? {
        return Err(Error::not_found(format!("No such resource class {class}.")));
    }
    if !db::inventory_update(&mut tx.tx, &uuid, &inv).await? {
        return Err(Error::bad_request(format!(
            "No inventory record with resource class for resource provider {uuid}: No inventory of class {class} found."
        )));
    }
    if !db::provider_bump_generation(&mut tx.tx, &uuid, rp.generation).await? {
        return Err(Error::concurrent_update());
    }
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    inv.updated_at = store::now_micros();
    let mut res = json_response(StatusCode::OK, &render_one(&inv, Some(rp.generation + 1)));
    cache_headers(&mut res, ctx.v, Some(inv.updated_at));
    Ok(res)
}

/// Replaces a provider's whole inventory inside `tx` (also used by the
/// reshaper). Refuses to remove a class that has allocations.
pub async fn set_inventory(conn: &mut db::Conn, uuid: &str, invs: &[InventoryRow]) -> Result<()> {
    for inv in invs {
        if !db::class_exists(conn, &inv.resource_class).await? {
            return Err(Error::bad_request(format!(
                "Unknown resource class in inventory for resource provider {uuid}: No such resource class {}.",
                inv.resource_class
            )));
        }
    }
    let existing = db::inventory_list(conn, uuid).await?;
    let usages = db::usages_of_provider(conn, uuid).await?;
    let mut in_use: Vec<&str> = existing
        .iter()
        .filter(|e| !invs.iter().any(|i| i.resource_class == e.resource_class))
        .filter(|e| usages.get(&e.resource_class).is_some_and(|u| *u > 0))
        .map(|e| e.resource_class.as_str())
        .collect();
    in_use.sort_by_key(|c| crate::standard::class_position(c));
    if !in_use.is_empty() {
        return Err(Error::conflict(format!(
            "update conflict: Inventory for '{}' on resource provider '{uuid}' in use.",
            in_use.join(", ")
        ))
        .with_code(codes::INVENTORY_INUSE));
    }
    for e in &existing {
        if !invs.iter().any(|i| i.resource_class == e.resource_class) {
            db::inventory_delete(conn, uuid, &e.resource_class).await?;
        }
    }
    for inv in invs {
        if existing
            .iter()
            .any(|e| e.resource_class == inv.resource_class)
        {
            db::inventory_update(conn, uuid, inv).await?;
        } else {
            db::inventory_insert(conn, uuid, inv).await?;
        }
    }
    Ok(())
}

/// Parses the `inventories` object of a validated body.
pub fn inventories_from_json(v: &Value) -> Vec<InventoryRow> {
    v.as_object()
        .map(|m| m.iter().map(|(class, inv)| from_json(class, inv)).collect())
        .unwrap_or_default()
}

pub async fn replace_all(
    ctx: Ctx,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    super::require_json(&headers)?;
    ctx.can("placement:resource_providers:inventories:update")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let rp = get_or_404(&mut tx.tx, &uuid).await?;
    let data = json_body(&headers, &body)?;
    validate_body(&put_all_schema(), &data)?;
    if data["resource_provider_generation"].as_i64() != Some(rp.generation) {
        return Err(generation_conflict());
    }
    let invs = inventories_from_json(&data["inventories"]);
    check_capacity(&ctx, &uuid, &invs)?;
    set_inventory(&mut tx.tx, &uuid, &invs).await?;
    if !db::provider_bump_generation(&mut tx.tx, &uuid, rp.generation).await? {
        return Err(Error::concurrent_update());
    }
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    let mut res = json_response(StatusCode::OK, &render_all(&invs, rp.generation + 1));
    cache_headers(&mut res, ctx.v, None);
    Ok(res)
}

pub async fn delete_all(ctx: Ctx, Path(uuid): Path<String>) -> Result<Response> {
    if !ctx.at_least(5) {
        return Err(super::method_not_allowed("GET, POST, PUT"));
    }
    ctx.can("placement:resource_providers:inventories:delete")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let rp = get_or_404(&mut tx.tx, &uuid).await?;
    set_inventory(&mut tx.tx, &uuid, &[]).await.map_err(|e| {
        if e.code == codes::INVENTORY_INUSE {
            Error::conflict(e.message.replacen("update conflict: ", "", 1))
                .with_code(codes::INVENTORY_INUSE)
        } else {
            e
        }
    })?;
    if !db::provider_bump_generation(&mut tx.tx, &uuid, rp.generation).await? {
        return Err(Error::conflict(format!(
            "Unable to delete inventory for resource provider {uuid} because the inventory was updated by another process. Please retry your request."
        ))
        .with_code(codes::CONCURRENT_UPDATE));
    }
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    Ok(no_content())
}

pub async fn delete(ctx: Ctx, Path((uuid, class)): Path<(String, String)>) -> Result<Response> {
    ctx.can("placement:resource_providers:inventories:delete")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let rp = get_or_404(&mut tx.tx, &uuid).await?;
    if !db::class_exists(&mut tx.tx, &class).await? {
        return Err(Error::not_found(format!("No such resource class {class}.")));
    }
    let usages = db::usages_of_provider(&mut tx.tx, &uuid).await?;
    if usages.get(&class).is_some_and(|u| *u > 0) {
        return Err(Error::conflict(format!(
            "Unable to delete inventory of class {class}: Inventory for '{class}' on resource provider '{uuid}' in use."
        ))
        .with_code(codes::CONCURRENT_UPDATE));
    }
    if !db::inventory_delete(&mut tx.tx, &uuid, &class).await? {
        return Err(Error::not_found(format!(
            "No inventory of class {class} found for delete: No inventory of class {class} found for delete"
        )));
    }
    if !db::provider_bump_generation(&mut tx.tx, &uuid, rp.generation).await? {
        return Err(Error::conflict(format!(
            "Unable to delete inventory of class {class}: Another thread concurrently updated the resource provider data. Please retry your update"
        ))
        .with_code(codes::CONCURRENT_UPDATE));
    }
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    Ok(no_content())
}
