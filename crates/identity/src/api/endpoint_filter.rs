//! OS-EP-FILTER: endpoints associated with projects, one by one or through
//! endpoint groups (filters on interface, service and region).

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::input;
use super::{Base, Caller, State};
use crate::db::catalog::{self, EndpointRow};
use crate::db::extensions::{self as db, EndpointGroupRow};
use crate::db::projects;
use crate::error::{Error, Result};
use crate::render;

const FILTER_KEYS: &[&str] = &["interface", "service_id", "region_id"];

fn none() -> api_common::Target {
    api_common::Target::new()
}

async fn project_404(state: &State, id: &str) -> Result<projects::ProjectRow> {
    projects::project_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("project", id))
}

async fn endpoint_404(state: &State, id: &str) -> Result<EndpointRow> {
    catalog::endpoint_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("endpoint", id))
}

async fn group_404(state: &State, id: &str) -> Result<EndpointGroupRow> {
    db::endpoint_group_get(&state.db, id)
        .await?
        .ok_or_else(|| Error::not_found("endpoint group", id))
}

fn filters_of(g: &EndpointGroupRow) -> Map<String, Value> {
    match serde_json::from_str::<Value>(&g.filters) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn matches(filters: &Map<String, Value>, e: &EndpointRow) -> bool {
    filters.iter().all(|(k, v)| {
        let have = match k.as_str() {
            "interface" => Some(e.interface.as_str()),
            "service_id" => Some(e.service_id.as_str()),
            "region_id" => e.region_id.as_deref(),
            _ => None,
        };
        have.is_some() && v.as_str() == have
    })
}

fn group_json(base: &str, g: &EndpointGroupRow) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "filters": Value::Object(filters_of(g)),
        "links": { "self": format!("{base}/v3/OS-EP-FILTER/endpoint_groups/{}", g.id) },
    })
}

/// Endpoints available to a project: associated directly or through groups.
pub(crate) async fn project_endpoints(state: &State, project_id: &str) -> Result<Vec<EndpointRow>> {
    let direct = db::project_endpoint_ids(&state.db, project_id).await?;
    let groups: Vec<String> = db::endpoint_group_projects(&state.db)
        .await?
        .into_iter()
        .filter(|(_, p)| p == project_id)
        .map(|(g, _)| g)
        .collect();
    let mut filters = Vec::new();
    for g in groups {
        if let Some(row) = db::endpoint_group_get(&state.db, &g).await? {
            filters.push(filters_of(&row));
        }
    }
    Ok(catalog::endpoint_list(&state.db)
        .await?
        .into_iter()
        .filter(|e| direct.contains(&e.id) || filters.iter().any(|f| matches(f, e)))
        .collect())
}

pub async fn project_endpoint_add(
    state: State,
    caller: Caller,
    Path((project, endpoint)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:add_endpoint_to_project", &none())?;
    project_404(&state, &project).await?;
    endpoint_404(&state, &endpoint).await?;
    let mut tx = state.db.write().await?;
    db::project_endpoint_add(&mut tx, &project, &endpoint).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn project_endpoint_check(
    state: State,
    caller: Caller,
    Path((project, endpoint)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:check_endpoint_in_project", &none())?;
    project_404(&state, &project).await?;
    endpoint_404(&state, &endpoint).await?;
    if db::project_endpoint_ids(&state.db, &project)
        .await?
        .contains(&endpoint)
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(
            "endpoint in project",
            format!("{endpoint} in {project}"),
        ))
    }
}

pub async fn project_endpoint_remove(
    state: State,
    caller: Caller,
    Path((project, endpoint)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:remove_endpoint_from_project", &none())?;
    let mut tx = state.db.write().await?;
    if !db::project_endpoint_remove(&mut tx, &project, &endpoint).await? {
        return Err(Error::not_found(
            "endpoint in project",
            format!("{endpoint} in {project}"),
        ));
    }
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn project_endpoints_list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(project): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_endpoints_for_project", &none())?;
    project_404(&state, &project).await?;
    let items = project_endpoints(&state, &project)
        .await?
        .iter()
        .map(|e| render::endpoint(&base, e))
        .collect();
    Ok(Json(input::list(
        "endpoints",
        items,
        format!("{base}/v3/OS-EP-FILTER/projects/{project}/endpoints"),
        None,
    )))
}

pub async fn endpoint_projects_list(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(endpoint): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_projects_for_endpoint", &none())?;
    endpoint_404(&state, &endpoint).await?;
    let ids = db::endpoint_project_ids(&state.db, &endpoint).await?;
    let f = projects::ProjectFilter {
        ids: Some(ids),
        ..Default::default()
    };
    let items = projects::project_list(&state.db, &f)
        .await?
        .iter()
        .map(|p| render::project(&base, p, &[]))
        .collect();
    Ok(Json(input::list(
        "projects",
        items,
        format!("{base}/v3/OS-EP-FILTER/endpoints/{endpoint}/projects"),
        None,
    )))
}

fn parse_filters(m: &input::Obj, required: bool) -> Result<Option<String>> {
    match m.get("filters") {
        None if required => Err(Error::invalid("'filters' is a required property")),
        None => Ok(None),
        Some(Value::Object(f)) => {
            for (k, v) in f {
                if !FILTER_KEYS.contains(&k.as_str()) || !v.is_string() {
                    return Err(Error::invalid(format!(
                        "Invalid input for field 'filters': {k:?} is not one of interface, service_id, region_id \
                         with a string value"
                    )));
                }
            }
            Ok(Some(Value::Object(f.clone()).to_string()))
        }
        Some(other) => Err(Error::invalid(format!(
            "Invalid input for field 'filters': {other} is not of type 'object'"
        ))),
    }
}

pub async fn groups_list(state: State, caller: Caller, Base(base): Base) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:list_endpoint_groups", &none())?;
    let items = db::endpoint_group_list(&state.db)
        .await?
        .iter()
        .map(|g| group_json(&base, g))
        .collect();
    Ok(Json(input::list(
        "endpoint_groups",
        items,
        format!("{base}/v3/OS-EP-FILTER/endpoint_groups"),
        None,
    )))
}

pub async fn group_create(
    state: State,
    caller: Caller,
    Base(base): Base,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>)> {
    state.authorize(&caller.0, "identity:create_endpoint_group", &none())?;
    let m = input::entity(&body, "endpoint_group")?;
    input::only(&m, "endpoint_group", &["name", "description", "filters"])?;
    let g = EndpointGroupRow {
        id: input::new_id(),
        name: input::req_name(&m, "name", 255)?,
        description: input::opt_str(&m, "description", 65_535)?,
        filters: parse_filters(&m, true)?.unwrap_or_default(),
    };
    let mut tx = state.db.write().await?;
    db::endpoint_group_put(&mut tx, &g).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "endpoint_group": group_json(&base, &g) })),
    ))
}

pub async fn group_show(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_endpoint_group", &none())?;
    let g = group_404(&state, &id).await?;
    Ok(Json(json!({ "endpoint_group": group_json(&base, &g) })))
}

pub async fn group_update(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:update_endpoint_group", &none())?;
    let mut g = group_404(&state, &id).await?;
    let m = input::entity(&body, "endpoint_group")?;
    input::only(&m, "endpoint_group", &["name", "description", "filters"])?;
    if let Some(n) = input::name(&m, "name", 255)? {
        g.name = n;
    }
    if m.contains_key("description") {
        g.description = input::opt_str(&m, "description", 65_535)?;
    }
    if let Some(f) = parse_filters(&m, false)? {
        g.filters = f;
    }
    let mut tx = state.db.write().await?;
    db::endpoint_group_put(&mut tx, &g).await?;
    state.commit(tx).await?;
    Ok(Json(json!({ "endpoint_group": group_json(&base, &g) })))
}

pub async fn group_delete(
    state: State,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:delete_endpoint_group", &none())?;
    group_404(&state, &id).await?;
    let mut tx = state.db.write().await?;
    db::endpoint_group_delete(&mut tx, &id).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn group_endpoints(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:list_endpoints_associated_with_endpoint_group",
        &none(),
    )?;
    let g = group_404(&state, &id).await?;
    let f = filters_of(&g);
    let items = catalog::endpoint_list(&state.db)
        .await?
        .iter()
        .filter(|e| matches(&f, e))
        .map(|e| render::endpoint(&base, e))
        .collect();
    Ok(Json(input::list(
        "endpoints",
        items,
        format!("{base}/v3/OS-EP-FILTER/endpoint_groups/{id}/endpoints"),
        None,
    )))
}

pub async fn group_projects(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:list_projects_associated_with_endpoint_group",
        &none(),
    )?;
    group_404(&state, &id).await?;
    let ids = db::endpoint_group_projects(&state.db)
        .await?
        .into_iter()
        .filter(|(g, _)| *g == id)
        .map(|(_, p)| p)
        .collect();
    let f = projects::ProjectFilter {
        ids: Some(ids),
        ..Default::default()
    };
    let items = projects::project_list(&state.db, &f)
        .await?
        .iter()
        .map(|p| render::project(&base, p, &[]))
        .collect();
    Ok(Json(input::list(
        "projects",
        items,
        format!("{base}/v3/OS-EP-FILTER/endpoint_groups/{id}/projects"),
        None,
    )))
}

pub async fn group_project_add(
    state: State,
    caller: Caller,
    Path((id, project)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.authorize(&caller.0, "identity:add_endpoint_group_to_project", &none())?;
    group_404(&state, &id).await?;
    project_404(&state, &project).await?;
    let mut tx = state.db.write().await?;
    db::endpoint_group_project_add(&mut tx, &id, &project).await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn group_project_check(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path((id, project)): Path<(String, String)>,
) -> Result<Json<Value>> {
    state.authorize(&caller.0, "identity:get_endpoint_group_in_project", &none())?;
    let g = group_404(&state, &id).await?;
    project_404(&state, &project).await?;
    let linked = db::endpoint_group_projects(&state.db)
        .await?
        .iter()
        .any(|(gid, p)| *gid == id && *p == project);
    if !linked {
        return Err(Error::not_found(
            "endpoint group in project",
            format!("{id} in {project}"),
        ));
    }
    Ok(Json(
        json!({ "project_endpoint_group": { "endpoint_group_id": g.id, "project_id": project },
                    "links": { "self": format!("{base}/v3/OS-EP-FILTER/endpoint_groups/{id}/projects/{project}") } }),
    ))
}

pub async fn group_project_remove(
    state: State,
    caller: Caller,
    Path((id, project)): Path<(String, String)>,
) -> Result<StatusCode> {
    state.authorize(
        &caller.0,
        "identity:remove_endpoint_group_from_project",
        &none(),
    )?;
    let mut tx = state.db.write().await?;
    if !db::endpoint_group_project_remove(&mut tx, &id, &project).await? {
        return Err(Error::not_found(
            "endpoint group in project",
            format!("{id} in {project}"),
        ));
    }
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn project_groups(
    state: State,
    caller: Caller,
    Base(base): Base,
    Path(project): Path<String>,
) -> Result<Json<Value>> {
    state.authorize(
        &caller.0,
        "identity:list_endpoint_groups_for_project",
        &none(),
    )?;
    project_404(&state, &project).await?;
    let mut items = Vec::new();
    for (g, p) in db::endpoint_group_projects(&state.db).await? {
        if p == project {
            if let Some(row) = db::endpoint_group_get(&state.db, &g).await? {
                items.push(group_json(&base, &row));
            }
        }
    }
    Ok(Json(input::list(
        "endpoint_groups",
        items,
        format!("{base}/v3/OS-EP-FILTER/projects/{project}/endpoint_groups"),
        None,
    )))
}
