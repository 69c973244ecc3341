//! /servers: create, list, show, update, delete, and the action endpoint.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use sha2::Digest;

use super::flavors::check;
use super::{base_url, query_pairs, Auth, Body, Mv, State};
use crate::db::instances::{self as idb, Instance};
use crate::error::{Error, Result};
use crate::servers::PowerAction;
use crate::{Caller, Compute};

/// Nova's `Invalid input for field/attribute ...` message.
fn invalid(field: &str, value: &Value, why: &str) -> Error {
    check::field(field, value, why)
}

pub fn iso(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn iso_usec(micros: Option<i64>) -> Value {
    micros
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map(|t| Value::String(t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()))
        .unwrap_or(Value::Null)
}

/// Parses Nova's `changes-since` style ISO 8601 times.
fn parse_time(field: &str, s: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_micros())
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
                .map(|t| t.and_utc().timestamp_micros())
        })
        .map_err(|_| {
            Error::bad(format!(
                "Invalid filter field: {field}. Value: {s} is not a valid ISO 8601 time"
            ))
        })
}

/// Nova's API status from vm_state and task_state
/// (`nova.api.openstack.common._STATE_MAP`).
pub fn status(vm: &str, task: Option<&str>) -> &'static str {
    match (vm, task) {
        ("active", Some("rebooting" | "reboot_pending" | "reboot_started")) => "REBOOT",
        ("active", Some("rebooting_hard" | "reboot_pending_hard" | "reboot_started_hard")) => {
            "HARD_REBOOT"
        }
        ("active", Some("update_password")) => "PASSWORD",
        ("active", Some("rescuing")) => "RESCUE",
        (
            "active" | "stopped",
            Some("resize_prep" | "resize_migrating" | "resize_migrated" | "resize_finish"),
        ) => "RESIZE",
        (
            "active" | "stopped" | "error",
            Some("rebuilding" | "rebuild_block_device_mapping" | "rebuild_spawning"),
        ) => "REBUILD",
        ("active" | "paused", Some("migrating")) => "MIGRATING",
        ("active", _) => "ACTIVE",
        ("building", _) => "BUILD",
        ("stopped", _) => "SHUTOFF",
        ("resized", Some("resize_reverting")) => "REVERT_RESIZE",
        ("resized", _) => "VERIFY_RESIZE",
        ("paused", _) => "PAUSED",
        ("suspended", _) => "SUSPENDED",
        ("rescued", _) => "RESCUE",
        ("error", _) => "ERROR",
        ("deleted", _) => "DELETED",
        ("soft-delete", _) => "SOFT_DELETED",
        ("shelved", _) => "SHELVED",
        ("shelved_offloaded", _) => "SHELVED_OFFLOADED",
        _ => "UNKNOWN",
    }
}

/// The vm_states a `status` filter means.
fn vm_states_of(status: &str) -> Option<&'static [&'static str]> {
    Some(match status.to_ascii_uppercase().as_str() {
        "ACTIVE" | "REBOOT" | "HARD_REBOOT" | "PASSWORD" | "MIGRATING" => &["active"],
        "BUILD" => &["building"],
        "SHUTOFF" => &["stopped"],
        "RESIZE" => &["active", "stopped"],
        "VERIFY_RESIZE" | "REVERT_RESIZE" => &["resized"],
        "PAUSED" => &["paused"],
        "SUSPENDED" => &["suspended"],
        "RESCUE" => &["rescued"],
        "ERROR" => &["error"],
        "DELETED" => &["deleted"],
        "SOFT_DELETED" => &["soft-delete"],
        "SHELVED" => &["shelved"],
        "SHELVED_OFFLOADED" => &["shelved_offloaded"],
        _ => return None,
    })
}

fn host_id(project: &str, host: Option<&str>) -> String {
    match host {
        Some(h) if !h.is_empty() => {
            hex::encode(sha2::Sha224::digest(format!("{project}{h}").as_bytes()))
        }
        _ => String::new(),
    }
}

fn links(base: &str, kind: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/v2.1/{kind}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/{kind}/{id}")},
    ])
}

/// What rendering needs besides the row.
pub struct View<'a> {
    pub mv: Mv,
    pub base: &'a str,
    pub admin: bool,
    pub fault: Option<&'a (i64, String, String, i64)>,
    pub groups: Option<Vec<String>>,
    /// The update and rebuild responses before 2.75, which leave out the
    /// extension attributes (zone, host, task and power state, usage...).
    pub reduced: bool,
}

/// A server's body at the request's microversion.
pub fn render(i: &Instance, v: &View<'_>) -> Value {
    let mv = v.mv;
    let st = status(&i.vm_state, i.task_state.as_deref());
    let mut s = Map::new();
    s.insert("id".into(), json!(i.id));
    s.insert("name".into(), json!(i.name));
    s.insert("status".into(), json!(st));
    s.insert("tenant_id".into(), json!(i.project_id));
    s.insert("user_id".into(), json!(i.user_id));
    s.insert("metadata".into(), json!(i.metadata));
    s.insert(
        "hostId".into(),
        json!(host_id(&i.project_id, i.host.as_deref())),
    );
    s.insert(
        "image".into(),
        if i.image_ref.is_empty() {
            json!("")
        } else {
            json!({"id": i.image_ref, "links": [{"rel": "bookmark", "href": format!("{}/images/{}", v.base, i.image_ref)}]})
        },
    );
    let f = &i.flavor;
    s.insert(
        "flavor".into(),
        if mv.at_least(47) {
            let mut fl = json!({
                "vcpus": f.vcpus, "ram": f.memory_mb, "disk": f.root_gb,
                "ephemeral": f.ephemeral_gb, "swap": f.swap, "original_name": f.name,
            });
            fl["extra_specs"] = json!(f.extra_specs);
            fl
        } else {
            json!({"id": f.id, "links": [{"rel": "bookmark", "href": format!("{}/flavors/{}", v.base, f.id)}]})
        },
    );
    s.insert("created".into(), json!(iso(i.created_at)));
    s.insert("updated".into(), json!(iso(i.updated_at)));
    s.insert("addresses".into(), json!({}));
    s.insert(
        "accessIPv4".into(),
        json!(i.access_ip_v4.clone().unwrap_or_default()),
    );
    s.insert(
        "accessIPv6".into(),
        json!(i.access_ip_v6.clone().unwrap_or_default()),
    );
    s.insert("links".into(), links(v.base, "servers", &i.id));
    s.insert("OS-DCF:diskConfig".into(), json!("MANUAL"));
    if matches!(
        st,
        "BUILD" | "REBUILD" | "RESIZE" | "VERIFY_RESIZE" | "MIGRATING"
    ) {
        s.insert("progress".into(), json!(i.progress));
    }
    let full = !v.reduced;
    if full {
        s.insert(
            "OS-EXT-AZ:availability_zone".into(),
            json!(i.availability_zone.clone().unwrap_or_default()),
        );
        s.insert("config_drive".into(), json!(i.config_drive));
        s.insert("key_name".into(), json!(i.key_name));
        s.insert("OS-SRV-USG:launched_at".into(), iso_usec(i.launched_at));
        s.insert("OS-SRV-USG:terminated_at".into(), iso_usec(i.terminated_at));
    }
    if v.admin && full {
        s.insert("OS-EXT-SRV-ATTR:host".into(), json!(i.host));
        s.insert(
            "OS-EXT-SRV-ATTR:instance_name".into(),
            json!(format!("instance-{}", &i.id[..8.min(i.id.len())])),
        );
        s.insert("OS-EXT-SRV-ATTR:hypervisor_hostname".into(), json!(i.node));
        if mv.at_least(3) {
            s.insert(
                "OS-EXT-SRV-ATTR:reservation_id".into(),
                json!(i.reservation_id),
            );
            s.insert("OS-EXT-SRV-ATTR:launch_index".into(), json!(i.launch_index));
            s.insert("OS-EXT-SRV-ATTR:hostname".into(), json!(i.hostname));
            s.insert("OS-EXT-SRV-ATTR:kernel_id".into(), json!(""));
            s.insert("OS-EXT-SRV-ATTR:ramdisk_id".into(), json!(""));
            s.insert("OS-EXT-SRV-ATTR:root_device_name".into(), json!("/dev/vda"));
            s.insert("OS-EXT-SRV-ATTR:user_data".into(), json!(i.user_data));
        }
    }
    if full {
        s.insert("OS-EXT-STS:task_state".into(), json!(i.task_state));
        s.insert("OS-EXT-STS:vm_state".into(), json!(i.vm_state));
        s.insert("OS-EXT-STS:power_state".into(), json!(i.power_state));
        s.insert("os-extended-volumes:volumes_attached".into(), json!([]));
    }
    if mv.at_least(9) {
        s.insert("locked".into(), json!(i.locked_by.is_some()));
    }
    if mv.at_least(16) && v.admin && full {
        let hs = if i.host.is_some() { "UP" } else { "" };
        s.insert("host_status".into(), json!(hs));
    }
    if mv.at_least(19) {
        s.insert("description".into(), json!(i.description));
    }
    if mv.at_least(26) {
        s.insert("tags".into(), json!(i.tags));
    }
    if mv.at_least(63) {
        s.insert("trusted_image_certificates".into(), Value::Null);
    }
    if mv.at_least(71) {
        if let Some(g) = &v.groups {
            s.insert("server_groups".into(), json!(g));
        }
    }
    if mv.at_least(73) {
        s.insert("locked_reason".into(), json!(i.locked_reason));
    }
    if matches!(st, "ERROR" | "DELETED") {
        if let Some((code, message, details, created)) = v.fault {
            let mut fault = json!({"code": code, "message": message, "created": iso(*created)});
            if v.admin && !details.is_empty() {
                fault["details"] = json!(details);
            }
            s.insert("fault".into(), fault);
        }
    }
    Value::Object(s)
}

fn brief(i: &Instance, base: &str) -> Value {
    json!({"id": i.id, "name": i.name, "links": links(base, "servers", &i.id)})
}

impl Compute {
    /// A server the caller may see (404 otherwise), with the rule checked
    /// against its project.
    pub(crate) async fn visible(&self, caller: &Caller, id: &str, rule: &str) -> Result<Instance> {
        let inst = idb::get(&self.db, id, false)
            .await?
            .ok_or_else(|| Error::server_not_found(id))?;
        let target = Compute::project_target(&inst.project_id, Some(&inst.user_id));
        if !caller.is_admin && inst.project_id != caller.project() {
            return Err(Error::server_not_found(id));
        }
        self.authorize(caller, rule, &target)?;
        Ok(inst)
    }
}

fn request_id(h: &HeaderMap) -> String {
    h.get(api_common::http::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("req-{}", uuid::Uuid::new_v4()))
}

// ------------------------------------------------------------------ create

fn str_field<'a>(server: &'a Value, key: &str, min: usize, max: usize) -> Result<Option<&'a str>> {
    match server.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let n = s.chars().count();
            if n < min {
                return Err(invalid(key, &json!(s), &format!("'{s}' is too short")));
            }
            if n > max {
                return Err(invalid(key, &json!(s), &format!("'{s}' is too long")));
            }
            Ok(Some(s.as_str()))
        }
        Some(other) => Err(invalid(
            key,
            other,
            &format!("{} is not of type 'string'", check::repr(other)),
        )),
    }
}

/// The guest host name Nova derives from a display name.
pub fn hostname_from(name: &str) -> String {
    let mut h: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else if c == ' ' || c == '_' || c == '.' {
                '-'
            } else {
                '\0'
            }
        })
        .filter(|c| *c != '\0')
        .collect();
    h = h.trim_matches('-').chars().take(63).collect();
    let h = h.trim_end_matches('-').to_string();
    if h.is_empty() {
        "server".into()
    } else {
        h
    }
}

pub async fn create(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response> {
    let server = body
        .get("server")
        .filter(|s| s.is_object())
        .ok_or_else(|| invalid("server", &body, "'server' is a required property"))?;
    let project = caller.project().to_string();
    let target = Compute::project_target(&project, Some(caller.user()));
    state.authorize(&caller, "os_compute_api:servers:create", &target)?;
    let name = str_field(server, "name", 1, 255)?
        .ok_or_else(|| invalid("server", server, "'name' is a required property"))?
        .to_string();
    if name.trim() != name {
        return Err(invalid(
            "name",
            &json!(name),
            &format!("'{name}' does not match '^(?! )[[:print:]]*(?<! )$'"),
        ));
    }
    let flavor_ref = match server.get("flavorRef") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(invalid(
                "flavorRef",
                other,
                &format!(
                    "{} is not valid under any of the given schemas",
                    check::repr(other)
                ),
            ))
        }
        None => {
            return Err(invalid(
                "server",
                server,
                "'flavorRef' is a required property",
            ))
        }
    };
    let flavor_id = flavor_ref
        .rsplit('/')
        .next()
        .unwrap_or(&flavor_ref)
        .to_string();
    let mut image_ref = str_field(server, "imageRef", 0, 2048)?
        .unwrap_or_default()
        .to_string();
    if let Some(last) = image_ref.rsplit('/').next() {
        image_ref = last.to_string();
    }
    // Block device mapping v2 with an image source is a boot from that image.
    if image_ref.is_empty() {
        if let Some(bdms) = server
            .get("block_device_mapping_v2")
            .and_then(Value::as_array)
        {
            for b in bdms {
                if b.get("source_type").and_then(Value::as_str) == Some("image")
                    && b.get("boot_index")
                        .map(|v| v.to_string().trim_matches('"') == "0")
                        == Some(true)
                {
                    if b.get("destination_type").and_then(Value::as_str) == Some("volume") {
                        return Err(Error::bad(
                            "Block Device Mapping is Invalid: volumes are not available in this cloud.",
                        ));
                    }
                    image_ref = b
                        .get("uuid")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                }
            }
        }
    }
    if image_ref.is_empty() {
        return Err(Error::bad(
            "Block Device Mapping is Invalid: Boot sequence for the instance and image/block device mapping combination is not valid.",
        ));
    }
    if uuid::Uuid::parse_str(&image_ref).is_err() {
        return Err(Error::bad(format!("Invalid image identifier {image_ref}")));
    }
    // networks: required from 2.37; "auto" gives none while no network
    // service exists.
    match server.get("networks") {
        None if mv.at_least(37) => {
            return Err(invalid(
                "server",
                server,
                "'networks' is a required property",
            ))
        }
        None => {}
        Some(Value::String(s)) if s == "auto" || s == "none" => {}
        Some(Value::Array(list)) => {
            if let Some(first) = list.first() {
                let id = first
                    .get("uuid")
                    .or_else(|| first.get("port"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                return Err(Error::bad(format!("Network {id} could not be found.")));
            }
        }
        Some(other) => {
            return Err(invalid(
                "networks",
                other,
                &format!(
                    "{} is not valid under any of the given schemas",
                    check::repr(other)
                ),
            ))
        }
    }
    let description = if mv.at_least(19) {
        str_field(server, "description", 0, 255)?.map(str::to_string)
    } else {
        None
    };
    let metadata: BTreeMap<String, String> = match server.get("metadata") {
        None => BTreeMap::new(),
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let Some(v) = v.as_str() else {
                    return Err(invalid(
                        &format!("metadata/{k}"),
                        v,
                        &format!("{} is not of type 'string'", check::repr(v)),
                    ));
                };
                if k.is_empty() || k.chars().count() > 255 || v.chars().count() > 255 {
                    return Err(invalid("metadata", &json!(m), "Invalid metadata"));
                }
                out.insert(k.clone(), v.to_string());
            }
            out
        }
        Some(other) => {
            return Err(invalid(
                "metadata",
                other,
                &format!("{} is not of type 'object'", check::repr(other)),
            ))
        }
    };
    let user_data = match str_field(server, "user_data", 0, 65535 * 4 / 3 + 4)? {
        Some(u) => {
            use base64::Engine as _;
            if base64::engine::general_purpose::STANDARD.decode(u).is_err() {
                return Err(Error::bad("User data needs to be valid base 64."));
            }
            Some(u.to_string())
        }
        None => None,
    };
    if server.get("personality").is_some() && mv.at_least(57) {
        return Err(invalid(
            "server",
            server,
            "Additional properties are not allowed ('personality' was unexpected)",
        ));
    }
    let count = |k: &str| -> Result<Option<i64>> {
        match server.get(k) {
            None => Ok(None),
            Some(v) => {
                let n = v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        invalid(
                            k,
                            v,
                            &format!("{} is less than the minimum of 1", check::repr(v)),
                        )
                    })?;
                Ok(Some(n))
            }
        }
    };
    let min_count = count("min_count")?.unwrap_or(1);
    let max_count = count("max_count")?.unwrap_or(min_count);
    if min_count > max_count {
        return Err(Error::bad("min_count must be <= max_count"));
    }
    let return_reservation_id = server
        .get("return_reservation_id")
        .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("True"));
    let tags: Vec<String> = if mv.at_least(52) {
        server
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    // Scheduler hints.
    let hints = body
        .get("os:scheduler_hints")
        .or_else(|| body.get("OS-SCH-HNT:scheduler_hints"));
    let hint_list = |k: &str| -> Vec<String> {
        match hints.and_then(|h| h.get(k)) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    };
    let group = hint_list("group").into_iter().next();
    // Availability zone (az, or az:host for admins).
    let mut force_host = None;
    let availability_zone = match str_field(server, "availability_zone", 1, 255)? {
        Some(az) => match az.split_once(':') {
            Some((zone, host)) => {
                state.authorize(
                    &caller,
                    "os_compute_api:servers:create:forced_host",
                    &target,
                )?;
                force_host = Some(host.split(':').next().unwrap_or(host).to_string());
                (!zone.is_empty()).then(|| zone.to_string())
            }
            None => Some(az.to_string()),
        },
        None => state.cfg.default_schedule_zone.clone(),
    };
    if let Some(az) = &availability_zone {
        let mut zones: Vec<String> = state.host_zones().await?.into_values().collect();
        zones.push(state.cfg.default_availability_zone.clone());
        if !zones.contains(az) {
            return Err(Error::bad(
                "The requested availability zone is not available",
            ));
        }
    }
    let config_drive = server.get("config_drive").is_some_and(|v| {
        v.as_bool() == Some(true) || matches!(v.as_str(), Some("True" | "true" | "1"))
    });
    let _ = config_drive;
    let key_name = str_field(server, "key_name", 1, 255)?.map(str::to_string);

    let req = crate::servers::CreateRequest {
        name,
        flavor_id,
        image_ref,
        key_name,
        user_data,
        metadata,
        description,
        tags,
        min_count,
        max_count,
        spec: crate::scheduler::RequestSpec {
            availability_zone,
            group,
            same_host: hint_list("same_host"),
            different_host: hint_list("different_host"),
            force_host,
            ..Default::default()
        },
        access_ip_v4: str_field(server, "accessIPv4", 0, 64)?.map(str::to_string),
        access_ip_v6: str_field(server, "accessIPv6", 0, 64)?.map(str::to_string),
    };
    let (created, reservation_id) = state
        .create_servers(&caller, req, &request_id(&headers))
        .await?;
    if return_reservation_id {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"reservation_id": reservation_id})),
        )
            .into_response());
    }
    let base = base_url(&state, &headers);
    let Some(first) = created.first() else {
        return Err(Error::internal("no server created"));
    };
    let mut body = json!({
        "id": first.id,
        "links": links(&base, "servers", &first.id),
        "OS-DCF:diskConfig": "MANUAL",
        "security_groups": [{"name": "default"}],
    });
    body["adminPass"] = json!(admin_pass());
    let mut res = (StatusCode::ACCEPTED, Json(json!({"server": body}))).into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&format!("{base}/v2.1/servers/{}", first.id)) {
        res.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    Ok(res)
}

fn admin_pass() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

// -------------------------------------------------------------------- read

pub async fn show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let inst = state
        .visible(&caller, &id, "os_compute_api:servers:show")
        .await?;
    let faults = idb::latest_faults(&state.db, std::slice::from_ref(&inst.id)).await?;
    let base = base_url(&state, &headers);
    let groups = if mv.at_least(71) {
        Some(state.groups_of(&inst.id).await?)
    } else {
        None
    };
    let admin = state.allowed(
        &caller,
        "os_compute_api:os-extended-server-attributes",
        &Compute::project_target(&inst.project_id, None),
    );
    let view = View {
        mv,
        base: &base,
        admin,
        fault: faults.get(&inst.id),
        groups,
        reduced: false,
    };
    Ok(Json(json!({"server": render(&inst, &view)})))
}

pub async fn list(
    state: State,
    auth: Auth,
    mv: Mv,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Json<Value>> {
    list_impl(state, auth, mv, headers, q, false).await
}

pub async fn detail(
    state: State,
    auth: Auth,
    mv: Mv,
    headers: HeaderMap,
    q: RawQuery,
) -> Result<Json<Value>> {
    list_impl(state, auth, mv, headers, q, true).await
}

async fn list_impl(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    detail: bool,
) -> Result<Json<Value>> {
    let rule = if detail {
        "os_compute_api:servers:detail"
    } else {
        "os_compute_api:servers:index"
    };
    let project = caller.project().to_string();
    state.authorize(&caller, rule, &Compute::project_target(&project, None))?;
    let pairs = query_pairs(q.as_deref());
    let get = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let admin = state.allowed(
        &caller,
        &format!("{rule}:get_all_tenants"),
        &Compute::project_target(&project, None),
    );
    let all_tenants = get("all_tenants").is_some_and(|v| !matches!(v, "0" | "false" | "False"));
    let mut conds: Vec<String> = Vec::new();
    let mut binds: Vec<String> = Vec::new();
    fn bind(conds: &mut Vec<String>, binds: &mut Vec<String>, sql: &str, v: String) {
        binds.push(v);
        conds.push(sql.replace('?', &format!("${}", binds.len())));
    }
    if all_tenants && admin {
        if let Some(p) = get("project_id").or_else(|| get("tenant_id")) {
            bind(&mut conds, &mut binds, "project_id = ?", p.to_string());
        }
    } else {
        bind(&mut conds, &mut binds, "project_id = ?", project.clone());
    }
    let deleted = admin && get("deleted").is_some_and(|v| matches!(v, "true" | "True" | "1"));
    let changes_since = get("changes-since")
        .map(|v| parse_time("changes-since", v))
        .transpose()?;
    let changes_before = get("changes-before")
        .map(|v| parse_time("changes-before", v))
        .transpose()?;
    if let (Some(a), Some(b)) = (changes_since, changes_before) {
        if a > b {
            return Err(Error::bad(
                "The value of changes-since must be less than or equal to changes-before.",
            ));
        }
    }
    if let Some(t) = changes_since {
        bind(
            &mut conds,
            &mut binds,
            "updated_at >= CAST(? AS BIGINT)",
            t.to_string(),
        );
    }
    // Times are shown to the second: a whole-second bound covers that
    // whole second (as Nova's second-resolution columns do).
    if let Some(t) = changes_before {
        let upto = if t % 1_000_000 == 0 { t + 999_999 } else { t };
        bind(
            &mut conds,
            &mut binds,
            "updated_at <= CAST(? AS BIGINT)",
            upto.to_string(),
        );
    }
    // With changes-since/-before, deleted servers are listed too.
    if changes_since.is_none() && changes_before.is_none() {
        if deleted {
            conds.push("deleted_at IS NOT NULL".into());
        } else {
            conds.push("deleted_at IS NULL".into());
        }
    }
    if let Some(s) = get("status") {
        match vm_states_of(s) {
            Some(states) => {
                let list: Vec<String> = states.iter().map(|s| format!("'{s}'")).collect();
                conds.push(format!("vm_state IN ({})", list.join(", ")));
            }
            None => {
                // Nova: an unknown status matches nothing (admins) or 400.
                if !admin {
                    return Err(Error::bad("Invalid status value"));
                }
                conds.push("1 = 0".into());
            }
        }
    }
    if let Some(v) = get("image") {
        bind(
            &mut conds,
            &mut binds,
            "image_ref = ?",
            v.rsplit('/').next().unwrap_or(v).to_string(),
        );
    }
    if let Some(v) = get("flavor") {
        let fid = v.rsplit('/').next().unwrap_or(v).to_string();
        if let Some(f) = crate::db::flavors::flavor_get(&state.db, &fid).await? {
            bind(
                &mut conds,
                &mut binds,
                "memory_mb = CAST(? AS BIGINT)",
                f.memory_mb.to_string(),
            );
            bind(
                &mut conds,
                &mut binds,
                "vcpus = CAST(? AS BIGINT)",
                f.vcpus.to_string(),
            );
            bind(
                &mut conds,
                &mut binds,
                "root_gb = CAST(? AS BIGINT)",
                f.root_gb.to_string(),
            );
        } else {
            conds.push("1 = 0".into());
        }
    }
    if let Some(v) = get("reservation_id") {
        bind(&mut conds, &mut binds, "reservation_id = ?", v.to_string());
    }
    if admin {
        if let Some(v) = get("host") {
            bind(&mut conds, &mut binds, "host = ?", v.to_string());
        }
        if let Some(v) = get("node") {
            bind(&mut conds, &mut binds, "node = ?", v.to_string());
        }
        if let Some(v) = get("user_id") {
            bind(&mut conds, &mut binds, "user_id = ?", v.to_string());
        }
    }
    if let Some(v) = get("availability_zone") {
        bind(
            &mut conds,
            &mut binds,
            "availability_zone = ?",
            v.to_string(),
        );
    }
    if let Some(v) = get("key_name") {
        bind(&mut conds, &mut binds, "key_name = ?", v.to_string());
    }
    if mv.at_least(73) || mv.at_least(9) {
        if let Some(v) = get("locked") {
            match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => conds.push("locked_by IS NOT NULL".into()),
                "false" | "0" | "no" => conds.push("locked_by IS NULL".into()),
                _ => return Err(Error::bad(format!("Unrecognized value '{v}', acceptable values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', 't', 'true', 'y', 'yes'"))),
            }
        }
    }
    if mv.at_least(26) {
        if let Some(v) = get("tags") {
            for t in v.split(',') {
                bind(
                    &mut conds,
                    &mut binds,
                    "id IN (SELECT instance_id FROM instance_tags WHERE tag = ?)",
                    t.to_string(),
                );
            }
        }
        if let Some(v) = get("not-tags") {
            for t in v.split(',') {
                bind(
                    &mut conds,
                    &mut binds,
                    "id NOT IN (SELECT instance_id FROM instance_tags WHERE tag = ?)",
                    t.to_string(),
                );
            }
        }
    }
    let limit = match get("limit") {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| Error::bad("limit param must be an integer"))?,
        ),
        None => None,
    };
    let limit = limit.unwrap_or(1000).min(1000);
    let sort_key = match get("sort_key").unwrap_or("created_at") {
        k @ ("created_at" | "updated_at" | "display_name" | "uuid" | "vm_state" | "task_state"
        | "power_state" | "host" | "node" | "launched_at" | "terminated_at" | "hostname"
        | "availability_zone" | "key_name" | "project_id" | "user_id" | "image_ref") => k,
        other => {
            return Err(Error::bad(format!(
                "Invalid input for query parameters sort_key. Value: {other}."
            )))
        }
    };
    let column = match sort_key {
        "display_name" => "name",
        "uuid" => "id",
        k => k,
    };
    let dir = match get("sort_dir").unwrap_or("desc") {
        "asc" => "ASC",
        "desc" => "DESC",
        other => {
            return Err(Error::bad(format!(
                "Invalid input for query parameters sort_dir. Value: {other}."
            )))
        }
    };
    if let Some(marker) = get("marker") {
        let m = idb::get(&state.db, marker, true)
            .await?
            .ok_or_else(|| Error::bad(format!("marker [{marker}] not found")))?;
        let cmp = if dir == "DESC" { "<" } else { ">" };
        if column == "created_at" {
            let n = binds.len() + 1;
            binds.push(m.created_at.to_string());
            binds.push(m.id.clone());
            conds.push(format!(
                "(created_at {cmp} CAST(${n} AS BIGINT) OR (created_at = CAST(${n} AS BIGINT) \
                 AND id {cmp} ${}))",
                n + 1
            ));
        } else {
            bind(&mut conds, &mut binds, &format!("id {cmp} ?"), m.id.clone());
        }
    }
    let name_re = match get("name") {
        Some(n) => Some(
            regex::Regex::new(n).map_err(|_| Error::bad(format!("Invalid regex for name: {n}")))?,
        ),
        None => None,
    };
    // Without a name regex (matched here, not in SQL) the database stops
    // at the page size.
    let sql_limit = if name_re.is_none() {
        format!(" LIMIT {limit}")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT {} FROM instances WHERE {} ORDER BY {column} {dir}, id {dir}{sql_limit}",
        idb::COLS,
        if conds.is_empty() {
            "1 = 1".to_string()
        } else {
            conds.join(" AND ")
        }
    );
    let mut query = store::sqlx::query(&sql);
    for b in &binds {
        query = query.bind(b);
    }
    let mut out: Vec<Instance> = Vec::new();
    for r in query.fetch_all(state.db.pool()).await? {
        let i = idb::from_row(&r)?;
        if let Some(re) = &name_re {
            if !re.is_match(&i.name) {
                continue;
            }
        }
        out.push(i);
        if out.len() == limit {
            break;
        }
    }
    let base = base_url(&state, &headers);
    let mut body = Map::new();
    let servers: Vec<Value> = if detail {
        idb::fill_details(&state.db, &mut out).await?;
        // Only ERROR and DELETED servers show their fault.
        let ids: Vec<String> = out
            .iter()
            .filter(|i| matches!(i.vm_state.as_str(), "error" | "deleted"))
            .map(|i| i.id.clone())
            .collect();
        let faults = idb::latest_faults(&state.db, &ids).await?;
        out.iter()
            .map(|i| {
                render(
                    i,
                    &View {
                        mv,
                        base: &base,
                        admin,
                        fault: faults.get(&i.id),
                        groups: None,
                        reduced: false,
                    },
                )
            })
            .collect()
    } else {
        out.iter().map(|i| brief(i, &base)).collect()
    };
    let full = out.len() == limit;
    body.insert("servers".into(), Value::Array(servers));
    if full {
        if let Some(last) = out.last() {
            let mut next: Vec<(String, String)> = pairs
                .iter()
                .filter(|(k, _)| k != "marker")
                .cloned()
                .collect();
            next.push(("marker".into(), last.id.clone()));
            let qs = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(next)
                .finish();
            let path = if detail { "servers/detail" } else { "servers" };
            body.insert(
                "servers_links".into(),
                json!([{"rel": "next", "href": format!("{base}/v2.1/{path}?{qs}")}]),
            );
        }
    }
    Ok(Json(Value::Object(body)))
}

// ------------------------------------------------------------ update/delete

pub async fn update(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let inst = state
        .visible(&caller, &id, "os_compute_api:servers:update")
        .await?;
    let server = body
        .get("server")
        .filter(|s| s.is_object())
        .ok_or_else(|| invalid("server", &body, "'server' is a required property"))?;
    let name = str_field(server, "name", 1, 255)?;
    let description = if mv.at_least(19) {
        match server.get("description") {
            Some(Value::Null) => Some(None),
            Some(_) => Some(str_field(server, "description", 0, 255)?.map(str::to_string)),
            None => None,
        }
    } else {
        None
    };
    let v4 = str_field(server, "accessIPv4", 0, 64)?;
    let v6 = str_field(server, "accessIPv6", 0, 64)?;
    store::sqlx::query(
        "UPDATE instances SET name = COALESCE($2, name), \
         description = CASE WHEN $3 = 1 THEN $4 ELSE description END, \
         access_ip_v4 = COALESCE($5, access_ip_v4), access_ip_v6 = COALESCE($6, access_ip_v6), \
         updated_at = $7 WHERE id = $1",
    )
    .bind(&inst.id)
    .bind(name)
    .bind(description.is_some() as i64)
    .bind(description.flatten())
    .bind(v4)
    .bind(v6)
    .bind(store::now_micros())
    .execute(state.db.pool())
    .await?;
    let inst = idb::get(&state.db, &id, false)
        .await?
        .ok_or_else(|| Error::server_not_found(&id))?;
    let base = base_url(&state, &headers);
    let admin = state.allowed(
        &caller,
        "os_compute_api:os-extended-server-attributes",
        &Compute::project_target(&inst.project_id, None),
    );
    let groups = if mv.at_least(71) {
        Some(state.groups_of(&inst.id).await?)
    } else {
        None
    };
    let view = View {
        mv,
        base: &base,
        admin,
        fault: None,
        groups,
        reduced: !mv.at_least(75),
    };
    Ok(Json(json!({"server": render(&inst, &view)})))
}

fn check_lock(caller: &Caller, inst: &Instance) -> Result<()> {
    if inst.locked_by.is_some() && !caller.is_admin {
        return Err(Error::conflict(format!("Instance {} is locked", inst.id)));
    }
    Ok(())
}

pub async fn delete(
    state: State,
    Auth(caller): Auth,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let inst = state
        .visible(&caller, &id, "os_compute_api:servers:delete")
        .await?;
    check_lock(&caller, &inst)?;
    state
        .delete_server(&inst, &request_id(&headers), caller.user())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----------------------------------------------------------------- actions

pub async fn action(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Response> {
    let Some((name, args)) = body.as_object().and_then(|m| m.iter().next()) else {
        return Err(Error::bad("Malformed request body"));
    };
    let rid = request_id(&headers);
    let power = |a: PowerAction| Some(a);
    let (rule, act) = match name.as_str() {
        "os-start" => ("os_compute_api:servers:start", power(PowerAction::Start)),
        "os-stop" => ("os_compute_api:servers:stop", power(PowerAction::Stop)),
        "reboot" => {
            let kind = args.get("type").and_then(Value::as_str).unwrap_or("");
            let a = match kind.to_ascii_uppercase().as_str() {
                "SOFT" => PowerAction::RebootSoft,
                "HARD" => PowerAction::RebootHard,
                _ => {
                    return Err(invalid(
                        "type",
                        &json!(kind),
                        &format!(
                        "'{kind}' is not one of ['HARD', 'Hard', 'hard', 'SOFT', 'Soft', 'soft']"
                    ),
                    ))
                }
            };
            ("os_compute_api:servers:reboot", Some(a))
        }
        "pause" => (
            "os_compute_api:os-pause-server:pause",
            power(PowerAction::Pause),
        ),
        "unpause" => (
            "os_compute_api:os-pause-server:unpause",
            power(PowerAction::Unpause),
        ),
        "suspend" => (
            "os_compute_api:os-suspend-server:suspend",
            power(PowerAction::Suspend),
        ),
        "resume" => (
            "os_compute_api:os-suspend-server:resume",
            power(PowerAction::Resume),
        ),
        "os-getConsoleOutput" => ("os_compute_api:os-console-output", None),
        "lock" => ("os_compute_api:os-lock-server:lock", None),
        "unlock" => ("os_compute_api:os-lock-server:unlock", None),
        "forceDelete" => ("os_compute_api:os-deferred-delete:force", None),
        "os-resetState" => ("os_compute_api:os-admin-actions:reset_state", None),
        "createImage" => ("os_compute_api:servers:create_image", None),
        "rebuild" => ("os_compute_api:servers:rebuild", None),
        "resize" => ("os_compute_api:servers:resize", None),
        "confirmResize" => ("os_compute_api:servers:confirm_resize", None),
        "revertResize" => ("os_compute_api:servers:revert_resize", None),
        "shelve" => ("os_compute_api:os-shelve:shelve", None),
        "shelveOffload" => ("os_compute_api:os-shelve:shelve_offload", None),
        "unshelve" => ("os_compute_api:os-shelve:unshelve", None),
        "rescue" => ("os_compute_api:os-rescue", None),
        "unrescue" => ("os_compute_api:os-unrescue", None),
        "os-getSerialConsole" | "os-getVNCConsole" | "os-getSPICEConsole" | "os-getRDPConsole" => {
            if mv.at_least(6) {
                return Err(Error::not_found("The resource could not be found."));
            }
            ("os_compute_api:os-remote-consoles", None)
        }
        "trigger_crash_dump"
        | "changePassword"
        | "migrate"
        | "os-migrateLive"
        | "evacuate"
        | "addFixedIp"
        | "removeFixedIp"
        | "addFloatingIp"
        | "removeFloatingIp"
        | "addSecurityGroup"
        | "removeSecurityGroup"
        | "restore"
        | "injectNetworkInfo"
        | "resetNetwork"
        | "createBackup" => {
            return Err(Error::NotImplemented(format!(
                "The {name} action is not available in this cloud yet."
            )))
        }
        other => return Err(Error::bad(format!("There is no such action: {other}"))),
    };
    let inst = state.visible(&caller, &id, rule).await?;
    if let Some(a) = act {
        check_lock(&caller, &inst)?;
        state
            .power_action(&inst, a, &rid, caller.user(), caller.project())
            .await?;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    match name.as_str() {
        "os-getConsoleOutput" => {
            let length = match args.get("length") {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let n = v
                        .as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .filter(|n| *n >= -1)
                        .ok_or_else(|| invalid("length", v, "is not valid"))?;
                    (n >= 0).then_some(n as usize)
                }
            };
            let output = state.console_output(&inst, length).await?;
            Ok(Json(json!({"output": output})).into_response())
        }
        "lock" => {
            let reason = if mv.at_least(73) {
                args.get("locked_reason")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            } else {
                None
            };
            if let Some(r) = &reason {
                if r.chars().count() > 255 {
                    return Err(invalid("locked_reason", &json!(r), "is too long"));
                }
            }
            let locker = if caller.is_admin && inst.project_id != caller.project() {
                "admin"
            } else {
                "owner"
            };
            store::sqlx::query(
                "UPDATE instances SET locked_by = $2, locked_reason = $3, updated_at = $4 \
                 WHERE id = $1",
            )
            .bind(&inst.id)
            .bind(locker)
            .bind(reason)
            .bind(store::now_micros())
            .execute(state.db.pool())
            .await?;
            idb::action_start(
                &state.db,
                &inst.id,
                "lock",
                &rid,
                caller.user(),
                caller.project(),
            )
            .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "unlock" => {
            if inst.locked_by.as_deref() == Some("admin") && !caller.is_admin {
                state.authorize(
                    &caller,
                    "os_compute_api:os-lock-server:unlock:unlock_override",
                    &Compute::project_target(&inst.project_id, None),
                )?;
            }
            store::sqlx::query(
                "UPDATE instances SET locked_by = NULL, locked_reason = NULL, updated_at = $2 \
                 WHERE id = $1",
            )
            .bind(&inst.id)
            .bind(store::now_micros())
            .execute(state.db.pool())
            .await?;
            idb::action_start(
                &state.db,
                &inst.id,
                "unlock",
                &rid,
                caller.user(),
                caller.project(),
            )
            .await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "forceDelete" => {
            check_lock(&caller, &inst)?;
            state.delete_server(&inst, &rid, caller.user()).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "createImage" => {
            check_lock(&caller, &inst)?;
            let name = args
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.trim().is_empty() && n.chars().count() <= 255)
                .ok_or_else(|| {
                    invalid(
                        "name",
                        args.get("name").unwrap_or(&Value::Null),
                        "is not a valid image name",
                    )
                })?;
            let mut metadata = BTreeMap::new();
            if let Some(m) = args.get("metadata") {
                let Some(m) = m.as_object() else {
                    return Err(invalid("metadata", m, "is not of type 'object'"));
                };
                for (k, v) in m {
                    let Some(v) = v.as_str() else {
                        return Err(invalid(
                            &format!("metadata/{k}"),
                            v,
                            "is not of type 'string'",
                        ));
                    };
                    metadata.insert(k.clone(), v.to_string());
                }
            }
            let image_id = state
                .snapshot_server(&caller, &inst, name, metadata, &rid)
                .await?;
            let base = base_url(&state, &headers);
            let image_base = base.trim_end_matches("/compute").to_string() + "/image";
            if mv.at_least(45) {
                return Ok(
                    (StatusCode::ACCEPTED, Json(json!({"image_id": image_id}))).into_response()
                );
            }
            let mut res = StatusCode::ACCEPTED.into_response();
            if let Ok(v) =
                axum::http::HeaderValue::from_str(&format!("{image_base}/v2/images/{image_id}"))
            {
                res.headers_mut().insert(axum::http::header::LOCATION, v);
            }
            Ok(res)
        }
        "rebuild" => {
            check_lock(&caller, &inst)?;
            let image_ref = args
                .get("imageRef")
                .and_then(Value::as_str)
                .map(|s| s.rsplit('/').next().unwrap_or(s).to_string())
                .ok_or_else(|| invalid("rebuild", args, "'imageRef' is a required property"))?;
            if uuid::Uuid::parse_str(&image_ref).is_err() {
                return Err(Error::bad(format!("Invalid image identifier {image_ref}")));
            }
            let name = str_field(args, "name", 1, 255)?.map(str::to_string);
            let metadata = match args.get("metadata") {
                None => None,
                Some(Value::Object(m)) => Some(
                    m.iter()
                        .map(|(k, v)| {
                            v.as_str()
                                .map(|v| (k.clone(), v.to_string()))
                                .ok_or_else(|| {
                                    invalid(&format!("metadata/{k}"), v, "is not of type 'string'")
                                })
                        })
                        .collect::<Result<BTreeMap<_, _>>>()?,
                ),
                Some(other) => return Err(invalid("metadata", other, "is not of type 'object'")),
            };
            let description = if mv.at_least(19) && args.get("description").is_some() {
                Some(str_field(args, "description", 0, 255)?.map(str::to_string))
            } else {
                None
            };
            let key_name = if mv.at_least(54) && args.get("key_name").is_some() {
                Some(str_field(args, "key_name", 1, 255)?.map(str::to_string))
            } else {
                None
            };
            let user_data = if mv.at_least(57) && args.get("user_data").is_some() {
                let u = str_field(args, "user_data", 0, 65535 * 4 / 3 + 4)?.map(str::to_string);
                if let Some(u) = &u {
                    use base64::Engine as _;
                    if base64::engine::general_purpose::STANDARD.decode(u).is_err() {
                        return Err(Error::bad("User data needs to be valid base 64."));
                    }
                }
                Some(u)
            } else {
                None
            };
            let req = crate::servers::RebuildRequest {
                image_ref,
                name,
                metadata,
                description,
                key_name,
                user_data,
            };
            state.rebuild_server(&caller, &inst, req, &rid).await?;
            let before = inst;
            let mut inst = idb::get(&state.db, &before.id, false)
                .await?
                .ok_or_else(|| Error::server_not_found(&before.id))?;
            // The answer describes the rebuild as accepted (REBUILD), as
            // upstream's does, even if a fast host already finished it.
            inst.vm_state = before.vm_state.clone();
            inst.task_state = Some("rebuilding".into());
            let base = base_url(&state, &headers);
            let admin = state.allowed(
                &caller,
                "os_compute_api:os-extended-server-attributes",
                &Compute::project_target(&inst.project_id, None),
            );
            let groups = if mv.at_least(71) {
                Some(state.groups_of(&inst.id).await?)
            } else {
                None
            };
            let view = View {
                mv,
                base: &base,
                admin,
                fault: None,
                groups,
                reduced: !mv.at_least(75),
            };
            let mut server = render(&inst, &view);
            // Rebuild answers with the key (2.54) and user data (2.57) it
            // may have changed; the user data never as the extended
            // attribute.
            if mv.at_least(54) {
                server["key_name"] = json!(inst.key_name);
            }
            if mv.at_least(57) {
                server["user_data"] = json!(inst.user_data);
            }
            if let Some(o) = server.as_object_mut() {
                o.remove("OS-EXT-SRV-ATTR:user_data");
            }
            server["adminPass"] = json!(admin_pass());
            Ok((StatusCode::ACCEPTED, Json(json!({"server": server}))).into_response())
        }
        "resize" => {
            check_lock(&caller, &inst)?;
            let flavor = match args.get("flavorRef") {
                Some(Value::String(f)) if !f.is_empty() => {
                    f.rsplit('/').next().unwrap_or(f).to_string()
                }
                Some(Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(invalid(
                        "resize",
                        args,
                        "'flavorRef' is a required property",
                    ))
                }
            };
            state.resize_server(&caller, &inst, &flavor, &rid).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "confirmResize" => {
            check_lock(&caller, &inst)?;
            state.confirm_resize(&inst, &rid, &caller).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        "revertResize" => {
            check_lock(&caller, &inst)?;
            state.revert_resize(&inst, &rid, &caller).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "shelve" => {
            check_lock(&caller, &inst)?;
            state.shelve_server(&caller, &inst, &rid).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "shelveOffload" => {
            // Servers are offloaded as they are shelved.
            Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "shelveOffload",
                &inst.id,
            ))
        }
        "os-getSerialConsole" => {
            super::consoles::legacy_serial(&state, &inst, args, &base_url(&state, &headers)).await
        }
        "os-getVNCConsole" | "os-getSPICEConsole" | "os-getRDPConsole" => {
            let kind = args.get("type").and_then(Value::as_str).unwrap_or_default();
            Err(Error::bad(format!("Unavailable console type {kind}.")))
        }
        "rescue" => {
            check_lock(&caller, &inst)?;
            let args = match args {
                Value::Null => &json!({}),
                Value::Object(_) => args,
                other => {
                    return Err(invalid(
                        "rescue",
                        other,
                        &format!("{} is not of type 'object', 'null'", check::repr(other)),
                    ))
                }
            };
            if let Some(k) = args.as_object().and_then(|o| {
                o.keys()
                    .find(|k| !matches!(k.as_str(), "adminPass" | "rescue_image_ref"))
            }) {
                return Err(Error::bad(format!(
                    "Invalid input for field/attribute rescue. Value: {args}. Additional properties are not allowed ('{k}' was unexpected)"
                )));
            }
            let pass = match args.get("adminPass") {
                None | Some(Value::Null) => admin_pass(),
                Some(Value::String(p)) => p.clone(),
                Some(other) => {
                    return Err(invalid(
                        "adminPass",
                        other,
                        &format!("{} is not of type 'string'", check::repr(other)),
                    ))
                }
            };
            let image = match args.get("rescue_image_ref") {
                None | Some(Value::Null) => None,
                Some(Value::String(r)) if uuid::Uuid::parse_str(r).is_ok() => Some(r.clone()),
                Some(other) => {
                    return Err(invalid(
                        "rescue_image_ref",
                        other,
                        &format!("{} is not a 'uuid'", check::repr(other)),
                    ))
                }
            };
            state.rescue_server(&caller, &inst, image, &rid).await?;
            Ok(Json(json!({ "adminPass": pass })).into_response())
        }
        "unrescue" => {
            check_lock(&caller, &inst)?;
            state.unrescue_server(&caller, &inst, &rid).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "unshelve" => {
            check_lock(&caller, &inst)?;
            let az = if mv.at_least(77) {
                args.get("availability_zone")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            } else {
                None
            };
            state.unshelve_server(&caller, &inst, az, &rid).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-resetState" => {
            let to = args.get("state").and_then(Value::as_str).unwrap_or("");
            if !matches!(to, "active" | "error") {
                return Err(invalid(
                    "state",
                    &json!(to),
                    &format!("'{to}' is not one of ['active', 'error']"),
                ));
            }
            idb::set_state(&state.db, &inst.id, &[], Some(to), None, None).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        _ => Err(Error::bad(format!("There is no such action: {name}"))),
    }
}

/// GET /servers/{id}/topology (2.78): the guest NUMA topology. Servers here
/// have no NUMA placement (no hw:numa_* / pinning support yet), which Nova
/// shows as no nodes.
pub async fn topology(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    if !mv.at_least(78) {
        return Err(Error::not_found("The resource could not be found."));
    }
    state
        .visible(&caller, &id, "os_compute_api:servers:topology:index")
        .await?;
    Ok(Json(json!({"nodes": [], "pagesize_kb": null})))
}
