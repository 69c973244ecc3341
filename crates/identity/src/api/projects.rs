use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::input::{self, Query as Q};
use super::{Base, Caller, State};
use crate::db::domains;
use crate::db::projects::{self as db, ProjectFilter, ProjectRow};
use crate::error::{Error, Result};
use crate::render;

const CORE: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "parent_id",
    "description",
    "enabled",
    "is_domain",
    "tags",
    "options",
];
const MAX_TAGS: usize = 80;

pub(super) fn target(p: &ProjectRow) -> api_common::Target {
    api_common::Target::new()
        .with("target.project.id", p.id.clone())
        .with("target.project.domain_id", p.domain_id.clone())
}

pub(super) async fn get_or_404(state: &State, id: &str) -> Result<ProjectRow> {
    db::project_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("project", id))
}

fn check_tag(tag: &str) -> Result<()> {
    if tag.is_empty() || tag.chars().count() > 255 || tag.contains('/') || tag.contains(',') {
        return Err(Error::invalid(format!(
            "Invalid input for field 'tags': {tag:?} must be 1 to 255 characters without '/' or ','"
        )));
    }
    Ok(())
}

fn parse_tags(v: Option<&Value>) -> Result<Option<Vec<String>>> {
    match v {
        None => Ok(None),
        Some(Value::Array(a)) => {
            if a.len() > MAX_TAGS {
                return Err(Error::invalid(format!(
                    "Invalid input for field 'tags': at most {MAX_TAGS} tags"
                )));
            }
            let mut out = Vec::new();
            for t in a {
                let t = t.as_str().ok_or_else(|| {
                    Error::invalid("Invalid input for field 'tags': tags are strings")
                })?;
                check_tag(t)?;
                if !out.iter().any(|x| x == t) {
                    out.push(t.to_string());
                }
            }
            Ok(Some(out))
        }
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field 'tags': {other} is not of type 'array'"
        ))),
    }
}

async fn render_many(state: &State, base: &str, list: &[ProjectRow]) -> Result<Vec<Value>> {
    let ids: Vec<String> = list.iter().map(|p| p.id.clone()).collect();
    let tags = db::project_tags(&state.db, &ids).await?;
    Ok(list
        .iter()
        .map(|p| render::project(base, p, tags.get(&p.id).map(Vec::as_slice).unwrap_or(&[])))
        .collect())
}

async fn render_one(state: &State, base: &str, p: &ProjectRow) -> Result<Value> {
    let mut v = render_many(state, base, std::slice::from_ref(p)).await?;
    Ok(v.pop().unwrap_or(Value::Null))
}

fn tag_filter(q: &Q, tags: &[String]) -> bool {
    let split = |k: &str| -> Option<Vec<String>> {
        q.get(k).map(|v| v.split(',').map(str::to_string).collect())
    };
    if let Some(all) = split("tags") {
        if !all.iter().all(|t| tags.contains(t)) {
            return false;
        }
    }
    if let Some(any) = split("tags-any") {
        if !any.iter().any(|t| tags.contains(t)) {
            return false;
        }
    }
    if let Some(not_all) = split("not-tags") {
        if not_all.iter().all(|t| tags.contains(t)) {
            return false;
        }
    }
    if let Some(not_any) = split("not-tags-any") {
        if not_any.iter().any(|t| tags.contains(t)) {
            return false;
        }
    }
    true
}

pub async fn list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    let t = api_common::Target::new().with_opt("target.domain_id", q.get("domain_id").cloned());
    state.authorize(&caller.0, "identity:list_projects", &t)?;
    if input::query_bool(&q, "is_domain") == Some(true) {
        let items: Vec<Value> = Vec::new();
        return Ok(Json(input::list(
            "projects",
            items,
            format!("{base}/v3/projects"),
            None,
        )));
    }
    let mut f = ProjectFilter {
        domain_id: q.get("domain_id").cloned(),
        enabled: input::query_bool(&q, "enabled"),
        ..Default::default()
    };
    if let Some(parent) = q.get("parent_id") {
        // A domain id as parent means the domain's top-level projects.
        if domains::domain_get(&state.db, parent).await?.is_some() {
            f.domain_id = Some(parent.clone());
            f.parent_id = Some(None);
        } else {
            f.parent_id = Some(Some(parent.clone()));
        }
    }
    let rows: Vec<ProjectRow> = db::project_list(&state.db, &f)
        .await?
        .into_iter()
        .filter(|p| input::text_matches(&q, "name", &p.name))
        .collect();
    let ids: Vec<String> = rows.iter().map(|p| p.id.clone()).collect();
    let tags = db::project_tags(&state.db, &ids).await?;
    let rows: Vec<ProjectRow> = rows
        .into_iter()
        .filter(|p| tag_filter(&q, tags.get(&p.id).map(Vec::as_slice).unwrap_or(&[])))
        .collect();
    let items = rows
        .iter()
        .map(|p| render::project(&base, p, tags.get(&p.id).map(Vec::as_slice).unwrap_or(&[])))
        .collect();
    Ok(Json(input::list(
        "projects",
        items,
        format!("{base}/v3/projects"),
        state.cfg.list_limit,
    )))
}

pub async fn show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> Result<Json<Value>> {
    let p = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:get_project", &target(&p))?;
    let mut v = render_one(&state, &base, &p).await?;
    let ancestors = || async { db::project_ancestors(&state.db, &p).await };
    if input::query_bool(&q, "parents_as_ids") == Some(true) {
        let chain = ancestors().await?;
        v["parents"] = nested_ids(&chain.iter().map(|a| a.id.clone()).collect::<Vec<_>>());
    }
    if input::query_bool(&q, "parents_as_list") == Some(true) {
        let chain = ancestors().await?;
        let list = render_many(&state, &base, &chain).await?;
        v["parents"] = Value::Array(list.into_iter().map(|p| json!({ "project": p })).collect());
    }
    if input::query_bool(&q, "subtree_as_list") == Some(true) {
        let sub = db::project_subtree(&state.db, &p.id).await?;
        let list = render_many(&state, &base, &sub).await?;
        v["subtree"] = Value::Array(list.into_iter().map(|p| json!({ "project": p })).collect());
    }
    if input::query_bool(&q, "subtree_as_ids") == Some(true) {
        let sub = db::project_subtree(&state.db, &p.id).await?;
        v["subtree"] = subtree_ids(&p.id, &sub);
    }
    Ok(Json(json!({ "project": v })))
}

/// `{"parent": {"grandparent": null}}` from nearest-first ancestors.
fn nested_ids(chain: &[String]) -> Value {
    let mut v = Value::Null;
    for id in chain.iter().rev() {
        v = json!({ id.clone(): v });
    }
    v
}

fn subtree_ids(root: &str, sub: &[ProjectRow]) -> Value {
    let children: Vec<&ProjectRow> = sub
        .iter()
        .filter(|p| p.parent_id.as_deref() == Some(root))
        .collect();
    if children.is_empty() {
        return Value::Null;
    }
    let mut m = serde_json::Map::new();
    for c in children {
        m.insert(c.id.clone(), subtree_ids(&c.id, sub));
    }
    Value::Object(m)
}

pub async fn create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    let m = input::entity(&body, "project")?;
    if input::opt_bool(&m, "is_domain")? == Some(true) {
        return Err(Error::NotImplemented(
            "Projects acting as domains are created with POST /v3/domains.".into(),
        ));
    }
    let name = input::req_name(&m, "name", 64)?;
    let mut domain_id = input::opt_str(&m, "domain_id", 64)?;
    let mut parent_id = input::opt_str(&m, "parent_id", 64)?;
    if let Some(pid) = parent_id.clone() {
        if let Some(parent) = db::project_get(&state.db, &pid).await? {
            if domain_id.as_deref().is_some_and(|d| d != parent.domain_id) {
                return Err(Error::invalid(
                    "Cannot create project, the parent project is in a different domain.",
                ));
            }
            domain_id = Some(parent.domain_id);
        } else if domains::domain_get(&state.db, &pid).await?.is_some() {
            if domain_id.as_deref().is_some_and(|d| d != pid) {
                return Err(Error::invalid(
                    "Cannot create project, the parent is a different domain.",
                ));
            }
            domain_id = Some(pid);
            parent_id = None;
        } else {
            return Err(Error::not_found("project", pid));
        }
    }
    let domain_id = match domain_id {
        Some(d) => d,
        None => match &caller.0.scope {
            api_common::Scope::Domain { id, .. } => id.clone(),
            api_common::Scope::Project { domain_id, .. } => domain_id.clone(),
            _ => crate::DEFAULT_DOMAIN_ID.to_string(),
        },
    };
    if domains::domain_get(&state.db, &domain_id).await?.is_none() {
        return Err(Error::not_found("domain", domain_id));
    }
    let tags = parse_tags(m.get("tags"))?.unwrap_or_default();
    let p = ProjectRow {
        id: input::new_id(),
        name,
        domain_id,
        parent_id,
        description: input::opt_str(&m, "description", 65_535)?.unwrap_or_default(),
        enabled: input::flag(input::opt_bool(&m, "enabled")?.unwrap_or(true)),
        extra: input::extra(&m, CORE, "{}"),
    };
    state.authorize(&caller.0, "identity:create_project", &target(&p))?;
    let mut tx = state.db.write().await?;
    db::project_create(&mut tx, &p).await.map_err(|e| {
        input::conflict(
            e,
            &format!(
                "project - Duplicate entry found with name {} at domain ID {}",
                p.name, p.domain_id
            ),
        )
    })?;
    db::project_tags_set(&mut tx, &p.id, &tags).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "project": render::project(&base, &p, &tags) })),
    ))
}

pub async fn update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let mut p = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:update_project", &target(&p))?;
    let m = input::entity(&body, "project")?;
    if input::opt_str(&m, "domain_id", 64)?.is_some_and(|d| d != p.domain_id) {
        return Err(Error::invalid("Update of `domain_id` is not allowed."));
    }
    if m.contains_key("is_domain") && input::opt_bool(&m, "is_domain")? != Some(false) {
        return Err(Error::invalid("Update of `is_domain` is not allowed."));
    }
    if let Some(parent) = input::opt_str(&m, "parent_id", 64)? {
        let current = p.parent_id.clone().unwrap_or_else(|| p.domain_id.clone());
        if parent != current {
            return Err(Error::Forbidden(
                "Update of `parent_id` is not allowed.".into(),
            ));
        }
    }
    if let Some(n) = input::name(&m, "name", 64)? {
        p.name = n;
    }
    if let Some(d) = input::opt_str(&m, "description", 65_535)? {
        p.description = d;
    }
    let disabling = input::opt_bool(&m, "enabled")? == Some(false) && store::flag(p.enabled);
    if let Some(e) = input::opt_bool(&m, "enabled")? {
        p.enabled = input::flag(e);
    }
    if disabling {
        let children = db::project_subtree(&state.db, &p.id).await?;
        if children.iter().any(|c| store::flag(c.enabled)) {
            return Err(Error::Forbidden(format!(
                "Cannot disable project {} since its subtree contains enabled projects.",
                p.id
            )));
        }
    }
    p.extra = input::extra(&m, CORE, &p.extra);
    let tags = parse_tags(m.get("tags"))?;
    let mut tx = state.db.write().await?;
    db::project_update(&mut tx, &p).await.map_err(|e| {
        input::conflict(
            e,
            &format!("project - Duplicate entry found with name {}", p.name),
        )
    })?;
    if let Some(t) = &tags {
        db::project_tags_set(&mut tx, &p.id, t).await?;
    }
    state.commit(tx).await?;
    Ok(Json(
        json!({ "project": render_one(&state, &base, &p).await? }),
    ))
}

pub async fn delete(state: State, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    let p = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:delete_project", &target(&p))?;
    if db::project_has_children(&state.db, &id).await? {
        return Err(Error::Forbidden(format!(
            "Cannot delete the project {id} since it is not a leaf in the hierarchy."
        )));
    }
    let mut tx = state.db.write().await?;
    db::project_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn current_tags(state: &State, id: &str) -> Result<Vec<String>> {
    Ok(db::project_tags(&state.db, &[id.to_string()])
        .await?
        .remove(id)
        .unwrap_or_default())
}

pub async fn tags_list(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let p = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:list_project_tags", &target(&p))?;
    Ok(Json(json!({ "tags": current_tags(&state, &id).await? })))
}

pub async fn tags_replace(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    let p = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:update_project_tags", &target(&p))?;
    let v: Value = api_common::http::parse_json(&body)?;
    let tags = parse_tags(v.get("tags"))?
        .ok_or_else(|| Error::invalid("'tags' is a required property"))?;
    let mut tx = state.db.write().await?;
    db::project_tags_set(&mut tx, &id, &tags).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "tags": tags })))
}

pub async fn tags_clear(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let p = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:delete_project_tags", &target(&p))?;
    let mut tx = state.db.write().await?;
    db::project_tags_set(&mut tx, &id, &[]).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn tag_check(
    state: State,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode> {
    let p = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:get_project_tag", &target(&p))?;
    if current_tags(&state, &id).await?.contains(&tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found("tag", tag))
    }
}

pub async fn tag_add(
    state: State,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode> {
    let p = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:create_project_tag", &target(&p))?;
    check_tag(&tag)?;
    let mut tags = current_tags(&state, &id).await?;
    if !tags.contains(&tag) {
        if tags.len() >= MAX_TAGS {
            return Err(Error::invalid(format!(
                "A project may have at most {MAX_TAGS} tags."
            )));
        }
        tags.push(tag);
    }
    let mut tx = state.db.write().await?;
    db::project_tags_set(&mut tx, &id, &tags).await?;
    state.commit(tx).await?;
    Ok(StatusCode::CREATED)
}

pub async fn tag_remove(
    state: State,
    caller: Caller,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode> {
    let p = get_or_404(&state, &id).await?;
    state.authorize(&caller.0, "identity:delete_project_tag", &target(&p))?;
    let mut tags = current_tags(&state, &id).await?;
    if !tags.contains(&tag) {
        return Err(Error::not_found("tag", tag));
    }
    tags.retain(|t| *t != tag);
    let mut tx = state.db.write().await?;
    db::project_tags_set(&mut tx, &id, &tags).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
