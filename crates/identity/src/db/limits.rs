#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RegisteredLimitRow {
    pub id: String,
    pub service_id: String,
    /// '' when the limit is not specific to a region.
    pub region_id: String,
    pub resource_name: String,
    pub default_limit: i64,
    pub description: Option<String>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LimitRow {
    pub id: String,
    pub project_id: Option<String>,
    pub domain_id: Option<String>,
    pub service_id: String,
    pub region_id: String,
    pub resource_name: String,
    pub resource_limit: i64,
    pub description: Option<String>,
}

use super::{Db, Tx};

const RL: &str = "id, service_id, region_id, resource_name, default_limit, description";
const L: &str =
    "id, project_id, domain_id, service_id, region_id, resource_name, resource_limit, description";

pub async fn registered_limit_get(db: &Db, id: &str) -> sqlx::Result<Option<RegisteredLimitRow>> {
    sqlx::query_as(&format!("SELECT {RL} FROM registered_limits WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn registered_limit_list(db: &Db) -> sqlx::Result<Vec<RegisteredLimitRow>> {
    sqlx::query_as(&format!(
        "SELECT {RL} FROM registered_limits ORDER BY service_id, resource_name"
    ))
    .fetch_all(db.pool())
    .await
}

pub async fn registered_limit_create(tx: &mut Tx<'_>, r: &RegisteredLimitRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO registered_limits (id, service_id, region_id, resource_name, default_limit, description) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&r.id)
    .bind(&r.service_id)
    .bind(&r.region_id)
    .bind(&r.resource_name)
    .bind(r.default_limit)
    .bind(&r.description)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn registered_limit_update(tx: &mut Tx<'_>, r: &RegisteredLimitRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE registered_limits SET service_id = $2, region_id = $3, resource_name = $4, \
         default_limit = $5, description = $6 WHERE id = $1",
    )
    .bind(&r.id)
    .bind(&r.service_id)
    .bind(&r.region_id)
    .bind(&r.resource_name)
    .bind(r.default_limit)
    .bind(&r.description)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn registered_limit_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM registered_limits WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn limit_get(db: &Db, id: &str) -> sqlx::Result<Option<LimitRow>> {
    sqlx::query_as(&format!("SELECT {L} FROM limits WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn limit_list(db: &Db) -> sqlx::Result<Vec<LimitRow>> {
    sqlx::query_as(&format!(
        "SELECT {L} FROM limits ORDER BY service_id, resource_name, id"
    ))
    .fetch_all(db.pool())
    .await
}

pub async fn limit_create(tx: &mut Tx<'_>, l: &LimitRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO limits (id, project_id, domain_id, service_id, region_id, resource_name, resource_limit, \
         description) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&l.id)
    .bind(&l.project_id)
    .bind(&l.domain_id)
    .bind(&l.service_id)
    .bind(&l.region_id)
    .bind(&l.resource_name)
    .bind(l.resource_limit)
    .bind(&l.description)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn limit_update(tx: &mut Tx<'_>, l: &LimitRow) -> sqlx::Result<()> {
    sqlx::query("UPDATE limits SET resource_limit = $2, description = $3 WHERE id = $1")
        .bind(&l.id)
        .bind(l.resource_limit)
        .bind(&l.description)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn limit_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM limits WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
