//! Flavors, their extra specs and access lists.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use store::Row;

use super::Db;

/// A flavor with its extra specs. This is also the snapshot a server keeps
/// of the flavor it was built with (`instances.flavor`, as JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub root_gb: i64,
    pub ephemeral_gb: i64,
    pub swap: i64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub disabled: bool,
    pub description: Option<String>,
    #[serde(default)]
    pub extra_specs: BTreeMap<String, String>,
}

pub const COLS: &str = "id, name, vcpus, memory_mb, root_gb, ephemeral_gb, swap, rxtx_factor, \
    is_public, disabled, description";

pub fn from_row(r: &store::sqlx::any::AnyRow) -> store::sqlx::Result<Flavor> {
    let rxtx: String = r.try_get(7)?;
    Ok(Flavor {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        vcpus: r.try_get(2)?,
        memory_mb: r.try_get(3)?,
        root_gb: r.try_get(4)?,
        ephemeral_gb: r.try_get(5)?,
        swap: r.try_get(6)?,
        rxtx_factor: rxtx.parse().unwrap_or(1.0),
        is_public: store::flag(r.try_get(8)?),
        disabled: store::flag(r.try_get(9)?),
        description: r.try_get(10)?,
        extra_specs: BTreeMap::new(),
    })
}

/// One flavor with its extra specs.
pub async fn flavor_get(db: &Db, id: &str) -> store::sqlx::Result<Option<Flavor>> {
    let row = store::sqlx::query(&format!("SELECT {COLS} FROM flavors WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut f = from_row(&row)?;
    f.extra_specs = extra_specs(db, id).await?;
    Ok(Some(f))
}

/// A flavor's extra specs.
pub async fn extra_specs(db: &Db, id: &str) -> store::sqlx::Result<BTreeMap<String, String>> {
    let rows = store::sqlx::query("SELECT key, value FROM flavor_extra_specs WHERE flavor_id = $1")
        .bind(id)
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// True when `project` may use the flavor: it is public, or the project
/// is on its access list.
pub async fn flavor_accessible(db: &Db, f: &Flavor, project: &str) -> store::sqlx::Result<bool> {
    if f.is_public {
        return Ok(true);
    }
    Ok(
        store::sqlx::query(
            "SELECT 1 FROM flavor_projects WHERE flavor_id = $1 AND project_id = $2",
        )
        .bind(&f.id)
        .bind(project)
        .fetch_optional(db.pool())
        .await?
        .is_some(),
    )
}

/// The columns a new flavor is written with.
#[derive(Clone, Debug)]
pub struct NewFlavor {
    pub id: String,
    pub name: String,
    pub vcpus: i64,
    pub memory_mb: i64,
    pub root_gb: i64,
    pub ephemeral_gb: i64,
    pub swap: i64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub description: Option<String>,
}

/// A flavor row with the times the API sorts on.
#[derive(Clone, Debug)]
pub struct Listed {
    pub flavor: Flavor,
    pub created_at: i64,
    pub updated_at: Option<i64>,
}

/// Every flavor, or the ones `project` may see (public, or on its access
/// list) when it is given.
pub async fn flavor_list(db: &Db, project: Option<&str>) -> store::sqlx::Result<Vec<Listed>> {
    let sql = match project {
        None => format!("SELECT {COLS}, created_at, updated_at FROM flavors"),
        Some(_) => format!(
            "SELECT {COLS}, created_at, updated_at FROM flavors WHERE is_public = 1 OR id IN \
             (SELECT flavor_id FROM flavor_projects WHERE project_id = $1)"
        ),
    };
    let mut q = store::sqlx::query(&sql);
    if let Some(p) = project {
        q = q.bind(p);
    }
    let rows = q.fetch_all(db.pool()).await?;
    rows.iter()
        .map(|r| {
            Ok(Listed {
                flavor: from_row(r)?,
                created_at: r.try_get(11)?,
                updated_at: r.try_get(12)?,
            })
        })
        .collect()
}

/// The ids of the private flavors `project` has access to.
pub async fn accessible_ids(db: &Db, project: &str) -> store::sqlx::Result<Vec<String>> {
    let rows = store::sqlx::query("SELECT flavor_id FROM flavor_projects WHERE project_id = $1")
        .bind(project)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// True when a flavor with this id exists (inside a write).
pub async fn id_exists(tx: &mut store::Tx<'_>, id: &str) -> store::sqlx::Result<bool> {
    Ok(store::sqlx::query("SELECT 1 FROM flavors WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

/// True when a flavor with this name exists (inside a write).
pub async fn name_exists(tx: &mut store::Tx<'_>, name: &str) -> store::sqlx::Result<bool> {
    Ok(store::sqlx::query("SELECT 1 FROM flavors WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .is_some())
}

/// Inserts a flavor.
pub async fn flavor_create(tx: &mut store::Tx<'_>, f: &NewFlavor) -> store::sqlx::Result<()> {
    store::sqlx::query(
        "INSERT INTO flavors (id, name, vcpus, memory_mb, root_gb, ephemeral_gb, swap, \
         rxtx_factor, is_public, disabled, description, created_at, internal_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $11, \
         (SELECT COALESCE(MAX(internal_id), 0) + 1 FROM flavors))",
    )
    .bind(&f.id)
    .bind(&f.name)
    .bind(f.vcpus)
    .bind(f.memory_mb)
    .bind(f.root_gb)
    .bind(f.ephemeral_gb)
    .bind(f.swap)
    .bind(format!("{:?}", f.rxtx_factor))
    .bind(i64::from(f.is_public))
    .bind(&f.description)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a flavor with its extra specs and access list; false when
/// there was none.
pub async fn flavor_delete(tx: &mut store::Tx<'_>, id: &str) -> store::sqlx::Result<bool> {
    for sql in [
        "DELETE FROM flavor_extra_specs WHERE flavor_id = $1",
        "DELETE FROM flavor_projects WHERE flavor_id = $1",
    ] {
        store::sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    let r = store::sqlx::query("DELETE FROM flavors WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Sets a flavor's description; false when there is no such flavor.
pub async fn flavor_set_description(
    tx: &mut store::Tx<'_>,
    id: &str,
    description: Option<&str>,
) -> store::sqlx::Result<bool> {
    let r =
        store::sqlx::query("UPDATE flavors SET description = $1, updated_at = $2 WHERE id = $3")
            .bind(description)
            .bind(store::now_micros())
            .bind(id)
            .execute(&mut **tx)
            .await?;
    Ok(r.rows_affected() > 0)
}

/// The projects on a flavor's access list, in the order they were added.
pub async fn access_list(db: &Db, id: &str) -> store::sqlx::Result<Vec<String>> {
    let rows = store::sqlx::query(
        "SELECT project_id FROM flavor_projects WHERE flavor_id = $1 ORDER BY project_id",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Adds a project to a flavor's access list; false when it was there.
pub async fn access_add(
    tx: &mut store::Tx<'_>,
    id: &str,
    project: &str,
) -> store::sqlx::Result<bool> {
    let r = store::sqlx::query(
        "INSERT INTO flavor_projects (flavor_id, project_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(project)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Removes a project from a flavor's access list; false when it was not
/// there.
pub async fn access_remove(
    tx: &mut store::Tx<'_>,
    id: &str,
    project: &str,
) -> store::sqlx::Result<bool> {
    let r =
        store::sqlx::query("DELETE FROM flavor_projects WHERE flavor_id = $1 AND project_id = $2")
            .bind(id)
            .bind(project)
            .execute(&mut **tx)
            .await?;
    Ok(r.rows_affected() > 0)
}

/// Creates or replaces extra specs.
pub async fn extra_specs_set(
    tx: &mut store::Tx<'_>,
    id: &str,
    specs: &BTreeMap<String, String>,
) -> store::sqlx::Result<()> {
    for (k, v) in specs {
        store::sqlx::query("DELETE FROM flavor_extra_specs WHERE flavor_id = $1 AND key = $2")
            .bind(id)
            .bind(k)
            .execute(&mut **tx)
            .await?;
        store::sqlx::query(
            "INSERT INTO flavor_extra_specs (flavor_id, key, value) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(k)
        .bind(v)
        .execute(&mut **tx)
        .await?;
    }
    if !specs.is_empty() {
        store::sqlx::query("UPDATE flavors SET updated_at = $1 WHERE id = $2")
            .bind(store::now_micros())
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Deletes one extra spec; false when the flavor has no such key.
pub async fn extra_spec_delete(
    tx: &mut store::Tx<'_>,
    id: &str,
    key: &str,
) -> store::sqlx::Result<bool> {
    let r = store::sqlx::query("DELETE FROM flavor_extra_specs WHERE flavor_id = $1 AND key = $2")
        .bind(id)
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// True when a project with this id exists in the identity tables (the
/// same database).
pub async fn project_exists(db: &Db, project: &str) -> store::sqlx::Result<bool> {
    Ok(store::sqlx::query("SELECT 1 FROM projects WHERE id = $1")
        .bind(project)
        .fetch_optional(db.pool())
        .await?
        .is_some())
}

/// A flavor inside a write (without extra specs), to re-check it exists.
pub async fn flavor_get_tx(
    tx: &mut store::Tx<'_>,
    id: &str,
) -> store::sqlx::Result<Option<Flavor>> {
    let row = store::sqlx::query(&format!("SELECT {COLS} FROM flavors WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    row.as_ref().map(from_row).transpose()
}
