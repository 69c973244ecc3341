//! SQL of the placement service, one function per statement family,
//! portable between SQLite and PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};

use store::sqlx::{self, AnyConnection, Row};
use store::Db;

use crate::standard;

pub type Conn = AnyConnection;
type Q<T> = std::result::Result<T, sqlx::Error>;

/// `$1, $2, ...` for an IN list starting at placeholder `from`.
pub fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts the standard resource classes and traits that are missing.
pub async fn sync_standard(db: &Db) -> Q<()> {
    let mut tx = db.write().await?;
    let now = store::now_micros();
    for name in standard::RESOURCE_CLASSES {
        sqlx::query(
            "INSERT INTO placement_resource_classes (name, standard, created_at) \
             VALUES ($1, 1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(*name)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
    }
    for name in standard::TRAITS {
        sqlx::query(
            "INSERT INTO placement_traits (name, standard, created_at) \
             VALUES ($1, 1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(*name)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
    }
    tx.commit().await
}

// ---------------------------------------------------------------- providers

#[derive(Debug, Clone)]
pub struct ProviderRow {
    pub uuid: String,
    pub name: String,
    pub generation: i64,
    pub parent_uuid: Option<String>,
    pub root_uuid: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const PROVIDER_COLS: &str =
    "uuid, name, generation, parent_uuid, root_uuid, created_at, updated_at";

fn provider_row(r: &sqlx::any::AnyRow) -> Q<ProviderRow> {
    Ok(ProviderRow {
        uuid: r.try_get(0)?,
        name: r.try_get(1)?,
        generation: r.try_get(2)?,
        parent_uuid: r.try_get(3)?,
        root_uuid: r.try_get(4)?,
        created_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
    })
}

pub async fn provider_get(conn: &mut Conn, uuid: &str) -> Q<Option<ProviderRow>> {
    let row = sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM placement_providers WHERE uuid = $1"
    ))
    .bind(uuid)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(provider_row).transpose()
}

pub async fn provider_by_name(conn: &mut Conn, name: &str) -> Q<Option<ProviderRow>> {
    let row = sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM placement_providers WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(provider_row).transpose()
}

pub async fn provider_insert(conn: &mut Conn, p: &ProviderRow) -> Q<()> {
    sqlx::query(
        "INSERT INTO placement_providers (uuid, name, generation, parent_uuid, root_uuid, \
         created_at, updated_at) VALUES ($1, $2, 0, $3, $4, $5, $5)",
    )
    .bind(&p.uuid)
    .bind(&p.name)
    .bind(&p.parent_uuid)
    .bind(&p.root_uuid)
    .bind(p.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn provider_update(
    conn: &mut Conn,
    uuid: &str,
    name: &str,
    parent: Option<&str>,
    root: &str,
) -> Q<i64> {
    let now = store::now_micros();
    sqlx::query(
        "UPDATE placement_providers SET name = $2, parent_uuid = $3, root_uuid = $4, \
         updated_at = $5 WHERE uuid = $1",
    )
    .bind(uuid)
    .bind(name)
    .bind(parent)
    .bind(root)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(now)
}

pub async fn provider_set_root(conn: &mut Conn, uuids: &[String], root: &str) -> Q<()> {
    for chunk in uuids.chunks(500) {
        let sql = format!(
            "UPDATE placement_providers SET root_uuid = $1 WHERE uuid IN ({})",
            placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(root);
        for u in chunk {
            q = q.bind(u);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Every provider below `uuid` (not including it), breadth first.
pub async fn provider_descendants(conn: &mut Conn, uuid: &str) -> Q<Vec<String>> {
    let mut out = Vec::new();
    let mut frontier = vec![uuid.to_string()];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for chunk in frontier.chunks(500) {
            let sql = format!(
                "SELECT uuid FROM placement_providers WHERE parent_uuid IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for u in chunk {
                q = q.bind(u);
            }
            for r in q.fetch_all(&mut *conn).await? {
                next.push(r.try_get::<String, _>(0)?);
            }
        }
        out.extend(next.iter().cloned());
        frontier = next;
    }
    Ok(out)
}

pub async fn provider_has_children(conn: &mut Conn, uuid: &str) -> Q<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM placement_providers WHERE parent_uuid = $1 LIMIT 1")
            .bind(uuid)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

pub async fn provider_has_allocations(conn: &mut Conn, uuid: &str) -> Q<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM placement_allocations WHERE provider_uuid = $1 LIMIT 1")
            .bind(uuid)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

pub async fn provider_delete(conn: &mut Conn, uuid: &str) -> Q<()> {
    for sql in [
        "DELETE FROM placement_inventories WHERE provider_uuid = $1",
        "DELETE FROM placement_provider_traits WHERE provider_uuid = $1",
        "DELETE FROM placement_provider_aggregates WHERE provider_uuid = $1",
        "DELETE FROM placement_providers WHERE uuid = $1",
    ] {
        sqlx::query(sql).bind(uuid).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Compare-and-swap of a provider's generation; false when another writer
/// got there first (or the provider is gone).
pub async fn provider_bump_generation(conn: &mut Conn, uuid: &str, expected: i64) -> Q<bool> {
    let r = sqlx::query(
        "UPDATE placement_providers SET generation = generation + 1, updated_at = $3 \
         WHERE uuid = $1 AND generation = $2",
    )
    .bind(uuid)
    .bind(expected)
    .bind(store::now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

// --------------------------------------------------------------- inventories

#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRow {
    pub resource_class: String,
    pub total: i64,
    pub reserved: i64,
    pub min_unit: i64,
    pub max_unit: i64,
    pub step_size: i64,
    pub allocation_ratio: f64,
    pub updated_at: i64,
}

impl InventoryRow {
    /// Upstream's capacity: `int((total - reserved) * allocation_ratio)`.
    pub fn capacity(&self) -> i64 {
        ((self.total - self.reserved) as f64 * self.allocation_ratio) as i64
    }
}

pub async fn inventory_list(conn: &mut Conn, uuid: &str) -> Q<Vec<InventoryRow>> {
    let rows = sqlx::query(
        "SELECT resource_class, total, reserved, min_unit, max_unit, step_size, \
         allocation_ratio, updated_at FROM placement_inventories WHERE provider_uuid = $1 \
         ORDER BY resource_class",
    )
    .bind(uuid)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(InventoryRow {
                resource_class: r.try_get(0)?,
                total: r.try_get(1)?,
                reserved: r.try_get(2)?,
                min_unit: r.try_get(3)?,
                max_unit: r.try_get(4)?,
                step_size: r.try_get(5)?,
                allocation_ratio: r.try_get(6)?,
                updated_at: r.try_get(7)?,
            })
        })
        .collect()
}

pub async fn inventory_insert(conn: &mut Conn, uuid: &str, inv: &InventoryRow) -> Q<()> {
    let now = store::now_micros();
    sqlx::query(
        "INSERT INTO placement_inventories (provider_uuid, resource_class, total, reserved, \
         min_unit, max_unit, step_size, allocation_ratio, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
    )
    .bind(uuid)
    .bind(&inv.resource_class)
    .bind(inv.total)
    .bind(inv.reserved)
    .bind(inv.min_unit)
    .bind(inv.max_unit)
    .bind(inv.step_size)
    .bind(inv.allocation_ratio)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn inventory_update(conn: &mut Conn, uuid: &str, inv: &InventoryRow) -> Q<bool> {
    let r = sqlx::query(
        "UPDATE placement_inventories SET total = $3, reserved = $4, min_unit = $5, \
         max_unit = $6, step_size = $7, allocation_ratio = $8, updated_at = $9 \
         WHERE provider_uuid = $1 AND resource_class = $2",
    )
    .bind(uuid)
    .bind(&inv.resource_class)
    .bind(inv.total)
    .bind(inv.reserved)
    .bind(inv.min_unit)
    .bind(inv.max_unit)
    .bind(inv.step_size)
    .bind(inv.allocation_ratio)
    .bind(store::now_micros())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn inventory_delete(conn: &mut Conn, uuid: &str, class: &str) -> Q<bool> {
    let r = sqlx::query(
        "DELETE FROM placement_inventories WHERE provider_uuid = $1 AND resource_class = $2",
    )
    .bind(uuid)
    .bind(class)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Sum of allocations per class on one provider.
pub async fn usages_of_provider(conn: &mut Conn, uuid: &str) -> Q<BTreeMap<String, i64>> {
    let rows = sqlx::query(
        "SELECT resource_class, CAST(SUM(used) AS BIGINT) FROM placement_allocations WHERE provider_uuid = $1 \
         GROUP BY resource_class",
    )
    .bind(uuid)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = BTreeMap::new();
    for r in rows {
        out.insert(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?);
    }
    Ok(out)
}

// ------------------------------------------------------- classes and traits

pub async fn class_exists(conn: &mut Conn, name: &str) -> Q<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM placement_resource_classes WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

pub async fn class_names(conn: &mut Conn) -> Q<Vec<(String, i64, i64)>> {
    let rows = sqlx::query(
        "SELECT name, created_at, COALESCE(updated_at, created_at) FROM placement_resource_classes \
         ORDER BY standard DESC, created_at, name",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect::<Q<_>>()?;
    // Standard classes in upstream's order, then custom ones as created.
    let pos = |n: &str| {
        standard::RESOURCE_CLASSES
            .iter()
            .position(|s| *s == n)
            .unwrap_or(usize::MAX)
    };
    out.sort_by_key(|(n, created, _)| (pos(n), *created));
    Ok(out)
}

pub async fn trait_names(conn: &mut Conn) -> Q<Vec<String>> {
    let rows = sqlx::query("SELECT name FROM placement_traits ORDER BY name")
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

pub async fn traits_of_provider(conn: &mut Conn, uuid: &str) -> Q<Vec<String>> {
    let rows = sqlx::query(
        "SELECT trait FROM placement_provider_traits WHERE provider_uuid = $1 ORDER BY trait",
    )
    .bind(uuid)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

pub async fn aggregates_of_provider(conn: &mut Conn, uuid: &str) -> Q<Vec<String>> {
    let rows = sqlx::query(
        "SELECT aggregate_uuid FROM placement_provider_aggregates WHERE provider_uuid = $1 \
         ORDER BY aggregate_uuid",
    )
    .bind(uuid)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Which of `names` exist in the trait table.
pub async fn traits_existing(conn: &mut Conn, names: &[String]) -> Q<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for chunk in names.chunks(500) {
        let sql = format!(
            "SELECT name FROM placement_traits WHERE name IN ({})",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for n in chunk {
            q = q.bind(n);
        }
        for r in q.fetch_all(&mut *conn).await? {
            out.insert(r.try_get::<String, _>(0)?);
        }
    }
    Ok(out)
}

pub async fn provider_traits_replace(conn: &mut Conn, uuid: &str, traits: &[String]) -> Q<()> {
    sqlx::query("DELETE FROM placement_provider_traits WHERE provider_uuid = $1")
        .bind(uuid)
        .execute(&mut *conn)
        .await?;
    for t in traits {
        sqlx::query("INSERT INTO placement_provider_traits (provider_uuid, trait) VALUES ($1, $2)")
            .bind(uuid)
            .bind(t)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub async fn provider_aggregates_replace(conn: &mut Conn, uuid: &str, aggs: &[String]) -> Q<()> {
    sqlx::query("DELETE FROM placement_provider_aggregates WHERE provider_uuid = $1")
        .bind(uuid)
        .execute(&mut *conn)
        .await?;
    for a in aggs {
        sqlx::query(
            "INSERT INTO placement_provider_aggregates (provider_uuid, aggregate_uuid) \
             VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(uuid)
        .bind(a)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
