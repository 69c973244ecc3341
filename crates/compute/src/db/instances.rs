//! Servers (Nova's instances) and what hangs off them: metadata, tags,
//! faults, actions and their events.

use std::collections::BTreeMap;

use store::Row;

use super::flavors::Flavor;
use super::{Db, Tx};

/// One server row.
#[derive(Clone, Debug)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub host: Option<String>,
    pub node: Option<String>,
    pub availability_zone: Option<String>,
    pub flavor: Flavor,
    pub old_flavor: Option<Flavor>,
    pub image_ref: String,
    pub key_name: Option<String>,
    pub key_data: Option<String>,
    pub user_data: Option<String>,
    pub config_drive: String,
    pub hostname: String,
    pub description: Option<String>,
    pub access_ip_v4: Option<String>,
    pub access_ip_v6: Option<String>,
    pub vm_state: String,
    pub task_state: Option<String>,
    pub power_state: i64,
    pub progress: i64,
    pub locked_by: Option<String>,
    pub locked_reason: Option<String>,
    pub reservation_id: String,
    pub launch_index: i64,
    pub request_spec: serde_json::Value,
    pub system_metadata: serde_json::Value,
    pub launched_at: Option<i64>,
    pub terminated_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    pub metadata: BTreeMap<String, String>,
    pub tags: Vec<String>,
}

pub const COLS: &str = "id, name, project_id, user_id, host, node, availability_zone, flavor, \
    old_flavor, image_ref, key_name, key_data, user_data, config_drive, hostname, description, \
    access_ip_v4, access_ip_v6, vm_state, task_state, power_state, progress, locked_by, \
    locked_reason, reservation_id, launch_index, request_spec, system_metadata, launched_at, \
    terminated_at, created_at, updated_at, deleted_at";

fn json_col<T: serde::de::DeserializeOwned>(s: &str) -> store::sqlx::Result<T> {
    serde_json::from_str(s).map_err(|e| store::sqlx::Error::Decode(Box::new(e)))
}

pub fn from_row(r: &store::sqlx::any::AnyRow) -> store::sqlx::Result<Instance> {
    let flavor: String = r.try_get(7)?;
    let old_flavor: Option<String> = r.try_get(8)?;
    let spec: String = r.try_get(26)?;
    let sysmeta: String = r.try_get(27)?;
    Ok(Instance {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        project_id: r.try_get(2)?,
        user_id: r.try_get(3)?,
        host: r.try_get(4)?,
        node: r.try_get(5)?,
        availability_zone: r.try_get(6)?,
        flavor: json_col(&flavor)?,
        old_flavor: old_flavor.as_deref().map(json_col).transpose()?,
        image_ref: r.try_get(9)?,
        key_name: r.try_get(10)?,
        key_data: r.try_get(11)?,
        user_data: r.try_get(12)?,
        config_drive: r.try_get(13)?,
        hostname: r.try_get(14)?,
        description: r.try_get(15)?,
        access_ip_v4: r.try_get(16)?,
        access_ip_v6: r.try_get(17)?,
        vm_state: r.try_get(18)?,
        task_state: r.try_get(19)?,
        power_state: r.try_get(20)?,
        progress: r.try_get(21)?,
        locked_by: r.try_get(22)?,
        locked_reason: r.try_get(23)?,
        reservation_id: r.try_get(24)?,
        launch_index: r.try_get(25)?,
        request_spec: json_col(&spec)?,
        system_metadata: json_col(&sysmeta)?,
        launched_at: r.try_get(28)?,
        terminated_at: r.try_get(29)?,
        created_at: r.try_get(30)?,
        updated_at: r.try_get(31)?,
        deleted_at: r.try_get(32)?,
        metadata: BTreeMap::new(),
        tags: Vec::new(),
    })
}

/// Inserts a new server with its metadata.
pub async fn insert(tx: &mut Tx<'_>, i: &Instance) -> store::sqlx::Result<()> {
    store::sqlx::query(&format!(
        "INSERT INTO instances ({COLS}, vcpus, memory_mb, root_gb) VALUES ($1, $2, $3, $4, $5, \
         $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, \
         $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36)"
    ))
    .bind(&i.id)
    .bind(&i.name)
    .bind(&i.project_id)
    .bind(&i.user_id)
    .bind(&i.host)
    .bind(&i.node)
    .bind(&i.availability_zone)
    .bind(serde_json::to_string(&i.flavor).unwrap_or_default())
    .bind(
        i.old_flavor
            .as_ref()
            .map(|f| serde_json::to_string(f).unwrap_or_default()),
    )
    .bind(&i.image_ref)
    .bind(&i.key_name)
    .bind(&i.key_data)
    .bind(&i.user_data)
    .bind(&i.config_drive)
    .bind(&i.hostname)
    .bind(&i.description)
    .bind(&i.access_ip_v4)
    .bind(&i.access_ip_v6)
    .bind(&i.vm_state)
    .bind(&i.task_state)
    .bind(i.power_state)
    .bind(i.progress)
    .bind(&i.locked_by)
    .bind(&i.locked_reason)
    .bind(&i.reservation_id)
    .bind(i.launch_index)
    .bind(i.request_spec.to_string())
    .bind(i.system_metadata.to_string())
    .bind(i.launched_at)
    .bind(i.terminated_at)
    .bind(i.created_at)
    .bind(i.updated_at)
    .bind(i.deleted_at)
    .bind(i.flavor.vcpus)
    .bind(i.flavor.memory_mb)
    .bind(i.flavor.root_gb)
    .execute(&mut **tx)
    .await?;
    for (k, v) in &i.metadata {
        store::sqlx::query(
            "INSERT INTO instance_metadata (instance_id, key, value) VALUES ($1, $2, $3)",
        )
        .bind(&i.id)
        .bind(k)
        .bind(v)
        .execute(&mut **tx)
        .await?;
    }
    for t in &i.tags {
        store::sqlx::query("INSERT INTO instance_tags (instance_id, tag) VALUES ($1, $2)")
            .bind(&i.id)
            .bind(t)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Fills metadata and tags of a batch of servers.
pub async fn fill_details(db: &Db, list: &mut [Instance]) -> store::sqlx::Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (n, i) in list.iter().enumerate() {
        index.insert(i.id.clone(), n);
    }
    let ids = id_list(index.keys());
    let sql = format!(
        "SELECT instance_id, key, value FROM instance_metadata WHERE instance_id IN ({})",
        id_set(db)
    );
    for r in store::sqlx::query(&sql)
        .bind(&ids)
        .fetch_all(db.pool())
        .await?
    {
        let id: String = r.try_get(0)?;
        if let Some(n) = index.get(&id) {
            list[*n].metadata.insert(r.try_get(1)?, r.try_get(2)?);
        }
    }
    let sql = format!(
        "SELECT instance_id, tag FROM instance_tags WHERE instance_id IN ({}) ORDER BY tag",
        id_set(db)
    );
    for r in store::sqlx::query(&sql)
        .bind(&ids)
        .fetch_all(db.pool())
        .await?
    {
        let id: String = r.try_get(0)?;
        if let Some(n) = index.get(&id) {
            list[*n].tags.push(r.try_get(1)?);
        }
    }
    Ok(())
}

/// A subquery yielding the ids of the JSON array bound as `$1` (one
/// parameter for any number of ids: SQLite resolves each of a thousand
/// `$N` parameters by a linear search, which made large pages slow).
fn id_set(db: &Db) -> &'static str {
    match db.engine() {
        store::Engine::Sqlite => "SELECT value FROM json_each($1)",
        store::Engine::Postgres => "SELECT json_array_elements_text($1::json)",
    }
}

/// `ids` as the JSON array [`id_set`] reads.
fn id_list<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    serde_json::to_string(&ids.collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into())
}

/// How many of the given servers (not deleted, placed) each host runs.
pub async fn host_counts(db: &Db, ids: &[String]) -> store::sqlx::Result<BTreeMap<String, i64>> {
    let mut out: BTreeMap<String, i64> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT host FROM instances WHERE id IN ({}) AND deleted_at IS NULL \
         AND host IS NOT NULL",
        id_set(db)
    );
    for r in store::sqlx::query(&sql)
        .bind(id_list(ids.iter()))
        .fetch_all(db.pool())
        .await?
    {
        *out.entry(r.try_get(0)?).or_default() += 1;
    }
    Ok(out)
}

/// A server that is not deleted (or, with `deleted`, also a deleted one).
pub async fn get(db: &Db, id: &str, deleted: bool) -> store::sqlx::Result<Option<Instance>> {
    let sql = if deleted {
        format!("SELECT {COLS} FROM instances WHERE id = $1")
    } else {
        format!("SELECT {COLS} FROM instances WHERE id = $1 AND deleted_at IS NULL")
    };
    let row = store::sqlx::query(&sql)
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut v = vec![from_row(&row)?];
    fill_details(db, &mut v).await?;
    Ok(v.pop())
}

/// Servers on a host (not deleted).
pub async fn on_host(db: &Db, host: &str) -> store::sqlx::Result<Vec<Instance>> {
    let rows = store::sqlx::query(&format!(
        "SELECT {COLS} FROM instances WHERE host = $1 AND deleted_at IS NULL"
    ))
    .bind(host)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Moves a server's state when it is in one of the expected task states
/// (None = no task). Returns false when another request got there first.
pub async fn set_state(
    db: &Db,
    id: &str,
    expected_task: &[Option<&str>],
    vm_state: Option<&str>,
    task_state: Option<&str>,
    power_state: Option<i64>,
) -> store::sqlx::Result<bool> {
    let now = store::now_micros();
    let mut cond = Vec::new();
    let mut n = 6;
    for t in expected_task {
        match t {
            None => cond.push("task_state IS NULL".to_string()),
            Some(_) => {
                cond.push(format!("task_state = ${n}"));
                n += 1;
            }
        }
    }
    let guard = if cond.is_empty() {
        String::new()
    } else {
        format!(" AND ({})", cond.join(" OR "))
    };
    let sql = format!(
        "UPDATE instances SET vm_state = COALESCE($2, vm_state), task_state = $3, \
         power_state = COALESCE($4, power_state), updated_at = $5 \
         WHERE id = $1 AND deleted_at IS NULL{guard}"
    );
    let mut q = store::sqlx::query(&sql)
        .bind(id)
        .bind(vm_state)
        .bind(task_state)
        .bind(power_state)
        .bind(now);
    for t in expected_task.iter().flatten() {
        q = q.bind(*t);
    }
    Ok(q.execute(db.pool()).await?.rows_affected() == 1)
}

/// Records a fault (shown as the server's `fault`).
pub async fn add_fault(
    db: &Db,
    id: &str,
    code: i64,
    message: &str,
    details: &str,
    host: Option<&str>,
) -> store::sqlx::Result<()> {
    store::sqlx::query(
        "INSERT INTO instance_faults (id, instance_id, code, message, details, host, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(id)
    .bind(code)
    .bind(message)
    .bind(details)
    .bind(host)
    .bind(store::now_micros())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The newest fault of each of `ids`: (code, message, details, created_at).
pub async fn latest_faults(
    db: &Db,
    ids: &[String],
) -> store::sqlx::Result<BTreeMap<String, (i64, String, String, i64)>> {
    let mut out: BTreeMap<String, (i64, String, String, i64)> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT instance_id, code, message, details, created_at FROM instance_faults \
         WHERE instance_id IN ({}) ORDER BY created_at",
        id_set(db)
    );
    for r in store::sqlx::query(&sql)
        .bind(id_list(ids.iter()))
        .fetch_all(db.pool())
        .await?
    {
        out.insert(
            r.try_get(0)?,
            (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?),
        );
    }
    Ok(out)
}

/// Starts an instance action record (`openstack server event list`).
pub async fn action_start(
    db: &Db,
    instance_id: &str,
    action: &str,
    request_id: &str,
    user_id: &str,
    project_id: &str,
) -> store::sqlx::Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    let now = store::now_micros();
    store::sqlx::query(
        "INSERT INTO instance_actions (id, instance_id, action, request_id, user_id, project_id, \
         start_time, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(&id)
    .bind(instance_id)
    .bind(action)
    .bind(request_id)
    .bind(user_id)
    .bind(project_id)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(id)
}

/// Records one event of an action (e.g. `compute__do_build_and_run_instance`)
/// and, when `result` is an error, the action's message.
pub async fn action_event(
    db: &Db,
    action_id: &str,
    event: &str,
    started: i64,
    result: &str,
    traceback: Option<&str>,
    host: Option<&str>,
) -> store::sqlx::Result<()> {
    let now = store::now_micros();
    store::sqlx::query(
        "INSERT INTO instance_action_events (id, action_id, event, result, traceback, host, \
         start_time, finish_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(action_id)
    .bind(event)
    .bind(result)
    .bind(traceback)
    .bind(host)
    .bind(started)
    .bind(now)
    .execute(db.pool())
    .await?;
    let message = (result == "Error").then_some("Error");
    store::sqlx::query(
        "UPDATE instance_actions SET finish_time = $2, updated_at = $2, \
         message = COALESCE($3, message) WHERE id = $1",
    )
    .bind(action_id)
    .bind(now)
    .bind(message)
    .execute(db.pool())
    .await?;
    Ok(())
}

// ------------------------------------------- metadata and tags sub-resources

/// Takes the server's row lock (PostgreSQL) for the rest of `tx`, bumping
/// `updated_at` when `bump`. False when the server is gone.
pub async fn lock_for_change(tx: &mut Tx<'_>, id: &str, bump: bool) -> store::sqlx::Result<bool> {
    let q = if bump {
        store::sqlx::query(
            "UPDATE instances SET updated_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(store::now_micros())
    } else {
        store::sqlx::query(
            "UPDATE instances SET updated_at = updated_at WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
    };
    let n = q.execute(&mut **tx).await?.rows_affected();
    Ok(n == 1)
}

/// A server's metadata, read inside a transaction.
pub async fn metadata_in(
    tx: &mut Tx<'_>,
    id: &str,
) -> store::sqlx::Result<BTreeMap<String, String>> {
    let rows =
        store::sqlx::query("SELECT key, value FROM instance_metadata WHERE instance_id = $1")
            .bind(id)
            .fetch_all(&mut **tx)
            .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        out.insert(r.try_get(0)?, r.try_get(1)?);
    }
    Ok(out)
}

/// Writes metadata items: with `replace`, the server's metadata becomes
/// exactly `items`; otherwise `items` are added or overwritten.
pub async fn metadata_write(
    tx: &mut Tx<'_>,
    id: &str,
    items: &BTreeMap<String, String>,
    replace: bool,
) -> store::sqlx::Result<()> {
    if replace {
        store::sqlx::query("DELETE FROM instance_metadata WHERE instance_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    for (k, v) in items {
        if !replace {
            store::sqlx::query("DELETE FROM instance_metadata WHERE instance_id = $1 AND key = $2")
                .bind(id)
                .bind(k)
                .execute(&mut **tx)
                .await?;
        }
        store::sqlx::query(
            "INSERT INTO instance_metadata (instance_id, key, value) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(k)
        .bind(v)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Removes one metadata item; false when there was none.
pub async fn metadata_delete(tx: &mut Tx<'_>, id: &str, key: &str) -> store::sqlx::Result<bool> {
    let n = store::sqlx::query("DELETE FROM instance_metadata WHERE instance_id = $1 AND key = $2")
        .bind(id)
        .bind(key)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(n > 0)
}

/// A server's tags in order, read inside a transaction.
pub async fn tags_in(tx: &mut Tx<'_>, id: &str) -> store::sqlx::Result<Vec<String>> {
    let rows =
        store::sqlx::query("SELECT tag FROM instance_tags WHERE instance_id = $1 ORDER BY tag")
            .bind(id)
            .fetch_all(&mut **tx)
            .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Replaces a server's tags.
pub async fn tags_replace(tx: &mut Tx<'_>, id: &str, tags: &[String]) -> store::sqlx::Result<()> {
    store::sqlx::query("DELETE FROM instance_tags WHERE instance_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for t in tags {
        tag_add(tx, id, t).await?;
    }
    Ok(())
}

/// Adds one tag (which must not be there yet).
pub async fn tag_add(tx: &mut Tx<'_>, id: &str, tag: &str) -> store::sqlx::Result<()> {
    store::sqlx::query("INSERT INTO instance_tags (instance_id, tag) VALUES ($1, $2)")
        .bind(id)
        .bind(tag)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes one tag; false when there was none.
pub async fn tag_delete(tx: &mut Tx<'_>, id: &str, tag: &str) -> store::sqlx::Result<bool> {
    let n = store::sqlx::query("DELETE FROM instance_tags WHERE instance_id = $1 AND tag = $2")
        .bind(id)
        .bind(tag)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    Ok(n > 0)
}
