use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RoleRow {
    pub id: String,
    pub name: String,
    /// '' for global roles.
    pub domain_id: String,
    pub description: Option<String>,
    pub options: String,
    pub extra: String,
}

const COLS: &str = "id, name, domain_id, description, options, extra";

pub async fn role_get(db: &Db, id: &str) -> sqlx::Result<Option<RoleRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM roles WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn role_get_by_name(
    db: &Db,
    name: &str,
    domain_id: &str,
) -> sqlx::Result<Option<RoleRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM roles WHERE name = $1 AND domain_id = $2"
    ))
    .bind(name)
    .bind(domain_id)
    .fetch_optional(db.pool())
    .await
}

pub async fn role_list(db: &Db) -> sqlx::Result<Vec<RoleRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM roles ORDER BY name, id"))
        .fetch_all(db.pool())
        .await
}

pub async fn role_create(tx: &mut Tx<'_>, r: &RoleRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO roles (id, name, domain_id, description, options, extra, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&r.id)
    .bind(&r.name)
    .bind(&r.domain_id)
    .bind(&r.description)
    .bind(&r.options)
    .bind(&r.extra)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn role_update(tx: &mut Tx<'_>, r: &RoleRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE roles SET name = $2, description = $3, options = $4, extra = $5 WHERE id = $1",
    )
    .bind(&r.id)
    .bind(&r.name)
    .bind(&r.description)
    .bind(&r.options)
    .bind(&r.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn role_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM assignments WHERE role_id = $1",
        "DELETE FROM implied_roles WHERE prior_role_id = $1 OR implied_role_id = $1",
        "DELETE FROM application_credential_roles WHERE role_id = $1",
        "DELETE FROM roles WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Every inference rule as (prior, implied).
pub async fn implied_list(db: &Db) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT prior_role_id, implied_role_id FROM implied_roles ORDER BY prior_role_id, implied_role_id")
        .fetch_all(db.pool())
        .await
}

pub async fn implied_add(tx: &mut Tx<'_>, prior: &str, implied: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO implied_roles (prior_role_id, implied_role_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(prior)
        .bind(implied)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn implied_remove(tx: &mut Tx<'_>, prior: &str, implied: &str) -> sqlx::Result<bool> {
    let r =
        sqlx::query("DELETE FROM implied_roles WHERE prior_role_id = $1 AND implied_role_id = $2")
            .bind(prior)
            .bind(implied)
            .execute(&mut **tx)
            .await?;
    Ok(r.rows_affected() > 0)
}
