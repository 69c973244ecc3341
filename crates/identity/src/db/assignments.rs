use super::{placeholders, Db, Tx};

pub const SYSTEM: &str = "system";

/// What an assignment joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    UserProject,
    GroupProject,
    UserDomain,
    GroupDomain,
    UserSystem,
    GroupSystem,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::UserProject => "UserProject",
            Kind::GroupProject => "GroupProject",
            Kind::UserDomain => "UserDomain",
            Kind::GroupDomain => "GroupDomain",
            Kind::UserSystem => "UserSystem",
            Kind::GroupSystem => "GroupSystem",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "UserProject" => Kind::UserProject,
            "GroupProject" => Kind::GroupProject,
            "UserDomain" => Kind::UserDomain,
            "GroupDomain" => Kind::GroupDomain,
            "UserSystem" => Kind::UserSystem,
            "GroupSystem" => Kind::GroupSystem,
            _ => return None,
        })
    }

    pub fn is_group(self) -> bool {
        matches!(
            self,
            Kind::GroupProject | Kind::GroupDomain | Kind::GroupSystem
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AssignmentRow {
    pub kind: String,
    pub actor_id: String,
    pub target_id: String,
    pub role_id: String,
    pub inherited: i64,
}

pub async fn grant_add(
    tx: &mut Tx<'_>,
    kind: Kind,
    actor: &str,
    target: &str,
    role: &str,
    inherited: bool,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO assignments (kind, actor_id, target_id, role_id, inherited) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(kind.as_str())
    .bind(actor)
    .bind(target)
    .bind(role)
    .bind(i64::from(inherited))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn grant_remove(
    tx: &mut Tx<'_>,
    kind: Kind,
    actor: &str,
    target: &str,
    role: &str,
    inherited: bool,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "DELETE FROM assignments WHERE kind = $1 AND actor_id = $2 AND target_id = $3 \
         AND role_id = $4 AND inherited = $5",
    )
    .bind(kind.as_str())
    .bind(actor)
    .bind(target)
    .bind(role)
    .bind(i64::from(inherited))
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Role ids granted directly to `actor` on `target`.
pub async fn grant_list(
    db: &Db,
    kind: Kind,
    actor: &str,
    target: &str,
    inherited: bool,
) -> sqlx::Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT role_id FROM assignments WHERE kind = $1 AND actor_id = $2 AND target_id = $3 \
         AND inherited = $4 ORDER BY role_id",
    )
    .bind(kind.as_str())
    .bind(actor)
    .bind(target)
    .bind(i64::from(inherited))
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// Assignments whose actor is one of `actors` and whose target is one of `targets`.
pub async fn assignments_for(
    db: &Db,
    actors: &[String],
    targets: &[String],
) -> sqlx::Result<Vec<AssignmentRow>> {
    if actors.is_empty() || targets.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT kind, actor_id, target_id, role_id, inherited FROM assignments \
         WHERE actor_id IN ({}) AND target_id IN ({})",
        placeholders(1, actors.len()),
        placeholders(actors.len() + 1, targets.len())
    );
    let mut q = sqlx::query_as(&sql);
    for a in actors.iter().chain(targets) {
        q = q.bind(a);
    }
    q.fetch_all(db.pool()).await
}

/// Every assignment of any of `actors` (all targets).
pub async fn assignments_of_actors(db: &Db, actors: &[String]) -> sqlx::Result<Vec<AssignmentRow>> {
    if actors.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT kind, actor_id, target_id, role_id, inherited FROM assignments WHERE actor_id IN ({})",
        placeholders(1, actors.len())
    );
    let mut q = sqlx::query_as(&sql);
    for a in actors {
        q = q.bind(a);
    }
    q.fetch_all(db.pool()).await
}

pub async fn assignments_all(db: &Db) -> sqlx::Result<Vec<AssignmentRow>> {
    sqlx::query_as(
        "SELECT kind, actor_id, target_id, role_id, inherited FROM assignments \
         ORDER BY kind, actor_id, target_id, role_id",
    )
    .fetch_all(db.pool())
    .await
}
