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
