//! Host aggregates, their hosts and metadata.

use std::collections::BTreeMap;

use store::sqlx::AnyConnection;
use store::Row;

use super::{Db, Tx};

#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    pub id: i64,
    pub uuid: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: Option<i64>,
    pub hosts: Vec<String>,
    pub metadata: BTreeMap<String, String>,
}

impl Aggregate {
    /// The zone this aggregate puts its hosts in, if any.
    pub fn availability_zone(&self) -> Option<&str> {
        self.metadata.get("availability_zone").map(String::as_str)
    }
}

const COLS: &str = "id, uuid, name, created_at, updated_at";

async fn fill(
    conn: &mut AnyConnection,
    rows: Vec<store::sqlx::any::AnyRow>,
) -> store::sqlx::Result<Vec<Aggregate>> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(Aggregate {
            id: r.try_get(0)?,
            uuid: r.try_get(1)?,
            name: r.try_get(2)?,
            created_at: r.try_get(3)?,
            updated_at: r.try_get(4)?,
            hosts: Vec::new(),
            metadata: BTreeMap::new(),
        });
    }
    if out.is_empty() {
        return Ok(out);
    }
    let ids: Vec<i64> = out.iter().map(|a| a.id).collect();
    let list = ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let hosts = store::sqlx::query(&format!(
        "SELECT aggregate_id, host FROM aggregate_hosts WHERE aggregate_id IN ({list}) \
         ORDER BY host"
    ))
    .fetch_all(&mut *conn)
    .await?;
    let meta = store::sqlx::query(&format!(
        "SELECT aggregate_id, key, value FROM aggregate_metadata WHERE aggregate_id IN ({list})"
    ))
    .fetch_all(&mut *conn)
    .await?;
    for h in hosts {
        let id: i64 = h.try_get(0)?;
        if let Some(a) = out.iter_mut().find(|a| a.id == id) {
            a.hosts.push(h.try_get(1)?);
        }
    }
    for m in meta {
        let id: i64 = m.try_get(0)?;
        if let Some(a) = out.iter_mut().find(|a| a.id == id) {
            a.metadata.insert(m.try_get(1)?, m.try_get(2)?);
        }
    }
    Ok(out)
}

/// One aggregate, on a connection (e.g. inside a write transaction).
pub async fn get_on(conn: &mut AnyConnection, id: i64) -> store::sqlx::Result<Option<Aggregate>> {
    let rows = store::sqlx::query(&format!("SELECT {COLS} FROM aggregates WHERE id = $1"))
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(fill(conn, rows).await?.pop())
}

/// One aggregate with its hosts and metadata.
pub async fn aggregate_get(db: &Db, id: i64) -> store::sqlx::Result<Option<Aggregate>> {
    let mut conn = db.pool().acquire().await?;
    get_on(&mut conn, id).await
}

/// Every aggregate, by id.
pub async fn aggregate_list(db: &Db) -> store::sqlx::Result<Vec<Aggregate>> {
    let mut conn = db.pool().acquire().await?;
    let rows = store::sqlx::query(&format!("SELECT {COLS} FROM aggregates ORDER BY id"))
        .fetch_all(&mut *conn)
        .await?;
    fill(&mut conn, rows).await
}

/// The aggregates `host` belongs to, on a connection.
pub async fn host_aggregates_on(
    conn: &mut AnyConnection,
    host: &str,
) -> store::sqlx::Result<Vec<Aggregate>> {
    let rows = store::sqlx::query(&format!(
        "SELECT {COLS} FROM aggregates WHERE id IN \
         (SELECT aggregate_id FROM aggregate_hosts WHERE host = $1) ORDER BY id"
    ))
    .bind(host)
    .fetch_all(&mut *conn)
    .await?;
    fill(conn, rows).await
}

/// The aggregates `host` belongs to, with their metadata (for the
/// scheduler's aggregate filters).
pub async fn host_aggregates(db: &Db, host: &str) -> store::sqlx::Result<Vec<Aggregate>> {
    let mut conn = db.pool().acquire().await?;
    host_aggregates_on(&mut conn, host).await
}

/// Every aggregate with an availability zone that holds one of `hosts`.
pub async fn zoned_with_hosts(
    conn: &mut AnyConnection,
    hosts: &[String],
) -> store::sqlx::Result<Vec<Aggregate>> {
    let mut out: Vec<Aggregate> = Vec::new();
    for h in hosts {
        for a in host_aggregates_on(conn, h).await? {
            if a.availability_zone().is_some() && !out.iter().any(|o| o.id == a.id) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

/// True when an aggregate other than `except` is named `name`.
pub async fn name_taken(
    conn: &mut AnyConnection,
    name: &str,
    except: Option<i64>,
) -> store::sqlx::Result<bool> {
    let r = store::sqlx::query("SELECT id FROM aggregates WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match r {
        Some(r) => Some(r.try_get::<i64, _>(0)?) != except,
        None => false,
    })
}

/// Creates an aggregate: its id is the highest so far plus one.
pub async fn aggregate_create(
    tx: &mut Tx<'_>,
    name: &str,
    availability_zone: Option<&str>,
    now: i64,
) -> store::sqlx::Result<Aggregate> {
    let id: i64 =
        store::sqlx::query("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) + 1 FROM aggregates")
            .fetch_one(&mut **tx)
            .await?
            .try_get(0)?;
    let uuid = uuid::Uuid::new_v4().to_string();
    store::sqlx::query(
        "INSERT INTO aggregates (id, uuid, name, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(&uuid)
    .bind(name)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let mut metadata = BTreeMap::new();
    if let Some(az) = availability_zone {
        metadata_set(tx, id, "availability_zone", az).await?;
        metadata.insert("availability_zone".to_string(), az.to_string());
    }
    Ok(Aggregate {
        id,
        uuid,
        name: name.to_string(),
        created_at: now,
        updated_at: None,
        hosts: Vec::new(),
        metadata,
    })
}

/// Renames an aggregate and marks it updated.
pub async fn aggregate_touch(
    tx: &mut Tx<'_>,
    id: i64,
    name: Option<&str>,
    now: i64,
) -> store::sqlx::Result<()> {
    match name {
        Some(n) => {
            store::sqlx::query("UPDATE aggregates SET name = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(n)
                .bind(now)
                .execute(&mut **tx)
                .await?
        }
        None => {
            store::sqlx::query("UPDATE aggregates SET updated_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(())
}

/// Sets one metadata item.
pub async fn metadata_set(
    tx: &mut Tx<'_>,
    id: i64,
    key: &str,
    value: &str,
) -> store::sqlx::Result<()> {
    let r = store::sqlx::query(
        "UPDATE aggregate_metadata SET value = $3 WHERE aggregate_id = $1 AND key = $2",
    )
    .bind(id)
    .bind(key)
    .bind(value)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() == 0 {
        store::sqlx::query(
            "INSERT INTO aggregate_metadata (aggregate_id, key, value) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(key)
        .bind(value)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Removes one metadata item (no error when it is absent).
pub async fn metadata_delete(tx: &mut Tx<'_>, id: i64, key: &str) -> store::sqlx::Result<()> {
    store::sqlx::query("DELETE FROM aggregate_metadata WHERE aggregate_id = $1 AND key = $2")
        .bind(id)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn host_add(tx: &mut Tx<'_>, id: i64, host: &str) -> store::sqlx::Result<()> {
    store::sqlx::query("INSERT INTO aggregate_hosts (aggregate_id, host) VALUES ($1, $2)")
        .bind(id)
        .bind(host)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn host_remove(tx: &mut Tx<'_>, id: i64, host: &str) -> store::sqlx::Result<bool> {
    let r = store::sqlx::query("DELETE FROM aggregate_hosts WHERE aggregate_id = $1 AND host = $2")
        .bind(id)
        .bind(host)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Deletes an aggregate (its hosts and metadata go with it).
pub async fn aggregate_delete(tx: &mut Tx<'_>, id: i64) -> store::sqlx::Result<()> {
    for table in ["aggregate_hosts", "aggregate_metadata"] {
        store::sqlx::query(&format!("DELETE FROM {table} WHERE aggregate_id = $1"))
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    store::sqlx::query("DELETE FROM aggregates WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// True when a compute service runs on `host`.
pub async fn compute_host_exists(
    conn: &mut AnyConnection,
    host: &str,
) -> store::sqlx::Result<bool> {
    Ok(store::sqlx::query(
        "SELECT 1 FROM compute_services WHERE binary_name = 'nova-compute' AND host = $1",
    )
    .bind(host)
    .fetch_optional(&mut *conn)
    .await?
    .is_some())
}

/// Instances (not deleted) on any of `hosts`.
pub async fn instances_on_hosts(
    conn: &mut AnyConnection,
    hosts: &[String],
) -> store::sqlx::Result<i64> {
    let mut n = 0;
    for h in hosts {
        let c: i64 = store::sqlx::query(
            "SELECT COUNT(*) FROM instances WHERE host = $1 AND deleted_at IS NULL",
        )
        .bind(h)
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
        n += c;
    }
    Ok(n)
}
