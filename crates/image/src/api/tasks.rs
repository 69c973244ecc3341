//! Tasks: the record of asynchronous work (interoperable import).

use axum::extract::Path;
use axum::Json;
use serde_json::{json, Value};

use super::{Auth, State};
use crate::db::tasks as db;
use crate::error::{Error, Result};
use crate::render;

pub async fn list(state: State, Auth(caller): Auth) -> Result<Json<Value>> {
    state.authorize(&caller, "get_tasks", &api_common::Target::new())?;
    let tasks: Vec<Value> = db::task_list(&state.db, None)
        .await?
        .iter()
        .map(render::task)
        .collect();
    Ok(Json(json!({
        "tasks": tasks,
        "first": "/v2/tasks",
        "schema": "/v2/schemas/tasks",
    })))
}

pub async fn show(state: State, Auth(caller): Auth, Path(id): Path<String>) -> Result<Json<Value>> {
    state.authorize(&caller, "get_task", &api_common::Target::new())?;
    let t = db::task_get(&state.db, &id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("Task with identifier {id} not found")))?;
    Ok(Json(render::task(&t)))
}

/// `/v2/images/{id}/tasks`: the tasks of one image, for whoever may see it.
pub async fn image_tasks(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    state.seen(&caller, &id).await?;
    let tasks: Vec<Value> = db::task_list(&state.db, Some(&id))
        .await?
        .iter()
        .map(render::task)
        .collect();
    Ok(Json(json!({ "tasks": tasks })))
}
