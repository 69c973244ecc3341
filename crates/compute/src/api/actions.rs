//! /servers/{id}/os-instance-actions: what was done to a server, and the
//! events of each action (`openstack server event list/show`).

use axum::extract::Path;
use axum::Json;
use serde_json::{json, Value};
use store::Row;

use super::{Auth, Mv, State};
use crate::error::{Error, Result};
use crate::Compute;

fn ts(mv: Mv, micros: Option<i64>) -> Value {
    let _ = mv;
    match micros.and_then(chrono::DateTime::from_timestamp_micros) {
        Some(t) => json!(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        None => Value::Null,
    }
}

async fn server_project(state: &Compute, id: &str) -> Result<(String, String)> {
    let row = store::sqlx::query("SELECT project_id, user_id FROM instances WHERE id = $1")
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?
        .ok_or_else(|| Error::server_not_found(id))?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

pub async fn list(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let (project, _) = server_project(&state, &id).await?;
    if !caller.is_admin && project != caller.project() {
        return Err(Error::server_not_found(&id));
    }
    state.authorize(
        &caller,
        "os_compute_api:os-instance-actions:list",
        &Compute::project_target(&project, None),
    )?;
    let rows = store::sqlx::query(
        "SELECT action, instance_id, request_id, user_id, project_id, start_time, message, \
         updated_at FROM instance_actions WHERE instance_id = $1 ORDER BY start_time DESC",
    )
    .bind(&id)
    .fetch_all(state.db.pool())
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let mut a = json!({
            "action": r.try_get::<String, _>(0)?,
            "instance_uuid": r.try_get::<String, _>(1)?,
            "request_id": r.try_get::<String, _>(2)?,
            "user_id": r.try_get::<Option<String>, _>(3)?,
            "project_id": r.try_get::<Option<String>, _>(4)?,
            "start_time": ts(mv, r.try_get(5)?),
            "message": r.try_get::<Option<String>, _>(6)?,
        });
        if mv.at_least(58) {
            a["updated_at"] = ts(mv, r.try_get(7)?);
        }
        out.push(a);
    }
    Ok(Json(json!({ "instanceActions": out })))
}

pub async fn show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path((id, request_id)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let (project, _) = server_project(&state, &id).await?;
    if !caller.is_admin && project != caller.project() {
        return Err(Error::server_not_found(&id));
    }
    let target = Compute::project_target(&project, None);
    state.authorize(&caller, "os_compute_api:os-instance-actions:show", &target)?;
    let row = store::sqlx::query(
        "SELECT id, action, instance_id, request_id, user_id, project_id, start_time, message, \
         updated_at FROM instance_actions WHERE instance_id = $1 AND request_id = $2",
    )
    .bind(&id)
    .bind(&request_id)
    .fetch_optional(state.db.pool())
    .await?
    .ok_or_else(|| {
        Error::not_found(format!(
            "Action for request_id {request_id} on instance {id} not found"
        ))
    })?;
    let action_id: String = row.try_get(0)?;
    let mut a = json!({
        "action": row.try_get::<String, _>(1)?,
        "instance_uuid": row.try_get::<String, _>(2)?,
        "request_id": row.try_get::<String, _>(3)?,
        "user_id": row.try_get::<Option<String>, _>(4)?,
        "project_id": row.try_get::<Option<String>, _>(5)?,
        "start_time": ts(mv, row.try_get(6)?),
        "message": row.try_get::<Option<String>, _>(7)?,
    });
    if mv.at_least(58) {
        a["updated_at"] = ts(mv, row.try_get(8)?);
    }
    if state.allowed(
        &caller,
        "os_compute_api:os-instance-actions:events",
        &target,
    ) {
        let events = store::sqlx::query(
            "SELECT event, start_time, finish_time, result, traceback, host \
             FROM instance_action_events WHERE action_id = $1 ORDER BY start_time",
        )
        .bind(&action_id)
        .fetch_all(state.db.pool())
        .await?;
        let mut list = Vec::new();
        for e in events {
            let mut ev = json!({
                "event": e.try_get::<String, _>(0)?,
                "start_time": ts(mv, e.try_get(1)?),
                "finish_time": ts(mv, e.try_get(2)?),
                "result": e.try_get::<Option<String>, _>(3)?,
                "traceback": e.try_get::<Option<String>, _>(4)?,
            });
            let host: Option<String> = e.try_get(5)?;
            if mv.at_least(62) {
                ev["hostId"] = json!(host
                    .as_deref()
                    .map(|h| {
                        use sha2::Digest;
                        hex::encode(sha2::Sha224::digest(format!("{project}{h}").as_bytes()))
                    })
                    .unwrap_or_default());
                ev["host"] = json!(host);
            }
            if mv.at_least(84) {
                ev["details"] = Value::Null;
            }
            list.push(ev);
        }
        a["events"] = json!(list);
    }
    Ok(Json(json!({ "instanceAction": a })))
}
