//! Glance v2 compatible image service.
//!
//! [`ImageService`] holds the state; [`api::router`] serves the HTTP API
//! under `/image`. Image data lives in an [`store::ImageStore`] (the file
//! store under the data directory today); uploads stream through
//! [`upload`], which inspects ([`inspect`]), hashes, counts against limits
//! and writes them without ever holding a whole image in memory.

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod db;
pub mod error;
pub mod inspect;
pub mod policy;
pub mod quota;
pub mod render;
pub mod schemas;
pub mod store;
pub mod upload;

use std::sync::Arc;
use std::time::Duration;

use api_common::{AuthContext, Creds, Policy, Target, TokenValidator};
use store::{FileStore, ImageStore};

pub use config::ImageConfig;
pub use error::{Error, Result};

/// The running image service.
pub struct ImageService {
    pub db: ::store::Db,
    pub cfg: ImageConfig,
    policy: Policy,
    validator: Arc<dyn TokenValidator>,
    /// Where image data is kept.
    pub store: Arc<dyn ImageStore>,
    /// Where staged data (interoperable import) is kept.
    pub staging: Arc<dyn ImageStore>,
    /// The region quotas are looked up for.
    pub region: Option<String>,
    /// Stops background work.
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// Who is calling, as the image service sees it.
#[derive(Clone)]
pub struct Caller {
    pub ctx: Arc<AuthContext>,
    pub creds: Creds,
    pub is_admin: bool,
}

impl Caller {
    pub fn project(&self) -> Option<&str> {
        self.ctx.project_id()
    }
}

impl ImageService {
    /// Builds the service on a migrated database. `store_dir` must be set.
    pub async fn new(
        db: ::store::Db,
        cfg: ImageConfig,
        validator: Arc<dyn TokenValidator>,
        region: Option<String>,
    ) -> Result<Arc<ImageService>> {
        let store_dir = cfg
            .store_dir
            .clone()
            .ok_or_else(|| Error::internal("image.store_dir is not set"))?;
        let staging_dir = cfg
            .staging_dir
            .clone()
            .unwrap_or_else(|| store_dir.join(".staging"));
        let store = Arc::new(
            FileStore::open("file", "Images on this host's file system", &store_dir).map_err(
                |e| Error::internal(format!("image store {}: {e}", store_dir.display())),
            )?,
        );
        let staging = Arc::new(
            FileStore::open("staging", "Staged data for import", &staging_dir).map_err(|e| {
                Error::internal(format!("staging area {}: {e}", staging_dir.display()))
            })?,
        );
        let mut policy = Policy::from_defaults(
            &policy::defaults()
                .iter()
                .map(|(n, r)| (*n, r.as_str()))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| Error::internal(e.to_string()))?;
        if let Some(path) = &cfg.policy_file {
            policy
                .apply_file(path)
                .map_err(|e| Error::internal(e.to_string()))?;
        }
        match cfg.hashing_algorithm.as_str() {
            "sha256" | "sha384" | "sha512" => {}
            other => {
                return Err(Error::internal(format!(
                    "image.hashing_algorithm {other:?} is not one of sha256, sha384, sha512"
                )))
            }
        }
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let svc = Arc::new(ImageService {
            db,
            cfg,
            policy,
            validator,
            store,
            staging,
            region,
            shutdown,
        });
        svc.clone().start_sweeper();
        Ok(svc)
    }

    /// Checks a token and builds the caller.
    pub async fn caller(&self, token: &str) -> Result<Caller> {
        let ctx = self.validator.validate(token).await?;
        let creds = ctx.creds();
        let is_admin = self
            .policy
            .enforce("context_is_admin", &creds, &Target::new());
        Ok(Caller {
            ctx,
            creds,
            is_admin,
        })
    }

    /// True when policy allows `rule` on `target`.
    pub fn allowed(&self, caller: &Caller, rule: &str, target: &Target) -> bool {
        self.policy.enforce(rule, &caller.creds, target)
    }

    /// Checks policy; 403 with `message` when denied.
    pub fn authorize(&self, caller: &Caller, rule: &str, target: &Target) -> Result<()> {
        if self.allowed(caller, rule, target) {
            Ok(())
        } else {
            tracing::debug!(rule, user = %caller.ctx.user_id, "policy denied");
            Err(Error::forbidden(format!(
                "You are not authorized to complete {rule} action."
            )))
        }
    }

    /// Periodically gives back images whose upload or import stopped making
    /// progress (its process died), and removes leftover partial files.
    fn start_sweeper(self: Arc<Self>) {
        let mut stop = self.shutdown.subscribe();
        let weak = Arc::downgrade(&self);
        let period = Duration::from_secs((self.cfg.stale_upload_seconds / 4).clamp(1, 60));
        drop(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stop.changed() => return,
                }
                let Some(svc) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = svc.sweep().await {
                    tracing::warn!(error = %e, "image sweep failed");
                }
            }
        });
    }

    /// One pass of the sweeper.
    pub async fn sweep(&self) -> Result<()> {
        let stale = Duration::from_secs(self.cfg.stale_upload_seconds.max(1));
        let before = ::store::now_micros() - stale.as_micros() as i64;
        for (id, writer, status) in db::images::stale_writers(&self.db, before).await? {
            tracing::warn!(image = %id, %status, "upload stopped making progress; image back to queued");
            if db::images::writer_release(&self.db, &id, &writer, "queued").await? {
                let _ = self.staging.delete_image(&id).await;
            }
        }
        self.store.sweep(stale).await?;
        self.staging.sweep(stale).await?;
        Ok(())
    }

    /// Stops background work.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for ImageService {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
