//! Key pairs, owned by users (not projects), unique by (user, name).

use serde::{Deserialize, Serialize};
use store::Row;

use super::Db;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keypair {
    pub id: i64,
    pub name: String,
    pub user_id: String,
    /// `ssh` or `x509`.
    #[serde(rename = "type")]
    pub kind: String,
    pub fingerprint: String,
    pub public_key: String,
    /// Microseconds since the Unix epoch.
    pub created_at: i64,
}

const COLS: &str = "id, name, user_id, type, fingerprint, public_key, created_at";

fn from_row(r: &store::sqlx::any::AnyRow) -> store::sqlx::Result<Keypair> {
    Ok(Keypair {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        user_id: r.try_get(2)?,
        kind: r.try_get(3)?,
        fingerprint: r.try_get(4)?,
        public_key: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

/// One key pair of a user.
pub async fn keypair_get(
    db: &Db,
    user_id: &str,
    name: &str,
) -> store::sqlx::Result<Option<Keypair>> {
    let row = store::sqlx::query(&format!(
        "SELECT {COLS} FROM keypairs WHERE user_id = $1 AND name = $2"
    ))
    .bind(user_id)
    .bind(name)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// A user's key pairs by name, after `after` when given, at most `limit`.
pub async fn keypair_list(
    db: &Db,
    user_id: &str,
    after: Option<&str>,
    limit: Option<i64>,
) -> store::sqlx::Result<Vec<Keypair>> {
    let mut sql = format!("SELECT {COLS} FROM keypairs WHERE user_id = $1");
    if after.is_some() {
        sql.push_str(" AND name > $2");
    }
    sql.push_str(" ORDER BY name");
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {}", l.max(0)));
    }
    let mut q = store::sqlx::query(&sql).bind(user_id);
    if let Some(a) = after {
        q = q.bind(a);
    }
    let rows = q.fetch_all(db.pool()).await?;
    rows.iter().map(from_row).collect()
}

/// How many key pairs a user has (inside a write).
pub async fn keypair_count(tx: &mut store::Tx<'_>, user_id: &str) -> store::sqlx::Result<i64> {
    let row = store::sqlx::query("SELECT COUNT(*) FROM keypairs WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&mut **tx)
        .await?;
    row.try_get(0)
}

/// True when the user has a key pair of this name (inside a write).
pub async fn keypair_exists(
    tx: &mut store::Tx<'_>,
    user_id: &str,
    name: &str,
) -> store::sqlx::Result<bool> {
    Ok(
        store::sqlx::query("SELECT 1 FROM keypairs WHERE user_id = $1 AND name = $2")
            .bind(user_id)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?
            .is_some(),
    )
}

/// Inserts a key pair with the next id (max + 1) and returns that id.
pub async fn keypair_create(tx: &mut store::Tx<'_>, k: &Keypair) -> store::sqlx::Result<i64> {
    let row = store::sqlx::query("SELECT COALESCE(MAX(id), 0) FROM keypairs")
        .fetch_one(&mut **tx)
        .await?;
    let id: i64 = row.try_get::<i64, _>(0)? + 1;
    store::sqlx::query(&format!(
        "INSERT INTO keypairs ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(id)
    .bind(&k.name)
    .bind(&k.user_id)
    .bind(&k.kind)
    .bind(&k.fingerprint)
    .bind(&k.public_key)
    .bind(k.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Deletes a key pair; false when there was none.
pub async fn keypair_delete(
    tx: &mut store::Tx<'_>,
    user_id: &str,
    name: &str,
) -> store::sqlx::Result<bool> {
    let r = store::sqlx::query("DELETE FROM keypairs WHERE user_id = $1 AND name = $2")
        .bind(user_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}
