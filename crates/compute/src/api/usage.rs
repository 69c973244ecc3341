//! Simple tenant usage (`/os-simple-tenant-usage`): hours, vCPU-, RAM- and
//! disk-hours of the servers that ran in a period, per project.

use axum::extract::{Path, RawQuery};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Map, Value};
use store::Row;

use super::aggregates::naive_time;
use super::quotas::{first, strict_query};
use super::server_groups::{query_int, MAX_LIMIT};
use super::{base_url, query_pairs, Auth, Mv, State};
use crate::error::{Error, Result};
use crate::Compute;

/// Parses a period bound as Nova does; none means now.
fn parse_time(v: Option<&str>) -> Result<i64> {
    let Some(s) = v.filter(|s| !s.is_empty()) else {
        return Ok(store::now_micros());
    };
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc().timestamp_micros());
        }
    }
    Err(Error::bad(
        "Invalid datetime string: Datetime is in invalid format",
    ))
}

struct Period {
    start: i64,
    stop: i64,
    detailed: bool,
    limit: usize,
    marker: Option<String>,
}

fn period(mv: Mv, pairs: &[(String, String)]) -> Result<Period> {
    let start = parse_time(first(pairs, "start"))?;
    let stop = parse_time(first(pairs, "end"))?;
    // Both bounds left out mean "now" to "now", which upstream reads at two
    // instants (so start < stop); one clock reading here can make them equal.
    let unset = |k| first(pairs, k).is_none_or(str::is_empty);
    let stop = if unset("start") && unset("end") {
        stop.max(start + 1)
    } else {
        stop
    };
    if start >= stop {
        return Err(Error::bad(
            "Invalid start time. The start time cannot occur after the end time.",
        ));
    }
    let stop = stop.min(store::now_micros());
    let detailed = first(pairs, "detailed") == Some("1");
    let mut limit = MAX_LIMIT;
    let mut marker = None;
    if mv.at_least(40) {
        if let Some(l) = first(pairs, "limit") {
            limit = query_int("limit", l)?.min(MAX_LIMIT);
        }
        marker = first(pairs, "marker").map(str::to_string);
    }
    Ok(Period {
        start,
        stop,
        detailed,
        limit,
        marker,
    })
}

struct Usage {
    id: String,
    name: String,
    project: String,
    flavor: String,
    vcpus: i64,
    memory_mb: i64,
    local_gb: i64,
    vm_state: String,
    launched_at: i64,
    ended_at: Option<i64>,
}

/// The servers that ran in the period, by project and id
/// (`instance_get_active_by_window_joined`), deleted ones included.
async fn servers(state: &Compute, p: &Period, project: Option<&str>) -> Result<Vec<Usage>> {
    let mut sql = String::from(
        "SELECT id, name, project_id, flavor, vcpus, memory_mb, root_gb, vm_state, launched_at, \
         COALESCE(terminated_at, deleted_at) FROM instances WHERE launched_at IS NOT NULL \
         AND launched_at < $1 AND (COALESCE(terminated_at, deleted_at) IS NULL \
         OR COALESCE(terminated_at, deleted_at) > $2)",
    );
    let mut binds: Vec<String> = Vec::new();
    if let Some(pj) = project {
        binds.push(pj.to_string());
        sql.push_str(&format!(" AND project_id = ${}", 2 + binds.len()));
    }
    if let Some(m) = &p.marker {
        let row = store::sqlx::query("SELECT project_id FROM instances WHERE id = $1")
            .bind(m)
            .fetch_optional(state.db.pool())
            .await?
            .ok_or_else(|| Error::bad(format!("Marker {m} could not be found.")))?;
        let mp: String = row.try_get(0)?;
        binds.push(mp);
        let a = 2 + binds.len();
        binds.push(m.clone());
        let b = 2 + binds.len();
        sql.push_str(&format!(
            " AND (project_id > ${a} OR (project_id = ${a} AND id > ${b}))"
        ));
    }
    sql.push_str(&format!(" ORDER BY project_id, id LIMIT {}", p.limit));
    let mut q = store::sqlx::query(&sql).bind(p.stop).bind(p.start);
    for b in &binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(state.db.pool()).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let flavor: String = r.try_get(3)?;
        let flavor: Value = serde_json::from_str(&flavor).unwrap_or(Value::Null);
        let root_gb: i64 = r.try_get(6)?;
        out.push(Usage {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            project: r.try_get(2)?,
            flavor: flavor["name"].as_str().unwrap_or_default().to_string(),
            vcpus: r.try_get(4)?,
            memory_mb: r.try_get(5)?,
            local_gb: root_gb + flavor["ephemeral_gb"].as_i64().unwrap_or(0),
            vm_state: r.try_get(7)?,
            launched_at: r.try_get(8)?,
            ended_at: r.try_get(9)?,
        });
    }
    Ok(out)
}

fn hours(u: &Usage, p: &Period) -> f64 {
    if u.ended_at.is_some_and(|t| t < p.start) || u.launched_at > p.stop {
        return 0.0;
    }
    let start = u.launched_at.max(p.start);
    let stop = u.ended_at.map_or(p.stop, |t| t.min(p.stop));
    (stop - start) as f64 / 3_600_000_000.0
}

/// Per-project summaries, in the order of the servers.
fn summarize(list: &[Usage], p: &Period, detailed: bool) -> Vec<Value> {
    let now = store::now_micros();
    let mut out: Vec<Value> = Vec::new();
    let mut current: Option<String> = None;
    for u in list {
        let h = hours(u, p);
        let uptime = (u.ended_at.unwrap_or(now) - u.launched_at) / 1_000_000;
        let server = json!({
            "ended_at": u.ended_at.map(naive_time),
            "flavor": u.flavor,
            "hours": h,
            "instance_id": u.id,
            "local_gb": u.local_gb,
            "memory_mb": u.memory_mb,
            "name": u.name,
            "started_at": naive_time(u.launched_at),
            "state": if u.ended_at.is_some() { "terminated" } else { u.vm_state.as_str() },
            "tenant_id": u.project,
            "uptime": uptime,
            "vcpus": u.vcpus,
        });
        if current.as_deref() != Some(u.project.as_str()) {
            let mut s = Map::new();
            s.insert("tenant_id".into(), json!(u.project));
            if detailed {
                s.insert("server_usages".into(), json!([]));
            }
            s.insert("total_local_gb_usage".into(), json!(0.0));
            s.insert("total_vcpus_usage".into(), json!(0.0));
            s.insert("total_memory_mb_usage".into(), json!(0.0));
            s.insert("total_hours".into(), json!(0.0));
            s.insert("start".into(), json!(naive_time(p.start)));
            s.insert("stop".into(), json!(naive_time(p.stop)));
            out.push(Value::Object(s));
            current = Some(u.project.clone());
        }
        let Some(Value::Object(s)) = out.last_mut() else {
            continue;
        };
        let add = |s: &mut Map<String, Value>, k: &str, v: f64| {
            let old = s.get(k).and_then(Value::as_f64).unwrap_or(0.0);
            s.insert(k.into(), json!(old + v));
        };
        add(s, "total_local_gb_usage", u.local_gb as f64 * h);
        add(s, "total_vcpus_usage", u.vcpus as f64 * h);
        add(s, "total_memory_mb_usage", u.memory_mb as f64 * h);
        add(s, "total_hours", h);
        if let Some(Value::Array(a)) = s.get_mut("server_usages") {
            a.push(server);
        }
    }
    out
}

/// The `next` link when a page came back full.
fn links(
    state: &Compute,
    headers: &HeaderMap,
    path: &str,
    pairs: &[(String, String)],
    list: &[Usage],
) -> Option<Value> {
    let requested = first(pairs, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(MAX_LIMIT)
        .min(MAX_LIMIT);
    let last = list.last()?;
    if requested == 0 || requested != list.len() {
        return None;
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(k, _)| k != "marker") {
        q.append_pair(k, v);
    }
    q.append_pair("marker", &last.id);
    Some(json!([{
        "rel": "next",
        "href": format!("{}/v2.1/{path}?{}", base_url(state, headers), q.finish()),
    }]))
}

const QUERY_240: [&str; 5] = ["start", "end", "detailed", "limit", "marker"];

pub async fn index(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let pairs = query_pairs(q.as_deref());
    strict_query(mv, 75, &pairs, &QUERY_240)?;
    state.authorize(
        &caller,
        "os_compute_api:os-simple-tenant-usage:list",
        &api_common::Target::new(),
    )?;
    let p = period(mv, &pairs)?;
    let list = servers(&state, &p, None).await?;
    let mut out = json!({ "tenant_usages": summarize(&list, &p, p.detailed) });
    if mv.at_least(40) {
        if let Some(l) = links(&state, &headers, "os-simple-tenant-usage", &pairs, &list) {
            out["tenant_usages_links"] = l;
        }
    }
    Ok(Json(out))
}

pub async fn show(
    state: State,
    Auth(caller): Auth,
    mv: Mv,
    headers: HeaderMap,
    Path(tenant): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>> {
    let pairs = query_pairs(q.as_deref());
    strict_query(mv, 75, &pairs, &["start", "end", "limit", "marker"])?;
    state.authorize(
        &caller,
        "os_compute_api:os-simple-tenant-usage:show",
        &Compute::project_target(&tenant, None),
    )?;
    let p = period(mv, &pairs)?;
    let list = servers(&state, &p, Some(&tenant)).await?;
    let usage = summarize(&list, &p, true)
        .into_iter()
        .next()
        .unwrap_or_else(|| json!({}));
    let mut out = json!({ "tenant_usage": usage });
    if mv.at_least(40) {
        let path = format!("os-simple-tenant-usage/{tenant}");
        if let Some(l) = links(&state, &headers, &path, &pairs, &list) {
            out["tenant_usage_links"] = l;
        }
    }
    Ok(Json(out))
}
