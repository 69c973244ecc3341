use std::collections::BTreeMap;

use super::{Arg, Db, Tx};

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct ImageRow {
    pub id: String,
    pub name: Option<String>,
    pub status: String,
    pub visibility: String,
    pub protected: i64,
    pub os_hidden: i64,
    pub owner: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    pub location: Option<String>,
    pub store: Option<String>,
    pub staged_size: Option<i64>,
    pub writer: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
}

/// An image with its custom properties and tags.
#[derive(Clone, Debug, Default)]
pub struct Image {
    pub row: ImageRow,
    pub properties: BTreeMap<String, Option<String>>,
    pub tags: Vec<String>,
}

pub const COLS: &str = "id, name, status, visibility, protected, os_hidden, owner, disk_format, \
    container_format, size, virtual_size, checksum, os_hash_algo, os_hash_value, min_disk, min_ram, \
    location, store, staged_size, writer, created_at, updated_at, deleted_at";

/// An image that is not deleted.
pub async fn image_get(db: &Db, id: &str) -> sqlx::Result<Option<Image>> {
    let row: Option<ImageRow> = sqlx::query_as(&format!(
        "SELECT {COLS} FROM images WHERE id = $1 AND status <> 'deleted'"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut found = image_details(db, vec![row]).await?;
    Ok(found.pop())
}

/// True when an image (deleted or not) has this id: ids are never reused.
pub async fn image_id_taken(db: &Db, id: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query("SELECT 1 FROM images WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .is_some())
}

/// Loads properties and tags for `rows`, keeping their order.
pub async fn image_details(db: &Db, rows: Vec<ImageRow>) -> sqlx::Result<Vec<Image>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Arg> = rows.iter().map(|r| Arg::Text(r.id.clone())).collect();
    let ph = super::placeholders(1, ids.len());
    let props: Vec<(String, String, Option<String>)> = super::bind_all_as(
        sqlx::query_as(&format!(
            "SELECT image_id, name, value FROM image_properties WHERE image_id IN ({ph})"
        )),
        &ids,
    )
    .fetch_all(db.pool())
    .await?;
    let tags: Vec<(String, String)> = super::bind_all_as(
        sqlx::query_as(&format!(
            "SELECT image_id, tag FROM image_tags WHERE image_id IN ({ph}) ORDER BY created_at, tag"
        )),
        &ids,
    )
    .fetch_all(db.pool())
    .await?;
    let mut out: Vec<Image> = rows
        .into_iter()
        .map(|row| Image {
            row,
            ..Default::default()
        })
        .collect();
    let index: std::collections::HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, img)| (img.row.id.clone(), i))
        .collect();
    for (image_id, name, value) in props {
        if let Some(&i) = index.get(&image_id) {
            out[i].properties.insert(name, value);
        }
    }
    for (image_id, tag) in tags {
        if let Some(&i) = index.get(&image_id) {
            out[i].tags.push(tag);
        }
    }
    Ok(out)
}

pub async fn image_create(tx: &mut Tx<'_>, img: &Image) -> sqlx::Result<()> {
    let r = &img.row;
    sqlx::query(&format!(
        "INSERT INTO images ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
    ))
    .bind(&r.id)
    .bind(&r.name)
    .bind(&r.status)
    .bind(&r.visibility)
    .bind(r.protected)
    .bind(r.os_hidden)
    .bind(&r.owner)
    .bind(&r.disk_format)
    .bind(&r.container_format)
    .bind(r.size)
    .bind(r.virtual_size)
    .bind(&r.checksum)
    .bind(&r.os_hash_algo)
    .bind(&r.os_hash_value)
    .bind(r.min_disk)
    .bind(r.min_ram)
    .bind(&r.location)
    .bind(&r.store)
    .bind(r.staged_size)
    .bind(&r.writer)
    .bind(r.created_at)
    .bind(r.updated_at)
    .bind(r.deleted_at)
    .execute(&mut **tx)
    .await?;
    properties_replace(tx, &r.id, &img.properties).await?;
    tags_replace(tx, &r.id, &img.tags).await?;
    Ok(())
}

/// Writes the user-settable attributes of an image (metadata, not data or
/// status), its properties and tags. Returns false when the image changed
/// status meanwhile to one where `expect_status` no longer holds.
pub async fn image_update_meta(tx: &mut Tx<'_>, img: &Image) -> sqlx::Result<bool> {
    let r = &img.row;
    let res = sqlx::query(
        "UPDATE images SET name = $2, visibility = $3, protected = $4, os_hidden = $5, owner = $6, \
         disk_format = $7, container_format = $8, min_disk = $9, min_ram = $10, updated_at = $11 \
         WHERE id = $1 AND status <> 'deleted'",
    )
    .bind(&r.id)
    .bind(&r.name)
    .bind(&r.visibility)
    .bind(r.protected)
    .bind(r.os_hidden)
    .bind(&r.owner)
    .bind(&r.disk_format)
    .bind(&r.container_format)
    .bind(r.min_disk)
    .bind(r.min_ram)
    .bind(r.updated_at)
    .execute(&mut **tx)
    .await?;
    if res.rows_affected() == 0 {
        return Ok(false);
    }
    properties_replace(tx, &r.id, &img.properties).await?;
    tags_replace(tx, &r.id, &img.tags).await?;
    Ok(true)
}

async fn properties_replace(
    tx: &mut Tx<'_>,
    id: &str,
    props: &BTreeMap<String, Option<String>>,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM image_properties WHERE image_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for (k, v) in props {
        sqlx::query("INSERT INTO image_properties (image_id, name, value) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(k)
            .bind(v)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn tags_replace(tx: &mut Tx<'_>, id: &str, tags: &[String]) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM image_tags WHERE image_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let now = store::now_micros();
    for (i, t) in tags.iter().enumerate() {
        sqlx::query("INSERT INTO image_tags (image_id, tag, created_at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(t)
            .bind(now + i as i64)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Adds one tag (no-op when present).
pub async fn tag_add(tx: &mut Tx<'_>, id: &str, tag: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO image_tags (image_id, tag, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(tag)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    touch(tx, id).await
}

/// Removes one tag; false when it was not there.
pub async fn tag_remove(tx: &mut Tx<'_>, id: &str, tag: &str) -> sqlx::Result<bool> {
    let r = sqlx::query("DELETE FROM image_tags WHERE image_id = $1 AND tag = $2")
        .bind(id)
        .bind(tag)
        .execute(&mut **tx)
        .await?;
    touch(tx, id).await?;
    Ok(r.rows_affected() > 0)
}

async fn touch(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE images SET updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(store::now_micros())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Moves an image from `from` to `to` (nothing else changes); false when it
/// was not in `from`.
pub async fn status_move(db: &Db, id: &str, from: &[&str], to: &str) -> sqlx::Result<bool> {
    let mut args = vec![
        Arg::Text(id.to_string()),
        Arg::Text(to.to_string()),
        Arg::Int(store::now_micros()),
    ];
    let ph = super::placeholders(4, from.len());
    args.extend(from.iter().map(|s| Arg::Text(s.to_string())));
    let sql = format!(
        "UPDATE images SET status = $2, updated_at = $3 WHERE id = $1 AND status IN ({ph})"
    );
    let mut tx = db.write().await?;
    let r = super::bind_all(sqlx::query(&sql), &args)
        .execute(&mut **tx)
        .await?;
    tx.commit().await?;
    Ok(r.rows_affected() > 0)
}

/// Claims an image for writing data: `from` -> `to` with `writer` recorded.
/// False when the image was not in `from`.
pub async fn writer_claim(
    db: &Db,
    id: &str,
    from: &str,
    to: &str,
    writer: &str,
) -> sqlx::Result<bool> {
    let mut tx = db.write().await?;
    let r = sqlx::query(
        "UPDATE images SET status = $3, writer = $4, updated_at = $5 WHERE id = $1 AND status = $2",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(writer)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(r.rows_affected() > 0)
}

/// Records that a writer is still making progress.
pub async fn writer_heartbeat(db: &Db, id: &str, writer: &str) -> sqlx::Result<()> {
    let mut tx = db.write().await?;
    sqlx::query("UPDATE images SET updated_at = $3 WHERE id = $1 AND writer = $2")
        .bind(id)
        .bind(writer)
        .bind(store::now_micros())
        .execute(&mut **tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Gives an image back (to `to`, normally queued) when `writer` still holds
/// it; clears sizes and hashes as Glance does when an image returns to queued.
pub async fn writer_release(db: &Db, id: &str, writer: &str, to: &str) -> sqlx::Result<bool> {
    let mut tx = db.write().await?;
    let r = sqlx::query(
        "UPDATE images SET status = $3, writer = NULL, size = NULL, virtual_size = NULL, \
         staged_size = NULL, updated_at = $4 WHERE id = $1 AND writer = $2 \
         AND status IN ('saving', 'uploading', 'importing')",
    )
    .bind(id)
    .bind(writer)
    .bind(to)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(r.rows_affected() > 0)
}

/// What a finished upload records.
#[derive(Clone, Debug)]
pub struct DataDone {
    pub size: i64,
    pub virtual_size: Option<i64>,
    pub checksum: String,
    pub os_hash_algo: String,
    pub os_hash_value: String,
    pub location: String,
    pub store: String,
}

/// Marks the data of an image stored: `writer` must still hold it.
pub async fn writer_finish(
    tx: &mut Tx<'_>,
    id: &str,
    writer: &str,
    d: &DataDone,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE images SET status = 'active', writer = NULL, size = $3, virtual_size = $4, \
         checksum = $5, os_hash_algo = $6, os_hash_value = $7, location = $8, store = $9, \
         staged_size = NULL, updated_at = $10 \
         WHERE id = $1 AND writer = $2 AND status IN ('saving', 'importing')",
    )
    .bind(id)
    .bind(writer)
    .bind(d.size)
    .bind(d.virtual_size)
    .bind(&d.checksum)
    .bind(&d.os_hash_algo)
    .bind(&d.os_hash_value)
    .bind(&d.location)
    .bind(&d.store)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Marks staged data complete: `uploading` keeps, `writer` released.
pub async fn writer_staged(db: &Db, id: &str, writer: &str, size: i64) -> sqlx::Result<bool> {
    let mut tx = db.write().await?;
    let r = sqlx::query(
        "UPDATE images SET writer = NULL, staged_size = $3, size = $3, updated_at = $4 \
         WHERE id = $1 AND writer = $2 AND status = 'uploading'",
    )
    .bind(id)
    .bind(writer)
    .bind(size)
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    tx.commit().await?;
    Ok(r.rows_affected() > 0)
}

/// Soft-deletes an image (its id is never reused); returns the row as it was.
pub async fn image_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<Option<ImageRow>> {
    let row: Option<ImageRow> = sqlx::query_as(&format!(
        "SELECT {COLS} FROM images WHERE id = $1 AND status <> 'deleted'"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    if row.is_none() {
        return Ok(None);
    }
    let now = store::now_micros();
    sqlx::query(
        "UPDATE images SET status = 'deleted', deleted_at = $2, updated_at = $2, writer = NULL, \
         location = NULL, staged_size = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    for sql in [
        "DELETE FROM image_members WHERE image_id = $1",
        "DELETE FROM image_tags WHERE image_id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(row)
}

/// Sets deactivated/active; false when the image was not in `from`.
pub async fn status_set(tx: &mut Tx<'_>, id: &str, from: &str, to: &str) -> sqlx::Result<bool> {
    let r =
        sqlx::query("UPDATE images SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2")
            .bind(id)
            .bind(from)
            .bind(to)
            .bind(store::now_micros())
            .execute(&mut **tx)
            .await?;
    Ok(r.rows_affected() > 0)
}

/// Sets or removes one property (used by import bookkeeping).
pub async fn property_set(
    tx: &mut Tx<'_>,
    id: &str,
    name: &str,
    value: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM image_properties WHERE image_id = $1 AND name = $2")
        .bind(id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    if let Some(v) = value {
        sqlx::query("INSERT INTO image_properties (image_id, name, value) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(name)
            .bind(v)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Writers that stopped making progress before `before` (their process
/// died): (id, writer, status).
pub async fn stale_writers(db: &Db, before: i64) -> sqlx::Result<Vec<(String, String, String)>> {
    sqlx::query_as(
        "SELECT id, writer, status FROM images WHERE writer IS NOT NULL \
         AND status IN ('saving', 'uploading', 'importing') AND updated_at < $1",
    )
    .bind(before)
    .fetch_all(db.pool())
    .await
}

/// Images of `owner` named `name`, oldest first.
pub async fn image_by_name_owner(db: &Db, name: &str, owner: &str) -> sqlx::Result<Vec<ImageRow>> {
    sqlx::query_as(&format!(
        "SELECT {COLS} FROM images WHERE name = $1 AND owner = $2 AND status <> 'deleted' \
         ORDER BY created_at"
    ))
    .bind(name)
    .bind(owner)
    .fetch_all(db.pool())
    .await
}
