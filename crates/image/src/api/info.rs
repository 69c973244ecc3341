//! Schemas and the `/v2/info` documents.

use axum::Json;
use serde_json::{json, Value};

use super::{Auth, State};
use crate::error::{Error, Result};
use crate::schemas;

pub async fn schema_image(state: State, Auth(_): Auth) -> Json<Value> {
    Json(schemas::image(&state.cfg))
}

pub async fn schema_images(state: State, Auth(_): Auth) -> Json<Value> {
    Json(schemas::images(&state.cfg))
}

pub async fn schema_member(Auth(_): Auth) -> Json<Value> {
    Json(schemas::member())
}

pub async fn schema_members(Auth(_): Auth) -> Json<Value> {
    Json(schemas::members())
}

pub async fn schema_task(Auth(_): Auth) -> Json<Value> {
    Json(schemas::task())
}

pub async fn schema_tasks(Auth(_): Auth) -> Json<Value> {
    Json(schemas::tasks())
}

/// `/v2/info/import`: the interoperable import methods offered.
pub async fn import(state: State, Auth(_): Auth) -> Json<Value> {
    Json(json!({
        "import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": state.cfg.enabled_import_methods,
        }
    }))
}

/// `/v2/info/stores`: the stores images can be put in.
pub async fn stores(state: State, Auth(_): Auth) -> Json<Value> {
    Json(json!({
        "stores": [{
            "id": state.store.id(),
            "description": state.store.description(),
            "default": true,
        }]
    }))
}

/// `/v2/info/stores/detail` (admin): with each store's type and settings.
pub async fn stores_detail(state: State, Auth(caller): Auth) -> Result<Json<Value>> {
    state.authorize(&caller, "stores_info_detail", &api_common::Target::new())?;
    let dir = state
        .cfg
        .store_dir
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    Ok(Json(json!({
        "stores": [{
            "id": state.store.id(),
            "description": state.store.description(),
            "default": true,
            "type": "file",
            "weight": 0,
            "properties": { "data_dir": dir, "chunk_size": 262_144 },
        }]
    })))
}

/// `/v2/info/usage`: the caller's project's limits and usage.
pub async fn usage(state: State, Auth(caller): Auth) -> Result<Json<Value>> {
    let project = caller
        .project()
        .ok_or_else(|| Error::bad("Usage is reported for a project-scoped token."))?;
    Ok(Json(json!({ "usage": state.usage_report(project).await? })))
}
