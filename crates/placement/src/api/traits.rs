//! /traits and /resource_providers/{uuid}/traits (1.6).

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use store::sqlx::{self, Row};

use super::providers::get_or_404;
use super::{bad_query, cache_headers, json_body, json_response, no_content, query_pairs, Ctx};
use crate::cache::{commit, Changes};
use crate::db;
use crate::error::{codes, Error, Result};
use crate::schema::{validate_body, ObjectSchema, Schema};

fn since_1_6(ctx: &Ctx) -> Result<()> {
    if ctx.at_least(6) {
        Ok(())
    } else {
        Err(Error::not_found(""))
    }
}

fn valid_custom(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.strip_prefix("CUSTOM_").is_some_and(|r| {
            !r.is_empty()
                && r.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
}

pub async fn create(ctx: Ctx, Path(name): Path<String>) -> Result<Response> {
    since_1_6(&ctx)?;
    ctx.can("placement:traits:update")?;
    if !valid_custom(&name) {
        return Err(Error::bad_request(
            "The trait is invalid. A valid trait must be no longer than 255 characters, start with the prefix \"CUSTOM_\" and use following characters: \"A\"-\"Z\", \"0\"-\"9\" and \"_\"",
        ));
    }
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let existing = sqlx::query("SELECT created_at FROM placement_traits WHERE name = $1")
        .bind(&name)
        .fetch_optional(&mut *tx.tx)
        .await?;
    let (status, created_at) = match existing {
        Some(r) => (StatusCode::NO_CONTENT, r.try_get::<i64, _>(0)?),
        None => {
            let now = store::now_micros();
            sqlx::query(
                "INSERT INTO placement_traits (name, standard, created_at) VALUES ($1, 0, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&name)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
            commit(&p.db, &p.cache, tx, Changes::traits()).await?;
            (StatusCode::CREATED, now)
        }
    };
    let mut res = status.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/traits/{name}", ctx.prefix())) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    cache_headers(&mut res, ctx.v, Some(created_at));
    Ok(res)
}

pub async fn show(ctx: Ctx, Path(name): Path<String>) -> Result<Response> {
    since_1_6(&ctx)?;
    ctx.can("placement:traits:show")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let row = sqlx::query("SELECT created_at FROM placement_traits WHERE name = $1")
        .bind(&name)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Err(Error::not_found(format!("No such trait(s): {name}.")));
    };
    let mut res = no_content();
    cache_headers(&mut res, ctx.v, Some(row.try_get::<i64, _>(0)?));
    Ok(res)
}

pub async fn delete(ctx: Ctx, Path(name): Path<String>) -> Result<Response> {
    since_1_6(&ctx)?;
    ctx.can("placement:traits:delete")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let row = sqlx::query("SELECT standard FROM placement_traits WHERE name = $1")
        .bind(&name)
        .fetch_optional(&mut *tx.tx)
        .await?;
    let Some(row) = row else {
        return Err(Error::not_found(format!("No such trait(s): {name}.")));
    };
    if row.try_get::<i64, _>(0)? != 0 {
        return Err(Error::bad_request(format!(
            "Cannot delete standard trait {name}."
        )));
    }
    let used = sqlx::query("SELECT 1 FROM placement_provider_traits WHERE trait = $1 LIMIT 1")
        .bind(&name)
        .fetch_optional(&mut *tx.tx)
        .await?;
    if used.is_some() {
        return Err(Error::conflict(format!(
            "The trait {name} is in use by a resource provider."
        )));
    }
    sqlx::query("DELETE FROM placement_traits WHERE name = $1")
        .bind(&name)
        .execute(&mut *tx.tx)
        .await?;
    commit(&p.db, &p.cache, tx, Changes::traits()).await?;
    Ok(no_content())
}

pub async fn list(ctx: Ctx, uri: Uri) -> Result<Response> {
    since_1_6(&ctx)?;
    ctx.can("placement:traits:list")?;
    let pairs = query_pairs(&uri);
    let mut name_in: Option<Vec<String>> = None;
    let mut prefix: Option<String> = None;
    let mut associated: Option<bool> = None;
    let mut seen_name = None;
    let mut seen_assoc = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "name" => seen_name = Some(v.clone()),
            "associated" => seen_assoc = Some(v.clone()),
            other => {
                return Err(bad_query(format!(
                    "Additional properties are not allowed ('{other}' was unexpected)"
                )))
            }
        }
    }
    if let Some(v) = seen_name {
        let Some((op, value)) = v.split_once(':') else {
            return Err(Error::bad_request(format!(
                "Badly formatted name parameter. Expected name query string parameter in form: ?name=[in|startswith]:[name1,name2|prefix]. Got: \"{v}\""
            )));
        };
        match op {
            "in" => name_in = Some(value.split(',').map(str::to_string).collect()),
            "startswith" => prefix = Some(value.to_string()),
            _ => {}
        }
    }
    if let Some(a) = seen_assoc {
        associated = match a.to_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                return Err(Error::bad_request(
                    "The query parameter \"associated\" only accepts \"true\" or \"false\"",
                ))
            }
        };
    }
    let mut conn = ctx.p.db.pool().acquire().await?;
    let rows = sqlx::query(
        "SELECT t.name, t.created_at, \
         EXISTS (SELECT 1 FROM placement_provider_traits pt WHERE pt.trait = t.name) \
         FROM placement_traits t ORDER BY t.name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut names = Vec::new();
    let mut newest: Option<i64> = None;
    for r in rows {
        let name: String = r.try_get(0)?;
        let created: i64 = r.try_get(1)?;
        let assoc: bool = match r.try_get::<bool, _>(2) {
            Ok(b) => b,
            Err(_) => r.try_get::<i64, _>(2)? != 0,
        };
        if name_in.as_ref().is_some_and(|l| !l.contains(&name)) {
            continue;
        }
        if prefix
            .as_ref()
            .is_some_and(|p| !name.starts_with(p.as_str()))
        {
            continue;
        }
        if associated.is_some_and(|a| a != assoc) {
            continue;
        }
        newest = Some(newest.map_or(created, |n| n.max(created)));
        names.push(name);
    }
    let mut res = json_response(StatusCode::OK, &json!({ "traits": names }));
    cache_headers(&mut res, ctx.v, newest);
    Ok(res)
}

pub async fn provider_list(ctx: Ctx, Path(uuid): Path<String>) -> Result<Response> {
    since_1_6(&ctx)?;
    ctx.can("placement:resource_providers:traits:list")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let Some(rp) = db::provider_get(&mut conn, &uuid).await? else {
        return Err(Error::not_found(format!(
            "No resource provider with uuid {uuid} found: No resource provider with uuid {uuid} found"
        )));
    };
    let traits = db::traits_of_provider(&mut conn, &uuid).await?;
    let mut res = json_response(
        StatusCode::OK,
        &json!({ "traits": traits, "resource_provider_generation": rp.generation }),
    );
    cache_headers(&mut res, ctx.v, None);
    Ok(res)
}

pub async fn provider_replace(
    ctx: Ctx,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    since_1_6(&ctx)?;
    super::require_json(&headers)?;
    ctx.can("placement:resource_providers:traits:update")?;
    let data = json_body(&headers, &body)?;
    let schema = Schema::object(ObjectSchema {
        properties: vec![
            (
                "traits",
                Schema::array(Schema::string_len(Some(1), Some(255))),
            ),
            ("resource_provider_generation", Schema::integer(None, None)),
        ],
        required: vec!["traits", "resource_provider_generation"],
        additional: Some(None),
        ..Default::default()
    });
    validate_body(&schema, &data)?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let rp = get_or_404(&mut tx.tx, &uuid).await?;
    if data["resource_provider_generation"].as_i64() != Some(rp.generation) {
        return Err(Error::conflict(
            "Resource provider's generation already changed. Please update the generation and try again.",
        )
        .with_code(codes::CONCURRENT_UPDATE));
    }
    let mut traits: Vec<String> = data["traits"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    traits.sort();
    traits.dedup();
    let existing = db::traits_existing(&mut tx.tx, &traits).await?;
    let missing: Vec<&str> = traits
        .iter()
        .filter(|t| !existing.contains(*t))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Error::bad_request(format!(
            "No such trait {}",
            missing.join(", ")
        )));
    }
    db::provider_traits_replace(&mut tx.tx, &uuid, &traits).await?;
    if !db::provider_bump_generation(&mut tx.tx, &uuid, rp.generation).await? {
        return Err(Error::concurrent_update());
    }
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    let mut res = json_response(
        StatusCode::OK,
        &json!({ "traits": traits, "resource_provider_generation": rp.generation + 1 }),
    );
    cache_headers(&mut res, ctx.v, None);
    Ok(res)
}

pub async fn provider_delete(ctx: Ctx, Path(uuid): Path<String>) -> Result<Response> {
    since_1_6(&ctx)?;
    ctx.can("placement:resource_providers:traits:delete")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let rp = get_or_404(&mut tx.tx, &uuid).await?;
    db::provider_traits_replace(&mut tx.tx, &uuid, &[]).await?;
    if !db::provider_bump_generation(&mut tx.tx, &uuid, rp.generation).await? {
        return Err(Error::concurrent_update());
    }
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    Ok(no_content())
}
