//! JSON shapes of the image API.

use serde_json::{json, Map, Value};

use crate::db::images::Image;
use crate::db::members::MemberRow;
use crate::db::tasks::TaskRow;

/// Properties kept for bookkeeping and never shown.
pub const HIDDEN_PROPERTIES: &[&str] = &["os_glance_stage_host", "os_glance_hash_op_host"];

/// Glance's timestamp format: `2016-06-29T16:13:07Z`.
pub fn time(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map(Into::into).unwrap_or(Value::Null)
}

/// An image as Glance shows it: custom properties at the top level next to
/// the core attributes.
pub fn image(img: &Image, show_direct_url: bool) -> Value {
    let r = &img.row;
    let mut m = Map::new();
    for (k, v) in &img.properties {
        if HIDDEN_PROPERTIES.contains(&k.as_str()) {
            continue;
        }
        m.insert(k.clone(), opt(v.clone()));
    }
    let core = json!({
        "id": r.id,
        "name": r.name,
        "status": r.status,
        "visibility": r.visibility,
        "protected": store::flag(r.protected),
        "os_hidden": store::flag(r.os_hidden),
        "owner": r.owner,
        "disk_format": r.disk_format,
        "container_format": r.container_format,
        "size": r.size,
        "virtual_size": r.virtual_size,
        "checksum": r.checksum,
        "os_hash_algo": r.os_hash_algo,
        "os_hash_value": r.os_hash_value,
        "min_disk": r.min_disk,
        "min_ram": r.min_ram,
        "created_at": time(r.created_at),
        "updated_at": time(r.updated_at),
        "tags": img.tags,
        "self": format!("/v2/images/{}", r.id),
        "file": format!("/v2/images/{}/file", r.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(c) = core {
        m.extend(c);
    }
    if r.location.is_some() {
        if let Some(s) = &r.store {
            m.insert("stores".into(), json!(s));
        }
        if show_direct_url {
            m.insert("direct_url".into(), json!(r.location));
        }
    }
    Value::Object(m)
}

pub fn member(m: &MemberRow) -> Value {
    json!({
        "image_id": m.image_id,
        "member_id": m.member,
        "status": m.status,
        "created_at": time(m.created_at),
        "updated_at": time(m.updated_at),
        "schema": "/v2/schemas/member",
    })
}

pub fn task(t: &TaskRow) -> Value {
    let input: Value = serde_json::from_str(&t.input).unwrap_or_else(|_| json!({}));
    let result: Value = t
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or(Value::Null);
    let mut v = json!({
        "id": t.id,
        "type": t.kind,
        "status": t.status,
        "owner": t.owner,
        "input": input,
        "result": result,
        "message": t.message,
        "image_id": t.image_id,
        "user_id": t.user_id,
        "request_id": t.request_id,
        "created_at": time(t.created_at),
        "updated_at": time(t.updated_at),
        "self": format!("/v2/tasks/{}", t.id),
        "schema": "/v2/schemas/task",
    });
    if let Some(e) = t.expires_at {
        v["expires_at"] = json!(time(e));
    }
    v
}
