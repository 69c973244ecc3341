use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AppCredRow {
    pub id: String,
    pub name: String,
    pub user_id: String,
    pub project_id: Option<String>,
    pub secret_hash: String,
    pub description: Option<String>,
    pub expires_at: Option<i64>,
    pub unrestricted: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessRuleRow {
    pub id: String,
    pub service: String,
    pub path: String,
    pub method: String,
}

const COLS: &str =
    "id, name, user_id, project_id, secret_hash, description, expires_at, unrestricted";

pub async fn app_cred_get(db: &Db, id: &str) -> sqlx::Result<Option<AppCredRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM application_credentials WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

pub async fn app_cred_get_by_name(
    db: &Db,
    user_id: &str,
    name: &str,
) -> sqlx::Result<Option<AppCredRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM application_credentials WHERE user_id = $1 AND name = $2"
    ))
    .bind(user_id)
    .bind(name)
    .fetch_optional(db.pool())
    .await
}

pub async fn app_cred_list(db: &Db, user_id: &str) -> sqlx::Result<Vec<AppCredRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM application_credentials WHERE user_id = $1 ORDER BY name"
    ))
    .bind(user_id)
    .fetch_all(db.pool())
    .await
}

pub async fn app_cred_create(
    tx: &mut Tx<'_>,
    a: &AppCredRow,
    role_ids: &[String],
    rules: &[AccessRuleRow],
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO application_credentials (id, name, user_id, project_id, secret_hash, description, \
         expires_at, unrestricted, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&a.id)
    .bind(&a.name)
    .bind(&a.user_id)
    .bind(&a.project_id)
    .bind(&a.secret_hash)
    .bind(&a.description)
    .bind(a.expires_at)
    .bind(a.unrestricted)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    for r in role_ids {
        sqlx::query("INSERT INTO application_credential_roles (application_credential_id, role_id) VALUES ($1, $2)")
            .bind(&a.id)
            .bind(r)
            .execute(&mut **tx)
            .await?;
    }
    for rule in rules {
        // Reuse the user's identical rule when there is one.
        let existing: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM access_rules WHERE user_id = $1 AND service = $2 AND path = $3 AND method = $4",
        )
        .bind(&a.user_id)
        .bind(&rule.service)
        .bind(&rule.path)
        .bind(&rule.method)
        .fetch_optional(&mut **tx)
        .await?;
        let rule_id = match existing {
            Some((id,)) => id,
            None => {
                sqlx::query(
                    "INSERT INTO access_rules (id, user_id, service, path, method) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&rule.id)
                .bind(&a.user_id)
                .bind(&rule.service)
                .bind(&rule.path)
                .bind(&rule.method)
                .execute(&mut **tx)
                .await?;
                rule.id.clone()
            }
        };
        sqlx::query(
            "INSERT INTO application_credential_access_rules (application_credential_id, access_rule_id) \
             VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(&a.id)
        .bind(&rule_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub async fn app_cred_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM application_credential_roles WHERE application_credential_id = $1",
        "DELETE FROM application_credential_access_rules WHERE application_credential_id = $1",
        "DELETE FROM application_credentials WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

pub async fn app_cred_role_ids(db: &Db, id: &str) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT role_id FROM application_credential_roles WHERE application_credential_id = $1 ORDER BY role_id",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

pub async fn app_cred_access_rules(db: &Db, id: &str) -> sqlx::Result<Vec<AccessRuleRow>> {
    sqlx::query_as(
        "SELECT r.id, r.service, r.path, r.method FROM access_rules r \
         JOIN application_credential_access_rules a ON a.access_rule_id = r.id \
         WHERE a.application_credential_id = $1 ORDER BY r.id",
    )
    .bind(id)
    .fetch_all(db.pool())
    .await
}

pub async fn access_rule_list(db: &Db, user_id: &str) -> sqlx::Result<Vec<AccessRuleRow>> {
    sqlx::query_as(
        "SELECT id, service, path, method FROM access_rules WHERE user_id = $1 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await
}

pub async fn access_rule_get(
    db: &Db,
    user_id: &str,
    id: &str,
) -> sqlx::Result<Option<AccessRuleRow>> {
    sqlx::query_as(
        "SELECT id, service, path, method FROM access_rules WHERE user_id = $1 AND id = $2",
    )
    .bind(user_id)
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

pub async fn access_rule_in_use(db: &Db, id: &str) -> sqlx::Result<bool> {
    let r: Option<(String,)> = sqlx::query_as(
        "SELECT application_credential_id FROM application_credential_access_rules WHERE access_rule_id = $1 LIMIT 1",
    )
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    Ok(r.is_some())
}

pub async fn access_rule_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM access_rules WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
