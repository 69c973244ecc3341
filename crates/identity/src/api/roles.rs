use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::roles::{self as db, RoleRow};
use crate::error::{Error, Result};
use crate::render;

const CORE: &[&str] = &["id", "name", "domain_id", "description", "options"];

fn target(r: &RoleRow) -> api_common::Target {
    api_common::Target::new()
        .with("target.role.id", r.id.clone())
        .with("target.domain_id", r.domain_id.clone())
}

pub(super) async fn get_or_404(state: &State, id: &str) -> Result<RoleRow> {
    db::role_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("role", id))
}

fn options(m: &input::Obj, previous: &str) -> Result<String> {
    let mut out = match serde_json::from_str::<Value>(previous) {
        Ok(Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    match m.get("options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            for (k, v) in o {
                if k != "immutable" {
                    return Err(Error::invalid(format!(
                        "Invalid input for field 'options': unknown option {k:?}"
                    )));
                }
                match v {
                    Value::Bool(_) => {
                        out.insert(k.clone(), v.clone());
                    }
                    Value::Null => {
                        out.remove(k);
                    }
                    other => {
                        return Err(Error::invalid(format!(
                            "Invalid input for field 'options.immutable': {other} is not of type 'boolean'"
                        )))
                    }
                }
            }
        }
        Some(v) => {
            return Err(Error::invalid(format!(
                "Invalid input for field 'options': {v} is not of type 'object'"
            )))
        }
    }
    Ok(Value::Object(out).to_string())
}

fn immutable(r: &RoleRow) -> bool {
    serde_json::from_str::<Value>(&r.options)
        .ok()
        .and_then(|v| v.get("immutable").and_then(Value::as_bool))
        .unwrap_or(false)
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    let domain = q.get("domain_id").cloned().unwrap_or_default();
    let t = api_common::Target::new().with("target.domain_id", domain.clone());
    state.authorize(&caller.0, "identity:list_roles", &t)?;
    let items = db::role_list(&state.db)
        .await?
        .iter()
        .filter(|r| r.domain_id == domain)
        .filter(|r| input::text_matches(&q, "name", &r.name))
        .map(|r| render::role(&base, r))
        .collect();
    Ok(Json(input::list(
        "roles",
        items,
        format!("{base}/v3/roles"),
        state.cfg.list_limit,
    )))
}

pub async fn show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let r = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:get_role", &target(&r))?;
    Ok(Json(json!({ "role": render::role(&base, &r) })))
}

pub async fn create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let m = input::entity(&body, "role")?;
    let r = RoleRow {
        id: input::new_id(),
        name: input::req_name(&m, "name", 255)?,
        domain_id: input::opt_str(&m, "domain_id", 64)?.unwrap_or_default(),
        description: input::opt_str(&m, "description", 255)?,
        options: options(&m, "{}")?,
        extra: input::extra(&m, CORE, "{}"),
    };
    state.authorize(&caller.0, "identity:create_role", &target(&r))?;
    if !r.domain_id.is_empty()
        && crate::db::domains::domain_get(&state.db, &r.domain_id)
            .await?
            .is_none()
    {
        return Err(Error::not_found("domain", r.domain_id.clone()));
    }
    let mut tx = state.db.write().await?;
    db::role_create(&mut tx, &r).await.map_err(|e| {
        input::conflict(
            e,
            &format!("role - Duplicate entry found with name {}", r.name),
        )
    })?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "role": render::role(&base, &r) })),
    ))
}

pub async fn update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let mut r = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:update_role", &target(&r))?;
    let m = input::entity(&body, "role")?;
    let was_immutable = immutable(&r);
    r.options = options(&m, &r.options)?;
    if was_immutable && immutable(&r) && m.keys().any(|k| k != "options") {
        return Err(Error::Forbidden(format!(
            "Role {id} is immutable and cannot be changed."
        )));
    }
    if input::opt_str(&m, "domain_id", 64)?.is_some_and(|d| d != r.domain_id) {
        return Err(Error::invalid("Update of `domain_id` is not allowed."));
    }
    if let Some(n) = input::name(&m, "name", 255)? {
        r.name = n;
    }
    if m.contains_key("description") {
        r.description = input::opt_str(&m, "description", 255)?;
    }
    r.extra = input::extra(&m, CORE, &r.extra);
    let mut tx = state.db.write().await?;
    db::role_update(&mut tx, &r).await.map_err(|e| {
        input::conflict(
            e,
            &format!("role - Duplicate entry found with name {}", r.name),
        )
    })?;
    state.commit(tx).await?;
    Ok(Json(json!({ "role": render::role(&base, &r) })))
}

pub async fn delete(state: State, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    let r = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:delete_role", &target(&r))?;
    if immutable(&r) {
        return Err(Error::Forbidden(format!(
            "Role {id} is immutable and cannot be deleted."
        )));
    }
    let mut tx = state.db.write().await?;
    db::role_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn role_ref(base: &str, r: &RoleRow) -> Value {
    json!({ "id": r.id, "name": r.name, "links": render::links(base, &format!("roles/{}", r.id)) })
}

async fn rule_exists(state: &State, prior: &str, implied: &str) -> Result<bool> {
    Ok(db::implied_list(&state.db)
        .await?
        .iter()
        .any(|(p, i)| p == prior && i == implied))
}

pub async fn implies_list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let prior = get_or_404(&state, &id).await?;
    state.authorize(
        &caller.0,
        "identity:list_implied_roles",
        &api_common::Target::new(),
    )?;
    let mut implies = Vec::new();
    for (p, i) in db::implied_list(&state.db).await? {
        if p == id {
            if let Some(r) = db::role_get(&state.db, &i).await? {
                implies.push(role_ref(&base, &r));
            }
        }
    }
    Ok(Json(json!({
        "role_inference": { "prior_role": role_ref(&base, &prior), "implies": implies },
        "links": { "self": format!("{base}/v3/roles/{id}/implies") }
    })))
}

pub async fn implies_add(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path((id, implied)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>)> {
    let prior = get_or_404(&state, &id).await?;
    let imp = get_or_404(&state, &implied).await?;
    state.authorize(
        &caller.0,
        "identity:create_implied_role",
        &api_common::Target::new(),
    )?;
    if state.cfg.prohibited_implied_roles.contains(&imp.name) {
        return Err(Error::Forbidden(format!(
            "{} is not allowed to be an implied role.",
            imp.name
        )));
    }
    if id == implied {
        return Err(Error::invalid("A role cannot imply itself."));
    }
    // Refuse cycles: the implied role must not already lead back to the prior.
    let snap = state.snapshot().await?;
    if crate::tokens::expand_implied(&snap, std::slice::from_ref(&implied)).contains(&id) {
        return Err(Error::invalid(format!(
            "Role {implied} already implies {id}: that would be a cycle."
        )));
    }
    // A domain-specific role may imply a global role or one of its own
    // domain; a global role may only imply global roles.
    if !imp.domain_id.is_empty() && imp.domain_id != prior.domain_id {
        return Err(Error::Forbidden(
            "A role may only imply global roles or roles of its own domain.".into(),
        ));
    }
    let mut tx = state.db.write().await?;
    db::implied_add(&mut tx, &id, &implied).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "role_inference": { "prior_role": role_ref(&base, &prior), "implies": role_ref(&base, &imp) },
            "links": { "self": format!("{base}/v3/roles/{id}/implies/{implied}") }
        })),
    ))
}

pub async fn implies_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path((id, implied)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let prior = get_or_404(&state, &id).await?;
    let imp = get_or_404(&state, &implied).await?;
    state.authorize(
        &caller.0,
        "identity:get_implied_role",
        &api_common::Target::new(),
    )?;
    if !rule_exists(&state, &id, &implied).await? {
        return Err(Error::not_found(
            "implied role",
            format!("{id} does not imply {implied}"),
        ));
    }
    Ok(Json(json!({
        "role_inference": { "prior_role": role_ref(&base, &prior), "implies": role_ref(&base, &imp) },
        "links": { "self": format!("{base}/v3/roles/{id}/implies/{implied}") }
    })))
}

pub async fn implies_check(
    state: State,
    caller: Caller,
    Path((id, implied)): Path<(String, String)>,
) -> Result<StatusCode> {
    get_or_404(&state, &id).await?;
    get_or_404(&state, &implied).await?;
    state.authorize(
        &caller.0,
        "identity:check_implied_role",
        &api_common::Target::new(),
    )?;
    if rule_exists(&state, &id, &implied).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(
            "implied role",
            format!("{id} does not imply {implied}"),
        ))
    }
}

pub async fn implies_remove(
    state: State,
    caller: Caller,
    Path((id, implied)): Path<(String, String)>,
) -> Result<StatusCode> {
    get_or_404(&state, &id).await?;
    get_or_404(&state, &implied).await?;
    state.authorize(
        &caller.0,
        "identity:delete_implied_role",
        &api_common::Target::new(),
    )?;
    let mut tx = state.db.write().await?;
    if !db::implied_remove(&mut tx, &id, &implied).await? {
        return Err(Error::not_found(
            "implied role",
            format!("{id} does not imply {implied}"),
        ));
    }
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn inferences(state: State, caller: Caller, Base(base): Base) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:list_role_inference_rules",
        &api_common::Target::new(),
    )?;
    let snap = state.snapshot().await?;
    let mut out = Vec::new();
    let mut priors: Vec<&String> = snap.implied.keys().collect();
    priors.sort();
    for p in priors {
        let Some(prior) = snap.roles.get(p) else {
            continue;
        };
        let implies: Vec<Value> = snap.implied[p]
            .iter()
            .filter_map(|i| snap.roles.get(i))
            .map(|r| role_ref(&base, r))
            .collect();
        out.push(json!({ "prior_role": role_ref(&base, prior), "implies": implies }));
    }
    Ok(Json(json!({
        "role_inferences": out,
        "links": { "self": format!("{base}/v3/role_inferences") }
    })))
}
