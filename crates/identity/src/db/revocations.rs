use super::{Db, Tx};

/// A revocation event: tokens matching every set field, issued at or before
/// `issued_before`, are revoked.
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct RevocationRow {
    pub id: String,
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    pub domain_id: Option<String>,
    pub audit_id: Option<String>,
    pub audit_chain_id: Option<String>,
    pub issued_before: i64,
}

pub async fn revocation_list(db: &Db, now: i64) -> sqlx::Result<Vec<RevocationRow>> {
    sqlx::query_as(
        "SELECT id, user_id, project_id, domain_id, audit_id, audit_chain_id, issued_before \
         FROM revocation_events WHERE expires_at IS NULL OR expires_at > $1",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await
}

/// Records an event that expires when every token it can match has expired.
pub async fn revocation_add(
    tx: &mut Tx<'_>,
    e: &RevocationRow,
    expires_at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO revocation_events (id, user_id, project_id, domain_id, audit_id, audit_chain_id, \
         issued_before, revoked_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(&e.user_id)
    .bind(&e.project_id)
    .bind(&e.domain_id)
    .bind(&e.audit_id)
    .bind(&e.audit_chain_id)
    .bind(e.issued_before)
    .bind(store::now_micros())
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Removes events that can no longer match a valid token.
pub async fn revocation_prune(tx: &mut Tx<'_>, now: i64) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "DELETE FROM revocation_events WHERE expires_at IS NOT NULL AND expires_at <= $1",
    )
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected())
}
