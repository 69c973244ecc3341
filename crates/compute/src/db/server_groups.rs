//! Server groups and their members.

use std::collections::BTreeMap;

use serde_json::Value;
use store::Row;

use super::{Db, Tx};

#[derive(Clone, Debug, PartialEq)]
pub struct ServerGroup {
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    /// affinity, anti-affinity, soft-affinity or soft-anti-affinity.
    pub policy: String,
    /// A JSON object, e.g. `{"max_server_per_host": 2}`.
    pub rules: Value,
    pub created_at: i64,
    /// Every member recorded (deleted instances included).
    pub members: Vec<String>,
}

const COLS: &str = "id, name, project_id, user_id, policy, rules, created_at";

fn from_row(r: &store::sqlx::any::AnyRow) -> store::sqlx::Result<ServerGroup> {
    let rules: String = r.try_get(5)?;
    Ok(ServerGroup {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        project_id: r.try_get(2)?,
        user_id: r.try_get(3)?,
        policy: r.try_get(4)?,
        rules: serde_json::from_str(&rules).unwrap_or_else(|_| Value::Object(Default::default())),
        created_at: r.try_get(6)?,
        members: Vec::new(),
    })
}

/// One group with its members.
pub async fn group_get(db: &Db, id: &str) -> store::sqlx::Result<Option<ServerGroup>> {
    let row = store::sqlx::query(&format!("SELECT {COLS} FROM server_groups WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut g = from_row(&row)?;
    g.members = store::sqlx::query(
        "SELECT instance_id FROM server_group_members WHERE group_id = $1 ORDER BY instance_id",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<store::sqlx::Result<_>>()?;
    Ok(Some(g))
}

/// Groups of a project (all groups when `project` is None), oldest first,
/// with their members.
pub async fn group_list(db: &Db, project: Option<&str>) -> store::sqlx::Result<Vec<ServerGroup>> {
    let rows = match project {
        Some(p) => {
            store::sqlx::query(&format!(
                "SELECT {COLS} FROM server_groups WHERE project_id = $1 ORDER BY created_at, id"
            ))
            .bind(p)
            .fetch_all(db.pool())
            .await?
        }
        None => {
            store::sqlx::query(&format!(
                "SELECT {COLS} FROM server_groups ORDER BY created_at, id"
            ))
            .fetch_all(db.pool())
            .await?
        }
    };
    let mut groups = rows
        .iter()
        .map(from_row)
        .collect::<store::sqlx::Result<Vec<_>>>()?;
    if groups.is_empty() {
        return Ok(groups);
    }
    let members = match project {
        Some(p) => {
            store::sqlx::query(
                "SELECT m.group_id, m.instance_id FROM server_group_members m \
                 JOIN server_groups g ON g.id = m.group_id WHERE g.project_id = $1",
            )
            .bind(p)
            .fetch_all(db.pool())
            .await?
        }
        None => {
            store::sqlx::query("SELECT group_id, instance_id FROM server_group_members")
                .fetch_all(db.pool())
                .await?
        }
    };
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in members {
        by_group
            .entry(m.try_get(0)?)
            .or_default()
            .push(m.try_get(1)?);
    }
    for g in &mut groups {
        if let Some(mut m) = by_group.remove(&g.id) {
            m.sort();
            g.members = m;
        }
    }
    Ok(groups)
}

/// The ids among `ids` of instances that are not deleted.
pub async fn live_instances(db: &Db, ids: &[String]) -> store::sqlx::Result<Vec<String>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(200) {
        let marks = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("SELECT id FROM instances WHERE deleted_at IS NULL AND id IN ({marks})");
        let mut q = store::sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        for r in q.fetch_all(db.pool()).await? {
            out.push(r.try_get(0)?);
        }
    }
    Ok(out)
}

pub async fn group_create(tx: &mut Tx<'_>, g: &ServerGroup) -> store::sqlx::Result<()> {
    store::sqlx::query(
        "INSERT INTO server_groups (id, name, project_id, user_id, policy, rules, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&g.id)
    .bind(&g.name)
    .bind(&g.project_id)
    .bind(&g.user_id)
    .bind(&g.policy)
    .bind(g.rules.to_string())
    .bind(g.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a group and its membership records; false when there was none.
pub async fn group_delete(tx: &mut Tx<'_>, id: &str) -> store::sqlx::Result<bool> {
    store::sqlx::query("DELETE FROM server_group_members WHERE group_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let r = store::sqlx::query("DELETE FROM server_groups WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Records `instance_id` as a member of `group_id` (no error when it
/// already is).
pub async fn group_add_member(
    tx: &mut Tx<'_>,
    group_id: &str,
    instance_id: &str,
) -> store::sqlx::Result<()> {
    store::sqlx::query(
        "INSERT INTO server_group_members (group_id, instance_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(group_id)
    .bind(instance_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
