//! Metadata definitions: namespaces and their objects, properties, tags and
//! resource type associations. Object and property definitions are JSON
//! documents kept as text.

use super::{Db, Tx};

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct NamespaceRow {
    pub id: String,
    pub namespace: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: String,
    pub protected: i64,
    pub owner: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const NS: &str =
    "id, namespace, display_name, description, visibility, protected, owner, created_at, updated_at";

pub async fn namespace_get(db: &Db, name: &str) -> sqlx::Result<Option<NamespaceRow>> {
    sqlx::query_as(&format!(
        "SELECT {NS} FROM metadef_namespaces WHERE namespace = $1"
    ))
    .bind(name)
    .fetch_optional(db.pool())
    .await
}

pub async fn namespace_list(db: &Db) -> sqlx::Result<Vec<NamespaceRow>> {
    sqlx::query_as(&format!(
        "SELECT {NS} FROM metadef_namespaces ORDER BY created_at, namespace"
    ))
    .fetch_all(db.pool())
    .await
}

pub async fn namespace_create(tx: &mut Tx<'_>, n: &NamespaceRow) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO metadef_namespaces ({NS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&n.id)
    .bind(&n.namespace)
    .bind(&n.display_name)
    .bind(&n.description)
    .bind(&n.visibility)
    .bind(n.protected)
    .bind(&n.owner)
    .bind(n.created_at)
    .bind(n.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn namespace_update(tx: &mut Tx<'_>, n: &NamespaceRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE metadef_namespaces SET namespace = $2, display_name = $3, description = $4, \
         visibility = $5, protected = $6, owner = $7, updated_at = $8 WHERE id = $1",
    )
    .bind(&n.id)
    .bind(&n.namespace)
    .bind(&n.display_name)
    .bind(&n.description)
    .bind(&n.visibility)
    .bind(n.protected)
    .bind(&n.owner)
    .bind(n.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn namespace_delete(tx: &mut Tx<'_>, id: &str) -> sqlx::Result<()> {
    for sql in [
        "DELETE FROM metadef_objects WHERE namespace_id = $1",
        "DELETE FROM metadef_properties WHERE namespace_id = $1",
        "DELETE FROM metadef_tags WHERE namespace_id = $1",
        "DELETE FROM metadef_resource_type_associations WHERE namespace_id = $1",
        "DELETE FROM metadef_namespaces WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// An object or a property: a named JSON document in a namespace.
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct ObjectRow {
    pub id: String,
    pub namespace_id: String,
    pub name: String,
    pub description: Option<String>,
    pub required: String,
    pub properties: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const OBJ: &str =
    "id, namespace_id, name, description, required, properties, created_at, updated_at";

pub async fn object_list(db: &Db, ns: &str) -> sqlx::Result<Vec<ObjectRow>> {
    sqlx::query_as(&format!(
        "SELECT {OBJ} FROM metadef_objects WHERE namespace_id = $1 ORDER BY created_at, name"
    ))
    .bind(ns)
    .fetch_all(db.pool())
    .await
}

pub async fn object_get(db: &Db, ns: &str, name: &str) -> sqlx::Result<Option<ObjectRow>> {
    sqlx::query_as(&format!(
        "SELECT {OBJ} FROM metadef_objects WHERE namespace_id = $1 AND name = $2"
    ))
    .bind(ns)
    .bind(name)
    .fetch_optional(db.pool())
    .await
}

pub async fn object_create(tx: &mut Tx<'_>, o: &ObjectRow) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO metadef_objects ({OBJ}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(&o.id)
    .bind(&o.namespace_id)
    .bind(&o.name)
    .bind(&o.description)
    .bind(&o.required)
    .bind(&o.properties)
    .bind(o.created_at)
    .bind(o.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn object_update(tx: &mut Tx<'_>, o: &ObjectRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE metadef_objects SET name = $2, description = $3, required = $4, properties = $5, \
         updated_at = $6 WHERE id = $1",
    )
    .bind(&o.id)
    .bind(&o.name)
    .bind(&o.description)
    .bind(&o.required)
    .bind(&o.properties)
    .bind(o.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes one object (`name`) or every object of the namespace.
pub async fn object_delete(tx: &mut Tx<'_>, ns: &str, name: Option<&str>) -> sqlx::Result<u64> {
    let r = match name {
        Some(n) => {
            sqlx::query("DELETE FROM metadef_objects WHERE namespace_id = $1 AND name = $2")
                .bind(ns)
                .bind(n)
                .execute(&mut **tx)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM metadef_objects WHERE namespace_id = $1")
                .bind(ns)
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(r.rows_affected())
}

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct PropertyRow {
    pub id: String,
    pub namespace_id: String,
    pub name: String,
    pub json_schema: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const PROP: &str = "id, namespace_id, name, json_schema, created_at, updated_at";

pub async fn property_list(db: &Db, ns: &str) -> sqlx::Result<Vec<PropertyRow>> {
    sqlx::query_as(&format!(
        "SELECT {PROP} FROM metadef_properties WHERE namespace_id = $1 ORDER BY name"
    ))
    .bind(ns)
    .fetch_all(db.pool())
    .await
}

pub async fn property_get(db: &Db, ns: &str, name: &str) -> sqlx::Result<Option<PropertyRow>> {
    sqlx::query_as(&format!(
        "SELECT {PROP} FROM metadef_properties WHERE namespace_id = $1 AND name = $2"
    ))
    .bind(ns)
    .bind(name)
    .fetch_optional(db.pool())
    .await
}

pub async fn property_create(tx: &mut Tx<'_>, p: &PropertyRow) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO metadef_properties ({PROP}) VALUES ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(&p.id)
    .bind(&p.namespace_id)
    .bind(&p.name)
    .bind(&p.json_schema)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn property_update(tx: &mut Tx<'_>, p: &PropertyRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE metadef_properties SET name = $2, json_schema = $3, updated_at = $4 WHERE id = $1",
    )
    .bind(&p.id)
    .bind(&p.name)
    .bind(&p.json_schema)
    .bind(p.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn property_delete(tx: &mut Tx<'_>, ns: &str, name: Option<&str>) -> sqlx::Result<u64> {
    let r = match name {
        Some(n) => {
            sqlx::query("DELETE FROM metadef_properties WHERE namespace_id = $1 AND name = $2")
                .bind(ns)
                .bind(n)
                .execute(&mut **tx)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM metadef_properties WHERE namespace_id = $1")
                .bind(ns)
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(r.rows_affected())
}

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct TagRow {
    pub id: String,
    pub namespace_id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const TAG: &str = "id, namespace_id, name, created_at, updated_at";

pub async fn tag_list(db: &Db, ns: &str) -> sqlx::Result<Vec<TagRow>> {
    sqlx::query_as(&format!(
        "SELECT {TAG} FROM metadef_tags WHERE namespace_id = $1 ORDER BY created_at, name"
    ))
    .bind(ns)
    .fetch_all(db.pool())
    .await
}

pub async fn tag_get(db: &Db, ns: &str, name: &str) -> sqlx::Result<Option<TagRow>> {
    sqlx::query_as(&format!(
        "SELECT {TAG} FROM metadef_tags WHERE namespace_id = $1 AND name = $2"
    ))
    .bind(ns)
    .bind(name)
    .fetch_optional(db.pool())
    .await
}

pub async fn tag_create(tx: &mut Tx<'_>, t: &TagRow) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO metadef_tags ({TAG}) VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(&t.id)
    .bind(&t.namespace_id)
    .bind(&t.name)
    .bind(t.created_at)
    .bind(t.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn tag_rename(tx: &mut Tx<'_>, id: &str, name: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE metadef_tags SET name = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(name)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn tag_delete(tx: &mut Tx<'_>, ns: &str, name: Option<&str>) -> sqlx::Result<u64> {
    let r = match name {
        Some(n) => {
            sqlx::query("DELETE FROM metadef_tags WHERE namespace_id = $1 AND name = $2")
                .bind(ns)
                .bind(n)
                .execute(&mut **tx)
                .await?
        }
        None => {
            sqlx::query("DELETE FROM metadef_tags WHERE namespace_id = $1")
                .bind(ns)
                .execute(&mut **tx)
                .await?
        }
    };
    Ok(r.rows_affected())
}

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct ResourceTypeRow {
    pub id: String,
    pub name: String,
    pub protected: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

pub async fn resource_type_list(db: &Db) -> sqlx::Result<Vec<ResourceTypeRow>> {
    sqlx::query_as(
        "SELECT id, name, protected, created_at, updated_at FROM metadef_resource_types ORDER BY name",
    )
    .fetch_all(db.pool())
    .await
}

/// The resource type called `name`, created when missing.
pub async fn resource_type_ensure(tx: &mut Tx<'_>, name: &str, now: i64) -> sqlx::Result<String> {
    let found: Option<(String,)> =
        sqlx::query_as("SELECT id FROM metadef_resource_types WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    if let Some((id,)) = found {
        return Ok(id);
    }
    let id = uuid::Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO metadef_resource_types (id, name, protected, created_at, updated_at) \
         VALUES ($1, $2, 0, $3, $3)",
    )
    .bind(&id)
    .bind(name)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct AssociationRow {
    pub name: String,
    pub prefix: Option<String>,
    pub properties_target: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub async fn association_list(db: &Db, ns: &str) -> sqlx::Result<Vec<AssociationRow>> {
    sqlx::query_as(
        "SELECT r.name, a.prefix, a.properties_target, a.created_at, a.updated_at \
         FROM metadef_resource_type_associations a \
         JOIN metadef_resource_types r ON r.id = a.resource_type_id \
         WHERE a.namespace_id = $1 ORDER BY a.created_at, r.name",
    )
    .bind(ns)
    .fetch_all(db.pool())
    .await
}

pub async fn association_create(
    tx: &mut Tx<'_>,
    ns: &str,
    resource_type_id: &str,
    a: &AssociationRow,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO metadef_resource_type_associations \
         (namespace_id, resource_type_id, prefix, properties_target, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(ns)
    .bind(resource_type_id)
    .bind(&a.prefix)
    .bind(&a.properties_target)
    .bind(a.created_at)
    .bind(a.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn association_delete(tx: &mut Tx<'_>, ns: &str, name: &str) -> sqlx::Result<u64> {
    let r = sqlx::query(
        "DELETE FROM metadef_resource_type_associations WHERE namespace_id = $1 \
         AND resource_type_id IN (SELECT id FROM metadef_resource_types WHERE name = $2)",
    )
    .bind(ns)
    .bind(name)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected())
}

/// Namespaces associated with any of `types`.
pub async fn namespaces_with_types(db: &Db, types: &[String]) -> sqlx::Result<Vec<String>> {
    if types.is_empty() {
        return Ok(Vec::new());
    }
    let ph = super::placeholders(1, types.len());
    let args: Vec<super::Arg> = types.iter().map(|t| super::Arg::Text(t.clone())).collect();
    let rows: Vec<(String,)> = super::bind_all_as(
        sqlx::query_as(&format!(
            "SELECT DISTINCT a.namespace_id FROM metadef_resource_type_associations a \
             JOIN metadef_resource_types r ON r.id = a.resource_type_id WHERE r.name IN ({ph})"
        )),
        &args,
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(|(n,)| n).collect())
}
