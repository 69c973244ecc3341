//! POST /reshaper (1.30): move inventory and allocations atomically.

use axum::http::HeaderMap;
use axum::response::Response;
use bytes::Bytes;
use serde_json::Value;

use super::allocations::{write_allocations, ConsumerRequest, WriteError};
use super::inventories::{check_capacity, inventories_from_json, put_all_schema, set_inventory};
use super::{json_body, no_content, Ctx};
use crate::cache::commit;
use crate::db;
use crate::error::{codes, Error, Result};
use crate::schema::{pattern_prop, validate_body, ObjectSchema, Schema};

const UUID_PATTERN: &str = "^[0-9a-fA-F-]{36}$";

fn schema(minor: u16) -> Schema {
    let allocations = Schema::object(ObjectSchema {
        pattern_properties: pattern_prop(
            UUID_PATTERN,
            super::allocations::consumer_schema_for_post(minor),
        )
        .into_iter()
        .collect(),
        additional: Some(None),
        ..Default::default()
    });
    Schema::object(ObjectSchema {
        properties: vec![
            (
                "inventories",
                Schema::object(ObjectSchema {
                    pattern_properties: pattern_prop(UUID_PATTERN, put_all_schema())
                        .into_iter()
                        .collect(),
                    min_properties: Some(1),
                    additional: Some(None),
                    ..Default::default()
                }),
            ),
            ("allocations", allocations),
        ],
        required: vec!["inventories", "allocations"],
        additional: Some(None),
        ..Default::default()
    })
}

pub async fn reshape(ctx: Ctx, headers: HeaderMap, body: Bytes) -> Result<Response> {
    if !ctx.at_least(30) {
        return Err(Error::not_found(""));
    }
    super::require_json(&headers)?;
    ctx.can("placement:reshaper:reshape")?;
    let data = json_body(&headers, &body)?;
    validate_body(&schema(ctx.v.0), &data)?;
    // Consumer bodies follow POST /allocations at 1.28 at least.
    let minor = ctx.v.0.max(28);
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let mut inventories = Vec::new();
    if let Some(m) = data["inventories"].as_object() {
        for (rp, inv) in m {
            let Some(row) = db::provider_get(&mut tx.tx, rp).await? else {
                return Err(Error::bad_request(format!(
                    "Resource provider {rp} in inventories not found: No resource provider with uuid {rp} found"
                ))
                .with_code(codes::RESOURCE_PROVIDER_NOT_FOUND));
            };
            let given = inv["resource_provider_generation"].as_i64();
            if given != Some(row.generation) {
                return Err(Error::conflict(format!(
                    "resource provider generation conflict for provider {rp}: actual: {}, given: {}",
                    row.generation,
                    given.map_or("None".to_string(), |g| g.to_string())
                ))
                .with_code(codes::CONCURRENT_UPDATE));
            }
            let invs = inventories_from_json(&inv["inventories"]);
            check_capacity(&ctx, rp, &invs)?;
            inventories.push((rp.clone(), row.generation, invs));
        }
    }
    let consumers: Vec<ConsumerRequest> = data["allocations"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(c, v): (&String, &Value)| ConsumerRequest::from_json(c, minor, v))
                .collect()
        })
        .unwrap_or_default();
    let mut changes = crate::cache::Changes::default();
    let reshape_error = |e: Error| {
        if e.message.starts_with("Unknown resource class") {
            let class = e
                .message
                .rsplit("No such resource class ")
                .next()
                .unwrap_or_default()
                .to_string();
            Error::bad_request(format!(
                "malformed reshaper data: No such resource class {class}"
            ))
        } else {
            e
        }
    };
    // Interim inventory: the union of old and new, so that allocations can move.
    for (rp, generation, invs) in &inventories {
        changes.add(rp);
        let mut interim = db::inventory_list(&mut tx.tx, rp).await?;
        for inv in invs {
            interim.retain(|i| i.resource_class != inv.resource_class);
            interim.push(inv.clone());
        }
        if !invs.is_empty() {
            set_inventory(&mut tx.tx, rp, &interim)
                .await
                .map_err(reshape_error)?;
            if !db::provider_bump_generation(&mut tx.tx, rp, *generation).await? {
                return Err(conflict());
            }
        }
    }
    match write_allocations(&mut tx.tx, ctx.v.0.max(minor), &consumers).await {
        Ok(c) => changes.providers.extend(c.providers),
        Err(WriteError::Api(e)) => return Err(e),
        Err(WriteError::Retry) => return Err(conflict()),
        Err(WriteError::NoSuchClass(c)) => {
            return Err(Error::bad_request(format!(
                "malformed reshaper data: No such resource class {c}."
            )))
        }
        Err(WriteError::Invalid(m)) => {
            return Err(Error::conflict(format!(
                "Unable to allocate inventory: {m}"
            )))
        }
    }
    for (rp, _, invs) in &inventories {
        set_inventory(&mut tx.tx, rp, invs)
            .await
            .map_err(reshape_error)?;
        let current = db::provider_get(&mut tx.tx, rp)
            .await?
            .map_or(0, |r| r.generation);
        if !db::provider_bump_generation(&mut tx.tx, rp, current).await? {
            return Err(conflict());
        }
    }
    commit(&p.db, &p.cache, tx, changes).await?;
    Ok(no_content())
}

fn conflict() -> Error {
    Error::conflict(
        "update conflict: Another thread concurrently updated the resource provider data. Please retry your update",
    )
    .with_code(codes::CONCURRENT_UPDATE)
}
