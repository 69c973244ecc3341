use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::domains::{self as db, DomainRow};
use crate::error::{Error, Result};
use crate::render;

const CORE: &[&str] = &[
    "id",
    "name",
    "description",
    "enabled",
    "tags",
    "options",
    "explicit_domain_id",
];

fn target(id: &str) -> api_common::Target {
    api_common::Target::new().with("target.domain.id", id)
}

pub(super) async fn get_or_404(state: &State, id: &str) -> Result<DomainRow> {
    db::domain_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("domain", id))
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:list_domains",
        &api_common::Target::new(),
    )?;
    let enabled = input::query_bool(&q, "enabled");
    let items = db::domain_list(&state.db)
        .await?
        .into_iter()
        .filter(|d| input::text_matches(&q, "name", &d.name))
        .filter(|d| enabled.is_none_or(|e| store::flag(d.enabled) == e))
        .map(|d| render::domain(&base, &d))
        .collect();
    Ok(Json(input::list(
        "domains",
        items,
        format!("{base}/v3/domains"),
        state.cfg.list_limit,
    )))
}

pub async fn show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let d = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:get_domain", &target(&id))?;
    Ok(Json(json!({ "domain": render::domain(&base, &d) })))
}

pub async fn create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(
        &caller.0,
        "identity:create_domain",
        &api_common::Target::new(),
    )?;
    let m = input::entity(&body, "domain")?;
    let d = DomainRow {
        id: input::opt_str(&m, "explicit_domain_id", 64)?.unwrap_or_else(input::new_id),
        name: input::req_name(&m, "name", 64)?,
        description: input::opt_str(&m, "description", 65_535)?.unwrap_or_default(),
        enabled: input::flag(input::opt_bool(&m, "enabled")?.unwrap_or(true)),
        extra: input::extra(&m, CORE, "{}"),
    };
    let mut tx = state.db.write().await?;
    db::domain_create(&mut tx, &d).await.map_err(|e| {
        input::conflict(
            e,
            &format!("domain - Duplicate entry found with name {}", d.name),
        )
    })?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "domain": render::domain(&base, &d) })),
    ))
}

pub async fn update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let mut d = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:update_domain", &target(&id))?;
    let m = input::entity(&body, "domain")?;
    if let Some(new_id) = input::opt_str(&m, "id", 64)? {
        if new_id != id {
            return Err(Error::invalid("Cannot change the domain ID."));
        }
    }
    if let Some(n) = input::name(&m, "name", 64)? {
        d.name = n;
    }
    if let Some(desc) = input::opt_str(&m, "description", 65_535)? {
        d.description = desc;
    }
    if let Some(e) = input::opt_bool(&m, "enabled")? {
        d.enabled = input::flag(e);
    }
    d.extra = input::extra(&m, CORE, &d.extra);
    let mut tx = state.db.write().await?;
    db::domain_update(&mut tx, &d).await.map_err(|e| {
        input::conflict(
            e,
            &format!("domain - Duplicate entry found with name {}", d.name),
        )
    })?;
    state.commit(tx).await?;
    Ok(Json(json!({ "domain": render::domain(&base, &d) })))
}

pub async fn delete(state: State, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    let d = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:delete_domain", &target(&id))?;
    if store::flag(d.enabled) {
        return Err(Error::Forbidden(
            "Cannot delete a domain that is enabled, please disable it first.".into(),
        ));
    }
    let mut tx = state.db.write().await?;
    db::domain_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
