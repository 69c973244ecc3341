//! Quota limits (per project, per project user, per class) and the counts
//! quota usage is made of.

use std::collections::BTreeMap;

use store::Row;

use super::{Db, Tx};

type Limits = BTreeMap<String, i64>;

fn collect(rows: Vec<store::sqlx::any::AnyRow>) -> store::sqlx::Result<Limits> {
    rows.iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
        .collect()
}

/// A project's own limits (not those of its users).
pub async fn project_limits(db: &Db, project: &str) -> store::sqlx::Result<Limits> {
    let rows = store::sqlx::query(
        "SELECT resource, hard_limit FROM compute_quotas WHERE project_id = $1 AND user_id = ''",
    )
    .bind(project)
    .fetch_all(db.pool())
    .await?;
    collect(rows)
}

/// The limits set for one user of a project.
pub async fn user_limits(db: &Db, project: &str, user: &str) -> store::sqlx::Result<Limits> {
    let rows = store::sqlx::query(
        "SELECT resource, hard_limit FROM compute_quotas WHERE project_id = $1 AND user_id = $2",
    )
    .bind(project)
    .bind(user)
    .fetch_all(db.pool())
    .await?;
    collect(rows)
}

/// The sum, per resource, of the limits set for users of a project.
pub async fn user_limit_sums(db: &Db, project: &str) -> store::sqlx::Result<Limits> {
    let rows = store::sqlx::query(
        "SELECT resource, CAST(SUM(hard_limit) AS BIGINT) FROM compute_quotas \
         WHERE project_id = $1 AND user_id <> '' GROUP BY resource",
    )
    .bind(project)
    .fetch_all(db.pool())
    .await?;
    collect(rows)
}

/// The limits of a quota class.
pub async fn class_limits(db: &Db, class: &str) -> store::sqlx::Result<Limits> {
    let rows = store::sqlx::query(
        "SELECT resource, hard_limit FROM compute_quota_classes WHERE class_name = $1",
    )
    .bind(class)
    .fetch_all(db.pool())
    .await?;
    collect(rows)
}

/// Sets a project limit (`user` '') or a project user's limit.
pub async fn limit_set(
    tx: &mut Tx<'_>,
    project: &str,
    user: &str,
    resource: &str,
    limit: i64,
) -> store::sqlx::Result<()> {
    let r = store::sqlx::query(
        "UPDATE compute_quotas SET hard_limit = $4 \
         WHERE project_id = $1 AND user_id = $2 AND resource = $3",
    )
    .bind(project)
    .bind(user)
    .bind(resource)
    .bind(limit)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() == 0 {
        store::sqlx::query(
            "INSERT INTO compute_quotas (project_id, user_id, resource, hard_limit) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(project)
        .bind(user)
        .bind(resource)
        .bind(limit)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Sets a class limit.
pub async fn class_limit_set(
    tx: &mut Tx<'_>,
    class: &str,
    resource: &str,
    limit: i64,
) -> store::sqlx::Result<()> {
    let r = store::sqlx::query(
        "UPDATE compute_quota_classes SET hard_limit = $3 WHERE class_name = $1 AND resource = $2",
    )
    .bind(class)
    .bind(resource)
    .bind(limit)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() == 0 {
        store::sqlx::query(
            "INSERT INTO compute_quota_classes (class_name, resource, hard_limit) \
             VALUES ($1, $2, $3)",
        )
        .bind(class)
        .bind(resource)
        .bind(limit)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Removes every limit of a project, its users' included.
pub async fn project_delete(tx: &mut Tx<'_>, project: &str) -> store::sqlx::Result<()> {
    store::sqlx::query("DELETE FROM compute_quotas WHERE project_id = $1")
        .bind(project)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Removes the limits of one user of a project.
pub async fn user_delete(tx: &mut Tx<'_>, project: &str, user: &str) -> store::sqlx::Result<()> {
    store::sqlx::query("DELETE FROM compute_quotas WHERE project_id = $1 AND user_id = $2")
        .bind(project)
        .bind(user)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Instances, cores and RAM in use by a project (or one of its users):
/// instances not deleted.
pub async fn instance_usage(
    db: &Db,
    project: &str,
    user: Option<&str>,
) -> store::sqlx::Result<(i64, i64, i64)> {
    let mut sql = String::from(
        "SELECT COUNT(*), CAST(COALESCE(SUM(vcpus), 0) AS BIGINT), \
         CAST(COALESCE(SUM(memory_mb), 0) AS BIGINT) FROM instances \
         WHERE project_id = $1 AND deleted_at IS NULL",
    );
    if user.is_some() {
        sql.push_str(" AND user_id = $2");
    }
    let mut q = store::sqlx::query(&sql).bind(project);
    if let Some(u) = user {
        q = q.bind(u);
    }
    let r = q.fetch_one(db.pool()).await?;
    Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))
}

/// Server groups of a project (or of one of its users).
pub async fn server_group_count(
    db: &Db,
    project: &str,
    user: Option<&str>,
) -> store::sqlx::Result<i64> {
    let mut sql = String::from("SELECT COUNT(*) FROM server_groups WHERE project_id = $1");
    if user.is_some() {
        sql.push_str(" AND user_id = $2");
    }
    let mut q = store::sqlx::query(&sql).bind(project);
    if let Some(u) = user {
        q = q.bind(u);
    }
    q.fetch_one(db.pool()).await?.try_get(0)
}

/// Key pairs of a user.
pub async fn keypair_count(db: &Db, user: &str) -> store::sqlx::Result<i64> {
    store::sqlx::query("SELECT COUNT(*) FROM keypairs WHERE user_id = $1")
        .bind(user)
        .fetch_one(db.pool())
        .await?
        .try_get(0)
}

/// Members of a server group that are instances of `user` not deleted.
pub async fn group_member_count(db: &Db, group: &str, user: &str) -> store::sqlx::Result<i64> {
    store::sqlx::query(
        "SELECT COUNT(*) FROM server_group_members m JOIN instances i ON i.id = m.instance_id \
         WHERE m.group_id = $1 AND i.user_id = $2 AND i.deleted_at IS NULL",
    )
    .bind(group)
    .bind(user)
    .fetch_one(db.pool())
    .await?
    .try_get(0)
}
