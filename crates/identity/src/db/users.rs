use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub enabled: i64,
    pub default_project_id: Option<String>,
    pub description: Option<String>,
    pub extra: String,
    pub options: String,
    pub failed_auth_count: i64,
    pub failed_auth_at: Option<i64>,
}

const COLS: &str =
    "id, name, domain_id, enabled, default_project_id, description, extra, options, \
                    failed_auth_count, failed_auth_at";

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PasswordRow {
    pub hash: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub self_service: i64,
}

pub async fn user_get(db: &Db, id: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn user_get_by_name(
    db: &Db,
    domain_id: &str,
    name: &str,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM users WHERE domain_id = $1 AND name = $2"
    ))
    .bind(domain_id)
    .bind(name)
    .fetch_optional(db.pool())
    .await
}

pub async fn user_list(
    db: &Db,
    domain_id: Option<&str>,
    name: Option<&str>,
    enabled: Option<bool>,
) -> sqlx::Result<Vec<UserRow>> {
    let mut sql = format!("SELECT {COLS} FROM users WHERE 1 = 1");
    let mut args = Vec::new();
    if let Some(d) = domain_id {
        args.push(d);
        sql.push_str(&format!(" AND domain_id = ${}", args.len()));
    }
    if let Some(n) = name {
        args.push(n);
        sql.push_str(&format!(" AND name = ${}", args.len()));
    }
    if let Some(e) = enabled {
        sql.push_str(if e {
            " AND enabled = 1"
        } else {
            " AND enabled = 0"
        });
    }
    sql.push_str(" ORDER BY name, id");
    let mut q = sqlx::query_as(&sql);
    for a in args {
        q = q.bind(a);
    }
    q.fetch_all(db.pool()).await
}

pub async fn user_create(tx: &mut Tx<'_>, u: &UserRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO users (id, name, domain_id, enabled, default_project_id, description, extra, options, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&u.id)
    .bind(&u.name)
    .bind(&u.domain_id)
    .bind(u.enabled)
    .bind(&u.default_project_id)
    .bind(&u.description)
    .bind(&u.extra)
    .bind(&u.options)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn user_update(tx: &mut Tx<'_>, u: &UserRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE users SET name = $2, enabled = $3, default_project_id = $4, description = $5, \
         extra = $6, options = $7, failed_auth_count = $8, failed_auth_at = $9 WHERE id = $1",
    )
    .bind(&u.id)
    .bind(&u.name)
    .bind(u.enabled)
    .bind(&u.default_project_id)
    .bind(&u.description)
    .bind(&u.extra)
    .bind(&u.options)
    .bind(u.failed_auth_count)
    .bind(u.failed_auth_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn user_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM assignments WHERE actor_id = $1",
        "DELETE FROM application_credentials WHERE user_id = $1",
        "DELETE FROM access_rules WHERE user_id = $1",
        "DELETE FROM credentials WHERE user_id = $1",
        "DELETE FROM group_members WHERE user_id = $1",
        "DELETE FROM passwords WHERE user_id = $1",
        "DELETE FROM users WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The newest passwords first (`limit` of them).
pub async fn password_history(
    db: &Db,
    user_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<PasswordRow>> {
    sqlx::query_as(
        "SELECT hash, created_at, expires_at, self_service FROM passwords \
         WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2",
    )
    .bind(user_id)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

pub async fn password_current(db: &Db, user_id: &str) -> sqlx::Result<Option<PasswordRow>> {
    Ok(password_history(db, user_id, 1).await?.into_iter().next())
}

pub async fn password_set(
    tx: &mut Tx<'_>,
    user_id: &str,
    hash: &str,
    expires_at: Option<i64>,
    self_service: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO passwords (id, user_id, hash, created_at, expires_at, self_service) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(user_id)
    .bind(hash)
    .bind(store::now_micros())
    .bind(expires_at)
    .bind(i64::from(self_service))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records the outcome of a password check (for lockout).
pub async fn user_auth_result(db: &Db, user_id: &str, ok: bool) -> sqlx::Result<()> {
    let now = store::now_micros();
    let sql = if ok {
        "UPDATE users SET failed_auth_count = 0, failed_auth_at = NULL, last_active_at = $2 WHERE id = $1"
    } else {
        "UPDATE users SET failed_auth_count = failed_auth_count + 1, failed_auth_at = $2 WHERE id = $1"
    };
    let mut tx = db.write().await?;
    sqlx::query(sql)
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    tx.commit().await
}
