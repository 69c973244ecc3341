use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RegionRow {
    pub id: String,
    pub description: String,
    pub parent_region_id: Option<String>,
    pub extra: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServiceRow {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled: i64,
    pub extra: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub service_id: String,
    pub interface: String,
    pub url: String,
    pub region_id: Option<String>,
    pub enabled: i64,
    pub extra: String,
}

pub async fn region_get(db: &Db, id: &str) -> sqlx::Result<Option<RegionRow>> {
    sqlx::query_as("SELECT id, description, parent_region_id, extra FROM regions WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn region_list(db: &Db) -> sqlx::Result<Vec<RegionRow>> {
    sqlx::query_as("SELECT id, description, parent_region_id, extra FROM regions ORDER BY id")
        .fetch_all(db.pool())
        .await
}

pub async fn region_create(tx: &mut Tx<'_>, r: &RegionRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO regions (id, description, parent_region_id, extra) VALUES ($1, $2, $3, $4)",
    )
    .bind(&r.id)
    .bind(&r.description)
    .bind(&r.parent_region_id)
    .bind(&r.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn region_update(tx: &mut Tx<'_>, r: &RegionRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE regions SET description = $2, parent_region_id = $3, extra = $4 WHERE id = $1",
    )
    .bind(&r.id)
    .bind(&r.description)
    .bind(&r.parent_region_id)
    .bind(&r.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn region_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE endpoints SET region_id = NULL WHERE region_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM regions WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn region_has_children(db: &Db, id: &str) -> sqlx::Result<bool> {
    let r: Option<(String,)> =
        sqlx::query_as("SELECT id FROM regions WHERE parent_region_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    Ok(r.is_some())
}

const SERVICE_COLS: &str = "id, type, name, description, enabled, extra";

pub async fn service_get(db: &Db, id: &str) -> sqlx::Result<Option<ServiceRow>> {
    sqlx::query_as(&format!(
        "SELECT {SERVICE_COLS} FROM services WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

pub async fn service_list(db: &Db) -> sqlx::Result<Vec<ServiceRow>> {
    sqlx::query_as(&format!(
        "SELECT {SERVICE_COLS} FROM services ORDER BY type, id"
    ))
    .fetch_all(db.pool())
    .await
}

pub async fn service_create(tx: &mut Tx<'_>, s: &ServiceRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO services (id, type, name, description, enabled, extra) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&s.id)
    .bind(&s.kind)
    .bind(&s.name)
    .bind(&s.description)
    .bind(s.enabled)
    .bind(&s.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn service_update(tx: &mut Tx<'_>, s: &ServiceRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE services SET type = $2, name = $3, description = $4, enabled = $5, extra = $6 WHERE id = $1",
    )
    .bind(&s.id)
    .bind(&s.kind)
    .bind(&s.name)
    .bind(&s.description)
    .bind(s.enabled)
    .bind(&s.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes a service with its endpoints (limits naming it are kept, as upstream).
pub async fn service_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM project_endpoints WHERE endpoint_id IN (SELECT id FROM endpoints WHERE service_id = $1)",
        "DELETE FROM endpoints WHERE service_id = $1",
        "DELETE FROM services WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

const ENDPOINT_COLS: &str = "id, service_id, interface, url, region_id, enabled, extra";

pub async fn endpoint_get(db: &Db, id: &str) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLS} FROM endpoints WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

pub async fn endpoint_list(db: &Db) -> sqlx::Result<Vec<EndpointRow>> {
    sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLS} FROM endpoints ORDER BY service_id, interface, id"
    ))
    .fetch_all(db.pool())
    .await
}

pub async fn endpoint_create(tx: &mut Tx<'_>, e: &EndpointRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO endpoints (id, service_id, interface, url, region_id, enabled, extra) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&e.id)
    .bind(&e.service_id)
    .bind(&e.interface)
    .bind(&e.url)
    .bind(&e.region_id)
    .bind(e.enabled)
    .bind(&e.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn endpoint_update(tx: &mut Tx<'_>, e: &EndpointRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE endpoints SET service_id = $2, interface = $3, url = $4, region_id = $5, enabled = $6, \
         extra = $7 WHERE id = $1",
    )
    .bind(&e.id)
    .bind(&e.service_id)
    .bind(&e.interface)
    .bind(&e.url)
    .bind(&e.region_id)
    .bind(e.enabled)
    .bind(&e.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn endpoint_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM project_endpoints WHERE endpoint_id = $1",
        "DELETE FROM endpoints WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}
