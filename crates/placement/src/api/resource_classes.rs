//! /resource_classes (1.2; PUT creates from 1.7).

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use store::sqlx::{self, Row};

use super::{cache_headers, json_body, json_response, no_content, Ctx};
use crate::cache::{commit, Changes};
use crate::db;
use crate::error::{Error, Result};
use crate::schema::{validate_body, ObjectSchema, Schema};

fn since_1_2(ctx: &Ctx) -> Result<()> {
    if ctx.at_least(2) {
        Ok(())
    } else {
        Err(Error::not_found(""))
    }
}

fn name_schema() -> Schema {
    Schema::object(ObjectSchema {
        properties: vec![(
            "name",
            Schema::pattern_len("^CUSTOM_[A-Z0-9_]+$", None, Some(255)),
        )],
        required: vec!["name"],
        additional: Some(None),
        ..Default::default()
    })
}

fn url(ctx: &Ctx, name: &str) -> String {
    format!("{}/resource_classes/{name}", ctx.prefix())
}

fn render(ctx: &Ctx, name: &str) -> Value {
    json!({"name": name, "links": [{"rel": "self", "href": url(ctx, name)}]})
}

fn with_location(mut res: Response, location: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// (standard, created_at) of a class, if it exists.
async fn get(conn: &mut db::Conn, name: &str) -> Result<Option<(bool, i64)>> {
    let row = sqlx::query(
        "SELECT standard, COALESCE(updated_at, created_at) FROM placement_resource_classes \
         WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => Some((r.try_get::<i64, _>(0)? != 0, r.try_get::<i64, _>(1)?)),
        None => None,
    })
}

async fn insert(conn: &mut db::Conn, name: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO placement_resource_classes (name, standard, created_at) VALUES ($1, 0, $2)",
    )
    .bind(name)
    .bind(store::now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn list(ctx: Ctx) -> Result<Response> {
    since_1_2(&ctx)?;
    ctx.can("placement:resource_classes:list")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let classes = db::class_names(&mut conn).await?;
    let newest = classes.iter().map(|(_, _, u)| *u).max();
    let items: Vec<Value> = classes.iter().map(|(n, _, _)| render(&ctx, n)).collect();
    let mut res = json_response(StatusCode::OK, &json!({ "resource_classes": items }));
    cache_headers(&mut res, ctx.v, newest);
    Ok(res)
}

pub async fn show(ctx: Ctx, Path(name): Path<String>) -> Result<Response> {
    since_1_2(&ctx)?;
    ctx.can("placement:resource_classes:show")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let Some((_, modified)) = get(&mut conn, &name).await? else {
        return Err(Error::not_found(format!("No such resource class {name}.")));
    };
    let mut res = json_response(StatusCode::OK, &render(&ctx, &name));
    cache_headers(&mut res, ctx.v, Some(modified));
    Ok(res)
}

pub async fn create(ctx: Ctx, headers: HeaderMap, body: Bytes) -> Result<Response> {
    since_1_2(&ctx)?;
    super::require_json(&headers)?;
    ctx.can("placement:resource_classes:create")?;
    let data = json_body(&headers, &body)?;
    validate_body(&name_schema(), &data)?;
    let name = data["name"].as_str().unwrap_or_default().to_string();
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    if get(&mut tx.tx, &name).await?.is_some() {
        return Err(Error::conflict(format!(
            "Conflicting resource class already exists: {name}"
        )));
    }
    insert(&mut tx.tx, &name).await?;
    commit(&p.db, &p.cache, tx, Changes::classes()).await?;
    Ok(with_location(
        StatusCode::CREATED.into_response(),
        &url(&ctx, &name),
    ))
}

pub async fn update(
    ctx: Ctx,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    since_1_2(&ctx)?;
    if !ctx.at_least(7) {
        super::require_json(&headers)?;
    }
    ctx.can("placement:resource_classes:update")?;
    let p = &ctx.p;
    if ctx.at_least(7) {
        // Bodiless create-or-confirm.
        validate_body(&name_schema(), &json!({ "name": name }))?;
        let mut tx = p.db.write().await?;
        let status = if get(&mut tx.tx, &name).await?.is_some() {
            StatusCode::NO_CONTENT
        } else {
            insert(&mut tx.tx, &name).await?;
            commit(&p.db, &p.cache, tx, Changes::classes()).await?;
            StatusCode::CREATED
        };
        return Ok(with_location(status.into_response(), &url(&ctx, &name)));
    }
    let data = json_body(&headers, &body)?;
    validate_body(&name_schema(), &data)?;
    let new_name = data["name"].as_str().unwrap_or_default().to_string();
    let mut tx = p.db.write().await?;
    let Some((standard, _)) = get(&mut tx.tx, &name).await? else {
        return Err(Error::not_found(format!("No such resource class {name}.")));
    };
    if standard {
        return Err(Error::bad_request(format!(
            "Cannot update standard resource class {name}"
        )));
    }
    if get(&mut tx.tx, &new_name).await?.is_some() {
        return Err(Error::conflict(format!(
            "Resource class already exists: {new_name}"
        )));
    }
    insert(&mut tx.tx, &new_name).await?;
    let mut changes = Changes::classes();
    let touched = sqlx::query(
        "SELECT DISTINCT provider_uuid FROM placement_inventories WHERE resource_class = $1 \
         UNION SELECT DISTINCT provider_uuid FROM placement_allocations WHERE resource_class = $1",
    )
    .bind(&name)
    .fetch_all(&mut *tx.tx)
    .await?;
    for r in touched {
        changes.add(&r.try_get::<String, _>(0)?);
    }
    for sql in [
        "UPDATE placement_inventories SET resource_class = $2 WHERE resource_class = $1",
        "UPDATE placement_allocations SET resource_class = $2 WHERE resource_class = $1",
    ] {
        sqlx::query(sql)
            .bind(&name)
            .bind(&new_name)
            .execute(&mut *tx.tx)
            .await?;
    }
    sqlx::query("DELETE FROM placement_resource_classes WHERE name = $1")
        .bind(&name)
        .execute(&mut *tx.tx)
        .await?;
    commit(&p.db, &p.cache, tx, changes).await?;
    Ok(json_response(StatusCode::OK, &render(&ctx, &new_name)))
}

pub async fn delete(ctx: Ctx, Path(name): Path<String>) -> Result<Response> {
    since_1_2(&ctx)?;
    ctx.can("placement:resource_classes:delete")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let Some((standard, _)) = get(&mut tx.tx, &name).await? else {
        return Err(Error::not_found(format!("No such resource class {name}.")));
    };
    if standard {
        return Err(Error::bad_request(format!(
            "Error in delete resource class: Cannot delete standard resource class {name}."
        )));
    }
    let used = sqlx::query(
        "SELECT 1 FROM placement_inventories WHERE resource_class = $1 \
         UNION SELECT 1 FROM placement_allocations WHERE resource_class = $1",
    )
    .bind(&name)
    .fetch_optional(&mut *tx.tx)
    .await?;
    if used.is_some() {
        return Err(Error::conflict(format!(
            "Error in delete resource class: Cannot delete resource class {name}. Class is in use in inventory."
        )));
    }
    sqlx::query("DELETE FROM placement_resource_classes WHERE name = $1")
        .bind(&name)
        .execute(&mut *tx.tx)
        .await?;
    commit(&p.db, &p.cache, tx, Changes::classes()).await?;
    Ok(no_content())
}
