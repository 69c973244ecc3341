use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CredentialRow {
    pub id: String,
    pub user_id: String,
    pub project_id: Option<String>,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub encrypted_blob: String,
    pub extra: String,
}

const COLS: &str = "id, user_id, project_id, type, encrypted_blob, extra";

pub async fn credential_get(db: &Db, id: &str) -> sqlx::Result<Option<CredentialRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM credentials WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn credential_list(db: &Db) -> sqlx::Result<Vec<CredentialRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM credentials ORDER BY id"))
        .fetch_all(db.pool())
        .await
}

pub async fn credential_create(tx: &mut Tx<'_>, c: &CredentialRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO credentials (id, user_id, project_id, type, encrypted_blob, extra) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&c.id)
    .bind(&c.user_id)
    .bind(&c.project_id)
    .bind(&c.kind)
    .bind(&c.encrypted_blob)
    .bind(&c.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn credential_update(tx: &mut Tx<'_>, c: &CredentialRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE credentials SET user_id = $2, project_id = $3, type = $4, encrypted_blob = $5, extra = $6 WHERE id = $1",
    )
    .bind(&c.id)
    .bind(&c.user_id)
    .bind(&c.project_id)
    .bind(&c.kind)
    .bind(&c.encrypted_blob)
    .bind(&c.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn credential_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM credentials WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
