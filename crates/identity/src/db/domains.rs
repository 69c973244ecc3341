use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct DomainRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub enabled: i64,
    pub extra: String,
}

const COLS: &str = "id, name, description, enabled, extra";

pub async fn domain_get(db: &Db, id: &str) -> sqlx::Result<Option<DomainRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM domains WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn domain_get_by_name(db: &Db, name: &str) -> sqlx::Result<Option<DomainRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM domains WHERE name = $1"))
        .bind(name)
        .fetch_optional(db.pool())
        .await
}

pub async fn domain_list(db: &Db) -> sqlx::Result<Vec<DomainRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM domains ORDER BY name"))
        .fetch_all(db.pool())
        .await
}

pub async fn domain_create(tx: &mut Tx<'_>, d: &DomainRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO domains (id, name, description, enabled, extra, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&d.id)
    .bind(&d.name)
    .bind(&d.description)
    .bind(d.enabled)
    .bind(&d.extra)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn domain_update(tx: &mut Tx<'_>, d: &DomainRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE domains SET name = $2, description = $3, enabled = $4, extra = $5 WHERE id = $1",
    )
    .bind(&d.id)
    .bind(&d.name)
    .bind(&d.description)
    .bind(d.enabled)
    .bind(&d.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a domain and everything in it: projects, users, groups, its
/// domain-specific roles, and every assignment that names any of them.
pub async fn domain_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM assignments WHERE target_id = $1 \
            OR target_id IN (SELECT id FROM projects WHERE domain_id = $1) \
            OR actor_id IN (SELECT id FROM users WHERE domain_id = $1) \
            OR actor_id IN (SELECT id FROM groups WHERE domain_id = $1)",
        "DELETE FROM application_credentials WHERE user_id IN (SELECT id FROM users WHERE domain_id = $1)",
        "DELETE FROM credentials WHERE user_id IN (SELECT id FROM users WHERE domain_id = $1)",
        "DELETE FROM group_members WHERE user_id IN (SELECT id FROM users WHERE domain_id = $1) \
            OR group_id IN (SELECT id FROM groups WHERE domain_id = $1)",
        "DELETE FROM passwords WHERE user_id IN (SELECT id FROM users WHERE domain_id = $1)",
        "DELETE FROM access_rules WHERE user_id IN (SELECT id FROM users WHERE domain_id = $1)",
        "DELETE FROM users WHERE domain_id = $1",
        "DELETE FROM groups WHERE domain_id = $1",
        "DELETE FROM project_tags WHERE project_id IN (SELECT id FROM projects WHERE domain_id = $1)",
        "DELETE FROM projects WHERE domain_id = $1",
        "DELETE FROM roles WHERE domain_id = $1",
        "DELETE FROM domains WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}
