//! Server sub-resources: `/servers/{id}/metadata`, `/servers/{id}/tags`
//! (2.26) and `/servers/{id}/diagnostics`, as Nova's `server_metadata`,
//! `server_tags` and `server_diagnostics` controllers behave.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::flavors::check;
use super::{base_url, Auth, Body, Mv, State};
use crate::db::instances::{self as idb, Instance};
use crate::error::{Error, Result};
use crate::{Caller, Compute};

/// Nova's per-server tag limit (`objects.instance.MAX_TAG_COUNT`).
pub const MAX_TAGS: usize = 50;

/// Nova's schema failure message for a field.
fn invalid(field: &str, value: &Value, why: &str) -> Error {
    check::field(field, value, why)
}

fn unexpected(keys: &[&String]) -> String {
    let list = keys
        .iter()
        .map(|k| check::repr(&json!(k)))
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() == 1 {
        format!("Additional properties are not allowed ({list} was unexpected)")
    } else {
        format!("Additional properties are not allowed ({list} were unexpected)")
    }
}

/// The top level of a body: an object with exactly the property `name`.
fn wrapper<'a>(body: &'a Value, name: &str) -> Result<&'a Value> {
    let Some(obj) = body.as_object() else {
        return Err(Error::bad(format!(
            "{} is not of type 'object'",
            check::repr(body)
        )));
    };
    let extra: Vec<&String> = obj.keys().filter(|k| k.as_str() != name).collect();
    let Some(inner) = obj.get(name) else {
        return Err(Error::bad(format!("'{name}' is a required property")));
    };
    if !extra.is_empty() {
        return Err(Error::bad(unexpected(&extra)));
    }
    Ok(inner)
}

/// A metadata key as Nova's schema allows it: `^[a-zA-Z0-9-_:. ]{1,255}$`.
fn valid_key(k: &str) -> bool {
    let n = k.chars().count();
    (1..=255).contains(&n)
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.' | ' '))
}

/// Nova's `parameter_types.metadata` with optional size bounds.
fn metadata_of(
    field: &str,
    v: &Value,
    bounds: Option<(usize, usize)>,
) -> Result<BTreeMap<String, String>> {
    let Some(m) = v.as_object() else {
        return Err(invalid(
            field,
            v,
            &format!("{} is not of type 'object'", check::repr(v)),
        ));
    };
    let bad: Vec<&String> = m.keys().filter(|k| !valid_key(k)).collect();
    if !bad.is_empty() {
        return Err(invalid(field, v, &unexpected(&bad)));
    }
    let mut out = BTreeMap::new();
    for (k, val) in m {
        let Some(s) = val.as_str() else {
            return Err(invalid(
                k,
                val,
                &format!("{} is not of type 'string'", check::repr(val)),
            ));
        };
        if s.chars().count() > 255 {
            return Err(invalid(
                k,
                val,
                &format!("{} is too long", check::repr(val)),
            ));
        }
        out.insert(k.clone(), s.to_string());
    }
    if let Some((min, max)) = bounds {
        if m.len() < min {
            return Err(invalid(
                field,
                v,
                &format!("{} does not have enough properties", check::repr(v)),
            ));
        }
        if m.len() > max {
            return Err(invalid(
                field,
                v,
                &format!("{} has too many properties", check::repr(v)),
            ));
        }
    }
    Ok(out)
}

/// `check_instance_lock`: 409 for a locked server unless the caller is an
/// admin.
fn check_lock(caller: &Caller, inst: &Instance) -> Result<()> {
    if inst.locked_by.is_some() && !caller.is_admin {
        return Err(Error::conflict(format!("Instance {} is locked", inst.id)));
    }
    Ok(())
}

/// The metadata changes' `check_instance_state(vm_state=[ACTIVE, PAUSED,
/// SUSPENDED, STOPPED], task_state=None)`.
fn check_metadata_state(inst: &Instance, action: &str) -> Result<()> {
    if !matches!(
        inst.vm_state.as_str(),
        "active" | "paused" | "suspended" | "stopped"
    ) {
        return Err(Error::invalid_state(
            "vm_state",
            &inst.vm_state,
            action,
            &inst.id,
        ));
    }
    if let Some(t) = &inst.task_state {
        return Err(Error::invalid_state("task_state", t, action, &inst.id));
    }
    Ok(())
}

// ---------------------------------------------------------------- metadata

pub async fn metadata_index(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let inst = state
        .visible(&caller, &id, "os_compute_api:server-metadata:index")
        .await?;
    Ok(Json(json!({"metadata": inst.metadata})))
}

pub async fn metadata_show(
    state: State,
    Auth(caller): Auth,
    Path((id, key)): Path<(String, String)>,
) -> Result<Json<Value>> {
    let inst = state
        .visible(&caller, &id, "os_compute_api:server-metadata:show")
        .await?;
    let value = inst
        .metadata
        .get(&key)
        .ok_or_else(|| Error::not_found("Metadata item was not found"))?;
    Ok(Json(json!({"meta": {key: value}})))
}

/// POST: merges items into the metadata.
pub async fn metadata_create(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let items = metadata_of("metadata", wrapper(&body, "metadata")?, None)?;
    let inst = state
        .visible(&caller, &id, "os_compute_api:server-metadata:create")
        .await?;
    let all = change_metadata(&state, &caller, &inst, &items, false).await?;
    Ok(Json(json!({"metadata": all})))
}

/// PUT: replaces the metadata.
pub async fn metadata_update_all(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let items = metadata_of("metadata", wrapper(&body, "metadata")?, None)?;
    let inst = state
        .visible(&caller, &id, "os_compute_api:server-metadata:update_all")
        .await?;
    let all = change_metadata(&state, &caller, &inst, &items, true).await?;
    Ok(Json(json!({"metadata": all})))
}

/// PUT on one key: sets that item.
pub async fn metadata_update(
    state: State,
    Auth(caller): Auth,
    Path((id, key)): Path<(String, String)>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let item = metadata_of("meta", wrapper(&body, "meta")?, Some((1, 1)))?;
    let inst = state
        .visible(&caller, &id, "os_compute_api:server-metadata:update")
        .await?;
    if !item.contains_key(&key) {
        return Err(Error::bad("Request body and URI mismatch"));
    }
    change_metadata(&state, &caller, &inst, &item, false).await?;
    Ok(Json(json!({"meta": item})))
}

pub async fn metadata_delete(
    state: State,
    Auth(caller): Auth,
    Path((id, key)): Path<(String, String)>,
) -> Result<StatusCode> {
    let inst = state
        .visible(&caller, &id, "os_compute_api:server-metadata:delete")
        .await?;
    if !inst.metadata.contains_key(&key) {
        return Err(Error::not_found("Metadata item was not found"));
    }
    check_lock(&caller, &inst)?;
    check_metadata_state(&inst, "delete metadata")?;
    let mut tx = state.db.write().await?;
    if !idb::lock_for_change(&mut tx, &inst.id, true).await? {
        return Err(Error::server_not_found(&id));
    }
    if !idb::metadata_delete(&mut tx, &inst.id, &key).await? {
        return Err(Error::not_found("Metadata item was not found"));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `compute.API.update_instance_metadata`: lock and state checks, the
/// metadata_items quota on the result, one transaction. Returns the new
/// metadata.
async fn change_metadata(
    state: &Compute,
    caller: &Caller,
    inst: &Instance,
    items: &BTreeMap<String, String>,
    replace: bool,
) -> Result<BTreeMap<String, String>> {
    check_lock(caller, inst)?;
    check_metadata_state(inst, "update metadata")?;
    let mut tx = state.db.write().await?;
    if !idb::lock_for_change(&mut tx, &inst.id, true).await? {
        return Err(Error::server_not_found(&inst.id));
    }
    let mut all = if replace {
        BTreeMap::new()
    } else {
        idb::metadata_in(&mut tx, &inst.id).await?
    };
    all.extend(items.iter().map(|(k, v)| (k.clone(), v.clone())));
    crate::quota::check_metadata_items(state, &inst.project_id, &inst.user_id, all.len() as i64)
        .await?;
    idb::metadata_write(&mut tx, &inst.id, items, replace).await?;
    tx.commit().await?;
    Ok(all)
}

// -------------------------------------------------------------------- tags

fn tags_version(mv: Mv) -> Result<()> {
    if mv.at_least(26) {
        Ok(())
    } else {
        Err(Error::not_found("The resource could not be found."))
    }
}

/// Why a tag breaks `parameter_types.tag` (1-60 characters, no '/' or ','),
/// as jsonschema says it.
fn tag_problem(tag: &str) -> Option<String> {
    let n = tag.chars().count();
    let r = check::repr(&json!(tag));
    if n < 1 {
        Some(format!("{r} is too short"))
    } else if n > 60 {
        Some(format!("{r} is too long"))
    } else if tag.contains('/') || tag.contains(',') {
        Some(format!("{r} does not match '^[^,/]*$'"))
    } else {
        None
    }
}

/// `_check_instance_in_valid_state` of the tag controller.
fn check_tags_state(inst: &Instance, action: &str) -> Result<()> {
    if matches!(
        inst.vm_state.as_str(),
        "active" | "paused" | "suspended" | "stopped" | "shelved" | "shelved_offloaded"
    ) {
        Ok(())
    } else {
        Err(Error::invalid_state(
            "vm_state",
            &inst.vm_state,
            action,
            &inst.id,
        ))
    }
}

pub async fn tags_index(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    tags_version(mv)?;
    let inst = state
        .visible(&caller, &id, "os_compute_api:os-server-tags:index")
        .await?;
    Ok(Json(json!({"tags": inst.tags})))
}

pub async fn tag_show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode> {
    tags_version(mv)?;
    let inst = state
        .visible(&caller, &id, "os_compute_api:os-server-tags:show")
        .await?;
    if inst.tags.contains(&tag) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found(format!("Server {id} has no tag '{tag}'")))
    }
}

pub async fn tags_update_all(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    tags_version(mv)?;
    let list = wrapper(&body, "tags")?;
    let Some(items) = list.as_array() else {
        return Err(invalid(
            "tags",
            list,
            &format!("{} is not of type 'array'", check::repr(list)),
        ));
    };
    if items.len() > MAX_TAGS {
        return Err(invalid(
            "tags",
            list,
            &format!("{} is too long", check::repr(list)),
        ));
    }
    let mut tags: Vec<String> = Vec::new();
    for (n, t) in items.iter().enumerate() {
        let Some(s) = t.as_str() else {
            return Err(invalid(
                &n.to_string(),
                t,
                &format!("{} is not of type 'string'", check::repr(t)),
            ));
        };
        if let Some(why) = tag_problem(s) {
            return Err(invalid(&n.to_string(), t, &why));
        }
        tags.push(s.to_string());
    }
    tags.sort();
    tags.dedup();
    let inst = state
        .visible(&caller, &id, "os_compute_api:os-server-tags:update_all")
        .await?;
    check_tags_state(&inst, "update tags")?;
    let mut tx = state.db.write().await?;
    if !idb::lock_for_change(&mut tx, &inst.id, true).await? {
        return Err(Error::server_not_found(&id));
    }
    idb::tags_replace(&mut tx, &inst.id, &tags).await?;
    tx.commit().await?;
    Ok(Json(json!({"tags": tags})))
}

pub async fn tags_delete_all(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    tags_version(mv)?;
    let inst = state
        .visible(&caller, &id, "os_compute_api:os-server-tags:delete_all")
        .await?;
    check_tags_state(&inst, "delete tags")?;
    let mut tx = state.db.write().await?;
    if !idb::lock_for_change(&mut tx, &inst.id, true).await? {
        return Err(Error::server_not_found(&id));
    }
    idb::tags_replace(&mut tx, &inst.id, &[]).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Percent-encodes a path segment for the Location header.
fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn tag_update(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Path((id, tag)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    tags_version(mv)?;
    // The request body must be empty (or JSON null).
    if !body.iter().all(u8::is_ascii_whitespace) {
        let v: Value =
            serde_json::from_slice(&body).map_err(|_| Error::bad("Malformed request body"))?;
        if !v.is_null() {
            return Err(Error::bad(format!(
                "{} is not of type 'null'",
                check::repr(&v)
            )));
        }
    }
    let inst = state
        .visible(&caller, &id, "os_compute_api:os-server-tags:update")
        .await?;
    check_tags_state(&inst, "update tag")?;
    if let Some(why) = tag_problem(&tag) {
        return Err(Error::bad(format!(
            "Tag '{tag}' is invalid. It must be a non empty string without characters '/' \
             and ','. Validation error message: {why}"
        )));
    }
    let mut tx = state.db.write().await?;
    if !idb::lock_for_change(&mut tx, &inst.id, false).await? {
        return Err(Error::server_not_found(&id));
    }
    let tags = idb::tags_in(&mut tx, &inst.id).await?;
    if tags.len() >= MAX_TAGS {
        return Err(Error::bad(format!(
            "The number of tags exceeded the per-server limit {MAX_TAGS}"
        )));
    }
    if tags.contains(&tag) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    idb::tag_add(&mut tx, &inst.id, &tag).await?;
    idb::lock_for_change(&mut tx, &inst.id, true).await?;
    tx.commit().await?;
    let location = format!(
        "{}/v2.1/servers/{}/tags/{}",
        base_url(&state, &headers),
        inst.id,
        encode_segment(&tag)
    );
    let mut res = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

pub async fn tag_delete(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path((id, tag)): Path<(String, String)>,
) -> Result<StatusCode> {
    tags_version(mv)?;
    let inst = state
        .visible(&caller, &id, "os_compute_api:os-server-tags:delete")
        .await?;
    check_tags_state(&inst, "delete tag")?;
    let mut tx = state.db.write().await?;
    if !idb::lock_for_change(&mut tx, &inst.id, true).await? {
        return Err(Error::server_not_found(&id));
    }
    if !idb::tag_delete(&mut tx, &inst.id, &tag).await? {
        return Err(Error::not_found(format!(
            "Instance {id} has no tag '{tag}'"
        )));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------- diagnostics

/// Nova's `power_state.STATE_MAP`.
fn power_state_name(p: i64) -> &'static str {
    match p {
        0 => "pending",
        1 => "running",
        3 => "paused",
        4 => "shutdown",
        6 => "crashed",
        7 => "suspended",
        _ => "unknown",
    }
}

/// The kernel's USER_HZ, the unit of times in `/proc/<pid>/stat` (100 on
/// every architecture QEMU hosts run on here).
const USER_HZ: u64 = 100;

/// What `/proc` says about a QEMU process.
#[derive(Default)]
struct ProcStats {
    /// Per vCPU (`CPU n/KVM` or `CPU n/TCG` threads): (n, nanoseconds on CPU).
    vcpu_times: Vec<(u64, u64)>,
    /// Resident memory in KiB.
    rss_kib: Option<u64>,
    /// Seconds since the process started.
    uptime: Option<u64>,
}

/// Fields of `/proc/<pid>/stat` after the command name (field 3 first).
fn stat_fields(text: &str) -> Vec<&str> {
    match text.rfind(')') {
        Some(i) => text[i + 1..].split_whitespace().collect(),
        None => Vec::new(),
    }
}

fn proc_stats(pid: u32) -> ProcStats {
    let mut out = ProcStats::default();
    let dir = format!("/proc/{pid}");
    if let Ok(tasks) = std::fs::read_dir(format!("{dir}/task")) {
        for t in tasks.flatten() {
            let p = t.path();
            let Ok(comm) = std::fs::read_to_string(p.join("comm")) else {
                continue;
            };
            let Some(rest) = comm.trim().strip_prefix("CPU ") else {
                continue;
            };
            let Some(n) = rest.split('/').next().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            // schedstat: nanoseconds on CPU first.
            let ns = std::fs::read_to_string(p.join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
                .or_else(|| {
                    let s = std::fs::read_to_string(p.join("stat")).ok()?;
                    let f = stat_fields(&s);
                    let ticks: u64 =
                        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
                    Some(ticks * (1_000_000_000 / USER_HZ))
                });
            if let Some(ns) = ns {
                out.vcpu_times.push((n, ns));
            }
        }
    }
    out.vcpu_times.sort();
    out.rss_kib = std::fs::read_to_string(format!("{dir}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        });
    let start_ticks: Option<u64> = std::fs::read_to_string(format!("{dir}/stat"))
        .ok()
        .and_then(|s| stat_fields(&s).get(19).and_then(|v| v.parse().ok()));
    let boot_secs: Option<f64> = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()));
    if let (Some(start), Some(up)) = (start_ticks, boot_secs) {
        let started = start as f64 / USER_HZ as f64;
        out.uptime = Some((up - started).max(0.0) as u64);
    }
    out
}

pub async fn diagnostics(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let inst = state
        .visible(&caller, &id, "os_compute_api:os-server-diagnostics")
        .await?;
    let not_ready = || Error::conflict(format!("Instance {} is not ready", inst.id));
    let host = inst
        .host
        .as_deref()
        .filter(|h| !h.is_empty())
        .ok_or_else(not_ready)?;
    let host = state.hosts.get(host).ok_or_else(not_ready)?;
    let uuid = uuid::Uuid::parse_str(&inst.id).map_err(|_| Error::server_not_found(&id))?;
    let info = match host.hv.info(uuid).await {
        Ok(i) => i,
        Err(agent::hypervisor::Error::NotFound(_)) => return Err(not_ready()),
        Err(e) => return Err(Error::internal(format!("hypervisor info: {e}"))),
    };
    if info.state != agent::hypervisor::PowerState::Running {
        return Err(Error::invalid_state(
            "power state",
            power_state_name(inst.power_state),
            "get_diagnostics",
            &inst.id,
        ));
    }
    let stats = info
        .pid
        .map(|pid| tokio::task::spawn_blocking(move || proc_stats(pid)));
    let stats = match stats {
        Some(h) => h.await.unwrap_or_default(),
        None => ProcStats::default(),
    };
    if !mv.at_least(48) {
        // The libvirt driver's flat dictionary, with what is known.
        let mut out = Map::new();
        for (n, ns) in &stats.vcpu_times {
            out.insert(format!("cpu{n}_time"), json!(ns));
        }
        out.insert("memory".into(), json!(info.memory_mb * 1024));
        if let Some(rss) = stats.rss_kib {
            out.insert("memory-rss".into(), json!(rss));
        }
        return Ok(Json(Value::Object(out)));
    }
    let kind = host.hv.kind();
    let hypervisor = if kind == "qemu" {
        match host.hv.host_resources().await {
            Ok(r) if r.accel == agent::hypervisor::Accel::Kvm => "kvm",
            _ => "qemu",
        }
    } else {
        kind
    };
    let uptime = stats.uptime.or_else(|| {
        inst.launched_at
            .map(|l| ((store::now_micros() - l).max(0) / 1_000_000) as u64)
    });
    let cpu_details: Vec<Value> = if stats.vcpu_times.is_empty() {
        (0..info.vcpus)
            .map(|n| json!({"id": n, "time": null, "utilisation": null}))
            .collect()
    } else {
        stats
            .vcpu_times
            .iter()
            .map(|(n, ns)| json!({"id": n, "time": ns, "utilisation": null}))
            .collect()
    };
    // The root disk and the config drive; their counters are not collected.
    let disk = json!({
        "read_bytes": null, "read_requests": null, "write_bytes": null,
        "write_requests": null, "errors_count": null,
    });
    let disk_details = vec![disk.clone(), disk];
    Ok(Json(json!({
        "state": info.state.as_str(),
        // Nova's diagnostics name one of its virt drivers (libvirt, xenapi,
        // vmwareapi, ironic); QEMU driven directly is libvirt's case, and
        // Nova's own fake driver reports libvirt too.
        "driver": "libvirt",
        "hypervisor": hypervisor,
        "hypervisor_os": "linux",
        "uptime": uptime,
        "config_drive": true,
        "num_cpus": cpu_details.len(),
        "num_nics": 0,
        "num_disks": disk_details.len(),
        "cpu_details": cpu_details,
        "nic_details": [],
        "disk_details": disk_details,
        "memory_details": {
            "maximum": info.memory_mb,
            "used": stats.rss_kib.map(|k| k / 1024),
        },
    })))
}
