//! Per-project usage, and the Keystone unified limits that bound it.

use super::Db;

/// Images of `owner` that are not deleted.
pub async fn image_count(db: &Db, owner: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM images WHERE owner = $1 AND status <> 'deleted'")
            .bind(owner)
            .fetch_one(db.pool())
            .await?;
    Ok(n)
}

/// Bytes of stored image data of `owner`, excluding `except` (the image being
/// written, whose old size does not count).
pub async fn storage_bytes(db: &Db, owner: &str, except: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM images WHERE owner = $1 AND id <> $2 AND location IS NOT NULL \
         AND status <> 'deleted'",
    )
    .bind(owner)
    .bind(except)
    .fetch_one(db.pool())
    .await?;
    Ok(n)
}

/// Bytes in the staging area for `owner`, excluding `except`.
pub async fn staging_bytes(db: &Db, owner: &str, except: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(staged_size), 0) AS BIGINT) FROM images WHERE owner = $1 AND id <> $2 \
         AND status IN ('uploading', 'importing')",
    )
    .bind(owner)
    .bind(except)
    .fetch_one(db.pool())
    .await?;
    Ok(n)
}

/// Images of `owner` being uploaded, staged or imported.
pub async fn uploading_count(db: &Db, owner: &str) -> sqlx::Result<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM images WHERE owner = $1 \
         AND status IN ('saving', 'uploading', 'importing')",
    )
    .bind(owner)
    .fetch_one(db.pool())
    .await?;
    Ok(n)
}

/// The Keystone unified limit of `resource` for `project` on the image
/// service: the project limit, else the registered (default) limit, else
/// None. A region-specific limit for `region` wins over a region-less one.
pub async fn keystone_limit(
    db: &Db,
    project: &str,
    resource: &str,
    region: Option<&str>,
) -> sqlx::Result<Option<i64>> {
    let region = region.unwrap_or("");
    let project_limit: Option<(i64,)> = sqlx::query_as(
        "SELECT l.resource_limit FROM limits l JOIN services s ON s.id = l.service_id \
         WHERE s.type = 'image' AND l.project_id = $1 AND l.resource_name = $2 \
         AND (l.region_id = $3 OR l.region_id = '') \
         ORDER BY CASE WHEN l.region_id = '' THEN 1 ELSE 0 END LIMIT 1",
    )
    .bind(project)
    .bind(resource)
    .bind(region)
    .fetch_optional(db.pool())
    .await?;
    if let Some((n,)) = project_limit {
        return Ok(Some(n));
    }
    let registered: Option<(i64,)> = sqlx::query_as(
        "SELECT r.default_limit FROM registered_limits r JOIN services s ON s.id = r.service_id \
         WHERE s.type = 'image' AND r.resource_name = $1 \
         AND (r.region_id = $2 OR r.region_id = '') \
         ORDER BY CASE WHEN r.region_id = '' THEN 1 ELSE 0 END LIMIT 1",
    )
    .bind(resource)
    .bind(region)
    .fetch_optional(db.pool())
    .await?;
    Ok(registered.map(|(n,)| n))
}
