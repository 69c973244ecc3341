//! The in-memory provider model and how every process keeps it current.
//!
//! Each write transaction bumps the `placement` revision and records what it
//! changed in `placement_changes` ([`commit`]). Before a read that uses the
//! model, [`Cache::refresh`] compares the stored revision with the one the
//! model reflects and reloads just the changed providers (or everything,
//! when the change log no longer reaches back far enough).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use placement_engine::{Inventory, Model, ProviderRecord};
use store::sqlx::{self, Row};
use store::{Db, WriteTx};

use crate::db::{placeholders, Conn};

type Q<T> = std::result::Result<T, sqlx::Error>;

/// How many revisions of change log are kept.
const KEEP_REVISIONS: i64 = 20_000;

/// What one write changed.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub providers: BTreeSet<String>,
    pub classes: bool,
    pub traits: bool,
}

impl Changes {
    pub fn provider(uuid: &str) -> Changes {
        let mut c = Changes::default();
        c.providers.insert(uuid.to_string());
        c
    }
    pub fn classes() -> Changes {
        Changes {
            classes: true,
            ..Default::default()
        }
    }
    pub fn traits() -> Changes {
        Changes {
            traits: true,
            ..Default::default()
        }
    }
    pub fn add(&mut self, uuid: &str) {
        self.providers.insert(uuid.to_string());
    }
}

pub struct Cache {
    model: RwLock<Model>,
    seen: AtomicI64,
    sync: tokio::sync::Mutex<()>,
    rendered: std::sync::Mutex<Rendered>,
}

/// Rendered candidate bodies of the current revision, keyed by the request
/// (microversion and query string). Schedulers repeat identical queries
/// between claims; every write moves the revision and empties this.
#[derive(Default)]
struct Rendered {
    revision: i64,
    entries: Vec<(String, std::sync::Arc<String>)>,
    bytes: usize,
}

/// At most this many bytes of rendered bodies are kept.
const RENDERED_MAX_BYTES: usize = 128 << 20;

impl Cache {
    /// Loads every provider.
    pub async fn load(db: &Db) -> Q<Cache> {
        let cache = Cache {
            model: RwLock::new(Model::new()),
            seen: AtomicI64::new(-1),
            sync: tokio::sync::Mutex::new(()),
            rendered: std::sync::Mutex::new(Rendered::default()),
        };
        cache.full_reload(db).await?;
        Ok(cache)
    }

    /// The model as of the last refresh.
    pub fn read(&self) -> RwLockReadGuard<'_, Model> {
        self.model.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The revision the model reflects.
    pub fn revision(&self) -> i64 {
        self.seen.load(Ordering::Acquire)
    }

    /// A body rendered earlier at `revision` for `key`.
    pub fn rendered(&self, revision: i64, key: &str) -> Option<std::sync::Arc<String>> {
        let r = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if r.revision != revision {
            return None;
        }
        r.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    /// Keeps a rendered body for later identical requests at `revision`.
    pub fn keep_rendered(&self, revision: i64, key: String, body: std::sync::Arc<String>) {
        let mut r = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if r.revision != revision {
            if revision < r.revision {
                return;
            }
            *r = Rendered {
                revision,
                ..Default::default()
            };
        }
        while !r.entries.is_empty() && r.bytes + body.len() > RENDERED_MAX_BYTES {
            let (_, old) = r.entries.remove(0);
            r.bytes -= old.len();
        }
        if body.len() <= RENDERED_MAX_BYTES {
            r.bytes += body.len();
            r.entries.push((key, body));
        }
    }

    /// Brings the model up to the database's current revision.
    pub async fn refresh(&self, db: &Db) -> Q<()> {
        let current = db.revision("placement").await?;
        if current <= self.seen.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.sync.lock().await;
        let seen = self.seen.load(Ordering::Acquire);
        if current <= seen {
            return Ok(());
        }
        let mut conn = db.pool().acquire().await?;
        let rows = sqlx::query(
            "SELECT revision, kind, uuid FROM placement_changes WHERE revision > $1 \
             ORDER BY revision",
        )
        .bind(seen)
        .fetch_all(&mut *conn)
        .await?;
        let first = match rows.first() {
            Some(r) => r.try_get::<i64, _>(0)?,
            None => current,
        };
        if first != seen + 1 {
            drop(conn);
            return self.full_reload(db).await;
        }
        let mut changes = Changes::default();
        let mut upto = seen;
        for r in &rows {
            upto = upto.max(r.try_get::<i64, _>(0)?);
            let kind: String = r.try_get(1)?;
            match kind.as_str() {
                "provider" => changes.add(&r.try_get::<String, _>(2)?),
                "classes" => changes.classes = true,
                "traits" => changes.traits = true,
                _ => {}
            }
        }
        let uuids: Vec<String> = changes.providers.iter().cloned().collect();
        let records = load_records(&mut conn, Some(&uuids)).await?;
        let classes = if changes.classes {
            Some(crate::db::class_names(&mut conn).await?)
        } else {
            None
        };
        let traits = if changes.traits {
            Some(crate::db::trait_names(&mut conn).await?)
        } else {
            None
        };
        {
            let mut model = self.model.write().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = classes {
                model.set_resource_classes(c.into_iter().map(|(n, _, _)| n));
            }
            if let Some(t) = traits {
                model.set_traits(t);
            }
            let found: BTreeSet<String> = records.iter().map(|r| r.uuid.clone()).collect();
            for gone in uuids.iter().filter(|u| !found.contains(*u)) {
                model.remove_provider(gone);
            }
            model.upsert_providers(records);
        }
        self.seen.store(upto, Ordering::Release);
        Ok(())
    }

    async fn full_reload(&self, db: &Db) -> Q<()> {
        let mut conn = db.pool().acquire().await?;
        let rev = db.revision("placement").await?;
        let classes = crate::db::class_names(&mut conn).await?;
        let traits = crate::db::trait_names(&mut conn).await?;
        let records = load_records(&mut conn, None).await?;
        {
            let mut model = self.model.write().unwrap_or_else(|e| e.into_inner());
            model.set_resource_classes(classes.into_iter().map(|(n, _, _)| n));
            model.set_traits(traits);
            model.replace_all(records);
        }
        self.seen.store(rev, Ordering::Release);
        Ok(())
    }
}

/// Records `changes` under a new revision, commits, and refreshes this
/// process's model.
pub async fn commit(db: &Db, cache: &Cache, mut tx: WriteTx<'_>, changes: Changes) -> Q<()> {
    sqlx::query("UPDATE revisions SET value = value + 1 WHERE name = 'placement'")
        .execute(&mut *tx.tx)
        .await?;
    let rev: i64 = sqlx::query("SELECT value FROM revisions WHERE name = 'placement'")
        .fetch_one(&mut *tx.tx)
        .await?
        .try_get(0)?;
    let mut rows: Vec<(&str, &str)> = changes
        .providers
        .iter()
        .map(|u| ("provider", u.as_str()))
        .collect();
    if changes.classes {
        rows.push(("classes", ""));
    }
    if changes.traits {
        rows.push(("traits", ""));
    }
    if rows.is_empty() {
        rows.push(("none", ""));
    }
    for (kind, uuid) in rows {
        sqlx::query("INSERT INTO placement_changes (revision, kind, uuid) VALUES ($1, $2, $3)")
            .bind(rev)
            .bind(kind)
            .bind(uuid)
            .execute(&mut *tx.tx)
            .await?;
    }
    if rev % 1000 == 0 {
        sqlx::query("DELETE FROM placement_changes WHERE revision < $1")
            .bind(rev - KEEP_REVISIONS)
            .execute(&mut *tx.tx)
            .await?;
    }
    tx.commit().await?;
    cache.refresh(db).await
}

/// Rows of `select` (a `SELECT ... FROM t`), all of them or those whose
/// `col` is in `chunk`, followed by `tail` (GROUP BY / ORDER BY).
async fn rows_for(
    conn: &mut Conn,
    select: &str,
    col: &str,
    tail: &str,
    chunk: Option<&[String]>,
) -> Q<Vec<sqlx::any::AnyRow>> {
    let sql = match chunk {
        None => format!("{select}{tail}"),
        Some(c) => format!(
            "{select} WHERE {col} IN ({}){tail}",
            placeholders(1, c.len())
        ),
    };
    let mut q = sqlx::query(&sql);
    for u in chunk.unwrap_or_default() {
        q = q.bind(u);
    }
    q.fetch_all(&mut *conn).await
}

/// Loads the engine's view of the given providers (all when `None`).
pub async fn load_records(conn: &mut Conn, uuids: Option<&[String]>) -> Q<Vec<ProviderRecord>> {
    let mut by_uuid: HashMap<String, ProviderRecord> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let chunks: Vec<Option<&[String]>> = match uuids {
        None => vec![None],
        Some([]) => return Ok(Vec::new()),
        Some(list) => list.chunks(400).map(Some).collect(),
    };
    for chunk in chunks {
        let providers = rows_for(
            conn,
            "SELECT uuid, name, generation, parent_uuid, root_uuid FROM placement_providers",
            "uuid",
            " ORDER BY created_at, uuid",
            chunk,
        )
        .await?;
        for r in providers {
            let uuid: String = r.try_get(0)?;
            order.push(uuid.clone());
            by_uuid.insert(
                uuid.clone(),
                ProviderRecord {
                    uuid,
                    name: r.try_get(1)?,
                    generation: r.try_get(2)?,
                    parent_uuid: r.try_get(3)?,
                    root_uuid: r.try_get(4)?,
                    ..Default::default()
                },
            );
        }
        let inventories = rows_for(
            conn,
            "SELECT provider_uuid, resource_class, total, reserved, min_unit, max_unit, \
             step_size, allocation_ratio FROM placement_inventories",
            "provider_uuid",
            "",
            chunk,
        )
        .await?;
        for r in inventories {
            if let Some(rec) = by_uuid.get_mut(&r.try_get::<String, _>(0)?) {
                rec.inventories.insert(
                    r.try_get(1)?,
                    Inventory {
                        total: r.try_get(2)?,
                        reserved: r.try_get(3)?,
                        min_unit: r.try_get(4)?,
                        max_unit: r.try_get(5)?,
                        step_size: r.try_get(6)?,
                        allocation_ratio: r.try_get(7)?,
                    },
                );
            }
        }
        let usages = rows_for(
            conn,
            "SELECT provider_uuid, resource_class, CAST(SUM(used) AS BIGINT) \
             FROM placement_allocations",
            "provider_uuid",
            " GROUP BY provider_uuid, resource_class",
            chunk,
        )
        .await?;
        for r in usages {
            if let Some(rec) = by_uuid.get_mut(&r.try_get::<String, _>(0)?) {
                rec.usages.insert(r.try_get(1)?, r.try_get(2)?);
            }
        }
        let traits = rows_for(
            conn,
            "SELECT provider_uuid, trait FROM placement_provider_traits",
            "provider_uuid",
            "",
            chunk,
        )
        .await?;
        for r in traits {
            if let Some(rec) = by_uuid.get_mut(&r.try_get::<String, _>(0)?) {
                rec.traits.insert(r.try_get(1)?);
            }
        }
        let aggregates = rows_for(
            conn,
            "SELECT provider_uuid, aggregate_uuid FROM placement_provider_aggregates",
            "provider_uuid",
            "",
            chunk,
        )
        .await?;
        for r in aggregates {
            if let Some(rec) = by_uuid.get_mut(&r.try_get::<String, _>(0)?) {
                rec.aggregates.insert(r.try_get(1)?);
            }
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|u| by_uuid.remove(&u))
        .collect())
}
