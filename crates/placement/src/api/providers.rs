//! /resource_providers and /resource_providers/{uuid}.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;

use super::{cache_headers, json_body, json_response, no_content, provider_url, query_pairs, Ctx};
use crate::cache::{commit, Changes};
use crate::db::{self, ProviderRow};
use crate::error::{codes, Error, Result};
use crate::schema::{validate_body, ObjectSchema, Schema};
use crate::Placement;

#[derive(serde::Serialize)]
struct ListOut<'a> {
    resource_providers: Vec<ProviderOut<'a>>,
}

#[derive(serde::Serialize)]
struct ProviderOut<'a> {
    uuid: &'a str,
    name: &'a str,
    generation: i64,
    links: Vec<LinkOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_provider_uuid: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root_provider_uuid: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct LinkOut {
    rel: &'static str,
    href: String,
}

fn link_list(ctx: &Ctx, uuid: &str) -> Vec<LinkOut> {
    let url = provider_url(ctx.prefix(), uuid);
    let mut rels = vec!["inventories", "usages"];
    if ctx.at_least(1) {
        rels.push("aggregates");
    }
    if ctx.at_least(6) {
        rels.push("traits");
    }
    if ctx.at_least(11) {
        rels.push("allocations");
    }
    let mut out = Vec::with_capacity(rels.len() + 1);
    for r in rels {
        out.push(LinkOut {
            rel: r,
            href: format!("{url}/{r}"),
        });
    }
    out.insert(
        0,
        LinkOut {
            rel: "self",
            href: url,
        },
    );
    out
}

fn links(ctx: &Ctx, uuid: &str) -> Value {
    serde_json::to_value(link_list(ctx, uuid)).unwrap_or(Value::Null)
}

pub fn render(
    ctx: &Ctx,
    uuid: &str,
    name: &str,
    generation: i64,
    parent: Option<&str>,
    root: &str,
) -> Value {
    let mut v = json!({
        "uuid": uuid,
        "name": name,
        "generation": generation,
        "links": links(ctx, uuid),
    });
    if ctx.at_least(14) {
        v["parent_provider_uuid"] = json!(parent);
        v["root_provider_uuid"] = json!(root);
    }
    v
}

fn render_row(ctx: &Ctx, p: &ProviderRow) -> Value {
    render(
        ctx,
        &p.uuid,
        &p.name,
        p.generation,
        p.parent_uuid.as_deref(),
        &p.root_uuid,
    )
}

fn body_schema(ctx: &Ctx, with_uuid: bool) -> Schema {
    let mut props = vec![("name", Schema::string_len(None, Some(200)))];
    if with_uuid {
        props.push(("uuid", Schema::uuid()));
    }
    if ctx.at_least(14) {
        props.push((
            "parent_provider_uuid",
            Schema::AnyOf(vec![Schema::uuid(), Schema::Null]),
        ));
    }
    Schema::object(ObjectSchema {
        properties: props,
        required: vec!["name"],
        additional: Some(None),
        ..Default::default()
    })
}

/// Fetches a provider or answers upstream's 404.
pub async fn get_or_404(conn: &mut db::Conn, uuid: &str) -> Result<ProviderRow> {
    db::provider_get(conn, uuid)
        .await?
        .ok_or_else(|| Error::provider_not_found(uuid))
}

pub async fn create(ctx: Ctx, headers: HeaderMap, body: Bytes) -> Result<Response> {
    super::require_json(&headers)?;
    ctx.can("placement:resource_providers:create")?;
    let data = json_body(&headers, &body)?;
    validate_body(&body_schema(&ctx, true), &data)?;
    let name = data["name"].as_str().unwrap_or_default().to_string();
    let uuid = match data.get("uuid").and_then(Value::as_str) {
        Some(u) => uuid::Uuid::parse_str(u)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| Error::bad_request("bad uuid"))?,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let parent = data
        .get("parent_provider_uuid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let action_error = |reason: &str| {
        Error::bad_request(format!(
            "Unable to create resource provider \"{name}\", {uuid}: Object action create failed because: {reason}"
        ))
    };
    let root = match &parent {
        None => uuid.clone(),
        Some(pu) if *pu == uuid => {
            return Err(action_error(
                "parent provider UUID cannot be same as UUID. Please set parent provider UUID to None if there is no parent.",
            ))
        }
        Some(pu) => match db::provider_get(&mut tx.tx, pu).await? {
            Some(parent) => parent.root_uuid,
            None => return Err(action_error("parent provider UUID does not exist.")),
        },
    };
    let mut dups = Vec::new();
    if db::provider_get(&mut tx.tx, &uuid).await?.is_some() {
        dups.push(format!("uuid: {uuid}"));
    }
    if db::provider_by_name(&mut tx.tx, &name).await?.is_some() {
        dups.push(format!("name: {name}"));
    }
    if !dups.is_empty() {
        return Err(Error::conflict(format!(
            "Conflicting resource provider {} already exists.",
            dups.join(", ")
        ))
        .with_code(codes::DUPLICATE_NAME));
    }
    let row = ProviderRow {
        uuid: uuid.clone(),
        name: name.clone(),
        generation: 0,
        parent_uuid: parent,
        root_uuid: root,
        created_at: store::now_micros(),
        updated_at: store::now_micros(),
    };
    if let Err(e) = db::provider_insert(&mut tx.tx, &row).await {
        if store::is_unique_violation(&e) {
            return Err(Error::conflict(format!(
                "Conflicting resource provider name: {name} already exists."
            ))
            .with_code(codes::DUPLICATE_NAME));
        }
        return Err(e.into());
    }
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    let location = provider_url(ctx.prefix(), &uuid);
    let mut res = if ctx.at_least(20) {
        let mut res = json_response(StatusCode::OK, &render_row(&ctx, &row));
        cache_headers(&mut res, ctx.v, Some(row.updated_at));
        res
    } else {
        StatusCode::CREATED.into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

pub async fn show(ctx: Ctx, Path(uuid): Path<String>) -> Result<Response> {
    ctx.can("placement:resource_providers:show")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let row = get_or_404(&mut conn, &uuid).await?;
    let mut res = json_response(StatusCode::OK, &render_row(&ctx, &row));
    cache_headers(&mut res, ctx.v, Some(row.updated_at));
    Ok(res)
}

pub async fn list(ctx: Ctx, State(p): State<Arc<Placement>>, uri: Uri) -> Result<Response> {
    ctx.can("placement:resource_providers:list")?;
    let pairs = query_pairs(&uri);
    let filter = placement_engine::parse_providers_query(&pairs, ctx.v.0)
        .map_err(super::candidates::engine_error)?;
    p.cache.refresh(&p.db).await?;
    // Serialized straight from the model: a listing of tens of thousands of
    // providers never becomes a tree of JSON values.
    let body = {
        let model = p.cache.read();
        let found = model
            .providers_matching(&filter)
            .map_err(super::candidates::engine_error)?;
        let with_tree = ctx.at_least(14);
        let out = ListOut {
            resource_providers: found
                .iter()
                .map(|rec| ProviderOut {
                    uuid: &rec.uuid,
                    name: &rec.name,
                    generation: rec.generation,
                    links: link_list(&ctx, &rec.uuid),
                    parent_provider_uuid: with_tree.then_some(rec.parent_uuid.as_deref()),
                    root_provider_uuid: with_tree.then_some(rec.root_uuid.as_str()),
                })
                .collect(),
        };
        serde_json::to_string(&out).map_err(Error::internal)?
    };
    let newest = None;
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    cache_headers(&mut res, ctx.v, newest);
    Ok(res)
}

pub async fn update(
    ctx: Ctx,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    super::require_json(&headers)?;
    ctx.can("placement:resource_providers:update")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let row = get_or_404(&mut tx.tx, &uuid).await?;
    let data = json_body(&headers, &body)?;
    validate_body(&body_schema(&ctx, false), &data)?;
    let name = data["name"].as_str().unwrap_or_default().to_string();
    let allow_reparenting = ctx.at_least(37);
    let fail = |reason: &str| {
        Error::bad_request(format!(
            "Unable to save resource provider {uuid}: Object action update failed because: {reason}"
        ))
    };
    let mut changes = Changes::provider(&uuid);
    let (mut parent, mut root) = (row.parent_uuid.clone(), row.root_uuid.clone());
    let mut subtree_root: Option<(Vec<String>, String)> = None;
    if let Some(new_parent) = data.get("parent_provider_uuid") {
        match new_parent.as_str() {
            Some(np) => {
                let Some(parent_row) = db::provider_get(&mut tx.tx, np).await? else {
                    return Err(Error::bad_request(format!(
                        "Unable to save resource provider {uuid}: Object action create failed because: parent provider UUID does not exist."
                    )));
                };
                if row.parent_uuid.is_some()
                    && row.parent_uuid.as_deref() != Some(np)
                    && !allow_reparenting
                {
                    return Err(fail("re-parenting a provider is not currently allowed."));
                }
                let descendants = db::provider_descendants(&mut tx.tx, &uuid).await?;
                if np == uuid || descendants.iter().any(|d| d == np) {
                    return Err(fail("creating loop in the provider tree is not allowed."));
                }
                parent = Some(np.to_string());
                root = parent_row.root_uuid.clone();
                subtree_root = Some((descendants, root.clone()));
            }
            None => {
                if row.parent_uuid.is_some() {
                    if !allow_reparenting {
                        return Err(fail("un-parenting a provider is not currently allowed."));
                    }
                    let descendants = db::provider_descendants(&mut tx.tx, &uuid).await?;
                    parent = None;
                    root = uuid.clone();
                    subtree_root = Some((descendants, uuid.clone()));
                }
            }
        }
    }
    if name != row.name {
        if let Some(other) = db::provider_by_name(&mut tx.tx, &name).await? {
            if other.uuid != uuid {
                return Err(Error::conflict(format!(
                    "Conflicting resource provider {name} already exists."
                ))
                .with_code(codes::DUPLICATE_NAME));
            }
        }
    }
    let updated_at =
        db::provider_update(&mut tx.tx, &uuid, &name, parent.as_deref(), &root).await?;
    if let Some((descendants, new_root)) = subtree_root {
        db::provider_set_root(&mut tx.tx, &descendants, &new_root).await?;
        for d in &descendants {
            changes.add(d);
        }
    }
    commit(&p.db, &p.cache, tx, changes).await?;
    let mut res = json_response(
        StatusCode::OK,
        &render(&ctx, &uuid, &name, row.generation, parent.as_deref(), &root),
    );
    cache_headers(&mut res, ctx.v, Some(updated_at));
    Ok(res)
}

pub async fn delete(ctx: Ctx, Path(uuid): Path<String>) -> Result<Response> {
    ctx.can("placement:resource_providers:delete")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    if db::provider_get(&mut tx.tx, &uuid).await?.is_none() {
        return Err(Error::not_found(format!(
            "No resource provider with uuid {uuid} found for delete"
        )));
    }
    if db::provider_has_children(&mut tx.tx, &uuid).await? {
        return Err(Error::conflict(format!(
            "Unable to delete parent resource provider {uuid}: It has child resource providers."
        ))
        .with_code(codes::PROVIDER_CANNOT_DELETE_PARENT));
    }
    if db::provider_has_allocations(&mut tx.tx, &uuid).await? {
        return Err(Error::conflict(format!(
            "Unable to delete resource provider {uuid}: Resource provider has allocations."
        ))
        .with_code(codes::PROVIDER_IN_USE));
    }
    db::provider_delete(&mut tx.tx, &uuid).await?;
    commit(&p.db, &p.cache, tx, Changes::provider(&uuid)).await?;
    Ok(no_content())
}
