//! /os-hypervisors and /os-services: what runs where, and whether hosts
//! take new servers.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery};
use axum::Json;
use serde_json::{json, Map, Value};
use store::Row;

use super::servers::iso;
use super::{query_pairs, Auth, Body, Mv, State};
use crate::error::{Error, Result};
use crate::Compute;

struct Service {
    id: String,
    binary: String,
    host: String,
    zone: String,
    disabled: bool,
    disabled_reason: Option<String>,
    forced_down: bool,
    last_seen_up: Option<i64>,
    updated_at: Option<i64>,
}

async fn services(state: &Compute) -> Result<Vec<Service>> {
    let rows = store::sqlx::query(
        "SELECT id, binary_name, host, zone, disabled, disabled_reason, forced_down, \
         last_seen_up, updated_at FROM compute_services ORDER BY created_at, host, binary_name",
    )
    .fetch_all(state.db.pool())
    .await?;
    let zones = state.host_zones().await?;
    rows.iter()
        .map(|r| {
            let host: String = r.try_get(2)?;
            let binary: String = r.try_get(1)?;
            let zone: String = r.try_get(3)?;
            let zone = if binary == "nova-compute" {
                zones.get(&host).cloned().unwrap_or(zone)
            } else {
                zone
            };
            Ok(Service {
                id: r.try_get(0)?,
                binary,
                host,
                zone,
                disabled: store::flag(r.try_get(4)?),
                disabled_reason: r.try_get(5)?,
                forced_down: store::flag(r.try_get(6)?),
                last_seen_up: r.try_get(7)?,
                updated_at: r.try_get(8)?,
            })
        })
        .collect::<std::result::Result<_, store::sqlx::Error>>()
        .map_err(Error::from)
}

fn is_up(state: &Compute, s: &Service) -> bool {
    let limit = store::now_micros()
        - (state.cfg.service_down_time_seconds as i64).saturating_mul(1_000_000);
    !s.forced_down && s.last_seen_up.is_some_and(|t| t >= limit)
}

fn render_service(state: &Compute, s: &Service, n: usize, mv: Mv) -> Value {
    let mut v = json!({
        "id": if mv.at_least(53) { json!(s.id) } else { json!(n + 1) },
        "binary": s.binary,
        "host": s.host,
        "zone": s.zone,
        "status": if s.disabled { "disabled" } else { "enabled" },
        "state": if is_up(state, s) { "up" } else { "down" },
        "updated_at": s.last_seen_up.or(s.updated_at).map(iso),
        "disabled_reason": s.disabled_reason,
    });
    if mv.at_least(11) {
        v["forced_down"] = json!(s.forced_down);
    }
    v
}

pub async fn service_list(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "os_compute_api:os-services:list",
        &Compute::project_target(caller.project(), None),
    )?;
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (host, binary) = (get("host"), get("binary"));
    let list = services(&state).await?;
    let out: Vec<Value> = list
        .iter()
        .enumerate()
        .filter(|(_, s)| host.as_ref().is_none_or(|h| *h == s.host))
        .filter(|(_, s)| binary.as_ref().is_none_or(|b| *b == s.binary))
        .map(|(n, s)| render_service(&state, s, n, mv))
        .collect();
    Ok(Json(json!({ "services": out })))
}

/// PUT /os-services/{id} (2.53): status, disabled_reason, forced_down.
pub async fn service_update(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "os_compute_api:os-services:update",
        &Compute::project_target(caller.project(), None),
    )?;
    if !mv.at_least(53) {
        return legacy_update(&state, &id, &body, mv).await;
    }
    let list = services(&state).await?;
    let Some((n, svc)) = list.iter().enumerate().find(|(_, s)| s.id == id) else {
        return Err(Error::not_found(format!(
            "Service {id} could not be found."
        )));
    };
    let obj = body.as_object().filter(|m| !m.is_empty()).ok_or_else(|| {
        Error::bad(
            "No updates were requested. Fields 'status' or 'forced_down' should be specified.",
        )
    })?;
    let mut disabled = svc.disabled;
    let mut reason = svc.disabled_reason.clone();
    let mut forced = svc.forced_down;
    for (k, v) in obj {
        match k.as_str() {
            "status" => match v.as_str() {
                Some("enabled") => {
                    disabled = false;
                    reason = None;
                }
                Some("disabled") => disabled = true,
                _ => {
                    return Err(Error::bad(format!(
                        "Invalid input for field/attribute status. Value: {v}. {v} is not one of ['enabled', 'disabled']"
                    )))
                }
            },
            "disabled_reason" => {
                reason = v.as_str().map(str::to_string);
            }
            "forced_down" => {
                forced = v.as_bool().ok_or_else(|| {
                    Error::bad(format!(
                        "Invalid input for field/attribute forced_down. Value: {v}. {v} is not of type 'boolean'"
                    ))
                })?
            }
            other => {
                return Err(Error::bad(format!(
                    "Invalid input for field/attribute. Additional properties are not allowed ('{other}' was unexpected)"
                )))
            }
        }
    }
    if obj.contains_key("disabled_reason")
        && obj.get("status").and_then(Value::as_str) != Some("disabled")
    {
        return Err(Error::bad(
            "Specifying 'disabled_reason' with status 'enabled' is invalid.",
        ));
    }
    if svc.binary != "nova-compute" && (disabled != svc.disabled || forced != svc.forced_down) {
        return Err(Error::bad(format!(
            "Updating a {} service is not supported. Only nova-compute services can be updated.",
            svc.binary
        )));
    }
    store::sqlx::query(
        "UPDATE compute_services SET disabled = $2, disabled_reason = $3, forced_down = $4, \
         updated_at = $5 WHERE id = $1",
    )
    .bind(&id)
    .bind(disabled as i64)
    .bind(&reason)
    .bind(forced as i64)
    .bind(store::now_micros())
    .execute(state.db.pool())
    .await?;
    state.invalidate_host_cache();
    let list = services(&state).await?;
    let svc = list
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Error::not_found(format!("Service {id} could not be found.")))?;
    Ok(Json(json!({"service": render_service(&state, svc, n, mv)})))
}

/// PUT /os-services/{enable|disable|disable-log-reason|force-down}
/// (before 2.53): host + binary in the body.
async fn legacy_update(state: &Compute, action: &str, body: &Value, mv: Mv) -> Result<Json<Value>> {
    let host = body.get("host").and_then(Value::as_str).unwrap_or_default();
    let binary = body
        .get("binary")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let reason = body.get("disabled_reason").and_then(Value::as_str);
    let (set, value): (&str, i64) = match action {
        "enable" => ("disabled", 0),
        "disable" | "disable-log-reason" => ("disabled", 1),
        "force-down" if mv.at_least(11) => (
            "forced_down",
            body.get("forced_down")
                .and_then(Value::as_bool)
                .unwrap_or(false) as i64,
        ),
        _ => return Err(Error::not_found("Unknown action")),
    };
    let r = store::sqlx::query(&format!(
        "UPDATE compute_services SET {set} = $3, disabled_reason = CASE WHEN $3 = 1 AND '{set}' = 'disabled' THEN $4 WHEN '{set}' = 'disabled' THEN NULL ELSE disabled_reason END, \
         updated_at = $5 WHERE host = $1 AND binary_name = $2"
    ))
    .bind(host)
    .bind(binary)
    .bind(value)
    .bind(reason)
    .bind(store::now_micros())
    .execute(state.db.pool())
    .await?;
    state.invalidate_host_cache();
    if r.rows_affected() == 0 {
        return Err(Error::not_found(format!(
            "Service {binary} on host {host} not found."
        )));
    }
    let mut out = json!({"host": host, "binary": binary});
    match action {
        "enable" => out["status"] = json!("enabled"),
        "force-down" => out["forced_down"] = json!(value == 1),
        _ => {
            out["status"] = json!("disabled");
            if let Some(r) = reason {
                out["disabled_reason"] = json!(r);
            }
        }
    }
    Ok(Json(json!({ "service": out })))
}

pub async fn service_delete(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<axum::http::StatusCode> {
    state.authorize(
        &caller,
        "os_compute_api:os-services:delete",
        &Compute::project_target(caller.project(), None),
    )?;
    let list = services(&state).await?;
    let Some(svc) = list.iter().find(|s| s.id == id) else {
        return Err(Error::not_found(format!(
            "Service {id} could not be found."
        )));
    };
    if svc.binary == "nova-compute" {
        let row = store::sqlx::query(
            "SELECT COUNT(*) FROM instances WHERE host = $1 AND deleted_at IS NULL",
        )
        .bind(&svc.host)
        .fetch_one(state.db.pool())
        .await?;
        if row.try_get::<i64, _>(0)? > 0 {
            return Err(Error::conflict(
                "Unable to delete compute service that is hosting instances. Migrate or delete the instances first.",
            ));
        }
    }
    store::sqlx::query("DELETE FROM compute_services WHERE id = $1")
        .bind(&id)
        .execute(state.db.pool())
        .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------- hypervisors

struct Node {
    id: String,
    host: String,
    hypervisor_type: String,
    hypervisor_version: i64,
    host_ip: Option<String>,
    vcpus: i64,
    memory_mb: i64,
    local_gb: i64,
    cpu_info: String,
}

async fn nodes(state: &Compute) -> Result<Vec<Node>> {
    let rows = store::sqlx::query(
        "SELECT id, host, hypervisor_type, hypervisor_version, host_ip, vcpus, memory_mb, \
         local_gb, cpu_info FROM compute_nodes ORDER BY created_at, host",
    )
    .fetch_all(state.db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Node {
                id: r.try_get(0)?,
                host: r.try_get(1)?,
                hypervisor_type: r.try_get(2)?,
                hypervisor_version: r.try_get(3)?,
                host_ip: r.try_get(4)?,
                vcpus: r.try_get(5)?,
                memory_mb: r.try_get(6)?,
                local_gb: r.try_get(7)?,
                cpu_info: r.try_get(8)?,
            })
        })
        .collect::<std::result::Result<_, store::sqlx::Error>>()
        .map_err(Error::from)
}

/// Per host: (servers, vcpus, memory_mb, root_gb) in use.
async fn usage(state: &Compute) -> Result<BTreeMap<String, (i64, i64, i64, i64)>> {
    let rows = store::sqlx::query(
        "SELECT host, COUNT(*), CAST(SUM(vcpus) AS BIGINT), CAST(SUM(memory_mb) AS BIGINT), \
         CAST(SUM(root_gb) AS BIGINT) FROM instances WHERE deleted_at IS NULL AND host IS NOT NULL \
         GROUP BY host",
    )
    .fetch_all(state.db.pool())
    .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        out.insert(
            r.try_get(0)?,
            (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?),
        );
    }
    Ok(out)
}

fn render_node(
    state: &Compute,
    node: &Node,
    n: usize,
    svc: Option<(usize, &Service)>,
    used: (i64, i64, i64, i64),
    mv: Mv,
    detail: bool,
) -> Value {
    let up = svc.is_some_and(|(_, s)| is_up(state, s));
    let enabled = svc.is_some_and(|(_, s)| !s.disabled);
    let mut v = json!({
        "id": if mv.at_least(53) { json!(node.id) } else { json!(n + 1) },
        "hypervisor_hostname": node.host,
        "state": if up { "up" } else { "down" },
        "status": if enabled { "enabled" } else { "disabled" },
    });
    if !detail {
        return v;
    }
    let (running, vcpus_used, mem_used, disk_used) = used;
    let reserved_mem = state.cfg.reserved_host_memory_mb as i64;
    v["hypervisor_type"] = json!(node.hypervisor_type);
    v["hypervisor_version"] = json!(node.hypervisor_version);
    v["host_ip"] = json!(node.host_ip);
    v["service"] = json!({
        "host": node.host,
        "id": svc.map(|(i, s)| if mv.at_least(53) { json!(s.id) } else { json!(i + 1) }),
        "disabled_reason": svc.and_then(|(_, s)| s.disabled_reason.clone()),
    });
    if !mv.at_least(88) {
        v["vcpus"] = json!(node.vcpus);
        v["memory_mb"] = json!(node.memory_mb);
        v["local_gb"] = json!(node.local_gb);
        v["vcpus_used"] = json!(vcpus_used);
        v["memory_mb_used"] = json!(mem_used + reserved_mem);
        v["local_gb_used"] = json!(disk_used);
        v["free_ram_mb"] = json!(node.memory_mb - mem_used - reserved_mem);
        v["free_disk_gb"] = json!(node.local_gb - disk_used);
        v["current_workload"] = json!(0);
        v["running_vms"] = json!(running);
        v["disk_available_least"] = json!(node.local_gb - disk_used);
        let cpu: Value = serde_json::from_str(&node.cpu_info).unwrap_or(json!({}));
        v["cpu_info"] = if mv.at_least(28) {
            cpu
        } else {
            json!(cpu.to_string())
        };
    }
    v
}

async fn hypervisors(
    state: &Compute,
    caller: &crate::Caller,
    mv: Mv,
    q: Option<&str>,
    detail: bool,
    only: Option<&str>,
) -> Result<Vec<Value>> {
    let rule = if only.is_some() {
        "os_compute_api:os-hypervisors:show"
    } else if detail {
        "os_compute_api:os-hypervisors:list-detail"
    } else {
        "os_compute_api:os-hypervisors:list"
    };
    state.authorize(
        caller,
        rule,
        &Compute::project_target(caller.project(), None),
    )?;
    let pairs = query_pairs(q);
    let pattern = pairs
        .iter()
        .find(|(k, _)| k == "hypervisor_hostname_pattern")
        .map(|(_, v)| v.clone());
    let svcs = services(state).await?;
    let used = usage(state).await?;
    let mut out = Vec::new();
    for (n, node) in nodes(state).await?.iter().enumerate() {
        if let Some(id) = only {
            let matches = if mv.at_least(53) {
                node.id == id
            } else {
                id.parse::<usize>().ok() == Some(n + 1)
            };
            if !matches {
                continue;
            }
        }
        if let Some(p) = &pattern {
            if !node.host.contains(p.as_str()) {
                continue;
            }
        }
        let svc = svcs
            .iter()
            .enumerate()
            .find(|(_, s)| s.binary == "nova-compute" && s.host == node.host);
        out.push(render_node(
            state,
            node,
            n,
            svc,
            used.get(&node.host).copied().unwrap_or_default(),
            mv,
            detail || only.is_some(),
        ));
    }
    Ok(out)
}

pub async fn hypervisor_list(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let list = hypervisors(&state, &caller, mv, q.as_deref(), false, None).await?;
    Ok(Json(json!({ "hypervisors": list })))
}

pub async fn hypervisor_detail(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let list = hypervisors(&state, &caller, mv, q.as_deref(), true, None).await?;
    Ok(Json(json!({ "hypervisors": list })))
}

pub async fn hypervisor_show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let mut list = hypervisors(&state, &caller, mv, None, true, Some(&id)).await?;
    let h = list.pop().ok_or_else(|| {
        Error::not_found(format!("Hypervisor with ID '{id}' could not be found."))
    })?;
    Ok(Json(json!({ "hypervisor": h })))
}

pub async fn hypervisor_statistics(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
) -> Result<Json<Value>> {
    if mv.at_least(88) {
        return Err(Error::not_found("The resource could not be found."));
    }
    let list = hypervisors(&state, &caller, mv, None, true, None).await?;
    let sum = |k: &str| list.iter().map(|h| h[k].as_i64().unwrap_or(0)).sum::<i64>();
    Ok(Json(json!({"hypervisor_statistics": {
        "count": list.len(),
        "vcpus": sum("vcpus"), "vcpus_used": sum("vcpus_used"),
        "memory_mb": sum("memory_mb"), "memory_mb_used": sum("memory_mb_used"),
        "free_ram_mb": sum("free_ram_mb"), "local_gb": sum("local_gb"),
        "local_gb_used": sum("local_gb_used"), "free_disk_gb": sum("free_disk_gb"),
        "disk_available_least": sum("disk_available_least"),
        "running_vms": sum("running_vms"), "current_workload": 0,
    }})))
}

/// What `uptime` prints, for this machine's hosts (Nova asks the driver).
fn uptime_text() -> String {
    let now = chrono::Utc::now().format("%H:%M:%S");
    let secs = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0) as u64;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let l: Vec<&str> = load.split_whitespace().take(3).collect();
    let (days, hours, mins) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
    format!(
        " {now} up {days} days, {hours:2}:{mins:02},  0 users,  load average: {}",
        l.join(", ")
    )
}

pub async fn hypervisor_uptime(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    if mv.at_least(88) {
        return Err(Error::not_found("The resource could not be found."));
    }
    state.authorize(
        &caller,
        "os_compute_api:os-hypervisors:uptime",
        &Compute::project_target(caller.project(), None),
    )?;
    let mut list = hypervisors(&state, &caller, mv, None, false, Some(&id)).await?;
    let mut h = list.pop().ok_or_else(|| {
        Error::not_found(format!("Hypervisor with ID '{id}' could not be found."))
    })?;
    let host = h["hypervisor_hostname"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uptime = if state
        .hosts
        .get(&host)
        .is_some_and(|x| x.hv.kind() == "qemu")
    {
        json!(uptime_text())
    } else {
        Value::Null
    };
    // Nova's uptime view: the hypervisor's identity and state, not its
    // resources.
    let mut out = Map::new();
    for k in ["id", "hypervisor_hostname", "state", "status"] {
        out.insert(k.into(), h[k].take());
    }
    out.insert("uptime".into(), uptime);
    Ok(Json(json!({ "hypervisor": out })))
}

// ------------------------------------------------------------- os-hosts

/// GET /os-hosts (deprecated; gone from 2.43): every service's host.
pub async fn host_list(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    if mv.at_least(43) {
        return Err(Error::not_found("The resource could not be found."));
    }
    state.authorize(
        &caller,
        "os_compute_api:os-hosts:list",
        &Compute::project_target(caller.project(), None),
    )?;
    let pairs = query_pairs(q.as_deref());
    let zone = pairs
        .iter()
        .find(|(k, _)| k == "zone")
        .map(|(_, v)| v.clone());
    let out: Vec<Value> = services(&state)
        .await?
        .iter()
        .filter(|s| zone.as_ref().is_none_or(|z| *z == s.zone))
        .map(|s| {
            json!({
                "host_name": s.host,
                "service": s.binary.trim_start_matches("nova-"),
                "zone": s.zone,
            })
        })
        .collect();
    Ok(Json(json!({ "hosts": out })))
}

/// GET /os-hosts/{host}: the host's totals and per-project use.
pub async fn host_show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(host): Path<String>,
) -> Result<Json<Value>> {
    if mv.at_least(43) {
        return Err(Error::not_found("The resource could not be found."));
    }
    state.authorize(
        &caller,
        "os_compute_api:os-hosts:show",
        &Compute::project_target(caller.project(), None),
    )?;
    let node = nodes(&state)
        .await?
        .into_iter()
        .find(|n| n.host == host)
        .ok_or_else(|| Error::not_found(format!("Compute host {host} could not be found.")))?;
    let (_, vcpus, mem, disk) = usage(&state).await?.get(&host).copied().unwrap_or_default();
    let row = |project: &str, cpu: i64, mem: i64, disk: i64| {
        json!({"resource": {"host": host, "project": project, "cpu": cpu,
                            "memory_mb": mem, "disk_gb": disk}})
    };
    let mut out = vec![
        row("(total)", node.vcpus, node.memory_mb, node.local_gb),
        row(
            "(used_now)",
            vcpus,
            mem + state.cfg.reserved_host_memory_mb as i64,
            disk,
        ),
        row("(used_max)", vcpus, mem, disk),
    ];
    let per_project = store::sqlx::query(
        "SELECT project_id, CAST(SUM(vcpus) AS BIGINT), CAST(SUM(memory_mb) AS BIGINT), \
         CAST(SUM(root_gb) AS BIGINT) FROM instances WHERE host = $1 AND deleted_at IS NULL \
         GROUP BY project_id ORDER BY project_id",
    )
    .bind(&host)
    .fetch_all(state.db.pool())
    .await?;
    for r in per_project {
        let p: String = r.try_get(0)?;
        out.push(row(&p, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
    }
    Ok(Json(json!({ "host": out })))
}
