//! /v3/policies: opaque policy documents stored for other services.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::extensions::{self as db, PolicyBlobRow};
use crate::error::{Error, Result};
use crate::render;

const CORE: &[&str] = &["id", "type", "blob"];

fn none() -> api_common::Target {
    api_common::Target::new()
}

fn json_of(base: &str, p: &PolicyBlobRow) -> Value {
    let mut m = Map::new();
    if let Ok(Value::Object(e)) = serde_json::from_str::<Value>(&p.extra) {
        m = e;
    }
    m.insert("id".into(), json!(p.id));
    m.insert("type".into(), json!(p.kind));
    m.insert("blob".into(), json!(p.blob));
    m.insert(
        "links".into(),
        render::links(base, &format!("policies/{}", p.id)),
    );
    Value::Object(m)
}

async fn get_or_404(state: &State, id: &str) -> Result<PolicyBlobRow> {
    db::policy_blob_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("policy", id))
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_policies", &none())?;
    let items = db::policy_blob_list(&state.db)
        .await?
        .iter()
        .filter(|p| q.get("type").is_none_or(|t| p.kind == *t))
        .map(|p| json_of(&base, p))
        .collect();
    Ok(Json(input::list(
        "policies",
        items,
        format!("{base}/v3/policies"),
        None,
    )))
}

pub async fn show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_policy", &none())?;
    let p = get_or_404(&state, &id).await?;
    Ok(Json(json!({ "policy": json_of(&base, &p) })))
}

pub async fn create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_policy", &none())?;
    let m = input::entity(&body, "policy")?;
    let p = PolicyBlobRow {
        id: input::new_id(),
        kind: input::req_name(&m, "type", 255)?,
        blob: input::opt_str(&m, "blob", 1 << 20)?
            .ok_or_else(|| Error::invalid("'blob' is a required property"))?,
        extra: input::extra(&m, CORE, "{}"),
    };
    let mut tx = state.db.write().await?;
    db::policy_blob_put(&mut tx, &p).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "policy": json_of(&base, &p) })),
    ))
}

pub async fn update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_policy", &none())?;
    let mut p = get_or_404(&state, &id).await?;
    let m = input::entity(&body, "policy")?;
    if let Some(t) = input::name(&m, "type", 255)? {
        p.kind = t;
    }
    if let Some(b) = input::opt_str(&m, "blob", 1 << 20)? {
        p.blob = b;
    }
    p.extra = input::extra(&m, CORE, &p.extra);
    let mut tx = state.db.write().await?;
    db::policy_blob_put(&mut tx, &p).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "policy": json_of(&base, &p) })))
}

pub async fn delete(state: State, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_policy", &none())?;
    get_or_404(&state, &id).await?;
    let mut tx = state.db.write().await?;
    db::policy_blob_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
