//! Server groups (`/os-server-groups`).

use std::collections::HashSet;

use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::quotas::{envelope, invalid, no_extra, pyrepr, strict_query};
use super::{query_pairs, Auth, Body, Mv, State};
use crate::db::server_groups::{self as db, ServerGroup};
use crate::error::{Error, Result};
use crate::{quota, Compute};

/// Nova's `[api] max_limit`.
pub(super) const MAX_LIMIT: usize = 1000;

fn render(g: &ServerGroup, live: &HashSet<String>, mv: Mv) -> Value {
    let mut o = Map::new();
    o.insert("id".into(), json!(g.id));
    o.insert("name".into(), json!(g.name));
    if mv.at_least(64) {
        o.insert("policy".into(), json!(g.policy));
        o.insert("rules".into(), g.rules.clone());
    } else {
        o.insert("policies".into(), json!([g.policy]));
        o.insert("metadata".into(), json!({}));
    }
    let members: Vec<&String> = g.members.iter().filter(|m| live.contains(*m)).collect();
    o.insert("members".into(), json!(members));
    if mv.at_least(13) {
        o.insert("project_id".into(), json!(g.project_id));
        o.insert("user_id".into(), json!(g.user_id));
    }
    Value::Object(o)
}

async fn live(state: &Compute, groups: &[&ServerGroup]) -> Result<HashSet<String>> {
    let ids: Vec<String> = groups
        .iter()
        .flat_map(|g| g.members.iter().cloned())
        .collect();
    Ok(db::live_instances(&state.db, &ids)
        .await?
        .into_iter()
        .collect())
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("Instance group {id} could not be found."))
}

/// A non-negative integer query parameter (limit, offset).
pub(super) fn query_int(name: &str, v: &str) -> Result<usize> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad(format!(
            "Invalid input for query parameters {name}. Value: {v}. '{v}' does not match \
             '^[0-9]*$'"
        )));
    }
    Ok(v.parse::<usize>().unwrap_or(usize::MAX))
}

pub async fn index(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let pairs = query_pairs(q.as_deref());
    strict_query(mv, 75, &pairs, &["all_projects", "limit", "offset"])?;
    let mut limit = MAX_LIMIT;
    let mut offset = 0usize;
    for (k, v) in &pairs {
        match k.as_str() {
            "limit" => {
                let l = query_int("limit", v)?;
                limit = if l == 0 { MAX_LIMIT } else { l.min(MAX_LIMIT) };
            }
            "offset" => offset = query_int("offset", v)?,
            _ => {}
        }
    }
    let project = caller.project().to_string();
    state.authorize(
        &caller,
        "os_compute_api:os-server-groups:index",
        &Compute::project_target(&project, None),
    )?;
    let all = pairs.iter().any(|(k, _)| k == "all_projects") && caller.is_admin;
    let groups = if all {
        state.authorize(
            &caller,
            "os_compute_api:os-server-groups:index:all_projects",
            &Compute::project_target(&project, None),
        )?;
        db::group_list(&state.db, None).await?
    } else {
        db::group_list(&state.db, Some(&project)).await?
    };
    let page: Vec<&ServerGroup> = groups.iter().skip(offset).take(limit).collect();
    let live = live(&state, &page).await?;
    let out: Vec<Value> = page.iter().map(|g| render(g, &live, mv)).collect();
    Ok(Json(json!({ "server_groups": out })))
}

pub async fn show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let g = db::group_get(&state.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    state.authorize(
        &caller,
        "os_compute_api:os-server-groups:show",
        &Compute::project_target(&g.project_id, None),
    )?;
    let live = live(&state, &[&g]).await?;
    Ok(Json(json!({ "server_group": render(&g, &live, mv) })))
}

pub async fn delete(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let g = db::group_get(&state.db, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    state.authorize(
        &caller,
        "os_compute_api:os-server-groups:delete",
        &Compute::project_target(&g.project_id, None),
    )?;
    let mut tx = state.db.write().await?;
    if !db::group_delete(&mut tx, &id).await? {
        return Err(not_found(&id));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Validates a create body: (name, policy, rules).
fn parse_create(body: &Value, mv: Mv) -> Result<(String, String, Value)> {
    let sg = envelope(body, "server_group")?;
    let whole = Value::Object(sg.clone());
    let mut policies: Vec<&str> = vec!["anti-affinity", "affinity"];
    if mv.at_least(15) {
        policies.extend(["soft-anti-affinity", "soft-affinity"]);
    }
    let enum_msg = |v: &Value| {
        format!(
            "{} is not one of [{}]",
            pyrepr(v),
            policies
                .iter()
                .map(|p| format!("'{p}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let v264 = mv.at_least(64);
    if v264 {
        no_extra("server_group", sg, &["name", "policy", "rules"])?;
    } else {
        no_extra("server_group", sg, &["name", "policies"])?;
    }
    let Some(name) = sg.get("name") else {
        return Err(invalid(
            "server_group",
            &whole,
            "'name' is a required property",
        ));
    };
    let key = if v264 { "policy" } else { "policies" };
    let Some(pv) = sg.get(key) else {
        return Err(invalid(
            "server_group",
            &whole,
            &format!("'{key}' is a required property"),
        ));
    };
    let Some(name_s) = name.as_str() else {
        return Err(invalid(
            "name",
            name,
            &format!("{} is not of type 'string'", pyrepr(name)),
        ));
    };
    if name_s.is_empty() {
        return Err(invalid(
            "name",
            name,
            &format!("{} is too short", pyrepr(name)),
        ));
    }
    if name_s.chars().count() > 255 {
        return Err(invalid(
            "name",
            name,
            &format!("{} is too long", pyrepr(name)),
        ));
    }
    let ws = |c: Option<char>| c.is_some_and(char::is_whitespace);
    if name_s.chars().any(char::is_control)
        || ws(name_s.chars().next())
        || ws(name_s.chars().last())
    {
        return Err(Error::bad(
            "An invalid 'name' value was provided. The name must be: printable characters. \
             Can not start or end with whitespace.",
        ));
    }
    let policy = if v264 {
        match pv.as_str() {
            Some(p) if policies.contains(&p) => p.to_string(),
            Some(_) => return Err(invalid("policy", pv, &enum_msg(pv))),
            None => {
                return Err(invalid(
                    "policy",
                    pv,
                    &format!("{} is not of type 'string'", pyrepr(pv)),
                ))
            }
        }
    } else {
        let Some(list) = pv.as_array() else {
            return Err(invalid(
                "policies",
                pv,
                &format!("{} is not of type 'array'", pyrepr(pv)),
            ));
        };
        if list.is_empty() {
            return Err(invalid(
                "policies",
                pv,
                &format!("{} is too short", pyrepr(pv)),
            ));
        }
        if list.len() > 1 {
            return Err(invalid(
                "policies",
                pv,
                &format!("{} is too long", pyrepr(pv)),
            ));
        }
        match list[0].as_str() {
            Some(p) if policies.contains(&p) => p.to_string(),
            _ => return Err(invalid("0", &list[0], &enum_msg(&list[0]))),
        }
    };
    let mut rules = Map::new();
    if let Some(rv) = sg.get("rules").filter(|_| v264) {
        let Some(r) = rv.as_object() else {
            return Err(invalid(
                "rules",
                rv,
                &format!("{} is not of type 'object'", pyrepr(rv)),
            ));
        };
        no_extra("rules", r, &["max_server_per_host"])?;
        if let Some(m) = r.get("max_server_per_host") {
            let field = "max_server_per_host";
            let n = match m {
                Value::Number(n) => n.as_i64().ok_or_else(|| {
                    invalid(field, m, &format!("{n} is not of type 'integer', 'string'"))
                })?,
                Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    s.parse::<i64>().unwrap_or(i64::MAX)
                }
                Value::String(_) => {
                    return Err(invalid(
                        field,
                        m,
                        &format!("{} does not match '^[0-9]*$'", pyrepr(m)),
                    ))
                }
                other => {
                    return Err(invalid(
                        field,
                        other,
                        &format!("{} is not of type 'integer', 'string'", pyrepr(other)),
                    ))
                }
            };
            if n < 1 {
                return Err(invalid(
                    field,
                    m,
                    &format!("{n} is less than the minimum of 1"),
                ));
            }
            rules.insert(field.into(), json!(n));
        }
    }
    Ok((name_s.to_string(), policy, Value::Object(rules)))
}

pub async fn create(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Body(body): Body,
) -> Result<Json<Value>> {
    let (name, policy, rules) = parse_create(&body, mv)?;
    let project = caller.project().to_string();
    state.authorize(
        &caller,
        "os_compute_api:os-server-groups:create",
        &Compute::project_target(&project, None),
    )?;
    quota::check_server_groups(&state, &project, caller.user()).await?;
    if policy != "anti-affinity" && rules.as_object().is_some_and(|r| !r.is_empty()) {
        return Err(Error::bad("Only anti-affinity policy supports rules."));
    }
    let g = ServerGroup {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        project_id: project.clone(),
        user_id: caller.user().to_string(),
        policy,
        rules,
        created_at: store::now_micros(),
        members: Vec::new(),
    };
    let mut tx = state.db.write().await?;
    db::group_create(&mut tx, &g).await?;
    tx.commit().await?;
    // The recheck Nova makes after creating (`recheck_quota`): a racing
    // create may have taken the last slot.
    if let Err(e) = recheck(&state, &project, caller.user()).await {
        let mut tx = state.db.write().await?;
        db::group_delete(&mut tx, &g.id).await?;
        tx.commit().await?;
        return Err(e);
    }
    Ok(Json(
        json!({ "server_group": render(&g, &HashSet::new(), mv) }),
    ))
}

async fn recheck(state: &Compute, project: &str, user: &str) -> Result<()> {
    let p = quota::project_limits(state, project).await?;
    let u = quota::user_limits(state, project, user).await?;
    let pl = p.get("server_groups").copied().unwrap_or(-1);
    let ul = u.get("server_groups").copied().unwrap_or(-1);
    let pn = crate::db::quotas::server_group_count(&state.db, project, None).await?;
    let un = crate::db::quotas::server_group_count(&state.db, project, Some(user)).await?;
    if (pl >= 0 && pn > pl) || (ul >= 0 && un > ul) {
        return Err(Error::forbidden("Quota exceeded, too many server groups."));
    }
    Ok(())
}
