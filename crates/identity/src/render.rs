//! JSON renderings of identity resources, in Keystone's shapes.

use api_common::{AuthContext, Scope};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use store::Db;

use crate::db::catalog::{EndpointRow, RegionRow, ServiceRow};
use crate::db::domains::DomainRow;
use crate::db::groups::GroupRow;
use crate::db::projects::ProjectRow;
use crate::db::roles::RoleRow;
use crate::db::users::UserRow;
use crate::error::Result;

/// Keystone's timestamp format: `2015-11-05T22:00:11.000000Z`.
pub fn time(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Parses the timestamps clients send (`2030-01-01T00:00:00`, with or
/// without fractions and a zone) into microseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.fZ",
        "%Y-%m-%dT%H:%M:%SZ",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// Merges stored extra attributes into a rendered object (core keys win).
fn with_extra(mut obj: Map<String, Value>, extra: &str) -> Value {
    if let Ok(Value::Object(e)) = serde_json::from_str::<Value>(extra) {
        for (k, v) in e {
            obj.entry(k).or_insert(v);
        }
    }
    Value::Object(obj)
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn parse_obj(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| json!({}))
}

pub fn links(base: &str, path: &str) -> Value {
    json!({ "self": format!("{base}/v3/{path}") })
}

pub fn domain(base: &str, d: &DomainRow) -> Value {
    with_extra(
        object(json!({
            "id": d.id,
            "name": d.name,
            "description": d.description,
            "enabled": store::flag(d.enabled),
            "tags": [],
            "options": {},
            "links": links(base, &format!("domains/{}", d.id)),
        })),
        &d.extra,
    )
}

pub fn project(base: &str, p: &ProjectRow, tags: &[String]) -> Value {
    with_extra(
        object(json!({
            "id": p.id,
            "name": p.name,
            "domain_id": p.domain_id,
            "parent_id": p.parent_id.clone().unwrap_or_else(|| p.domain_id.clone()),
            "description": p.description,
            "enabled": store::flag(p.enabled),
            "is_domain": false,
            "tags": tags,
            "options": {},
            "links": links(base, &format!("projects/{}", p.id)),
        })),
        &p.extra,
    )
}

pub fn user(base: &str, u: &UserRow, password_expires_at: Option<i64>) -> Value {
    let mut m = object(json!({
        "id": u.id,
        "name": u.name,
        "domain_id": u.domain_id,
        "enabled": store::flag(u.enabled),
        "password_expires_at": password_expires_at.map(time),
        "options": parse_obj(&u.options),
        "links": links(base, &format!("users/{}", u.id)),
    }));
    if let Some(p) = &u.default_project_id {
        m.insert("default_project_id".into(), json!(p));
    }
    if let Some(d) = &u.description {
        m.insert("description".into(), json!(d));
    }
    with_extra(m, &u.extra)
}

pub fn group(base: &str, g: &GroupRow) -> Value {
    with_extra(
        object(json!({
            "id": g.id,
            "name": g.name,
            "domain_id": g.domain_id,
            "description": g.description,
            "links": links(base, &format!("groups/{}", g.id)),
        })),
        &g.extra,
    )
}

pub fn role(base: &str, r: &RoleRow) -> Value {
    with_extra(
        object(json!({
            "id": r.id,
            "name": r.name,
            "domain_id": if r.domain_id.is_empty() { Value::Null } else { json!(r.domain_id) },
            "description": r.description,
            "options": parse_obj(&r.options),
            "links": links(base, &format!("roles/{}", r.id)),
        })),
        &r.extra,
    )
}

pub fn region(base: &str, r: &RegionRow) -> Value {
    with_extra(
        object(json!({
            "id": r.id,
            "description": r.description,
            "parent_region_id": r.parent_region_id,
            "links": links(base, &format!("regions/{}", r.id)),
        })),
        &r.extra,
    )
}

pub fn service(base: &str, s: &ServiceRow) -> Value {
    let mut m = object(json!({
        "id": s.id,
        "type": s.kind,
        "enabled": store::flag(s.enabled),
        "links": links(base, &format!("services/{}", s.id)),
    }));
    if let Some(n) = &s.name {
        m.insert("name".into(), json!(n));
    }
    if let Some(d) = &s.description {
        m.insert("description".into(), json!(d));
    }
    with_extra(m, &s.extra)
}

pub fn endpoint(base: &str, e: &EndpointRow) -> Value {
    with_extra(
        object(json!({
            "id": e.id,
            "service_id": e.service_id,
            "interface": e.interface,
            "url": e.url,
            "region_id": e.region_id,
            "region": e.region_id,
            "enabled": store::flag(e.enabled),
            "links": links(base, &format!("endpoints/{}", e.id)),
        })),
        &e.extra,
    )
}

pub fn user_option_bool(u: &UserRow, key: &str) -> bool {
    parse_obj(&u.options).get(key) == Some(&Value::Bool(true))
}

pub fn ignore_password_expiry(u: &UserRow) -> bool {
    user_option_bool(u, "ignore_password_expiry")
}

pub fn ignore_change_password(u: &UserRow) -> bool {
    user_option_bool(u, "ignore_change_password_upon_first_use")
}

/// The service catalog as tokens carry it: enabled services with their
/// enabled endpoints.
pub async fn catalog(db: &Db) -> Result<Value> {
    let services = crate::db::catalog::service_list(db).await?;
    let endpoints = crate::db::catalog::endpoint_list(db).await?;
    let out: Vec<Value> = services
        .iter()
        .filter(|s| store::flag(s.enabled))
        .map(|s| {
            let eps: Vec<Value> = endpoints
                .iter()
                .filter(|e| e.service_id == s.id && store::flag(e.enabled))
                .map(|e| {
                    json!({
                        "id": e.id,
                        "interface": e.interface,
                        "region": e.region_id,
                        "region_id": e.region_id,
                        "url": e.url,
                    })
                })
                .collect();
            json!({
                "id": s.id,
                "type": s.kind,
                "name": s.name.clone().unwrap_or_default(),
                "endpoints": eps,
            })
        })
        .collect();
    Ok(Value::Array(out))
}

/// The body of a token response.
pub fn token(ctx: &AuthContext, catalog: Option<&Value>) -> Value {
    let mut t = object(json!({
        "methods": ctx.methods,
        "user": {
            "id": ctx.user_id,
            "name": ctx.user_name,
            "domain": { "id": ctx.user_domain_id, "name": ctx.user_domain_name },
            "password_expires_at": null,
        },
        "audit_ids": ctx.audit_ids,
        "issued_at": time(ctx.issued_at),
        "expires_at": time(ctx.expires_at),
    }));
    match &ctx.scope {
        Scope::Unscoped => {}
        Scope::Project {
            id,
            name,
            domain_id,
            domain_name,
        } => {
            t.insert(
                "project".into(),
                json!({ "id": id, "name": name, "domain": { "id": domain_id, "name": domain_name } }),
            );
            t.insert("is_domain".into(), json!(false));
            t.insert("is_admin_project".into(), json!(ctx.is_admin_project));
        }
        Scope::Domain { id, name } => {
            t.insert("domain".into(), json!({ "id": id, "name": name }));
        }
        Scope::System => {
            t.insert("system".into(), json!({ "all": true }));
        }
    }
    if !matches!(ctx.scope, Scope::Unscoped) {
        t.insert("roles".into(), json!(ctx.roles));
        if let Some(c) = catalog {
            t.insert("catalog".into(), c.clone());
        }
    }
    if let Some(ac) = &ctx.application_credential_id {
        t.insert(
            "application_credential".into(),
            json!({ "id": ac, "restricted": true }),
        );
    }
    json!({ "token": Value::Object(t) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_keystone_format() {
        let t = 1_446_760_811_123_456;
        assert_eq!(time(t), "2015-11-05T22:00:11.123456Z");
        assert_eq!(parse_time("2015-11-05T22:00:11.123456Z"), Some(t));
        assert_eq!(
            parse_time("2015-11-05T22:00:11"),
            Some(1_446_760_811_000_000)
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
