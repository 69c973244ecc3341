//! Host aggregates (`/os-aggregates`) and the availability-zone lookups the
//! scheduler uses.

use axum::extract::Path;
use axum::Json;
use serde_json::{json, Map, Value};

use super::quotas::{envelope, invalid, no_extra, pyrepr};
use super::{Auth, Body, Mv, State};
use crate::db::aggregates::{self as db, Aggregate};
use crate::error::{Error, Result};
use crate::{Caller, Compute};

/// A stored time as Nova renders a naive datetime
/// (`2013-08-18T12:17:56.856455`).
pub(super) fn naive_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())
        .unwrap_or_default()
}

/// The zone of a compute host: the zone of an aggregate it is in, else the
/// default zone.
pub async fn host_availability_zone(compute: &Compute, host: &str) -> crate::Result<String> {
    let aggs = db::host_aggregates(&compute.db, host).await?;
    Ok(aggs
        .iter()
        .find_map(|a| a.availability_zone().map(str::to_string))
        .unwrap_or_else(|| compute.cfg.default_availability_zone.clone()))
}

fn render(a: &Aggregate, mv: Mv, full: bool) -> Value {
    let mut o = Map::new();
    o.insert("availability_zone".into(), json!(a.availability_zone()));
    o.insert("created_at".into(), json!(naive_time(a.created_at)));
    o.insert("deleted".into(), json!(false));
    o.insert("deleted_at".into(), Value::Null);
    if full {
        o.insert("hosts".into(), json!(a.hosts));
        o.insert("metadata".into(), json!(a.metadata));
    }
    o.insert("id".into(), json!(a.id));
    o.insert("name".into(), json!(a.name));
    o.insert("updated_at".into(), json!(a.updated_at.map(naive_time)));
    if mv.at_least(41) {
        o.insert("uuid".into(), json!(a.uuid));
    }
    Value::Object(o)
}

fn one(a: &Aggregate, mv: Mv) -> Json<Value> {
    Json(json!({ "aggregate": render(a, mv, true) }))
}

fn authorize(state: &Compute, caller: &Caller, action: &str) -> Result<()> {
    state.authorize(
        caller,
        &format!("os_compute_api:os-aggregates:{action}"),
        &api_common::Target::new(),
    )
}

/// `utils.validate_integer(id, 'id')`.
fn aggregate_id(id: &str) -> Result<i64> {
    id.trim()
        .parse::<i64>()
        .map_err(|_| Error::bad("Invalid input received: id must be an integer"))
}

fn not_found(id: impl std::fmt::Display) -> Error {
    Error::not_found(format!("Aggregate {id} could not be found."))
}

fn printable(s: &str, colon_ok: bool) -> bool {
    s.chars().all(|c| !c.is_control() && (colon_ok || c != ':'))
}

/// `parameter_types.name` (strict) or `name_with_leading_trailing_spaces`.
fn check_name(field: &str, v: &Value, strict: bool) -> Result<String> {
    let Some(s) = v.as_str() else {
        return Err(invalid(
            field,
            v,
            &format!("{} is not of type 'string'", pyrepr(v)),
        ));
    };
    if s.is_empty() {
        return Err(invalid(field, v, &format!("{} is too short", pyrepr(v))));
    }
    if s.chars().count() > 255 {
        return Err(invalid(field, v, &format!("{} is too long", pyrepr(v))));
    }
    let ws = |c: Option<char>| c.is_some_and(char::is_whitespace);
    if strict {
        if !printable(s, true) || ws(s.chars().next()) || ws(s.chars().last()) {
            return Err(Error::bad(
                "An invalid 'name' value was provided. The name must be: printable characters. \
                 Can not start or end with whitespace.",
            ));
        }
    } else if !printable(s, true) || s.trim().is_empty() {
        return Err(Error::bad(
            "An invalid 'name' value was provided. The name must be: printable characters with \
             at least one non space character",
        ));
    }
    Ok(s.trim().to_string())
}

/// `parameter_types.az_name` or null.
fn check_az(v: &Value) -> Result<Option<String>> {
    if v.is_null() {
        return Ok(None);
    }
    let Some(s) = v.as_str() else {
        return Err(invalid(
            "availability_zone",
            v,
            &format!("{} is not valid under any of the given schemas", pyrepr(v)),
        ));
    };
    let ws = |c: Option<char>| c.is_some_and(char::is_whitespace);
    if s.is_empty()
        || s.chars().count() > 255
        || !printable(s, false)
        || ws(s.chars().next())
        || ws(s.chars().last())
    {
        return Err(Error::bad(
            "An invalid 'name' value was provided. The name must be: printable characters \
             except :.Can not start or end with whitespace.",
        ));
    }
    Ok(Some(s.trim().to_string()))
}

/// `AggregateAPI.is_safe_to_update_az`: the zone `new_az` for `agg`, given
/// the hosts concerned (`hosts`, else the aggregate's own).
async fn safe_az_change(
    conn: &mut store::sqlx::AnyConnection,
    agg: &Aggregate,
    new_az: Option<&str>,
    hosts: Option<&[String]>,
    check_instances: bool,
    reason: impl Fn(&str) -> Error,
) -> Result<()> {
    let Some(new_az) = new_az else {
        return Err(reason(&format!(
            "Aggregate {} does not support empty named availability zone",
            agg.name
        )));
    };
    if new_az.is_empty() {
        return Err(reason(&format!(
            "Aggregate {} does not support empty named availability zone",
            agg.name
        )));
    }
    let hosts: Vec<String> = hosts
        .map(<[String]>::to_vec)
        .unwrap_or_else(|| agg.hosts.clone());
    let conflicting: Vec<String> = db::zoned_with_hosts(conn, &hosts)
        .await?
        .iter()
        .filter(|a| a.id != agg.id && a.availability_zone() != Some(new_az))
        .filter_map(|a| a.availability_zone().map(|z| format!("'{z}'")))
        .collect();
    if !conflicting.is_empty() {
        return Err(reason(&format!(
            "One or more hosts already in availability zone(s) [{}]",
            conflicting.join(", ")
        )));
    }
    if check_instances
        && agg.availability_zone() != Some(new_az)
        && db::instances_on_hosts(conn, &hosts).await? > 0
    {
        return Err(reason("One or more hosts contain instances in this zone"));
    }
    Ok(())
}

fn py_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "None".to_string(), str::to_string)
}

async fn hosts_changed(state: &Compute, hosts: &[String]) -> Result<()> {
    for h in hosts {
        state.host_aggregates_changed(h).await?;
    }
    Ok(())
}

pub async fn index(state: State, Auth(caller): Auth, mv: Mv) -> Result<Json<Value>> {
    authorize(&state, &caller, "index")?;
    let list: Vec<Value> = db::aggregate_list(&state.db)
        .await?
        .iter()
        .map(|a| render(a, mv, true))
        .collect();
    Ok(Json(json!({ "aggregates": list })))
}

pub async fn create(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Body(body): Body,
) -> Result<Json<Value>> {
    let agg = envelope(&body, "aggregate")?;
    no_extra("aggregate", agg, &["name", "availability_zone"])?;
    let Some(name) = agg.get("name") else {
        return Err(invalid(
            "aggregate",
            &Value::Object(agg.clone()),
            "'name' is a required property",
        ));
    };
    let name = check_name("name", name, true)?;
    let az = match agg.get("availability_zone") {
        Some(v) => check_az(v)?,
        None => None,
    };
    authorize(&state, &caller, "create")?;
    let mut tx = state.db.write().await?;
    if db::name_taken(&mut tx, &name, None).await? {
        return Err(Error::conflict(format!("Aggregate {name} already exists.")));
    }
    let a = db::aggregate_create(&mut tx, &name, az.as_deref(), store::now_micros())
        .await
        .map_err(|e| {
            if store::is_unique_violation(&e) {
                Error::conflict(format!("Aggregate {name} already exists."))
            } else {
                e.into()
            }
        })?;
    tx.commit().await?;
    Ok(Json(json!({ "aggregate": render(&a, mv, false) })))
}

pub async fn show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    authorize(&state, &caller, "show")?;
    let id = aggregate_id(&id)?;
    let a = db::aggregate_get(&state.db, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(one(&a, mv))
}

pub async fn update(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let upd = envelope(&body, "aggregate")?;
    no_extra("aggregate", upd, &["name", "availability_zone"])?;
    if upd.is_empty() {
        return Err(invalid(
            "aggregate",
            &Value::Object(upd.clone()),
            "{} is not valid under any of the given schemas",
        ));
    }
    let name = match upd.get("name") {
        Some(v) => Some(check_name("name", v, false)?),
        None => None,
    };
    let az = match upd.get("availability_zone") {
        Some(v) => Some(check_az(v)?),
        None => None,
    };
    authorize(&state, &caller, "update")?;
    let id = aggregate_id(&id)?;
    let mut tx = state.db.write().await?;
    let a = db::get_on(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some(n) = &name {
        if db::name_taken(&mut tx, n, Some(id)).await? {
            return Err(Error::conflict(format!("Aggregate {n} already exists.")));
        }
    }
    if let Some(az) = &az {
        safe_az_change(&mut tx, &a, az.as_deref(), None, true, |r| {
            Error::bad(format!("Cannot update aggregate {id}. Reason: {r}."))
        })
        .await?;
    }
    let now = store::now_micros();
    db::aggregate_touch(&mut tx, id, name.as_deref(), now).await?;
    if let Some(Some(az)) = &az {
        db::metadata_set(&mut tx, id, "availability_zone", az).await?;
    }
    let updated = db::get_on(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    if az.is_some() && a.availability_zone() != updated.availability_zone() {
        hosts_changed(&state, &updated.hosts).await?;
    }
    Ok(one(&updated, mv))
}

pub async fn delete(state: State, Auth(caller): Auth, Path(id): Path<String>) -> Result<()> {
    authorize(&state, &caller, "delete")?;
    let id = aggregate_id(&id)?;
    let mut tx = state.db.write().await?;
    let a = db::get_on(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !a.hosts.is_empty() {
        return Err(Error::bad(format!(
            "Cannot remove host from aggregate {id}. Reason: Host aggregate is not empty."
        )));
    }
    db::aggregate_delete(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}

/// `POST /os-aggregates/{id}/action`: add_host, remove_host, set_metadata.
pub async fn action(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    Path(id): Path<String>,
    Body(body): Body,
) -> Result<Json<Value>> {
    let Some(obj) = body.as_object() else {
        return Err(Error::bad("Malformed request body"));
    };
    if obj.contains_key("add_host") {
        let host = host_arg(&body, "add_host")?;
        add_host(&state, &caller, mv, &id, &host).await
    } else if obj.contains_key("remove_host") {
        let host = host_arg(&body, "remove_host")?;
        remove_host(&state, &caller, mv, &id, &host).await
    } else if obj.contains_key("set_metadata") {
        set_metadata(&state, &caller, mv, &id, &body).await
    } else {
        Err(Error::not_found("The resource could not be found."))
    }
}

/// `{"add_host": {"host": fqdn}}`.
fn host_arg(body: &Value, key: &str) -> Result<String> {
    let inner = envelope(body, key)?;
    no_extra(key, inner, &["host"])?;
    let Some(h) = inner.get("host") else {
        return Err(invalid(
            key,
            &Value::Object(inner.clone()),
            "'host' is a required property",
        ));
    };
    let Some(s) = h.as_str() else {
        return Err(invalid(
            "host",
            h,
            &format!("{} is not of type 'string'", pyrepr(h)),
        ));
    };
    if s.is_empty() {
        return Err(invalid("host", h, &format!("{} is too short", pyrepr(h))));
    }
    if s.chars().count() > 255 {
        return Err(invalid("host", h, &format!("{} is too long", pyrepr(h))));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(invalid(
            "host",
            h,
            &format!("{} does not match '^[a-zA-Z0-9-._]*$'", pyrepr(h)),
        ));
    }
    Ok(s.to_string())
}

async fn add_host(
    state: &Compute,
    caller: &Caller,
    mv: Mv,
    id: &str,
    host: &str,
) -> Result<Json<Value>> {
    authorize(state, caller, "add_host")?;
    let id = aggregate_id(id)?;
    let mut tx = state.db.write().await?;
    if !db::compute_host_exists(&mut tx, host).await? {
        return Err(Error::not_found(format!(
            "Host '{host}' is not mapped to any cell"
        )));
    }
    let a = db::get_on(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let reason =
        |r: &str| Error::conflict(format!("Cannot add host to aggregate {id}. Reason: {r}."));
    if a.availability_zone().is_some() {
        let hosts = [host.to_string()];
        safe_az_change(
            &mut tx,
            &a,
            a.availability_zone(),
            Some(&hosts),
            false,
            reason,
        )
        .await?;
        // Servers on the host must not change zone.
        let n = db::instances_on_hosts(&mut tx, &hosts).await?;
        if n > 0 {
            let old = db::host_aggregates_on(&mut tx, host)
                .await?
                .iter()
                .find_map(|g| g.availability_zone().map(str::to_string));
            if old.as_deref() != a.availability_zone() {
                return Err(reason(&format!(
                    "The host cannot be added to the aggregate as the availability zone of the \
                     host would change from '{}' to '{}' but the host already has {n} \
                     instance(s). Changing the AZ of an existing instance is not supported by \
                     this action. Move the instances away from this host then try again. If you \
                     need to move the instances between AZs then you can use shelve_offload and \
                     unshelve to achieve this.",
                    py_opt(old.as_deref()),
                    py_opt(a.availability_zone())
                )));
            }
        }
    }
    if a.hosts.iter().any(|h| h == host) {
        return Err(Error::conflict(format!(
            "Aggregate {id} already has host {host}."
        )));
    }
    db::host_add(&mut tx, id, host).await.map_err(|e| {
        if store::is_unique_violation(&e) {
            Error::conflict(format!("Aggregate {id} already has host {host}."))
        } else {
            e.into()
        }
    })?;
    let updated = db::get_on(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    state.host_aggregates_changed(host).await?;
    Ok(one(&updated, mv))
}

async fn remove_host(
    state: &Compute,
    caller: &Caller,
    mv: Mv,
    id_str: &str,
    host: &str,
) -> Result<Json<Value>> {
    authorize(state, caller, "remove_host")?;
    let id = aggregate_id(id_str)?;
    let mut tx = state.db.write().await?;
    if !db::compute_host_exists(&mut tx, host).await? {
        return Err(Error::bad(format!(
            "Host '{host}' is not mapped to any cell"
        )));
    }
    let cannot = || Error::not_found(format!("Cannot remove host {host} in aggregate {id_str}"));
    let a = db::get_on(&mut tx, id).await?.ok_or_else(cannot)?;
    if let Some(current) = a.availability_zone() {
        let hosts = [host.to_string()];
        let n = db::instances_on_hosts(&mut tx, &hosts).await?;
        if n > 0 {
            let new = db::host_aggregates_on(&mut tx, host)
                .await?
                .iter()
                .filter(|g| g.id != a.id)
                .find_map(|g| g.availability_zone().map(str::to_string));
            if new.as_deref() != Some(current) {
                return Err(Error::conflict(format!(
                    "Cannot remove host from aggregate {id}. Reason: The host cannot be removed \
                     from the aggregate as the availability zone of the host would change from \
                     '{current}' to '{}' but the host already has {n} instance(s). Changing the \
                     AZ of an existing instance is not supported by this action. Move the \
                     instances away from this host then try again. If you need to move the \
                     instances between AZs then you can use shelve_offload and unshelve to \
                     achieve this..",
                    py_opt(new.as_deref())
                )));
            }
        }
    }
    if !db::host_remove(&mut tx, id, host).await? {
        return Err(cannot());
    }
    let updated = db::get_on(&mut tx, id).await?.ok_or_else(cannot)?;
    tx.commit().await?;
    state.host_aggregates_changed(host).await?;
    Ok(one(&updated, mv))
}

fn metadata_key_ok(k: &str) -> bool {
    let n = k.chars().count();
    (1..=255).contains(&n)
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'.' | b' '))
}

async fn set_metadata(
    state: &Compute,
    caller: &Caller,
    mv: Mv,
    id: &str,
    body: &Value,
) -> Result<Json<Value>> {
    let inner = envelope(body, "set_metadata")?;
    no_extra("set_metadata", inner, &["metadata"])?;
    let Some(meta) = inner.get("metadata") else {
        return Err(invalid(
            "set_metadata",
            &Value::Object(inner.clone()),
            "'metadata' is a required property",
        ));
    };
    let Some(meta) = meta.as_object() else {
        return Err(invalid(
            "metadata",
            meta,
            &format!("{} is not of type 'object'", pyrepr(meta)),
        ));
    };
    let bad: Vec<&String> = meta.keys().filter(|k| !metadata_key_ok(k)).collect();
    if !bad.is_empty() {
        let list = bad
            .iter()
            .map(|k| format!("'{k}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let verb = if bad.len() == 1 { "was" } else { "were" };
        return Err(invalid(
            "metadata",
            &Value::Object(meta.clone()),
            &format!("Additional properties are not allowed ({list} {verb} unexpected)"),
        ));
    }
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    for (k, v) in meta {
        match v {
            Value::Null => changes.push((k.clone(), None)),
            Value::String(s) if s.chars().count() <= 255 => {
                changes.push((k.clone(), Some(s.clone())))
            }
            Value::String(_) => {
                return Err(invalid(k, v, &format!("{} is too long", pyrepr(v))));
            }
            other => {
                return Err(invalid(
                    k,
                    other,
                    &format!("{} is not of type 'string', 'null'", pyrepr(other)),
                ));
            }
        }
    }
    authorize(state, caller, "set_metadata")?;
    let id = aggregate_id(id)?;
    let mut tx = state.db.write().await?;
    let a = db::get_on(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if let Some((_, az)) = changes.iter().find(|(k, _)| k == "availability_zone") {
        safe_az_change(&mut tx, &a, az.as_deref(), None, true, |r| {
            Error::bad(format!(
                "Cannot update metadata of aggregate {id}. Reason: {r}."
            ))
        })
        .await?;
    }
    for (k, v) in &changes {
        match v {
            Some(v) => db::metadata_set(&mut tx, id, k, v).await?,
            None => db::metadata_delete(&mut tx, id, k).await?,
        }
    }
    db::aggregate_touch(&mut tx, id, None, store::now_micros()).await?;
    let updated = db::get_on(&mut tx, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    tx.commit().await?;
    if a.availability_zone() != updated.availability_zone() {
        hosts_changed(state, &updated.hosts).await?;
    }
    Ok(one(&updated, mv))
}
