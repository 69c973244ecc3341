//! Keystone v3 compatible identity service.
//!
//! [`Identity`] holds the service state; [`api::router`] serves the HTTP API
//! under `/identity`; [`Identity`] also implements
//! [`api_common::TokenValidator`] so that every other service validates
//! tokens in process.

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod db;
pub mod error;
pub mod fernet;
pub mod password;
pub mod policy;
pub mod render;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use api_common::{AuthContext, Creds, Policy, Target};
use dashmap::DashMap;
use store::Db;

pub use config::{IdentityConfig, SecurityCompliance};
pub use error::{Error, Result};

/// The id of the domain every deployment starts with.
pub const DEFAULT_DOMAIN_ID: &str = "default";

/// Derived state every validation needs, reloaded when the `identity`
/// revision counter moves (any process may move it).
pub struct Snapshot {
    pub revision: i64,
    pub keys: Arc<fernet::Keys>,
    /// Encrypts credential blobs at rest.
    pub credential_keys: Arc<fernet::Keys>,
    pub revocations: Vec<db::revocations::RevocationRow>,
    /// The service catalog as it appears in tokens.
    pub catalog: serde_json::Value,
    pub roles: HashMap<String, db::roles::RoleRow>,
    /// prior role id -> implied role ids.
    pub implied: HashMap<String, Vec<String>>,
}

pub struct Identity {
    pub db: Db,
    pub cfg: IdentityConfig,
    policy: Policy,
    password_regex: Option<regex::Regex>,
    snapshot: RwLock<Arc<Snapshot>>,
    reload: tokio::sync::Mutex<()>,
    /// Validated tokens, tagged with the snapshot revision they were built at.
    tokens: DashMap<String, (i64, Arc<AuthContext>)>,
    /// A hash checked when the user does not exist, so that both failures take
    /// as long.
    dummy_hash: tokio::sync::OnceCell<String>,
}

const TOKEN_CACHE_MAX: usize = 100_000;

impl Identity {
    /// Builds the service on a migrated database.
    pub async fn new(db: Db, cfg: IdentityConfig) -> Result<Arc<Identity>> {
        let mut policy =
            Policy::from_defaults(policy::DEFAULTS).map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(path) = &cfg.policy_file {
            policy
                .apply_file(path)
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        let password_regex = match &cfg.security_compliance.password_regex {
            Some(r) => Some(regex::Regex::new(r).map_err(|e| {
                Error::Internal(format!("security_compliance.password_regex: {e}"))
            })?),
            None => None,
        };
        let rev = db.revision("identity").await?;
        let snap = load_snapshot(&db, rev).await?;
        Ok(Arc::new(Identity {
            db,
            cfg,
            policy,
            password_regex,
            snapshot: RwLock::new(snap),
            reload: tokio::sync::Mutex::new(()),
            tokens: DashMap::new(),
            dummy_hash: tokio::sync::OnceCell::new(),
        }))
    }

    /// The current snapshot: one indexed read of the revision counter, and a
    /// reload only when it moved.
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let rev = self.db.revision("identity").await?;
        if let Some(s) = self.cached_snapshot(rev) {
            return Ok(s);
        }
        let _guard = self.reload.lock().await;
        if let Some(s) = self.cached_snapshot(rev) {
            return Ok(s);
        }
        let snap = load_snapshot(&self.db, rev).await?;
        self.tokens.clear();
        if let Ok(mut w) = self.snapshot.write() {
            *w = snap.clone();
        }
        Ok(snap)
    }

    fn cached_snapshot(&self, rev: i64) -> Option<Arc<Snapshot>> {
        let s = self.snapshot.read().ok()?;
        (s.revision == rev).then(|| s.clone())
    }

    fn cache_token(&self, token: &str, rev: i64, ctx: Arc<AuthContext>) {
        if self.tokens.len() >= TOKEN_CACHE_MAX {
            self.tokens.clear();
        }
        self.tokens.insert(token.to_string(), (rev, ctx));
    }

    fn cached_token(&self, token: &str, rev: i64) -> Option<Arc<AuthContext>> {
        let e = self.tokens.get(token)?;
        (e.0 == rev).then(|| e.1.clone())
    }

    /// Checks policy; `Forbidden` when denied.
    pub fn authorize(&self, ctx: &AuthContext, rule: &str, target: &Target) -> Result<()> {
        if self.policy.enforce(rule, &ctx.creds(), target) {
            Ok(())
        } else {
            tracing::debug!(rule, user = %ctx.user_id, "policy denied");
            Err(Error::forbidden())
        }
    }

    /// True when policy allows (for filtering lists).
    pub fn allowed(&self, creds: &Creds, rule: &str, target: &Target) -> bool {
        self.policy.enforce(rule, creds, target)
    }

    async fn dummy_hash(&self) -> &str {
        self.dummy_hash
            .get_or_init(|| async {
                password::hash("not-a-real-password", self.cfg.password_hash_rounds)
                    .await
                    .unwrap_or_default()
            })
            .await
    }
}

async fn load_snapshot(db: &Db, revision: i64) -> Result<Arc<Snapshot>> {
    let keys = fernet::load(db).await?;
    let credential_keys = fernet::load_repo(db, fernet::CREDENTIAL_REPO).await?;
    let revocations = db::revocations::revocation_list(db, store::now_micros()).await?;
    let catalog = render::catalog(db).await?;
    let roles = db::roles::role_list(db)
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    let mut implied: HashMap<String, Vec<String>> = HashMap::new();
    for (prior, imp) in db::roles::implied_list(db).await? {
        implied.entry(prior).or_default().push(imp);
    }
    // `revision` was read before loading, so any later change moves the
    // counter past it and forces another reload.
    Ok(Arc::new(Snapshot {
        revision,
        keys,
        credential_keys,
        revocations,
        catalog,
        roles,
        implied,
    }))
}

#[async_trait::async_trait]
impl api_common::TokenValidator for Identity {
    async fn validate(
        &self,
        token: &str,
    ) -> std::result::Result<Arc<AuthContext>, api_common::TokenError> {
        self.validate_token(token, false)
            .await
            .map_err(|e| match e {
                Error::Internal(m) => api_common::TokenError::Backend(m),
                _ => api_common::TokenError::Invalid,
            })
    }
}
