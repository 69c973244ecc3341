use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::domains;
use crate::db::groups::{self as db, GroupRow};
use crate::error::{Error, Result};
use crate::render;

const CORE: &[&str] = &["id", "name", "domain_id", "description"];

fn target(g: &GroupRow) -> api_common::Target {
    api_common::Target::new()
        .with("target.group.id", g.id.clone())
        .with("target.group.domain_id", g.domain_id.clone())
}

pub(super) async fn get_or_404(state: &State, id: &str) -> Result<GroupRow> {
    db::group_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("group", id))
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    let t = api_common::Target::new().with_opt("target.domain_id", q.get("domain_id").cloned());
    state.authorize(&caller.0, "identity:list_groups", &t)?;
    let items = db::group_list(&state.db, q.get("domain_id").map(String::as_str), None)
        .await?
        .iter()
        .filter(|g| input::text_matches(&q, "name", &g.name))
        .map(|g| render::group(&base, g))
        .collect();
    Ok(Json(input::list(
        "groups",
        items,
        format!("{base}/v3/groups"),
        state.cfg.list_limit,
    )))
}

pub async fn show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let g = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:get_group", &target(&g))?;
    Ok(Json(json!({ "group": render::group(&base, &g) })))
}

pub async fn create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let m = input::entity(&body, "group")?;
    let g = GroupRow {
        id: input::new_id(),
        name: input::req_name(&m, "name", 64)?,
        domain_id: match input::opt_str(&m, "domain_id", 64)? {
            Some(d) => d,
            None => match &caller.0.scope {
                api_common::Scope::Domain { id, .. } => id.clone(),
                api_common::Scope::Project { domain_id, .. } => domain_id.clone(),
                _ => crate::DEFAULT_DOMAIN_ID.to_string(),
            },
        },
        description: input::opt_str(&m, "description", 65_535)?.unwrap_or_default(),
        extra: input::extra(&m, CORE, "{}"),
    };
    state.authorize(&caller.0, "identity:create_group", &target(&g))?;
    if domains::domain_get(&state.db, &g.domain_id)
        .await?
        .is_none()
    {
        return Err(Error::not_found("domain", g.domain_id.clone()));
    }
    let mut tx = state.db.write().await?;
    db::group_create(&mut tx, &g).await.map_err(|e| {
        input::conflict(
            e,
            &format!(
                "group - Duplicate entry found with name {} at domain ID {}",
                g.name, g.domain_id
            ),
        )
    })?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "group": render::group(&base, &g) })),
    ))
}

pub async fn update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let mut g = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:update_group", &target(&g))?;
    let m = input::entity(&body, "group")?;
    if input::opt_str(&m, "domain_id", 64)?.is_some_and(|d| d != g.domain_id) {
        return Err(Error::invalid("Update of `domain_id` is not allowed."));
    }
    if let Some(n) = input::name(&m, "name", 64)? {
        g.name = n;
    }
    if let Some(d) = input::opt_str(&m, "description", 65_535)? {
        g.description = d;
    }
    g.extra = input::extra(&m, CORE, &g.extra);
    let mut tx = state.db.write().await?;
    db::group_update(&mut tx, &g).await.map_err(|e| {
        input::conflict(
            e,
            &format!("group - Duplicate entry found with name {}", g.name),
        )
    })?;
    state.commit(tx).await?;
    Ok(Json(json!({ "group": render::group(&base, &g) })))
}

pub async fn delete(state: State, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    let g = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:delete_group", &target(&g))?;
    let mut tx = state.db.write().await?;
    db::group_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn members(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    let g = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:list_users_in_group", &target(&g))?;
    let mut items = Vec::new();
    for uid in db::group_member_ids(&state.db, &id).await? {
        if let Some(u) = crate::db::users::user_get(&state.db, &uid).await? {
            if input::text_matches(&q, "name", &u.name) {
                items.push(render::user(&base, &u, None));
            }
        }
    }
    Ok(Json(input::list(
        "users",
        items,
        format!("{base}/v3/groups/{id}/users"),
        None,
    )))
}

async fn both(state: &State, group: &str, user: &str) -> Result<GroupRow> {
    let g = get_or_404(state, group).await?;
    if crate::db::users::user_get(&state.db, user).await?.is_none() {
        return Err(Error::not_found("user", user));
    }
    Ok(g)
}

pub async fn add_member(
    state: State,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode> {
    let g = both(&state, &id, &user).await?;
    state.authorize(&caller.0, "identity:add_user_to_group", &target(&g))?;
    let mut tx = state.db.write().await?;
    db::group_member_add(&mut tx, &id, &user).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn check_member(
    state: State,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode> {
    let g = both(&state, &id, &user).await?;
    state.authorize(&caller.0, "identity:check_user_in_group", &target(&g))?;
    if db::group_member_check(&state.db, &id, &user).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::NotFound {
            kind: "user in group",
            id: format!("{user} is not a member of group {id}"),
        })
    }
}

pub async fn remove_member(
    state: State,
    caller: Caller,
    Path((id, user)): Path<(String, String)>,
) -> Result<StatusCode> {
    let g = both(&state, &id, &user).await?;
    state.authorize(&caller.0, "identity:remove_user_from_group", &target(&g))?;
    let mut tx = state.db.write().await?;
    if !db::group_member_remove(&mut tx, &id, &user).await? {
        return Err(Error::NotFound {
            kind: "user in group",
            id: format!("{user} is not a member of group {id}"),
        });
    }
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
