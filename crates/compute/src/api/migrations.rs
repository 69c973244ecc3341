//! Migrations (`GET /os-migrations`, admin): resizes, cold and live
//! migrations and evacuations, newest first, with the fields of each
//! microversion (migration_type and links 2.23, uuid and paging 2.59,
//! changes-before 2.66).

use axum::extract::RawQuery;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Map, Value};
use store::Row;

use super::aggregates::naive_time;
use super::quotas::first;
use super::server_groups::{query_int, MAX_LIMIT};
use super::{base_url, query_pairs, Auth, Mv, State};
use crate::error::{Error, Result};

const COLS: &str = "id, uuid, instance_id, migration_type, status, source_compute, dest_compute, \
    source_node, dest_node, old_instance_type_id, new_instance_type_id, created_at, updated_at";

/// A time filter (ISO 8601, as `timeutils.parse_isotime`).
fn iso(name: &str, v: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, fmt) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    Err(Error::bad(format!(
        "Invalid input for query parameters {name}. Value: {v}. '{v}' is not a 'date-time'"
    )))
}

/// A flavor id as the old integer fields show it.
pub async fn index(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let pairs = query_pairs(q.as_deref());
    let mut allowed = vec![
        "hidden",
        "host",
        "instance_uuid",
        "source_compute",
        "status",
        "migration_type",
    ];
    if mv.at_least(59) {
        allowed.extend(["limit", "marker", "changes-since"]);
        if mv.at_least(66) {
            allowed.push("changes-before");
        }
        super::quotas::strict_query(mv, 59, &pairs, &allowed)?;
    }
    state.authorize(
        &caller,
        "os_compute_api:os-migrations:index",
        &api_common::Target::new(),
    )?;
    let show_host = state.allowed(
        &caller,
        "os_compute_api:os-migrations:index:host",
        &api_common::Target::new(),
    );

    let mut sql = format!("SELECT {COLS} FROM migrations WHERE 1 = 1");
    let mut binds: Vec<Value> = Vec::new();
    let bind = |v: Value, binds: &mut Vec<Value>| {
        binds.push(v);
        format!("${}", binds.len())
    };
    let statuses: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "status")
        .map(|(_, v)| v.as_str())
        .collect();
    if !statuses.is_empty() {
        let marks: Vec<String> = statuses
            .iter()
            .map(|s| bind(json!(s), &mut binds))
            .collect();
        sql.push_str(&format!(" AND status IN ({})", marks.join(", ")));
    }
    if let Some(h) = first(&pairs, "host") {
        let m = bind(json!(h), &mut binds);
        sql.push_str(&format!(
            " AND (source_compute = {m} OR dest_compute = {m})"
        ));
    }
    for (param, col) in [
        ("source_compute", "source_compute"),
        ("instance_uuid", "instance_id"),
        ("migration_type", "migration_type"),
    ] {
        if let Some(v) = first(&pairs, param) {
            let m = bind(json!(v), &mut binds);
            sql.push_str(&format!(" AND {col} = {m}"));
        }
    }
    let mut limit = None;
    if mv.at_least(59) {
        let since = first(&pairs, "changes-since")
            .map(|v| iso("changes-since", v))
            .transpose()?;
        let before = if mv.at_least(66) {
            first(&pairs, "changes-before")
                .map(|v| iso("changes-before", v))
                .transpose()?
        } else {
            None
        };
        if let (Some(s), Some(b)) = (since, before) {
            if b < s {
                return Err(Error::bad(
                    "The value of changes-since must be less than or equal to changes-before.",
                ));
            }
        }
        if let Some(s) = since {
            let m = bind(json!(s), &mut binds);
            sql.push_str(&format!(" AND COALESCE(updated_at, created_at) >= {m}"));
        }
        if let Some(b) = before {
            let m = bind(json!(b), &mut binds);
            sql.push_str(&format!(" AND COALESCE(updated_at, created_at) <= {m}"));
        }
        let l = match first(&pairs, "limit") {
            Some(l) => query_int("limit", l)?.min(MAX_LIMIT),
            None => MAX_LIMIT,
        };
        limit = Some(l);
        if let Some(marker) = first(&pairs, "marker") {
            let row = store::sqlx::query("SELECT created_at, id FROM migrations WHERE uuid = $1")
                .bind(marker)
                .fetch_optional(state.db.pool())
                .await?
                .ok_or_else(|| Error::bad(format!("Marker {marker} could not be found.")))?;
            let (c, i): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            let mc = bind(json!(c), &mut binds);
            let mi = bind(json!(i), &mut binds);
            sql.push_str(&format!(
                " AND (created_at < {mc} OR (created_at = {mc} AND id < {mi}))"
            ));
        }
    }
    sql.push_str(" ORDER BY created_at DESC, id DESC");
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    let mut query = store::sqlx::query(&sql);
    for b in &binds {
        query = match b {
            Value::Number(n) => query.bind(n.as_i64().unwrap_or(0)),
            other => query.bind(other.as_str().unwrap_or_default().to_string()),
        };
    }
    let rows = query.fetch_all(state.db.pool()).await?;
    let base = base_url(&state, &headers);
    let mut out = Vec::with_capacity(rows.len());
    let mut last_uuid = None;
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let uuid: String = r.try_get(1)?;
        let instance: String = r.try_get(2)?;
        let mtype: String = r.try_get(3)?;
        let status: String = r.try_get(4)?;
        let host = |v: Option<String>| if show_host { json!(v) } else { Value::Null };
        let mut o = Map::new();
        o.insert("created_at".into(), json!(naive_time(r.try_get(11)?)));
        o.insert("dest_compute".into(), host(r.try_get(6)?));
        o.insert("dest_host".into(), Value::Null);
        o.insert("dest_node".into(), host(r.try_get(8)?));
        o.insert("id".into(), json!(id));
        o.insert("instance_uuid".into(), json!(instance));
        let new_type: Option<i64> = r.try_get(10)?;
        let old_type: Option<i64> = r.try_get(9)?;
        o.insert("new_instance_type_id".into(), json!(new_type));
        o.insert("old_instance_type_id".into(), json!(old_type));
        o.insert("source_compute".into(), host(r.try_get(5)?));
        o.insert("source_node".into(), host(r.try_get(7)?));
        o.insert("status".into(), json!(status));
        let updated: Option<i64> = r.try_get(12)?;
        o.insert("updated_at".into(), json!(updated.map(naive_time)));
        if mv.at_least(23) {
            o.insert("migration_type".into(), json!(mtype));
            if mtype == "live-migration"
                && ["queued", "preparing", "running", "post-migrating"].contains(&status.as_str())
            {
                let href = format!("servers/{instance}/migrations/{id}");
                o.insert(
                    "links".into(),
                    json!([
                        {"rel": "self", "href": format!("{base}/v2.1/{href}")},
                        {"rel": "bookmark", "href": format!("{base}/{href}")},
                    ]),
                );
            }
        }
        if mv.at_least(59) {
            o.insert("uuid".into(), json!(uuid));
        }
        last_uuid = Some(uuid);
        out.push(Value::Object(o));
    }
    let mut body = json!({ "migrations": out });
    if let (Some(l), Some(last)) = (limit, last_uuid) {
        let requested = first(&pairs, "limit")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(MAX_LIMIT)
            .min(MAX_LIMIT);
        if requested != 0 && requested == body["migrations"].as_array().map_or(0, Vec::len) && l > 0
        {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs.iter().filter(|(k, _)| k != "marker") {
                q.append_pair(k, v);
            }
            q.append_pair("marker", &last);
            body["migrations_links"] = json!([{
                "rel": "next",
                "href": format!("{base}/v2.1/os-migrations?{}", q.finish()),
            }]);
        }
    }
    Ok(Json(body))
}
