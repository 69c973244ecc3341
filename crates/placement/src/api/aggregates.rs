//! /resource_providers/{uuid}/aggregates (1.1; generations from 1.19).

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use super::providers::get_or_404;
use super::{cache_headers, json_body, json_response, Ctx};
use crate::cache::{commit, Changes};
use crate::db;
use crate::error::{codes, Error, Result};
use crate::schema::{validate_body, ObjectSchema, Schema};

fn list_schema() -> Schema {
    Schema::Array {
        items: Some(Box::new(Schema::uuid())),
        min_items: None,
        max_items: None,
        unique: true,
    }
}

fn send(ctx: &Ctx, aggregates: &[String], generation: i64) -> Response {
    let mut body = json!({ "aggregates": aggregates });
    if ctx.at_least(19) {
        body["resource_provider_generation"] = json!(generation);
    }
    let mut res = json_response(StatusCode::OK, &body);
    cache_headers(&mut res, ctx.v, None);
    res
}

pub async fn list(ctx: Ctx, Path(uuid): Path<String>) -> Result<Response> {
    if !ctx.at_least(1) {
        return Err(Error::not_found(""));
    }
    ctx.can("placement:resource_providers:aggregates:list")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let rp = get_or_404(&mut conn, &uuid).await?;
    let aggs = db::aggregates_of_provider(&mut conn, &uuid).await?;
    Ok(send(&ctx, &aggs, rp.generation))
}

pub async fn replace(
    ctx: Ctx,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    if !ctx.at_least(1) {
        return Err(Error::not_found(""));
    }
    super::require_json(&headers)?;
    ctx.can("placement:resource_providers:aggregates:update")?;
    let with_generation = ctx.at_least(19);
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let rp = get_or_404(&mut tx.tx, &uuid).await?;
    let data = json_body(&headers, &body)?;
    let aggs_json: Value = if with_generation {
        let schema = Schema::object(ObjectSchema {
            properties: vec![
                ("aggregates", list_schema()),
                ("resource_provider_generation", Schema::integer(None, None)),
            ],
            required: vec!["aggregates", "resource_provider_generation"],
            additional: Some(None),
            ..Default::default()
        });
        validate_body(&schema, &data)?;
        if data["resource_provider_generation"].as_i64() != Some(rp.generation) {
            return Err(Error::conflict(
                "Resource provider's generation already changed. Please update the generation and try again.",
            )
            .with_code(codes::CONCURRENT_UPDATE));
        }
        data["aggregates"].clone()
    } else {
        validate_body(&list_schema(), &data)?;
        data
    };
    let aggs: Vec<String> = aggs_json
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    db::provider_aggregates_replace(&mut tx.tx, &uuid, &aggs).await?;
    let mut generation = rp.generation;
    if with_generation {
        if !db::provider_bump_generation(&mut tx.tx, &uuid, rp.generation).await? {
            return Err(Error::conflict(
                "Update conflict: Another thread concurrently updated the resource provider data. Please retry your update",
            )
            .with_code(codes::CONCURRENT_UPDATE));
        }
        generation += 1;
    }
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    Ok(send(&ctx, &aggs, generation))
}
