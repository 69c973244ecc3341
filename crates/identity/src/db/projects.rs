use std::collections::HashMap;

use super::{placeholders, Db, Tx};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    pub parent_id: Option<String>,
    pub description: String,
    pub enabled: i64,
    pub extra: String,
}

const COLS: &str = "id, name, domain_id, parent_id, description, enabled, extra";

pub async fn project_get(db: &Db, id: &str) -> sqlx::Result<Option<ProjectRow>> {
    sqlx::query_as(&format!("SELECT {COLS} FROM projects WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
}

pub async fn project_get_by_name(
    db: &Db,
    domain_id: &str,
    name: &str,
) -> sqlx::Result<Option<ProjectRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM projects WHERE domain_id = $1 AND name = $2"
    ))
    .bind(domain_id)
    .bind(name)
    .fetch_optional(db.pool())
    .await
}

/// Exact-match filters; `None` means "any".
#[derive(Default, Debug)]
pub struct ProjectFilter {
    pub name: Option<String>,
    pub domain_id: Option<String>,
    pub enabled: Option<bool>,
    /// `Some(None)` selects top-level projects of `domain_id`.
    pub parent_id: Option<Option<String>>,
    pub ids: Option<Vec<String>>,
}

pub async fn project_list(db: &Db, f: &ProjectFilter) -> sqlx::Result<Vec<ProjectRow>> {
    let mut sql = format!("SELECT {COLS} FROM projects WHERE 1 = 1");
    let mut args: Vec<String> = Vec::new();
    let mut push = |sql: &mut String, cond: &str, v: String| {
        args.push(v);
        sql.push_str(&cond.replace('?', &format!("${}", args.len())));
    };
    if let Some(n) = &f.name {
        push(&mut sql, " AND name = ?", n.clone());
    }
    if let Some(d) = &f.domain_id {
        push(&mut sql, " AND domain_id = ?", d.clone());
    }
    match &f.parent_id {
        Some(Some(p)) => push(&mut sql, " AND parent_id = ?", p.clone()),
        Some(None) => sql.push_str(" AND parent_id IS NULL"),
        None => {}
    }
    if let Some(e) = f.enabled {
        sql.push_str(if e {
            " AND enabled = 1"
        } else {
            " AND enabled = 0"
        });
    }
    if let Some(ids) = &f.ids {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let start = args.len() + 1;
        sql.push_str(&format!(" AND id IN ({})", placeholders(start, ids.len())));
        args.extend(ids.iter().cloned());
    }
    sql.push_str(" ORDER BY name, id");
    let mut q = sqlx::query_as(&sql);
    for a in &args {
        q = q.bind(a);
    }
    q.fetch_all(db.pool()).await
}

pub async fn project_create(tx: &mut Tx<'_>, p: &ProjectRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO projects (id, name, domain_id, parent_id, description, enabled, extra, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&p.id)
    .bind(&p.name)
    .bind(&p.domain_id)
    .bind(&p.parent_id)
    .bind(&p.description)
    .bind(p.enabled)
    .bind(&p.extra)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn project_update(tx: &mut Tx<'_>, p: &ProjectRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE projects SET name = $2, parent_id = $3, description = $4, enabled = $5, extra = $6 \
         WHERE id = $1",
    )
    .bind(&p.id)
    .bind(&p.name)
    .bind(&p.parent_id)
    .bind(&p.description)
    .bind(p.enabled)
    .bind(&p.extra)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn project_has_children(db: &Db, id: &str) -> sqlx::Result<bool> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT id FROM projects WHERE parent_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.is_some())
}

/// Deletes a project with its tags and the assignments and application
/// credentials that name it.
pub async fn project_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM assignments WHERE target_id = $1",
        "DELETE FROM application_credentials WHERE project_id = $1",
        "DELETE FROM project_tags WHERE project_id = $1",
        "DELETE FROM projects WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The project's ancestors, nearest first (the project itself excluded).
pub async fn project_ancestors(db: &Db, p: &ProjectRow) -> sqlx::Result<Vec<ProjectRow>> {
    let mut out = Vec::new();
    let mut next = p.parent_id.clone();
    while let Some(id) = next {
        if out.len() > 64 || out.iter().any(|a: &ProjectRow| a.id == id) {
            break;
        }
        match project_get(db, &id).await? {
            Some(parent) => {
                next = parent.parent_id.clone();
                out.push(parent);
            }
            None => break,
        }
    }
    Ok(out)
}

/// Every project below `id` (breadth first, `id` excluded).
pub async fn project_subtree(db: &Db, id: &str) -> sqlx::Result<Vec<ProjectRow>> {
    let mut out: Vec<ProjectRow> = Vec::new();
    let mut frontier = vec![id.to_string()];
    while !frontier.is_empty() && out.len() < 100_000 {
        let sql = format!(
            "SELECT {COLS} FROM projects WHERE parent_id IN ({}) ORDER BY name",
            placeholders(1, frontier.len())
        );
        let mut q = sqlx::query_as::<_, ProjectRow>(&sql);
        for f in &frontier {
            q = q.bind(f);
        }
        let children = q.fetch_all(db.pool()).await?;
        frontier = children.iter().map(|c| c.id.clone()).collect();
        out.extend(children);
    }
    Ok(out)
}

pub async fn project_tags(db: &Db, ids: &[String]) -> sqlx::Result<HashMap<String, Vec<String>>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT project_id, tag FROM project_tags WHERE project_id IN ({}) ORDER BY tag",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (String, String)>(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        for (p, t) in q.fetch_all(db.pool()).await? {
            out.entry(p).or_default().push(t);
        }
    }
    Ok(out)
}

pub async fn project_tags_set(tx: &mut Tx<'_>, id: &str, tags: &[String]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM project_tags WHERE project_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for t in tags {
        sqlx::query(
            "INSERT INTO project_tags (project_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(t)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
