//! Application credentials and access rules.

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::app_creds::{self as db, AccessRuleRow, AppCredRow};
use crate::error::{Error, Result};
use crate::{password, render};

const FIELDS: &[&str] = &[
    "name",
    "description",
    "secret",
    "expires_at",
    "roles",
    "unrestricted",
    "access_rules",
];
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

fn owner(user_id: &str) -> api_common::Target {
    api_common::Target::new().with("target.user.id", user_id)
}

async fn render_one(state: &State, base: &str, a: &AppCredRow) -> Result<Value> {
    let snap = state.snapshot().await?;
    let roles: Vec<Value> = db::app_cred_role_ids(&state.db, &a.id)
        .await?
        .iter()
        .filter_map(|id| snap.roles.get(id))
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "domain_id": if r.domain_id.is_empty() { Value::Null } else { json!(r.domain_id) },
            })
        })
        .collect();
    let rules: Vec<Value> = db::app_cred_access_rules(&state.db, &a.id)
        .await?
        .iter()
        .map(|r| json!({ "id": r.id, "service": r.service, "path": r.path, "method": r.method }))
        .collect();
    Ok(json!({
        "id": a.id,
        "name": a.name,
        "description": a.description,
        "user_id": a.user_id,
        "project_id": a.project_id,
        "expires_at": a.expires_at.map(render::time),
        "unrestricted": store::flag(a.unrestricted),
        "roles": roles,
        "access_rules": rules,
        "links": render::links(base, &format!("users/{}/application_credentials/{}", a.user_id, a.id)),
    }))
}

async fn get_or_404(state: &State, user_id: &str, id: &str) -> Result<AppCredRow> {
    db::app_cred_get(&state.db, id)
        .await?
        .filter(|a| a.user_id == user_id)
        .ok_or_else(|| Error::not_found("application credential", id))
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(user_id): Path<String>,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:list_application_credentials",
        &owner(&user_id),
    )?;
    if crate::db::users::user_get(&state.db, &user_id)
        .await?
        .is_none()
    {
        return Err(Error::not_found("user", user_id));
    }
    let mut items = Vec::new();
    for a in db::app_cred_list(&state.db, &user_id).await? {
        if q.get("name").is_none_or(|n| *n == a.name) {
            items.push(render_one(&state, &base, &a).await?);
        }
    }
    Ok(Json(input::list(
        "application_credentials",
        items,
        format!("{base}/v3/users/{user_id}/application_credentials"),
        None,
    )))
}

pub async fn show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path((user_id, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:get_application_credential",
        &owner(&user_id),
    )?;
    let a = get_or_404(&state, &user_id, &id).await?;
    Ok(Json(
        json!({ "application_credential": render_one(&state, &base, &a).await? }),
    ))
}

fn parse_rules(v: Option<&Value>) -> Result<Vec<AccessRuleRow>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Value::Array(list) = v else {
        return Err(Error::invalid(
            "Invalid input for field 'access_rules': not a list",
        ));
    };
    let mut out = Vec::new();
    for r in list {
        let Value::Object(m) = r else {
            return Err(Error::invalid(
                "Invalid input for field 'access_rules': each rule is an object",
            ));
        };
        input::only(m, "access_rules", &["id", "service", "path", "method"])?;
        let service = input::req_name(m, "service", 64)?;
        let path = input::req_name(m, "path", 225)?;
        let method = input::req_name(m, "method", 16)?;
        if !METHODS.contains(&method.as_str()) {
            return Err(Error::invalid(format!(
                "Invalid input for field 'access_rules.method': {method:?}"
            )));
        }
        out.push(AccessRuleRow {
            id: input::opt_str(m, "id", 64)?.unwrap_or_else(input::new_id),
            service,
            path,
            method,
        });
    }
    Ok(out)
}

pub async fn create(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(
        &caller.0,
        "identity:create_application_credential",
        &owner(&user_id),
    )?;
    let m = input::entity(&body, "application_credential")?;
    input::only(&m, "application_credential", FIELDS)?;
    if let Some(ac) = &caller.0.application_credential_id {
        let restricted = db::app_cred_get(&state.db, ac)
            .await?
            .is_none_or(|a| !store::flag(a.unrestricted));
        if restricted {
            return Err(Error::Forbidden(
                "Using method 'application_credential' is not allowed for managing additional \
                 application credentials."
                    .into(),
            ));
        }
    }
    let project_id = caller.0.project_id().map(str::to_string).ok_or_else(|| {
        Error::invalid("Application credentials are created with a project-scoped token.")
    })?;
    let name = input::req_name(&m, "name", 255)?;
    let secret = match input::opt_str(&m, "secret", 4096)? {
        Some(s) if !s.is_empty() => s,
        Some(_) => {
            return Err(Error::invalid(
                "Invalid input for field 'secret': it must not be empty",
            ))
        }
        None => {
            let bytes: [u8; 32] = rand::random();
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        }
    };
    let expires_at = match input::opt_str(&m, "expires_at", 64)? {
        Some(s) => {
            let t = render::parse_time(&s).ok_or_else(|| {
                Error::invalid(format!("Invalid input for field 'expires_at': {s:?}"))
            })?;
            if t <= store::now_micros() {
                return Err(Error::invalid("The expiration time is in the past."));
            }
            Some(t)
        }
        None => None,
    };
    // Roles: by id or name, each held by the caller on this project.
    let held: Vec<&api_common::RoleRef> = caller.0.roles.iter().collect();
    let role_ids: Vec<String> = match m.get("roles") {
        None | Some(Value::Null) => held.iter().map(|r| r.id.clone()).collect(),
        Some(Value::Array(list)) => {
            let mut ids = Vec::new();
            for r in list {
                let id = r.get("id").and_then(Value::as_str);
                let name = r.get("name").and_then(Value::as_str);
                let found = held.iter().find(|h| {
                    Some(h.id.as_str()) == id || (id.is_none() && Some(h.name.as_str()) == name)
                });
                match found {
                    Some(h) => {
                        if !ids.contains(&h.id) {
                            ids.push(h.id.clone())
                        }
                    }
                    None => {
                        return Err(Error::Forbidden(format!(
                            "You cannot give an application credential a role you do not hold: {r}"
                        )))
                    }
                }
            }
            ids
        }
        Some(other) => {
            return Err(Error::invalid(format!(
                "Invalid input for field 'roles': {other} is not of type 'array'"
            )))
        }
    };
    let rules = parse_rules(m.get("access_rules"))?;
    let a = AppCredRow {
        id: input::new_id(),
        name,
        user_id: user_id.clone(),
        project_id: Some(project_id),
        secret_hash: password::hash(&secret, state.cfg.password_hash_rounds).await?,
        description: input::opt_str(&m, "description", 65_535)?,
        expires_at,
        unrestricted: input::flag(input::opt_bool(&m, "unrestricted")?.unwrap_or(false)),
    };
    let mut tx = state.db.write().await?;
    db::app_cred_create(&mut tx, &a, &role_ids, &rules)
        .await
        .map_err(|e| {
            input::conflict(
                e,
                &format!(
                    "application credential - Duplicate entry found with name {}",
                    a.name
                ),
            )
        })?;
    state.commit(tx).await?;
    let mut v = render_one(&state, &base, &a).await?;
    v["secret"] = json!(secret);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "application_credential": v })),
    ))
}

pub async fn delete(
    state: State,
    caller: Caller,
    Path((user_id, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.authorize(
        &caller.0,
        "identity:delete_application_credential",
        &owner(&user_id),
    )?;
    get_or_404(&state, &user_id, &id).await?;
    if let Some(ac) = &caller.0.application_credential_id {
        let restricted = db::app_cred_get(&state.db, ac)
            .await?
            .is_none_or(|a| !store::flag(a.unrestricted));
        if restricted {
            return Err(Error::Forbidden(
                "Using method 'application_credential' is not allowed for managing additional \
                 application credentials."
                    .into(),
            ));
        }
    }
    let mut tx = state.db.write().await?;
    db::app_cred_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn rule_json(base: &str, user: &str, r: &AccessRuleRow) -> Value {
    json!({
        "id": r.id, "service": r.service, "path": r.path, "method": r.method,
        "links": render::links(base, &format!("users/{user}/access_rules/{}", r.id)),
    })
}

pub async fn rules_list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(user_id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_access_rules", &owner(&user_id))?;
    let items = db::access_rule_list(&state.db, &user_id)
        .await?
        .iter()
        .map(|r| rule_json(&base, &user_id, r))
        .collect();
    Ok(Json(input::list(
        "access_rules",
        items,
        format!("{base}/v3/users/{user_id}/access_rules"),
        None,
    )))
}

pub async fn rule_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path((user_id, id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_access_rule", &owner(&user_id))?;
    let r = db::access_rule_get(&state.db, &user_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("access rule", id))?;
    Ok(Json(
        json!({ "access_rule": rule_json(&base, &user_id, &r) }),
    ))
}

pub async fn rule_delete(
    state: State,
    caller: Caller,
    Path((user_id, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_access_rule", &owner(&user_id))?;
    db::access_rule_get(&state.db, &user_id, &id)
        .await?
        .ok_or_else(|| Error::not_found("access rule", id.clone()))?;
    if db::access_rule_in_use(&state.db, &id).await? {
        return Err(Error::Forbidden(format!(
            "Access rule {id} is used by an application credential and cannot be deleted."
        )));
    }
    let mut tx = state.db.write().await?;
    db::access_rule_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
