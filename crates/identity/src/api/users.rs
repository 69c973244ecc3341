use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::users::{self as db, UserRow};
use crate::db::{domains, groups, projects};
use crate::error::{Error, Result};
use crate::{password, render, Identity};

const CORE: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "enabled",
    "default_project_id",
    "description",
    "password",
    "options",
    "password_expires_at",
    "federated",
];
const OPTIONS: &[&str] = &[
    "ignore_change_password_upon_first_use",
    "ignore_password_expiry",
    "ignore_lockout_failure_attempts",
    "lock_password",
    "ignore_user_inactivity",
    "multi_factor_auth_enabled",
    "multi_factor_auth_rules",
];

fn target(u: &UserRow) -> api_common::Target {
    api_common::Target::new()
        .with("target.user.id", u.id.clone())
        .with("target.user.domain_id", u.domain_id.clone())
}

pub(super) async fn get_or_404(state: &State, id: &str) -> Result<UserRow> {
    db::user_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("user", id))
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
                if !OPTIONS.contains(&k.as_str()) {
                    return Err(Error::invalid(format!(
                        "Invalid input for field 'options': unknown option {k:?}"
                    )));
                }
                if v.is_null() {
                    out.remove(k);
                } else if k == "multi_factor_auth_rules" || v.is_boolean() {
                    out.insert(k.clone(), v.clone());
                } else {
                    return Err(Error::invalid(format!(
                        "Invalid input for field 'options.{k}': {v} is not of type 'boolean'"
                    )));
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

impl Identity {
    /// Checks a new password against the regex, history and age rules.
    async fn check_new_password(
        &self,
        user_id: Option<&str>,
        pw: &str,
        self_service: bool,
    ) -> Result<()> {
        let sc = &self.cfg.security_compliance;
        if pw.len() > password::MAX_BCRYPT_BYTES {
            return Err(Error::invalid(format!(
                "Invalid input for field 'password': the password is longer than {} bytes.",
                password::MAX_BCRYPT_BYTES
            )));
        }
        if let Some(re) = &self.password_regex {
            if !re.is_match(pw) {
                let why = sc
                    .password_regex_description
                    .clone()
                    .unwrap_or_else(|| "it does not match the configured pattern".into());
                return Err(Error::invalid(format!(
                    "Password validation error: The password does not meet the requirements: {why}"
                )));
            }
        }
        let Some(user_id) = user_id else {
            return Ok(());
        };
        if self_service && sc.minimum_password_age > 0 {
            if let Some(cur) = db::password_current(&self.db, user_id).await? {
                let min = i64::from(sc.minimum_password_age) * 86_400 * 1_000_000;
                if cur.created_at + min > store::now_micros() {
                    return Err(Error::invalid(format!(
                        "You cannot change your password at this time due to the minimum password age. \
                         Once you change your password, it must be used for {} day(s) before it can be changed.",
                        sc.minimum_password_age
                    )));
                }
            }
        }
        if sc.unique_last_password_count > 1 {
            let history = db::password_history(
                &self.db,
                user_id,
                i64::from(sc.unique_last_password_count) - 1,
            )
            .await?;
            for old in history {
                if password::verify(pw, &old.hash).await {
                    return Err(Error::invalid(format!(
                        "Password validation error: The new password cannot be identical to a previous \
                         password. The total number which includes the new password must be unique is {}.",
                        sc.unique_last_password_count
                    )));
                }
            }
        }
        Ok(())
    }

    fn password_expiry(&self, u: &UserRow) -> Option<i64> {
        let days = self.cfg.security_compliance.password_expires_days?;
        if render::ignore_password_expiry(u) {
            return None;
        }
        Some(store::now_micros() + i64::from(days) * 86_400 * 1_000_000)
    }
}

async fn expires_of(state: &State, id: &str) -> Result<Option<i64>> {
    Ok(db::password_current(&state.db, id)
        .await?
        .and_then(|p| p.expires_at))
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    let t = api_common::Target::new().with_opt("target.domain_id", q.get("domain_id").cloned());
    state.authorize(&caller.0, "identity:list_users", &t)?;
    let rows = db::user_list(
        &state.db,
        q.get("domain_id").map(String::as_str),
        None,
        input::query_bool(&q, "enabled"),
    )
    .await?;
    let mut items = Vec::new();
    for u in rows
        .iter()
        .filter(|u| input::text_matches(&q, "name", &u.name))
    {
        items.push(render::user(&base, u, expires_of(&state, &u.id).await?));
    }
    Ok(Json(input::list(
        "users",
        items,
        format!("{base}/v3/users"),
        state.cfg.list_limit,
    )))
}

pub async fn show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let u = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:get_user", &target(&u))?;
    Ok(Json(
        json!({ "user": render::user(&base, &u, expires_of(&state, &id).await?) }),
    ))
}

pub async fn create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let m = input::entity(&body, "user")?;
    let name = input::req_name(&m, "name", 255)?;
    let domain_id = match input::opt_str(&m, "domain_id", 64)? {
        Some(d) => d,
        None => match &caller.0.scope {
            api_common::Scope::Domain { id, .. } => id.clone(),
            api_common::Scope::Project { domain_id, .. } => domain_id.clone(),
            _ => crate::DEFAULT_DOMAIN_ID.to_string(),
        },
    };
    let u = UserRow {
        id: input::new_id(),
        name,
        domain_id,
        enabled: input::flag(input::opt_bool(&m, "enabled")?.unwrap_or(true)),
        default_project_id: input::opt_str(&m, "default_project_id", 64)?,
        description: input::opt_str(&m, "description", 65_535)?,
        extra: input::extra(&m, CORE, "{}"),
        options: options(&m, "{}")?,
        failed_auth_count: 0,
        failed_auth_at: None,
    };
    state.authorize(&caller.0, "identity:create_user", &target(&u))?;
    if domains::domain_get(&state.db, &u.domain_id)
        .await?
        .is_none()
    {
        return Err(Error::not_found("domain", u.domain_id.clone()));
    }
    if let Some(p) = &u.default_project_id {
        if projects::project_get(&state.db, p).await?.is_none() {
            return Err(Error::not_found("project", p.clone()));
        }
    }
    let pw = input::opt_str(&m, "password", 4096)?;
    let hash = match &pw {
        Some(p) => {
            state.check_new_password(None, p, false).await?;
            Some(password::hash(p, state.cfg.password_hash_rounds).await?)
        }
        None => None,
    };
    let expires = hash.as_ref().and_then(|_| state.password_expiry(&u));
    let mut tx = state.db.write().await?;
    db::user_create(&mut tx, &u).await.map_err(|e| {
        input::conflict(
            e,
            &format!(
                "user - Duplicate entry found with name {} at domain ID {}",
                u.name, u.domain_id
            ),
        )
    })?;
    if let Some(h) = &hash {
        // A password set by an administrator counts as not chosen by the user.
        db::password_set(&mut tx, &u.id, h, expires, false).await?;
    }
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "user": render::user(&base, &u, expires) })),
    ))
}

pub async fn update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let mut u = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:update_user", &target(&u))?;
    let m = input::entity(&body, "user")?;
    if input::opt_str(&m, "domain_id", 64)?.is_some_and(|d| d != u.domain_id) {
        return Err(Error::invalid("Update of `domain_id` is not allowed."));
    }
    if let Some(n) = input::name(&m, "name", 255)? {
        u.name = n;
    }
    if let Some(e) = input::opt_bool(&m, "enabled")? {
        u.enabled = input::flag(e);
    }
    if m.contains_key("default_project_id") {
        u.default_project_id = input::opt_str(&m, "default_project_id", 64)?;
        if let Some(p) = &u.default_project_id {
            if projects::project_get(&state.db, p).await?.is_none() {
                return Err(Error::not_found("project", p.clone()));
            }
        }
    }
    if m.contains_key("description") {
        u.description = input::opt_str(&m, "description", 65_535)?;
    }
    u.options = options(&m, &u.options)?;
    u.extra = input::extra(&m, CORE, &u.extra);
    let pw = input::opt_str(&m, "password", 4096)?;
    let hash = match &pw {
        Some(p) => {
            state.check_new_password(Some(&u.id), p, false).await?;
            Some(password::hash(p, state.cfg.password_hash_rounds).await?)
        }
        None => None,
    };
    let mut tx = state.db.write().await?;
    db::user_update(&mut tx, &u).await.map_err(|e| {
        input::conflict(
            e,
            &format!("user - Duplicate entry found with name {}", u.name),
        )
    })?;
    if let Some(h) = &hash {
        db::password_set(&mut tx, &u.id, h, state.password_expiry(&u), false).await?;
        state.revoke_user_tokens(&mut tx, &u.id).await?;
    }
    state.commit(tx).await?;
    Ok(Json(
        json!({ "user": render::user(&base, &u, expires_of(&state, &id).await?) }),
    ))
}

pub async fn delete(state: State, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    let u = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:delete_user", &target(&u))?;
    let mut tx = state.db.write().await?;
    db::user_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /v3/users/{id}/password: the user changes their own password,
/// proving it with the current one (no token needed, so that a user whose
/// password expired can still change it).
pub async fn change_password(
    state: State,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode> {
    let m = input::entity(&body, "user")?;
    let original = input::opt_str(&m, "original_password", 4096)?
        .ok_or_else(|| Error::invalid("'original_password' is a required property"))?;
    let new = input::opt_str(&m, "password", 4096)?
        .ok_or_else(|| Error::invalid("'password' is a required property"))?;
    let Some(u) = db::user_get(&state.db, &id).await? else {
        return Err(Error::unauthorized());
    };
    let current = db::password_current(&state.db, &id).await?;
    let ok = match &current {
        Some(p) => password::verify(&original, &p.hash).await,
        None => false,
    };
    if !ok || !store::flag(u.enabled) {
        return Err(Error::unauthorized());
    }
    if render::user_option_bool(&u, "lock_password") {
        return Err(Error::Forbidden(format!(
            "You are not allowed to change the password of user {id}."
        )));
    }
    state.check_new_password(Some(&id), &new, true).await?;
    let hash = password::hash(&new, state.cfg.password_hash_rounds).await?;
    let mut tx = state.db.write().await?;
    db::password_set(&mut tx, &id, &hash, state.password_expiry(&u), true).await?;
    state.revoke_user_tokens(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn groups(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let u = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:list_groups_for_user", &target(&u))?;
    let items = groups::groups_of_user(&state.db, &id)
        .await?
        .iter()
        .map(|g| render::group(&base, g))
        .collect();
    Ok(Json(input::list(
        "groups",
        items,
        format!("{base}/v3/users/{id}/groups"),
        None,
    )))
}

pub async fn projects(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let u = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:list_user_projects", &target(&u))?;
    let items = super::auth::user_projects(&state, &id)
        .await?
        .iter()
        .map(|p| render::project(&base, p, &[]))
        .collect();
    Ok(Json(input::list(
        "projects",
        items,
        format!("{base}/v3/users/{id}/projects"),
        None,
    )))
}
