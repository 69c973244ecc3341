//! /resource_providers/{uuid}/usages and /usages (1.9).

use std::collections::BTreeMap;

use api_common::policy::Target;
use axum::extract::Path;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Map, Value};
use store::sqlx::{self, Row};

use super::allocations::CONSUMER_TYPE_PATTERN;
use super::{bad_query, cache_headers, json_response, query_pairs, Ctx};
use crate::db;
use crate::error::{Error, Result};
use crate::schema::{validate, ObjectSchema, Schema};

/// (name in the body, consumer-type filter for the count, usage per class).
type UsageGroup<'a> = (String, Option<Option<&'a str>>, BTreeMap<String, i64>);

pub async fn provider(ctx: Ctx, Path(uuid): Path<String>) -> Result<Response> {
    ctx.can("placement:resource_providers:usages")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let Some(rp) = db::provider_get(&mut conn, &uuid).await? else {
        return Err(Error::not_found(format!(
            "No resource provider with uuid {uuid} found: No resource provider with uuid {uuid} found"
        )));
    };
    let used = db::usages_of_provider(&mut conn, &uuid).await?;
    let mut usages = Map::new();
    for inv in db::inventory_list(&mut conn, &uuid).await? {
        let u = used.get(&inv.resource_class).copied().unwrap_or(0);
        usages.insert(inv.resource_class, json!(u));
    }
    let mut res = json_response(
        StatusCode::OK,
        &json!({"resource_provider_generation": rp.generation, "usages": usages}),
    );
    cache_headers(&mut res, ctx.v, None);
    Ok(res)
}

pub async fn totals(ctx: Ctx, uri: Uri) -> Result<Response> {
    if !ctx.at_least(9) {
        return Err(Error::not_found(""));
    }
    let mut params = serde_json::Map::new();
    for (k, v) in query_pairs(&uri) {
        params.insert(k, Value::String(v));
    }
    let project_id = params
        .get("project_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let target = Target::new().with_opt("project_id", project_id.clone());
    ctx.p.authorize(&ctx.creds, "placement:usages", &target)?;
    let with_types = ctx.at_least(38);
    let mut props = vec![
        ("project_id", Schema::string_len(Some(1), Some(255))),
        ("user_id", Schema::string_len(Some(1), Some(255))),
    ];
    if with_types {
        props.push((
            "consumer_type",
            Schema::pattern_len(
                &format!("{CONSUMER_TYPE_PATTERN}|^all|^unknown$"),
                Some(1),
                Some(255),
            ),
        ));
    }
    let schema = Schema::object(ObjectSchema {
        properties: props,
        required: vec!["project_id"],
        additional: Some(None),
        ..Default::default()
    });
    if let Err(e) = validate(&schema, &Value::Object(params.clone())) {
        return Err(bad_query(e.describe()));
    }
    let project_id = project_id.unwrap_or_default();
    let user_id = params.get("user_id").and_then(Value::as_str);
    let consumer_type = params.get("consumer_type").and_then(Value::as_str);
    let mut conn = ctx.p.db.pool().acquire().await?;
    let mut sql = String::from(
        "SELECT a.resource_class, CAST(SUM(a.used) AS BIGINT), COUNT(DISTINCT a.consumer_uuid), c.consumer_type \
         FROM placement_allocations a JOIN placement_consumers c ON c.uuid = a.consumer_uuid \
         WHERE c.project_id = $1",
    );
    if user_id.is_some() {
        sql.push_str(" AND c.user_id = $2");
    }
    sql.push_str(" GROUP BY a.resource_class, c.consumer_type");
    let mut q = sqlx::query(&sql).bind(&project_id);
    if let Some(u) = user_id {
        q = q.bind(u);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    // (class, type) -> used; consumers per type counted separately.
    let mut by_class: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_type: BTreeMap<Option<String>, BTreeMap<String, i64>> = BTreeMap::new();
    for r in &rows {
        let class: String = r.try_get(0)?;
        let used: i64 = r.try_get(1)?;
        let ctype: Option<String> = r.try_get(3)?;
        *by_class.entry(class.clone()).or_default() += used;
        *by_type.entry(ctype).or_default().entry(class).or_default() += used;
    }
    let body = if !with_types {
        json!({ "usages": by_class })
    } else {
        let count = |ctype: Option<Option<&str>>| {
            let mut sql = String::from(
                "SELECT COUNT(DISTINCT a.consumer_uuid) FROM placement_allocations a \
                 JOIN placement_consumers c ON c.uuid = a.consumer_uuid WHERE c.project_id = $1",
            );
            let mut n = 2;
            if user_id.is_some() {
                sql.push_str(&format!(" AND c.user_id = ${n}"));
                n += 1;
            }
            match ctype {
                None => {}
                Some(None) => sql.push_str(" AND c.consumer_type IS NULL"),
                Some(Some(_)) => sql.push_str(&format!(" AND c.consumer_type = ${n}")),
            }
            (sql, ctype.flatten().map(str::to_string))
        };
        let mut usages = Map::new();
        let groups: Vec<UsageGroup<'_>> = match consumer_type {
            Some("all") => vec![("all".into(), None, by_class.clone())],
            Some("unknown") => vec![(
                "unknown".into(),
                Some(None),
                by_type.get(&None).cloned().unwrap_or_default(),
            )],
            Some(t) => vec![(
                t.to_string(),
                Some(Some(t)),
                by_type
                    .get(&Some(t.to_string()))
                    .cloned()
                    .unwrap_or_default(),
            )],
            None => by_type
                .iter()
                .map(|(t, m)| {
                    (
                        t.clone().unwrap_or_else(|| "unknown".into()),
                        Some(t.as_deref()),
                        m.clone(),
                    )
                })
                .collect(),
        };
        for (name, filter, classes) in groups {
            if classes.is_empty() && !matches!(consumer_type, Some("all") | Some("unknown")) {
                continue;
            }
            let (sql, bind) = count(filter);
            let mut q = sqlx::query(&sql).bind(&project_id);
            if let Some(u) = user_id {
                q = q.bind(u);
            }
            if let Some(b) = &bind {
                q = q.bind(b);
            }
            let consumers: i64 = q.fetch_one(&mut *conn).await?.try_get(0)?;
            let mut entry = Map::new();
            for (c, u) in classes {
                entry.insert(c, json!(u));
            }
            if !entry.is_empty() || matches!(consumer_type, Some("all") | Some("unknown")) {
                entry.insert("consumer_count".into(), json!(consumers));
            }
            usages.insert(name, Value::Object(entry));
        }
        json!({ "usages": usages })
    };
    let mut res = json_response(StatusCode::OK, &body);
    cache_headers(&mut res, ctx.v, None);
    Ok(res)
}
