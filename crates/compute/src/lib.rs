//! Nova v2.1 compatible compute service.
//!
//! [`Compute`] holds the state; [`api::router`] serves the HTTP API under
//! `/compute`. Servers are scheduled through placement (in process, the
//! same database), and run on hosts through the [`agent::hypervisor`]
//! layer: QEMU on this machine, or fake hosts for tests and benchmarks.
//! There is no message bus: an operation is recorded in the database before
//! the host is asked to act, and the reconciler finishes or rolls back what
//! a crash interrupted.

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod db;
pub mod error;
pub mod extra_specs;
pub mod hosts;
pub mod keygen;
pub mod microversion;
pub mod policy;
pub mod quota;
pub mod scheduler;
pub mod servers;

use std::sync::Arc;

use api_common::{AuthContext, Creds, Policy, Target, TokenValidator};

pub use config::{ComputeConfig, Driver, RemoteAgent};
pub use error::{Error, Result};

/// The running compute service.
pub struct Compute {
    pub db: ::store::Db,
    pub cfg: ComputeConfig,
    policy: Policy,
    validator: Arc<dyn TokenValidator>,
    /// Placement, in process.
    pub placement: Arc<placement::Placement>,
    /// The image service, in process.
    pub images: Arc<image::ImageService>,
    /// The hosts this process drives.
    pub hosts: hosts::Hosts,
    /// Host states for the scheduler, with when they were read.
    #[allow(clippy::type_complexity)]
    host_cache: std::sync::Mutex<
        Option<(
            std::time::Instant,
            Arc<std::collections::BTreeMap<String, scheduler::HostState>>,
        )>,
    >,
    /// This process's id in `compute_operations`.
    pub owner: String,
    /// The compute endpoint as clients reach it (`http://host:port/compute`).
    pub public_url: String,
    /// Stops background work.
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// Who is calling, as the compute service sees it.
#[derive(Clone)]
pub struct Caller {
    pub ctx: Arc<AuthContext>,
    pub creds: Creds,
    pub is_admin: bool,
}

impl Caller {
    /// The token's project ('' for a token without one, which policy then
    /// refuses wherever a project is needed).
    pub fn project(&self) -> &str {
        self.ctx.project_id().unwrap_or_default()
    }

    pub fn user(&self) -> &str {
        &self.ctx.user_id
    }
}

impl Compute {
    /// Builds the service on a migrated database.
    pub async fn new(
        db: ::store::Db,
        cfg: ComputeConfig,
        validator: Arc<dyn TokenValidator>,
        placement: Arc<placement::Placement>,
        images: Arc<image::ImageService>,
        public_url: String,
    ) -> Result<Arc<Compute>> {
        let mut policy = Policy::from_defaults(&policy::defaults())
            .map_err(|e| Error::internal(e.to_string()))?;
        if let Some(path) = &cfg.policy_file {
            policy
                .apply_file(path)
                .map_err(|e| Error::internal(e.to_string()))?;
        }
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Ok(Arc::new(Compute {
            db,
            cfg,
            policy,
            validator,
            placement,
            images,
            hosts: hosts::Hosts::default(),
            host_cache: std::sync::Mutex::new(None),
            owner: format!(
                "{}:{}:{}",
                system_hostname(),
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            public_url: public_url.trim_end_matches('/').to_string(),
            shutdown,
        }))
    }

    /// Brings up the hosts of the configured driver (registration in the
    /// database and placement), reconciles what a previous process left,
    /// and starts the background work (lifecycle events, heartbeats).
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        use agent::hypervisor::{fake, qemu, Hypervisor};
        let mut hvs: Vec<Arc<dyn Hypervisor>> = Vec::new();
        let control_host = self.cfg.host.clone().unwrap_or_else(system_hostname);
        match self.cfg.driver {
            Driver::Qemu => {
                let mut qc = qemu::QemuConfig::new(self.instances_dir());
                qc.hostname = self.cfg.host.clone();
                qc.my_ip = self.cfg.my_ip;
                let hv = qemu::QemuHypervisor::new(qc)
                    .await
                    .map_err(|e| Error::internal(format!("qemu hypervisor: {e}")))?;
                hvs.push(Arc::new(hv));
            }
            Driver::None => {}
            Driver::Fake => {
                for n in 1..=self.cfg.fake_hosts.max(1) as usize {
                    let mut h = fake::FakeHost::numbered(n);
                    h.vcpus = self.cfg.fake_vcpus;
                    h.memory_mb = self.cfg.fake_memory_mb;
                    h.disk_gb = self.cfg.fake_disk_gb;
                    let hv = fake::FakeHypervisor::new(h);
                    let hv = if self.cfg.fake_hosts > 50 {
                        hv.without_recording()
                    } else {
                        hv
                    };
                    hvs.push(Arc::new(hv));
                }
            }
        }
        let mut waiting = Vec::new();
        if let Some(bad) = self
            .cfg
            .remote_agents
            .iter()
            .find(|a| !(a.url.starts_with("http://") || a.url.starts_with("https://")))
        {
            return Err(Error::internal(format!(
                "compute.remote_agents: {:?} is not an http:// or https:// URL",
                bad.url
            )));
        }
        for agent in &self.cfg.remote_agents {
            match self.connect_agent(agent).await {
                Ok(hv) => hvs.push(hv),
                Err(e) => {
                    tracing::warn!(agent = %agent.url, error = %e, "host agent unavailable; retrying");
                    waiting.push(agent.clone());
                }
            }
        }
        self.register_hosts(hvs).await?;
        self.register_control_services(&control_host).await?;
        self.reconcile().await?;
        for h in self.hosts.all() {
            self.watch_events(h);
        }
        let weak = Arc::downgrade(self);
        let mut stop = self.stopping();
        let period = std::time::Duration::from_secs(self.cfg.report_interval_seconds.max(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(period) => {}
                    _ = stop.changed() => return,
                }
                let Some(this) = weak.upgrade() else { return };
                if !waiting.is_empty() {
                    waiting = this.join_agents(waiting).await;
                }
                match this.heartbeat().await {
                    Ok(back) => this.rejoin(back).await,
                    Err(e) => tracing::warn!(error = %e, "compute heartbeat failed"),
                }
                if let Err(e) = this.sweep_interrupted().await {
                    tracing::warn!(error = %e, "compute sweep failed");
                }
            }
        });
        Ok(())
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

    /// True when policy allows `rule` on `target`. Nova's rules are scoped
    /// to projects: a system-scoped token is refused whatever the rule says.
    pub fn allowed(&self, caller: &Caller, rule: &str, target: &Target) -> bool {
        !caller.ctx.is_system() && self.policy.enforce(rule, &caller.creds, target)
    }

    /// Checks policy; 403 with Nova's message when denied.
    pub fn authorize(&self, caller: &Caller, rule: &str, target: &Target) -> Result<()> {
        if self.allowed(caller, rule, target) {
            Ok(())
        } else {
            tracing::debug!(rule, user = %caller.ctx.user_id, "policy denied");
            Err(Error::forbidden(format!(
                "Policy doesn't allow {rule} to be performed."
            )))
        }
    }

    /// The target of a project-owned resource.
    pub fn project_target(project_id: &str, user_id: Option<&str>) -> Target {
        Target::new()
            .with("project_id", project_id)
            .with_opt("user_id", user_id)
    }

    /// The base of links in responses: the configured endpoint, with the
    /// host and port the client used (`host` from its Host header).
    pub fn link_base(&self, host: Option<&str>) -> String {
        let url = &self.public_url;
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url.as_str()));
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let authority = host.filter(|h| !h.is_empty()).unwrap_or(authority);
        format!("{scheme}://{authority}{path}")
    }

    /// Called after a host joined or left an aggregate, or an aggregate's
    /// availability zone changed: mirrors the host's aggregate membership
    /// into its placement resource provider.
    pub async fn host_aggregates_changed(&self, host: &str) -> Result<()> {
        use store::Row;
        self.invalidate_host_cache();
        let node = store::sqlx::query("SELECT id FROM compute_nodes WHERE host = $1")
            .bind(host)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(node) = node else { return Ok(()) };
        let node: String = node.try_get(0)?;
        let aggs = store::sqlx::query(
            "SELECT a.uuid FROM aggregates a JOIN aggregate_hosts h ON h.aggregate_id = a.id \
             WHERE h.host = $1",
        )
        .bind(host)
        .fetch_all(self.db.pool())
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<std::result::Result<Vec<_>, _>>()?;
        self.placement
            .set_provider_aggregates(&node, &aggs)
            .await
            .map_err(Error::from)
    }

    /// A receiver that turns true when the service stops.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops background work.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for Compute {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// The machine's host name (Nova's default `host`).
pub fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
