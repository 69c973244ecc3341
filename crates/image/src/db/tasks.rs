use super::{Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct TaskRow {
    pub id: String,
    pub image_id: Option<String>,
    pub kind: String,
    pub status: String,
    pub owner: Option<String>,
    pub user_id: Option<String>,
    pub request_id: Option<String>,
    pub input: String,
    pub result: Option<String>,
    pub message: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
}

const COLS: &str = "id, image_id, kind, status, owner, user_id, request_id, input, result, \
    message, created_at, updated_at, expires_at";

pub async fn task_create(tx: &mut Tx<'_>, t: &TaskRow) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO image_tasks ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&t.id)
    .bind(&t.image_id)
    .bind(&t.kind)
    .bind(&t.status)
    .bind(&t.owner)
    .bind(&t.user_id)
    .bind(&t.request_id)
    .bind(&t.input)
    .bind(&t.result)
    .bind(&t.message)
    .bind(t.created_at)
    .bind(t.updated_at)
    .bind(t.expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn task_get(db: &Db, id: &str) -> sqlx::Result<Option<TaskRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM image_tasks WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn task_list(db: &Db, image_id: Option<&str>) -> sqlx::Result<Vec<TaskRow>> {
    match image_id {
        Some(i) => {
            sqlx::query_as(&format!(
                "SELECT {COLS} FROM image_tasks WHERE image_id = $1 ORDER BY created_at DESC, id"
            ))
            .bind(i)
            .fetch_all(db.pool())
            .await
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLS} FROM image_tasks ORDER BY created_at DESC, id"
            ))
            .fetch_all(db.pool())
            .await
        }
    }
}

/// Records a task's progress or outcome.
pub async fn task_finish(
    db: &Db,
    id: &str,
    status: &str,
    message: &str,
    result: Option<&str>,
    expires_at: Option<i64>,
) -> sqlx::Result<()> {
    let mut tx = db.write().await?;
    sqlx::query(
        "UPDATE image_tasks SET status = $2, message = $3, result = $4, expires_at = $5, \
         updated_at = $6 WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(message)
    .bind(result)
    .bind(expires_at)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
