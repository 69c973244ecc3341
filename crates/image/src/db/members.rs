use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MemberRow {
    pub image_id: String,
    pub member: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLS: &str = "image_id, member, status, created_at, updated_at";

pub async fn member_get(db: &Db, image_id: &str, member: &str) -> sqlx::Result<Option<MemberRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM image_members WHERE image_id = $1 AND member = $2"
    ))
    .bind(image_id)
    .bind(member)
    .fetch_optional(db.pool())
    .await
}

pub async fn member_list(db: &Db, image_id: &str) -> sqlx::Result<Vec<MemberRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM image_members WHERE image_id = $1 ORDER BY created_at, member"
    ))
    .bind(image_id)
    .fetch_all(db.pool())
    .await
}

pub async fn member_count(tx: &mut Tx<'_>, image_id: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM image_members WHERE image_id = $1")
        .bind(image_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(n)
}

pub async fn member_create(tx: &mut Tx<'_>, m: &MemberRow) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO image_members ({COLS}) VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(&m.image_id)
    .bind(&m.member)
    .bind(&m.status)
    .bind(m.created_at)
    .bind(m.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn member_update(tx: &mut Tx<'_>, m: &MemberRow) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE image_members SET status = $3, updated_at = $4 WHERE image_id = $1 AND member = $2",
    )
    .bind(&m.image_id)
    .bind(&m.member)
    .bind(&m.status)
    .bind(m.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn member_delete(tx: &mut Tx<'_>, image_id: &str, member: &str) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM image_members WHERE image_id = $1 AND member = $2")
        .bind(image_id)
        .bind(member)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}
