//! /allocations/{consumer}, POST /allocations (1.13) and
//! /resource_providers/{uuid}/allocations.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use store::sqlx::{self, Row};

use super::inventories::RC_PATTERN;
use super::{cache_headers, json_body, json_response, no_content, Ctx};
use crate::cache::{commit, Changes};
use crate::db::{self, Conn};
use crate::error::{codes, Error, Result};
use crate::schema::{pattern_prop, validate_body, ObjectSchema, Schema};

/// Upstream's `incomplete_consumer_project_id` / `_user_id` defaults.
const INCOMPLETE_CONSUMER: &str = "00000000-0000-0000-0000-000000000000";
const UUID_PATTERN: &str = "^[0-9a-fA-F-]{36}$";
const GROUP_PATTERN: &str = "^[a-zA-Z0-9_-]{1,64}$";
pub const CONSUMER_TYPE_PATTERN: &str = "^[A-Z0-9_]+$";
/// How often a write is retried when another writer bumped a generation.
const RETRIES: usize = 10;

fn resources_schema() -> Schema {
    Schema::object(ObjectSchema {
        pattern_properties: pattern_prop(RC_PATTERN, Schema::integer(Some(1), None))
            .into_iter()
            .collect(),
        additional: Some(None),
        min_properties: Some(1),
        ..Default::default()
    })
}

fn id_schema() -> Schema {
    Schema::string_len(Some(1), Some(255))
}

/// The body schema of one consumer's allocations at a microversion
/// (`deletable`: an empty `allocations` object is allowed).
fn consumer_schema(minor: u16, deletable: bool) -> Schema {
    if minor < 12 {
        let alloc = Schema::object(ObjectSchema {
            properties: vec![
                (
                    "resource_provider",
                    Schema::object(ObjectSchema {
                        properties: vec![("uuid", Schema::uuid())],
                        required: vec!["uuid"],
                        additional: Some(None),
                        ..Default::default()
                    }),
                ),
                ("resources", resources_schema()),
            ],
            required: vec!["resource_provider", "resources"],
            additional: Some(None),
            ..Default::default()
        });
        let mut props = vec![(
            "allocations",
            Schema::Array {
                items: Some(Box::new(alloc)),
                min_items: Some(1),
                max_items: None,
                unique: false,
            },
        )];
        let mut required = vec!["allocations"];
        if minor >= 8 {
            props.push(("project_id", id_schema()));
            props.push(("user_id", id_schema()));
            required.extend(["project_id", "user_id"]);
        }
        return Schema::object(ObjectSchema {
            properties: props,
            required,
            additional: Some(None),
            ..Default::default()
        });
    }
    let per_provider = Schema::object(ObjectSchema {
        properties: vec![
            ("generation", Schema::integer(None, None)),
            ("resources", resources_schema()),
        ],
        required: vec!["resources"],
        additional: Some(None),
        ..Default::default()
    });
    let allocations = Schema::object(ObjectSchema {
        pattern_properties: pattern_prop(UUID_PATTERN, per_provider)
            .into_iter()
            .collect(),
        additional: Some(None),
        min_properties: if deletable { None } else { Some(1) },
        ..Default::default()
    });
    let mut props = vec![
        ("allocations", allocations),
        ("project_id", id_schema()),
        ("user_id", id_schema()),
    ];
    let mut required = vec!["allocations", "project_id", "user_id"];
    if minor >= 28 {
        props.push((
            "consumer_generation",
            Schema::integer(None, None).nullable(),
        ));
        required.push("consumer_generation");
    }
    if minor >= 34 {
        props.push((
            "mappings",
            Schema::object(ObjectSchema {
                pattern_properties: pattern_prop(
                    GROUP_PATTERN,
                    Schema::Array {
                        items: Some(Box::new(Schema::uuid())),
                        min_items: Some(1),
                        max_items: None,
                        unique: false,
                    },
                )
                .into_iter()
                .collect(),
                min_properties: Some(1),
                ..Default::default()
            }),
        ));
    }
    if minor >= 38 {
        props.push((
            "consumer_type",
            Schema::pattern_len(CONSUMER_TYPE_PATTERN, Some(1), Some(255)),
        ));
        required.push("consumer_type");
    }
    Schema::object(ObjectSchema {
        properties: props,
        required,
        additional: Some(None),
        ..Default::default()
    })
}

/// One consumer's requested allocations.
#[derive(Debug, Clone)]
pub struct ConsumerRequest {
    pub uuid: String,
    pub project_id: Option<String>,
    pub user_id: Option<String>,
    /// The body's `consumer_generation` (checked from 1.28).
    pub generation: Option<i64>,
    pub consumer_type: Option<String>,
    /// provider uuid -> class -> amount (empty: remove the allocations).
    pub allocations: BTreeMap<String, BTreeMap<String, i64>>,
}

impl ConsumerRequest {
    /// Reads a validated body in the format of its microversion.
    pub fn from_json(uuid: &str, minor: u16, v: &Value) -> ConsumerRequest {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let mut allocations = BTreeMap::new();
        let resources = |r: &Value| -> BTreeMap<String, i64> {
            r.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, n)| (k.clone(), n.as_f64().unwrap_or(0.0) as i64))
                        .collect()
                })
                .unwrap_or_default()
        };
        if minor < 12 {
            for a in v["allocations"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let rp = a["resource_provider"]["uuid"].as_str().unwrap_or_default();
                allocations.insert(rp.to_string(), resources(&a["resources"]));
            }
        } else if let Some(m) = v["allocations"].as_object() {
            for (rp, a) in m {
                allocations.insert(rp.clone(), resources(&a["resources"]));
            }
        }
        ConsumerRequest {
            uuid: uuid.to_string(),
            project_id: s("project_id"),
            user_id: s("user_id"),
            generation: v.get("consumer_generation").and_then(Value::as_i64),
            consumer_type: s("consumer_type"),
            allocations,
        }
    }
}

/// Why a write failed: an API error, or a generation race worth retrying.
pub enum WriteError {
    Api(Error),
    Retry,
    /// A class that does not exist (the caller words the 400).
    NoSuchClass(String),
    /// Capacity or constraints (the caller words the 409).
    Invalid(String),
}

impl From<store::sqlx::Error> for WriteError {
    fn from(e: store::sqlx::Error) -> Self {
        WriteError::Api(e.into())
    }
}

impl From<Error> for WriteError {
    fn from(e: Error) -> Self {
        WriteError::Api(e)
    }
}

struct ConsumerRow {
    project_id: String,
    user_id: String,
    consumer_type: Option<String>,
    generation: i64,
}

async fn consumer_get(
    conn: &mut Conn,
    uuid: &str,
) -> std::result::Result<Option<ConsumerRow>, store::sqlx::Error> {
    let row = sqlx::query(
        "SELECT project_id, user_id, consumer_type, generation FROM placement_consumers \
         WHERE uuid = $1",
    )
    .bind(uuid)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => Some(ConsumerRow {
            project_id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            consumer_type: r.try_get(2)?,
            generation: r.try_get(3)?,
        }),
        None => None,
    })
}

fn py_opt(v: Option<i64>) -> String {
    v.map_or_else(|| "None".to_string(), |g| g.to_string())
}

/// Writes the allocations of several consumers atomically, as upstream's
/// `replace_all`: each consumer's previous allocations are replaced,
/// capacity and inventory constraints are checked, the generations of the
/// providers written to and of the consumers are incremented, and consumers
/// left without allocations are removed. Returns the providers whose usage
/// changed.
pub async fn write_allocations(
    conn: &mut Conn,
    minor: u16,
    consumers: &[ConsumerRequest],
) -> std::result::Result<Changes, WriteError> {
    let now = store::now_micros();
    // Consumers: generation checks, creation, project/user/type updates.
    for c in consumers {
        let (project, user) = match &c.project_id {
            Some(p) => (p.clone(), c.user_id.clone().unwrap_or_default()),
            None => (
                INCOMPLETE_CONSUMER.to_string(),
                INCOMPLETE_CONSUMER.to_string(),
            ),
        };
        let ctype = if minor >= 38 {
            c.consumer_type.clone()
        } else {
            None
        };
        if let Some(t) = &ctype {
            sqlx::query(
                "INSERT INTO placement_consumer_types (name, created_at) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(t)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        match consumer_get(conn, &c.uuid).await? {
            Some(existing) => {
                if minor >= 28 && Some(existing.generation) != c.generation {
                    return Err(WriteError::Api(
                        Error::conflict(format!(
                            "consumer generation conflict - expected {} but got {}",
                            existing.generation,
                            py_opt(c.generation)
                        ))
                        .with_code(codes::CONCURRENT_UPDATE),
                    ));
                }
                let new_type = ctype.clone().or(existing.consumer_type.clone());
                if existing.project_id != project
                    || existing.user_id != user
                    || new_type != existing.consumer_type
                {
                    sqlx::query(
                        "UPDATE placement_consumers SET project_id = $2, user_id = $3, \
                         consumer_type = $4, updated_at = $5 WHERE uuid = $1",
                    )
                    .bind(&c.uuid)
                    .bind(&project)
                    .bind(&user)
                    .bind(&new_type)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            None => {
                if minor >= 28 {
                    if let Some(g) = c.generation {
                        return Err(WriteError::Api(
                            Error::conflict(format!(
                                "consumer generation conflict - expected null but got {g}"
                            ))
                            .with_code(codes::CONCURRENT_UPDATE),
                        ));
                    }
                }
                sqlx::query(
                    "INSERT INTO placement_consumers (uuid, project_id, user_id, consumer_type, \
                     generation, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, $5, $5)",
                )
                .bind(&c.uuid)
                .bind(&project)
                .bind(&user)
                .bind(&ctype)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    // Providers named by the request must exist.
    let mut generations: BTreeMap<String, i64> = BTreeMap::new();
    for c in consumers {
        for rp in c.allocations.keys() {
            if generations.contains_key(rp) {
                continue;
            }
            match db::provider_get(conn, rp).await? {
                Some(p) => {
                    generations.insert(rp.clone(), p.generation);
                }
                None => {
                    return Err(WriteError::Api(Error::bad_request(format!(
                        "Allocation for resource provider '{rp}' that does not exist."
                    ))))
                }
            }
        }
    }
    // The allocation list: (consumer, provider, class, used); a consumer
    // with no allocations contributes its current ones at zero.
    let mut list: Vec<(String, String, String, i64)> = Vec::new();
    let mut changes = Changes::default();
    for c in consumers {
        let old = sqlx::query(
            "SELECT provider_uuid, resource_class FROM placement_allocations \
             WHERE consumer_uuid = $1",
        )
        .bind(&c.uuid)
        .fetch_all(&mut *conn)
        .await?;
        for r in &old {
            let rp: String = r.try_get(0)?;
            changes.add(&rp);
            if c.allocations.is_empty() {
                if let std::collections::btree_map::Entry::Vacant(e) = generations.entry(rp.clone())
                {
                    let g = db::provider_get(conn, &rp)
                        .await?
                        .map_or(0, |p| p.generation);
                    e.insert(g);
                }
                list.push((c.uuid.clone(), rp, r.try_get(1)?, 0));
            }
        }
        for (rp, resources) in &c.allocations {
            changes.add(rp);
            for (class, used) in resources {
                list.push((c.uuid.clone(), rp.clone(), class.clone(), *used));
            }
        }
    }
    // Resource classes must exist.
    for (_, _, class, _) in &list {
        if !db::class_exists(conn, class).await? {
            return Err(WriteError::NoSuchClass(class.clone()));
        }
    }
    // Usage before this write, for upstream's "reduces an existing overage".
    let mut prev_usage: BTreeMap<(String, String), i64> = BTreeMap::new();
    for rp in generations.keys() {
        for (class, used) in db::usages_of_provider(conn, rp).await? {
            prev_usage.insert((rp.clone(), class), used);
        }
    }
    for c in consumers {
        sqlx::query("DELETE FROM placement_allocations WHERE consumer_uuid = $1")
            .bind(&c.uuid)
            .execute(&mut *conn)
            .await?;
    }
    check_capacity(conn, &list, &prev_usage).await?;
    for (consumer, rp, class, used) in &list {
        if *used == 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO placement_allocations (consumer_uuid, provider_uuid, resource_class, \
             used, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(consumer)
        .bind(rp)
        .bind(class)
        .bind(used)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    let visited: BTreeSet<&String> = list.iter().map(|(_, rp, _, _)| rp).collect();
    for rp in visited {
        let expected = generations.get(rp).copied().unwrap_or_default();
        if !db::provider_bump_generation(conn, rp, expected).await? {
            return Err(WriteError::Retry);
        }
    }
    for c in consumers {
        sqlx::query(
            "UPDATE placement_consumers SET generation = generation + 1, updated_at = $2 \
             WHERE uuid = $1",
        )
        .bind(&c.uuid)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let has_any = list
            .iter()
            .any(|(cu, _, _, used)| *cu == c.uuid && *used > 0);
        if !has_any {
            delete_consumer_if_unused(conn, &c.uuid).await?;
        }
    }
    Ok(changes)
}

async fn delete_consumer_if_unused(
    conn: &mut Conn,
    uuid: &str,
) -> std::result::Result<(), store::sqlx::Error> {
    sqlx::query(
        "DELETE FROM placement_consumers WHERE uuid = $1 AND NOT EXISTS \
         (SELECT 1 FROM placement_allocations WHERE consumer_uuid = $1)",
    )
    .bind(uuid)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn check_capacity(
    conn: &mut Conn,
    list: &[(String, String, String, i64)],
    prev_usage: &BTreeMap<(String, String), i64>,
) -> std::result::Result<(), WriteError> {
    let classes: BTreeSet<&String> = list.iter().map(|(_, _, c, _)| c).collect();
    let providers: BTreeSet<&String> = list.iter().map(|(_, rp, _, _)| rp).collect();
    let mut inventories: BTreeMap<(String, String), db::InventoryRow> = BTreeMap::new();
    let mut usage: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut with_inventory: BTreeSet<String> = BTreeSet::new();
    for rp in &providers {
        for inv in db::inventory_list(conn, rp).await? {
            if classes.contains(&inv.resource_class) {
                with_inventory.insert(rp.to_string());
                inventories.insert((rp.to_string(), inv.resource_class.clone()), inv);
            }
        }
        for (class, used) in db::usages_of_provider(conn, rp).await? {
            usage.insert((rp.to_string(), class), used);
        }
    }
    let missing: Vec<&str> = providers
        .iter()
        .filter(|p| !with_inventory.contains(p.as_str()))
        .map(|p| p.as_str())
        .collect();
    if !missing.is_empty() {
        let class_str: Vec<&str> = classes.iter().map(|c| c.as_str()).collect();
        return Err(WriteError::Invalid(format!(
            "Inventory for '{}' on resource provider '{}' invalid.",
            class_str.join(", "),
            missing.join(", ")
        )));
    }
    let mut sums: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (_, rp, class, needed) in list {
        let key = (rp.clone(), class.clone());
        *sums.entry(key.clone()).or_default() += needed;
        if *needed == 0 {
            continue;
        }
        let Some(inv) = inventories.get(&key) else {
            return Err(WriteError::Invalid(format!(
                "Inventory for '{class}' on resource provider '{rp}' invalid."
            )));
        };
        if *needed < inv.min_unit || *needed > inv.max_unit || needed % inv.step_size != 0 {
            return Err(WriteError::Invalid(format!(
                "Unable to create allocation for '{class}' on resource provider '{rp}'. The requested amount would violate inventory constraints."
            )));
        }
        let used = usage.get(&key).copied().unwrap_or(0);
        let capacity = (inv.total - inv.reserved) as f64 * inv.allocation_ratio;
        let needed_all = sums.get(&key).copied().unwrap_or(0);
        if capacity < (used + needed) as f64 || capacity < (used + needed_all) as f64 {
            let reduces = prev_usage
                .get(&key)
                .is_some_and(|prev| used + needed_all <= *prev);
            if !reduces {
                return Err(WriteError::Invalid(format!(
                    "Unable to create allocation for '{class}' on resource provider '{rp}'. The requested amount would exceed the capacity."
                )));
            }
        }
    }
    Ok(())
}

/// Runs a write with upstream's retries on provider generation races.
async fn write_with_retries(
    ctx: &Ctx,
    consumers: &[ConsumerRequest],
) -> std::result::Result<(), WriteError> {
    write_retrying(&ctx.p, ctx.v.0, consumers).await
}

/// Writes allocations at microversion `minor`, retrying provider
/// generation races as upstream does (also used in process by compute).
pub async fn write_retrying(
    p: &crate::Placement,
    minor: u16,
    consumers: &[ConsumerRequest],
) -> std::result::Result<(), WriteError> {
    for _ in 0..RETRIES {
        let mut tx = p.db.write().await?;
        match write_allocations(&mut tx.tx, minor, consumers).await {
            Ok(changes) => {
                commit(&p.db, &p.cache, tx, changes).await?;
                return Ok(());
            }
            Err(WriteError::Retry) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(WriteError::Api(
        Error::conflict(
            "Inventory and/or allocations changed while attempting to allocate: Another thread concurrently updated the resource provider data. Please retry your update",
        )
        .with_code(codes::CONCURRENT_UPDATE),
    ))
}

pub async fn replace(
    ctx: Ctx,
    Path(consumer): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    super::require_json(&headers)?;
    ctx.can("placement:allocations:update")?;
    let Ok(parsed) = uuid::Uuid::parse_str(&consumer) else {
        return Err(Error::bad_request(format!(
            "Malformed consumer_uuid: {consumer}"
        )));
    };
    let consumer = parsed.hyphenated().to_string();
    let data = json_body(&headers, &body)?;
    validate_body(&consumer_schema(ctx.v.0, ctx.at_least(28)), &data)?;
    let request = ConsumerRequest::from_json(&consumer, ctx.v.0, &data);
    match write_with_retries(&ctx, std::slice::from_ref(&request)).await {
        Ok(()) => Ok(no_content()),
        Err(WriteError::Api(e)) => Err(e),
        Err(WriteError::NoSuchClass(c)) => Err(Error::bad_request(format!(
            "Unable to allocate inventory for consumer {consumer}: No such resource class {c}."
        ))),
        Err(WriteError::Invalid(m)) => Err(Error::conflict(format!(
            "Unable to allocate inventory: {m}"
        ))),
        Err(WriteError::Retry) => Err(Error::concurrent_update()),
    }
}

pub async fn post_many(ctx: Ctx, headers: HeaderMap, body: Bytes) -> Result<Response> {
    if !ctx.at_least(13) {
        return Err(Error::not_found(""));
    }
    super::require_json(&headers)?;
    ctx.can("placement:allocations:manage")?;
    let data = json_body(&headers, &body)?;
    let schema = Schema::object(ObjectSchema {
        pattern_properties: pattern_prop(UUID_PATTERN, consumer_schema(ctx.v.0, true))
            .into_iter()
            .collect(),
        additional: Some(None),
        min_properties: Some(1),
        ..Default::default()
    });
    validate_body(&schema, &data)?;
    let requests: Vec<ConsumerRequest> = data
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(c, v)| ConsumerRequest::from_json(c, ctx.v.0, v))
                .collect()
        })
        .unwrap_or_default();
    match write_with_retries(&ctx, &requests).await {
        Ok(()) => Ok(no_content()),
        Err(WriteError::Api(e)) => Err(e),
        Err(WriteError::NoSuchClass(c)) => Err(Error::bad_request(format!(
            "Unable to allocate inventory No such resource class {c}."
        ))),
        Err(WriteError::Invalid(m)) => Err(Error::conflict(format!(
            "Unable to allocate inventory: {m}"
        ))),
        Err(WriteError::Retry) => Err(Error::concurrent_update()),
    }
}

pub async fn show(ctx: Ctx, Path(consumer): Path<String>) -> Result<Response> {
    ctx.can("placement:allocations:list")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let rows = sqlx::query(
        "SELECT a.provider_uuid, a.resource_class, a.used, p.generation, a.updated_at \
         FROM placement_allocations a JOIN placement_providers p ON p.uuid = a.provider_uuid \
         WHERE a.consumer_uuid = $1 ORDER BY a.provider_uuid, a.resource_class",
    )
    .bind(&consumer)
    .fetch_all(&mut *conn)
    .await?;
    let mut allocations = Map::new();
    let mut newest: Option<i64> = None;
    for r in &rows {
        let rp: String = r.try_get(0)?;
        let class: String = r.try_get(1)?;
        let used: i64 = r.try_get(2)?;
        let generation: i64 = r.try_get(3)?;
        let updated: i64 = r.try_get(4)?;
        newest = Some(newest.map_or(updated, |n| n.max(updated)));
        let entry = allocations
            .entry(rp)
            .or_insert_with(|| json!({"resources": {}, "generation": generation}));
        entry["resources"][class] = json!(used);
    }
    let mut body = json!({ "allocations": allocations });
    if !rows.is_empty() && ctx.at_least(12) {
        if let Some(c) = consumer_get(&mut conn, &consumer).await? {
            body["project_id"] = json!(c.project_id);
            body["user_id"] = json!(c.user_id);
            if ctx.at_least(28) {
                body["consumer_generation"] = json!(c.generation);
            }
            if ctx.at_least(38) {
                body["consumer_type"] = json!(c.consumer_type.unwrap_or_else(|| "unknown".into()));
            }
        }
    }
    let mut res = json_response(StatusCode::OK, &body);
    cache_headers(&mut res, ctx.v, newest);
    Ok(res)
}

pub async fn delete(ctx: Ctx, Path(consumer): Path<String>) -> Result<Response> {
    ctx.can("placement:allocations:delete")?;
    let p = &ctx.p;
    let mut tx = p.db.write().await?;
    let rows = sqlx::query(
        "SELECT DISTINCT provider_uuid FROM placement_allocations WHERE consumer_uuid = $1",
    )
    .bind(&consumer)
    .fetch_all(&mut *tx.tx)
    .await?;
    if rows.is_empty() {
        return Err(Error::not_found(format!(
            "No allocations for consumer '{consumer}'"
        )));
    }
    let mut changes = Changes::default();
    for r in rows {
        changes.add(&r.try_get::<String, _>(0)?);
    }
    sqlx::query("DELETE FROM placement_allocations WHERE consumer_uuid = $1")
        .bind(&consumer)
        .execute(&mut *tx.tx)
        .await?;
    delete_consumer_if_unused(&mut tx.tx, &consumer).await?;
    commit(&p.db, &p.cache, tx, changes).await?;
    Ok(no_content())
}

pub async fn for_provider(ctx: Ctx, Path(uuid): Path<String>) -> Result<Response> {
    ctx.can("placement:resource_providers:allocations:list")?;
    let mut conn = ctx.p.db.pool().acquire().await?;
    let Some(rp) = db::provider_get(&mut conn, &uuid).await? else {
        return Err(Error::not_found(format!(
            "Resource provider '{uuid}' not found: No resource provider with uuid {uuid} found"
        )));
    };
    let rows = sqlx::query(
        "SELECT a.consumer_uuid, a.resource_class, a.used, c.generation, a.updated_at \
         FROM placement_allocations a JOIN placement_consumers c ON c.uuid = a.consumer_uuid \
         WHERE a.provider_uuid = $1 ORDER BY a.consumer_uuid, a.resource_class",
    )
    .bind(&uuid)
    .fetch_all(&mut *conn)
    .await?;
    let mut allocations = Map::new();
    let mut newest: Option<i64> = None;
    for r in &rows {
        let consumer: String = r.try_get(0)?;
        let class: String = r.try_get(1)?;
        let used: i64 = r.try_get(2)?;
        let generation: i64 = r.try_get(3)?;
        let updated: i64 = r.try_get(4)?;
        newest = Some(newest.map_or(updated, |n| n.max(updated)));
        let entry = allocations.entry(consumer).or_insert_with(|| {
            let mut e = json!({"resources": {}});
            if ctx.at_least(28) {
                e["consumer_generation"] = json!(generation);
            }
            e
        });
        entry["resources"][class] = json!(used);
    }
    let body = json!({ "allocations": allocations, "resource_provider_generation": rp.generation });
    let mut res = json_response(StatusCode::OK, &body);
    cache_headers(&mut res, ctx.v, newest);
    Ok(res)
}

/// One consumer's schema inside POST /allocations (and the reshaper).
pub fn consumer_schema_for_post(minor: u16) -> Schema {
    consumer_schema(minor.max(28), true)
}
