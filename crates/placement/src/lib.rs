//! Placement: resource providers, inventories, allocations, traits,
//! aggregates and allocation candidates, compatible with OpenStack
//! Placement up to microversion 1.39.
//!
//! The database (SQLite or PostgreSQL) is the source of truth; every write
//! runs in one transaction that also records which providers it changed
//! (`placement_changes`) under a new `placement` revision. Each process keeps
//! an in-memory model of the providers ([`placement_engine::Model`]) for the
//! read paths that search (allocation candidates, filtered provider lists),
//! and brings it up to date by reloading only the changed providers
//! whenever the revision has moved: no message bus, any number of API
//! processes.

pub mod api;
pub mod cache;
pub mod config;
pub mod db;
pub mod error;
pub mod local;
pub mod microversion;
pub mod policy;
pub mod schema;
pub mod standard;

use std::sync::Arc;

use api_common::policy::{Creds, Policy, Target};
use api_common::TokenValidator;
use store::Db;

pub use config::{AuthMode, PlacementConfig};
pub use error::{Error, Result};

/// The placement service: shared by every request.
pub struct Placement {
    pub db: Db,
    pub config: PlacementConfig,
    policy: Policy,
    tokens: Option<Arc<dyn TokenValidator>>,
    pub cache: cache::Cache,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement")
            .field("config", &self.config)
            .finish()
    }
}

impl Placement {
    /// Builds the service on a migrated database: syncs the standard
    /// resource classes and traits, loads the in-memory model.
    /// `tokens` validates Keystone tokens (required unless `auth = noauth`).
    pub async fn new(
        db: Db,
        config: PlacementConfig,
        tokens: Option<Arc<dyn TokenValidator>>,
    ) -> std::result::Result<Arc<Placement>, String> {
        if config.auth == AuthMode::Keystone && tokens.is_none() {
            return Err("placement: keystone auth needs a token validator".into());
        }
        let policy = policy::build(config.enforce_new_defaults, config.policy_file.as_deref())
            .map_err(|e| format!("placement policy: {e}"))?;
        db::sync_standard(&db)
            .await
            .map_err(|e| format!("placement: syncing standard classes and traits: {e}"))?;
        let cache = cache::Cache::load(&db)
            .await
            .map_err(|e| format!("placement: loading providers: {e}"))?;
        Ok(Arc::new(Placement {
            db,
            config,
            policy,
            tokens,
            cache,
        }))
    }

    /// Checks `rule` for the caller. Every placement rule is scoped to
    /// projects: a system-scoped caller is refused whatever the rule says.
    pub fn authorize(&self, creds: &Creds, rule: &str, target: &Target) -> Result<()> {
        if creds.system_scope.is_some() || !self.policy.enforce(rule, creds, target) {
            return Err(Error::forbidden_action(rule));
        }
        Ok(())
    }
}
