//! Fernet tokens and their key repository.
//!
//! Keys live in the `fernet_keys` table so that every control-plane process
//! shares them. As in Keystone, index 0 is the staged key (the next primary),
//! the highest index is the primary (it encrypts), and every key decrypts.
//! The payload is a MessagePack array; the token is the Fernet token with its
//! base64 padding removed.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use store::{Db, Row};

use crate::error::{Error, Result};

/// The repository that encrypts tokens.
pub const TOKEN_REPO: &str = "token";
/// The repository that encrypts credential blobs at rest.
pub const CREDENTIAL_REPO: &str = "credential";
const PAYLOAD_VERSION: u8 = 1;

/// Authentication methods, stored as bits in the payload.
pub const METHODS: &[&str] = &["password", "token", "application_credential", "totp"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScopeKind {
    Unscoped,
    Project,
    Domain,
    System,
}

/// What a token carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub version: u8,
    pub user_id: String,
    pub methods: u8,
    pub scope: ScopeKind,
    pub scope_id: Option<String>,
    /// Microseconds since the Unix epoch.
    pub issued_at: i64,
    pub expires_at: i64,
    pub audit_ids: Vec<String>,
    pub application_credential_id: Option<String>,
}

impl Payload {
    pub fn new(user_id: &str, methods: &[String], expires_at: i64, issued_at: i64) -> Self {
        Payload {
            version: PAYLOAD_VERSION,
            user_id: user_id.to_string(),
            methods: methods_to_bits(methods),
            scope: ScopeKind::Unscoped,
            scope_id: None,
            issued_at,
            expires_at,
            audit_ids: vec![random_audit_id()],
            application_credential_id: None,
        }
    }

    pub fn method_names(&self) -> Vec<String> {
        METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.methods & (1 << i) != 0)
            .map(|(_, m)| m.to_string())
            .collect()
    }
}

pub fn methods_to_bits(methods: &[String]) -> u8 {
    let mut bits = 0u8;
    for m in methods {
        if let Some(i) = METHODS.iter().position(|x| x == m) {
            bits |= 1 << i;
        }
    }
    bits
}

/// A random audit id as Keystone makes them: 16 bytes, URL-safe base64, unpadded.
pub fn random_audit_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The keys loaded from the repository, primary first.
pub struct Keys {
    multi: fernet::MultiFernet,
}

impl Keys {
    pub fn encrypt(&self, payload: &Payload) -> Result<String> {
        let bytes = rmp_serde::to_vec(payload)
            .map_err(|e| Error::Internal(format!("token payload: {e}")))?;
        let token = self.multi.encrypt(&bytes);
        Ok(token.trim_end_matches('=').to_string())
    }

    /// Encrypts arbitrary bytes (credential blobs).
    pub fn seal(&self, data: &[u8]) -> String {
        self.multi.encrypt(data)
    }

    /// Decrypts what [`Keys::seal`] produced.
    pub fn open(&self, sealed: &str) -> Option<Vec<u8>> {
        self.multi.decrypt(sealed).ok()
    }

    /// Decrypts a token; None for anything that is not a token we issued.
    pub fn decrypt(&self, token: &str) -> Option<Payload> {
        if token.is_empty() || token.len() > 1024 {
            return None;
        }
        let mut padded = token.to_string();
        while !padded.len().is_multiple_of(4) {
            padded.push('=');
        }
        let bytes = self.multi.decrypt(&padded).ok()?;
        let payload: Payload = rmp_serde::from_slice(&bytes).ok()?;
        (payload.version == PAYLOAD_VERSION).then_some(payload)
    }
}

/// Loads the token keys, creating the repository on first use.
pub async fn load(db: &Db) -> Result<Arc<Keys>> {
    load_repo(db, TOKEN_REPO).await
}

/// Loads the keys of `repo`, creating it on first use.
pub async fn load_repo(db: &Db, repo: &str) -> Result<Arc<Keys>> {
    let mut rows = key_rows(db, repo).await?;
    if rows.is_empty() {
        setup_repo(db, repo).await?;
        rows = key_rows(db, repo).await?;
    }
    // Primary (highest index) first: MultiFernet encrypts with the first key.
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut keys = Vec::new();
    for (idx, key) in rows {
        match fernet::Fernet::new(&key) {
            Some(f) => keys.push(f),
            None => return Err(Error::Internal(format!("fernet key {idx} is malformed"))),
        }
    }
    if keys.is_empty() {
        return Err(Error::Internal("fernet key repository is empty".into()));
    }
    Ok(Arc::new(Keys {
        multi: fernet::MultiFernet::new(keys),
    }))
}

async fn key_rows(db: &Db, repo: &str) -> Result<Vec<(i64, String)>> {
    let rows = store::sqlx::query("SELECT idx, key FROM fernet_keys WHERE repo = $1")
        .bind(repo)
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
        .collect()
}

/// Creates the token and credential repositories unless they exist.
pub async fn setup(db: &Db) -> Result<()> {
    setup_repo(db, TOKEN_REPO).await?;
    setup_repo(db, CREDENTIAL_REPO).await
}

/// Creates `repo` (a staged key 0 and a primary key 1) unless it exists.
pub async fn setup_repo(db: &Db, repo: &str) -> Result<()> {
    let mut tx = db.write().await?;
    let existing = store::sqlx::query("SELECT COUNT(*) FROM fernet_keys WHERE repo = $1")
        .bind(repo)
        .fetch_one(&mut **tx)
        .await?
        .try_get::<i64, _>(0)?;
    if existing == 0 {
        for idx in [0i64, 1] {
            insert_key(&mut tx, repo, idx).await?;
        }
        store::bump_revision(&mut tx, "identity").await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn insert_key(tx: &mut store::Tx<'_>, repo: &str, idx: i64) -> Result<()> {
    store::sqlx::query(
        "INSERT INTO fernet_keys (repo, idx, key, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(repo)
    .bind(idx)
    .bind(fernet::Fernet::generate_key())
    .bind(store::now_micros())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Rotates the repository as `keystone-manage fernet_rotate` does: the staged
/// key becomes the primary, a new staged key is made, and the oldest
/// secondary keys beyond `max_active_keys` are removed. Returns the new
/// primary index.
pub async fn rotate(db: &Db, max_active_keys: usize) -> Result<i64> {
    const REPO: &str = TOKEN_REPO;
    setup(db).await?;
    let mut tx = db.write().await?;
    let rows = store::sqlx::query("SELECT idx FROM fernet_keys WHERE repo = $1 ORDER BY idx")
        .bind(REPO)
        .fetch_all(&mut **tx)
        .await?;
    let mut idxs: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<std::result::Result<_, _>>()?;
    let new_primary = idxs.iter().copied().max().unwrap_or(0) + 1;
    store::sqlx::query("UPDATE fernet_keys SET idx = $1 WHERE repo = $2 AND idx = 0")
        .bind(new_primary)
        .bind(REPO)
        .execute(&mut **tx)
        .await?;
    insert_key(&mut tx, REPO, 0).await?;
    idxs.retain(|i| *i != 0);
    idxs.push(new_primary);
    idxs.sort_unstable();
    // Keep the staged key, the primary and the newest secondaries.
    let keep = max_active_keys.max(2) - 1;
    if idxs.len() > keep {
        for old in &idxs[..idxs.len() - keep] {
            store::sqlx::query("DELETE FROM fernet_keys WHERE repo = $1 AND idx = $2")
                .bind(REPO)
                .bind(*old)
                .execute(&mut **tx)
                .await?;
        }
    }
    store::bump_revision(&mut tx, "identity").await?;
    tx.commit().await?;
    Ok(new_primary)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite:{}", dir.path().join("k.db").display()), 2)
            .await
            .unwrap();
        db.migrate().await.unwrap();
        (dir, db)
    }

    #[tokio::test]
    async fn tokens_round_trip_and_survive_rotation() {
        let (_d, db) = db().await;
        let keys = load(&db).await.unwrap();
        let mut p = Payload::new("u1", &["password".into()], 2_000_000, 1_000_000);
        p.scope = ScopeKind::Project;
        p.scope_id = Some("p1".into());
        let token = keys.encrypt(&p).unwrap();
        assert!(!token.contains('='));
        assert_eq!(keys.decrypt(&token), Some(p.clone()));
        assert_eq!(p.method_names(), vec!["password".to_string()]);

        // Tampering is detected.
        let mut bad = token.clone().into_bytes();
        let i = bad.len() / 2;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(keys.decrypt(&String::from_utf8(bad).unwrap()), None);
        assert_eq!(keys.decrypt("not-a-token"), None);

        // Keys: staged 0, primary 1 (encrypted `token`).
        rotate(&db, 3).await.unwrap();
        // Keys: 0, 1, 2 (primary): the old primary still decrypts.
        let keys2 = load(&db).await.unwrap();
        assert_eq!(keys2.decrypt(&token), Some(p.clone()));
        let t2 = keys2.encrypt(&p).unwrap();
        rotate(&db, 3).await.unwrap();
        // Keys: 0, 2, 3: key 1 is pruned, key 2 still decrypts.
        let keys3 = load(&db).await.unwrap();
        assert_eq!(keys3.decrypt(&token), None);
        assert_eq!(keys3.decrypt(&t2), Some(p.clone()));
        rotate(&db, 3).await.unwrap();
        // Keys: 0, 3, 4.
        let keys4 = load(&db).await.unwrap();
        assert_eq!(keys4.decrypt(&t2), None);
        let n: i64 = store::sqlx::query("SELECT COUNT(*) FROM fernet_keys WHERE repo = 'token'")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
        assert_eq!(n, 3);
    }
}
