use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct GroupRow {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub description: String,
    pub extra: String,
}

const COLS: &str = "g.id, g.name, g.domain_id, g.description, g.extra";

pub async fn group_get(db: &Db, id: &str) -> sqlx::Result<Option<GroupRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM groups g WHERE g.id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn group_get_by_name(
    db: &Db,
    domain_id: &str,
    name: &str,
) -> sqlx::Result<Option<GroupRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM groups g WHERE g.domain_id = $1 AND g.name = $2"
    ))
    .bind(domain_id)
    .bind(name)
    .fetch_optional(db.pool())
    .await
}

pub async fn group_list(
    db: &Db,
    domain_id: Option<&str>,
    name: Option<&str>,
) -> sqlx::Result<Vec<GroupRow>> {
    let mut sql = format!("SELECT {COLS} FROM groups g WHERE 1 = 1");
    let mut args = Vec::new();
    if let Some(d) = domain_id {
        args.push(d);
        sql.push_str(&format!(" AND g.domain_id = ${}", args.len()));
    }
    if let Some(n) = name {
        args.push(n);
        sql.push_str(&format!(" AND g.name = ${}", args.len()));
    }
    sql.push_str(" ORDER BY g.name, g.id");
    let mut q = sqlx::query_as(&sql);
    for a in args {
        q = q.bind(a);
    }
    q.fetch_all(db.pool()).await
}

pub async fn group_create(tx: &mut Tx<'_>, g: &GroupRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO groups (id, name, domain_id, description, extra, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&g.id)
    .bind(&g.name)
    .bind(&g.domain_id)
    .bind(&g.description)
    .bind(&g.extra)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn group_update(tx: &mut Tx<'_>, g: &GroupRow) -> sqlx::Result<()> {
    sqlx::query("UPDATE groups SET name = $2, description = $3, extra = $4 WHERE id = $1")
        .bind(&g.id)
        .bind(&g.name)
        .bind(&g.description)
        .bind(&g.extra)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn group_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM assignments WHERE actor_id = $1",
        "DELETE FROM group_members WHERE group_id = $1",
        "DELETE FROM groups WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

pub async fn group_member_add(tx: &mut Tx<'_>, group_id: &str, user_id: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(group_id)
    .bind(user_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Returns whether the membership existed.
pub async fn group_member_remove(
    tx: &mut Tx<'_>,
    group_id: &str,
    user_id: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
        .bind(group_id)
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn group_member_check(db: &Db, group_id: &str, user_id: &str) -> sqlx::Result<bool> {
    let r: Option<(String,)> =
        sqlx::query_as("SELECT user_id FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(r.is_some())
}

pub async fn groups_of_user(db: &Db, user_id: &str) -> sqlx::Result<Vec<GroupRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM groups g JOIN group_members m ON m.group_id = g.id \
         WHERE m.user_id = $1 ORDER BY g.name"
    ))
    .bind(user_id)
    .fetch_all(db.pool())
    .await
}

pub async fn group_member_ids(db: &Db, group_id: &str) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT user_id FROM group_members WHERE group_id = $1")
            .bind(group_id)
            .fetch_all(db.pool())
            .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}
