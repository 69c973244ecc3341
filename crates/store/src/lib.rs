//! Database access shared by every oxistack service.
//!
//! One [`Db`] wraps an `sqlx` pool on either SQLite (the all-in-one default,
//! in WAL mode) or PostgreSQL, chosen by the connection URL. Queries are
//! written once, in the portable subset both engines accept: `$N`
//! placeholders, `TEXT` and `BIGINT` columns (flags are 0/1, times are
//! microseconds since the Unix epoch).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use tokio::sync::{Mutex, MutexGuard};

pub use sqlx;
pub use sqlx::Row;

/// A transaction on the pool.
pub type Tx<'a> = sqlx::Transaction<'a, sqlx::Any>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: expected sqlite:... or postgres://...")]
    UnsupportedUrl(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A write transaction. On SQLite it also holds the process-wide writer lock,
/// so that concurrent writers queue instead of failing with SQLITE_BUSY when
/// they upgrade a read transaction.
pub struct WriteTx<'a> {
    pub tx: Tx<'static>,
    _guard: Option<MutexGuard<'a, ()>>,
}

impl WriteTx<'_> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = Tx<'static>;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
    writer: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("engine", &self.engine).finish()
    }
}

impl Db {
    /// Connects to `url` (`sqlite:PATH`, `sqlite::memory:` or `postgres://...`).
    /// A SQLite file is created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Engine::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let url = if engine == Engine::Sqlite && !url.contains("mode=") && !url.contains(":memory:")
        {
            if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            }
        } else {
            url.to_string()
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let mut pool_options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30));
        if engine == Engine::Sqlite {
            pool_options = pool_options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                    )
                    .await?;
                    Ok(())
                })
            });
            if url.contains(":memory:") {
                // Every connection to ":memory:" is a different database.
                pool_options = pool_options.max_connections(1).min_connections(1);
            }
        }
        let pool = pool_options.connect_with(options).await?;
        Ok(Db {
            pool,
            engine,
            writer: Arc::new(Mutex::new(())),
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Starts a transaction meant to write.
    pub async fn write(&self) -> Result<WriteTx<'_>, sqlx::Error> {
        let guard = match self.engine {
            Engine::Sqlite => Some(self.writer.lock().await),
            Engine::Postgres => None,
        };
        let tx = self.pool.begin().await?;
        Ok(WriteTx { tx, _guard: guard })
    }

    /// Reads a named revision counter (see [`bump_revision`]).
    pub async fn revision(&self, name: &str) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("SELECT value FROM revisions WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>(0)?,
            None => 0,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Increments a named revision counter inside `tx`. Every process caches
/// derived state (validated tokens, say) together with the revision it was
/// computed at, and drops the cache when the counter moves.
pub async fn bump_revision(tx: &mut Tx<'_>, name: &str) -> Result<(), sqlx::Error> {
    let r = sqlx::query("UPDATE revisions SET value = value + 1 WHERE name = $1")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    if r.rows_affected() == 0 {
        sqlx::query("INSERT INTO revisions (name, value) VALUES ($1, 1)")
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Converts a stored 0/1 flag.
pub fn flag(v: i64) -> bool {
    v != 0
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// True when `e` is a unique-constraint violation (on either engine).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            matches!(d.kind(), sqlx::error::ErrorKind::UniqueViolation)
                || d.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// True when `e` is a foreign-key violation (on either engine).
pub fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            matches!(d.kind(), sqlx::error::ErrorKind::ForeignKeyViolation)
                || d.message().contains("FOREIGN KEY constraint failed")
        }
        _ => false,
    }
}

/// Helpers for tests that run against both engines.
pub mod testing {
    use super::*;

    /// The PostgreSQL server to test against: `OXISTACK_TEST_DATABASE_URL`.
    /// When it is unset the PostgreSQL variant of a test is not run, unless
    /// `OXISTACK_REQUIRE_POSTGRES=1` (the project's test command sets it),
    /// in which case a missing server is an error rather than a silent pass.
    pub fn postgres_url() -> Option<String> {
        let url = std::env::var("OXISTACK_TEST_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"));
        if url.is_none() && std::env::var("OXISTACK_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            #[allow(clippy::panic)]
            {
                panic!("OXISTACK_REQUIRE_POSTGRES=1 but OXISTACK_TEST_DATABASE_URL is not set");
            }
        }
        if url.is_none() {
            eprintln!("OXISTACK_TEST_DATABASE_URL not set: the PostgreSQL variant is not run");
        }
        url
    }

    /// Creates an empty database on the server at `admin_url` and returns its URL.
    pub async fn fresh_postgres(admin_url: &str) -> Result<String, StoreError> {
        sqlx::any::install_default_drivers();
        let name = format!(
            "oxistack_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&pool)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await?;
        pool.close().await;
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url, String::new()),
        };
        let base = match base.rfind('/') {
            Some(i) if i > "postgres://".len() => &base[..i],
            _ => base,
        };
        Ok(format!("{base}/{name}{query}"))
    }

    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check_engine(db: &Db) {
        db.migrate().await.unwrap();
        // Migrating again is a no-op.
        db.migrate().await.unwrap();
        let r0 = db.revision("identity").await.unwrap();
        let mut tx = db.write().await.unwrap();
        bump_revision(&mut tx, "identity").await.unwrap();
        bump_revision(&mut tx, "other").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(db.revision("identity").await.unwrap(), r0 + 1);
        assert!(db.revision("other").await.unwrap() >= 1);

        // Unique violations are recognised the same way on both engines.
        let mut tx = db.write().await.unwrap();
        let id = format!("d-{}", now_micros());
        for _ in 0..2 {
            let res = sqlx::query("INSERT INTO domains (id, name, created_at) VALUES ($1, $2, $3)")
                .bind(format!("{id}-{}", now_micros()))
                .bind(&id)
                .bind(now_micros())
                .execute(&mut **tx)
                .await;
            if let Err(e) = res {
                assert!(is_unique_violation(&e), "{e}");
                return;
            }
        }
        panic!("duplicate name accepted");
    }

    #[tokio::test]
    async fn sqlite_file_migrates_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        let db = Db::connect(&url, 4).await.unwrap();
        assert_eq!(db.engine(), Engine::Sqlite);
        check_engine(&db).await;
    }

    #[tokio::test]
    async fn postgres_migrates_and_counts() {
        let Some(admin) = testing::postgres_url() else {
            return;
        };
        let url = testing::fresh_postgres(&admin).await.unwrap();
        let db = Db::connect(&url, 4).await.unwrap();
        assert_eq!(db.engine(), Engine::Postgres);
        check_engine(&db).await;
    }

    #[tokio::test]
    async fn rejects_unknown_url() {
        assert!(matches!(
            Db::connect("mysql://x", 1).await,
            Err(StoreError::UnsupportedUrl(_))
        ));
    }
}
