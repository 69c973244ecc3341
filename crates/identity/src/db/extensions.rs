//! Storage for the smaller identity APIs: policy blobs, endpoint filtering
//! (OS-EP-FILTER) and federation objects (OS-FEDERATION).

use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PolicyBlobRow {
    pub id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub blob: String,
    pub extra: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct EndpointGroupRow {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// JSON object: interface, service_id, region_id.
    pub filters: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct IdpRow {
    pub id: String,
    pub enabled: i64,
    pub description: Option<String>,
    pub domain_id: String,
    pub authorization_ttl: Option<i64>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ProtocolRow {
    pub id: String,
    pub idp_id: String,
    pub mapping_id: String,
    pub remote_id_attribute: Option<String>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MappingRow {
    pub id: String,
    pub rules: String,
    pub schema_version: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ServiceProviderRow {
    pub id: String,
    pub enabled: i64,
    pub description: Option<String>,
    pub auth_url: String,
    pub sp_url: String,
    pub relay_state_prefix: String,
}

// Policy blobs.

pub async fn policy_blob_get(db: &Db, id: &str) -> sqlx::Result<Option<PolicyBlobRow>> {
    sqlx::query_as("SELECT id, type, blob, extra FROM policy_blobs WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn policy_blob_list(db: &Db) -> sqlx::Result<Vec<PolicyBlobRow>> {
    sqlx::query_as("SELECT id, type, blob, extra FROM policy_blobs ORDER BY id")
        .fetch_all(db.pool())
        .await
}

pub async fn policy_blob_put(tx: &mut Tx<'_>, p: &PolicyBlobRow) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM policy_blobs WHERE id = $1")
        .bind(&p.id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO policy_blobs (id, type, blob, extra) VALUES ($1, $2, $3, $4)")
        .bind(&p.id)
        .bind(&p.kind)
        .bind(&p.blob)
        .bind(&p.extra)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn policy_blob_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM policy_blobs WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

// Endpoint filtering.

pub async fn project_endpoint_ids(db: &Db, project_id: &str) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT endpoint_id FROM project_endpoints WHERE project_id = $1 ORDER BY endpoint_id",
    )
    .bind(project_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn endpoint_project_ids(db: &Db, endpoint_id: &str) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT project_id FROM project_endpoints WHERE endpoint_id = $1 ORDER BY project_id",
    )
    .bind(endpoint_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn project_endpoint_add(
    tx: &mut Tx<'_>,
    project_id: &str,
    endpoint_id: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO project_endpoints (project_id, endpoint_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(project_id)
        .bind(endpoint_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn project_endpoint_remove(
    tx: &mut Tx<'_>,
    project_id: &str,
    endpoint_id: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM project_endpoints WHERE project_id = $1 AND endpoint_id = $2")
        .bind(project_id)
        .bind(endpoint_id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn endpoint_group_get(db: &Db, id: &str) -> sqlx::Result<Option<EndpointGroupRow>> {
    sqlx::query_as("SELECT id, name, description, filters FROM endpoint_groups WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn endpoint_group_list(db: &Db) -> sqlx::Result<Vec<EndpointGroupRow>> {
    sqlx::query_as("SELECT id, name, description, filters FROM endpoint_groups ORDER BY name, id")
        .fetch_all(db.pool())
        .await
}

pub async fn endpoint_group_put(tx: &mut Tx<'_>, g: &EndpointGroupRow) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM endpoint_groups WHERE id = $1")
        .bind(&g.id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO endpoint_groups (id, name, description, filters) VALUES ($1, $2, $3, $4)",
    )
    .bind(&g.id)
    .bind(&g.name)
    .bind(&g.description)
    .bind(&g.filters)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn endpoint_group_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM project_endpoint_groups WHERE endpoint_group_id = $1",
        "DELETE FROM endpoint_groups WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// (endpoint group id, project id) pairs, optionally for one group or project.
pub async fn endpoint_group_projects(db: &Db) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT endpoint_group_id, project_id FROM project_endpoint_groups ORDER BY project_id",
    )
    .fetch_all(db.pool())
    .await
}

pub async fn endpoint_group_project_add(
    tx: &mut Tx<'_>,
    group: &str,
    project: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO project_endpoint_groups (endpoint_group_id, project_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(group)
    .bind(project)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn endpoint_group_project_remove(
    tx: &mut Tx<'_>,
    group: &str,
    project: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "DELETE FROM project_endpoint_groups WHERE endpoint_group_id = $1 AND project_id = $2",
    )
    .bind(group)
    .bind(project)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() > 0)
}

// Federation.

const IDP: &str = "id, enabled, description, domain_id, authorization_ttl";

pub async fn idp_get(db: &Db, id: &str) -> sqlx::Result<Option<IdpRow>> {
    sqlx::query_as(&format!(
        "SELECT {IDP} FROM identity_providers WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

pub async fn idp_list(db: &Db) -> sqlx::Result<Vec<IdpRow>> {
    sqlx::query_as(&format!("SELECT {IDP} FROM identity_providers ORDER BY id"))
        .fetch_all(db.pool())
        .await
}

pub async fn idp_remote_ids(db: &Db, id: &str) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT remote_id FROM idp_remote_ids WHERE idp_id = $1 ORDER BY remote_id")
            .bind(id)
            .fetch_all(db.pool())
            .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Inserts or replaces an identity provider and its remote ids.
pub async fn idp_put(tx: &mut Tx<'_>, i: &IdpRow, remote_ids: &[String]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM idp_remote_ids WHERE idp_id = $1")
        .bind(&i.id)
        .execute(&mut **tx)
        .await?;
    let r = sqlx::query(
        "UPDATE identity_providers SET enabled = $2, description = $3, domain_id = $4, authorization_ttl = $5 WHERE id = $1",
    )
    .bind(&i.id)
    .bind(i.enabled)
    .bind(&i.description)
    .bind(&i.domain_id)
    .bind(i.authorization_ttl)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO identity_providers (id, enabled, description, domain_id, authorization_ttl) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&i.id)
        .bind(i.enabled)
        .bind(&i.description)
        .bind(&i.domain_id)
        .bind(i.authorization_ttl)
        .execute(&mut **tx)
        .await?;
    }
    for rid in remote_ids {
        sqlx::query("INSERT INTO idp_remote_ids (remote_id, idp_id) VALUES ($1, $2)")
            .bind(rid)
            .bind(&i.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

pub async fn idp_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM federation_protocols WHERE idp_id = $1",
        "DELETE FROM idp_remote_ids WHERE idp_id = $1",
        "DELETE FROM identity_providers WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

pub async fn protocol_list(db: &Db, idp: &str) -> sqlx::Result<Vec<ProtocolRow>> {
    sqlx::query_as("SELECT id, idp_id, mapping_id, remote_id_attribute FROM federation_protocols WHERE idp_id = $1 ORDER BY id")
        .bind(idp)
        .fetch_all(db.pool())
        .await
}

pub async fn protocol_put(tx: &mut Tx<'_>, p: &ProtocolRow) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM federation_protocols WHERE id = $1 AND idp_id = $2")
        .bind(&p.id)
        .bind(&p.idp_id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO federation_protocols (id, idp_id, mapping_id, remote_id_attribute) VALUES ($1, $2, $3, $4)")
        .bind(&p.id)
        .bind(&p.idp_id)
        .bind(&p.mapping_id)
        .bind(&p.remote_id_attribute)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn protocol_delete(tx: &mut Tx<'_>, idp: &str, id: &str) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM federation_protocols WHERE id = $1 AND idp_id = $2")
        .bind(id)
        .bind(idp)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn mapping_get(db: &Db, id: &str) -> sqlx::Result<Option<MappingRow>> {
    sqlx::query_as("SELECT id, rules, schema_version FROM mappings WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn mapping_list(db: &Db) -> sqlx::Result<Vec<MappingRow>> {
    sqlx::query_as("SELECT id, rules, schema_version FROM mappings ORDER BY id")
        .fetch_all(db.pool())
        .await
}

pub async fn mapping_put(tx: &mut Tx<'_>, m: &MappingRow) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM mappings WHERE id = $1")
        .bind(&m.id)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO mappings (id, rules, schema_version) VALUES ($1, $2, $3)")
        .bind(&m.id)
        .bind(&m.rules)
        .bind(&m.schema_version)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn mapping_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM mappings WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const SP: &str = "id, enabled, description, auth_url, sp_url, relay_state_prefix";

pub async fn sp_get(db: &Db, id: &str) -> sqlx::Result<Option<ServiceProviderRow>> {
    sqlx::query_as(&format!("SELECT {SP} FROM service_providers WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn sp_list(db: &Db) -> sqlx::Result<Vec<ServiceProviderRow>> {
    sqlx::query_as(&format!("SELECT {SP} FROM service_providers ORDER BY id"))
        .fetch_all(db.pool())
        .await
}

pub async fn sp_put(tx: &mut Tx<'_>, s: &ServiceProviderRow) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM service_providers WHERE id = $1")
        .bind(&s.id)
        .execute(&mut **tx)
        .await?;
    sqlx::query(&format!(
        "INSERT INTO service_providers ({SP}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(&s.id)
    .bind(s.enabled)
    .bind(&s.description)
    .bind(&s.auth_url)
    .bind(&s.sp_url)
    .bind(&s.relay_state_prefix)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn sp_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM service_providers WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
