//! Compute hosts: the hypervisors this process drives, their records in
//! `compute_services` / `compute_nodes`, and their resource providers in
//! placement.
//!
//! A host is driven in process (the all-in-one's QEMU host, or a fleet of
//! fake hosts) or on another machine through its agent's internal API
//! ([`agent::remote::client::RemoteHypervisor`], the same [`Hypervisor`]
//! trait).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, RwLock};

use agent::hypervisor::{HostResources, Hypervisor};
use placement::db::InventoryRow;
use placement::local::ProviderSpec;
use store::Row;

use crate::config::RemoteAgent;
use crate::error::{Error, Result};
use crate::Compute;

/// A host this process drives.
pub struct Host {
    pub name: String,
    /// The compute node id, also its resource provider's uuid.
    pub node_id: String,
    pub hypervisor_hostname: String,
    pub hv: Arc<dyn Hypervisor>,
}

/// The hosts this process drives, by name.
#[derive(Default)]
pub struct Hosts {
    map: RwLock<BTreeMap<String, Arc<Host>>>,
    /// Hosts whose last ping failed.
    down: Mutex<BTreeSet<String>>,
    /// The run of each host's agent last seen ([`Hypervisor::ping`]).
    runs: Mutex<BTreeMap<String, String>>,
}

impl Hosts {
    /// Records a failed ping.
    fn mark_down(&self, name: &str) {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string());
    }

    /// Records an answered ping; true when the host was down before.
    fn mark_up(&self, name: &str) -> bool {
        self.down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
    }

    /// Records which run of a host's agent answered; true when another
    /// run answered before (the agent restarted).
    pub(crate) fn note_run(&self, name: &str, run: &str) -> bool {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        match runs.insert(name.to_string(), run.to_string()) {
            Some(before) => before != run,
            None => false,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Host>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Host>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn insert(&self, h: Arc<Host>) {
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(h.name.clone(), h);
    }
}

impl Compute {
    /// The placement inventory of a host, from its resources and config.
    fn inventories(&self, r: &HostResources) -> Vec<InventoryRow> {
        let c = &self.cfg;
        let now = store::now_micros();
        let inv = |class: &str, total: i64, reserved: i64, ratio: f64| InventoryRow {
            resource_class: class.into(),
            total,
            reserved: reserved.min(total),
            min_unit: 1,
            max_unit: total.max(1),
            step_size: 1,
            allocation_ratio: ratio,
            updated_at: now,
        };
        vec![
            inv(
                "VCPU",
                r.vcpus as i64,
                c.reserved_host_cpus as i64,
                c.cpu_allocation_ratio,
            ),
            inv(
                "MEMORY_MB",
                r.memory_mb as i64,
                c.reserved_host_memory_mb as i64,
                c.ram_allocation_ratio,
            ),
            inv(
                "DISK_GB",
                r.disk_gb as i64,
                (c.reserved_host_disk_mb as i64 + 1023) / 1024,
                c.disk_allocation_ratio,
            ),
        ]
    }

    /// Registers hosts: service and compute node rows, and resource
    /// providers (all in a few transactions, so 1,000 fake hosts register
    /// in a second or two). Hosts already registered keep their node id.
    /// Returns the hosts, in the order given.
    pub async fn register_hosts(&self, hvs: Vec<Arc<dyn Hypervisor>>) -> Result<Vec<Arc<Host>>> {
        let mut specs = Vec::with_capacity(hvs.len());
        let mut hosts = Vec::with_capacity(hvs.len());
        let mut tx = self.db.write().await?;
        let now = store::now_micros();
        for hv in hvs {
            let r = hv
                .host_resources()
                .await
                .map_err(|e| Error::internal(format!("host resources: {e}")))?;
            let host = r.hostname.clone();
            let existing = store::sqlx::query("SELECT id FROM compute_nodes WHERE host = $1")
                .bind(&host)
                .fetch_optional(&mut *tx.tx)
                .await?;
            let node_id = match existing {
                Some(row) => row.try_get::<String, _>(0)?,
                None => uuid::Uuid::new_v4().to_string(),
            };
            let cpu_info = serde_json::json!({
                "arch": r.cpu.arch, "vendor": r.cpu.vendor, "model": r.cpu.model,
                "topology": {"sockets": r.cpu.sockets, "cores": r.cpu.cores, "threads": r.cpu.threads},
                "features": r.cpu.flags,
            });
            store::sqlx::query(
                "INSERT INTO compute_nodes (id, host, hypervisor_hostname, hypervisor_type, \
                 hypervisor_version, host_ip, vcpus, memory_mb, local_gb, cpu_info, created_at, \
                 updated_at) VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) \
                 ON CONFLICT (host) DO UPDATE SET hypervisor_type = $3, hypervisor_version = $4, \
                 host_ip = $5, vcpus = $6, memory_mb = $7, local_gb = $8, cpu_info = $9, \
                 updated_at = $10",
            )
            .bind(&node_id)
            .bind(&host)
            .bind(&r.hypervisor_type)
            .bind(r.hypervisor_version as i64)
            .bind(r.host_ip.to_string())
            .bind(r.vcpus as i64)
            .bind(r.memory_mb as i64)
            .bind(r.disk_gb as i64)
            .bind(cpu_info.to_string())
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
            store::sqlx::query(
                "INSERT INTO compute_services (id, binary_name, host, zone, last_seen_up, \
                 created_at, updated_at) VALUES ($1, 'nova-compute', $2, $3, $4, $4, $4) \
                 ON CONFLICT (binary_name, host) DO UPDATE SET last_seen_up = $4",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&host)
            .bind(&self.cfg.default_availability_zone)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
            specs.push(ProviderSpec {
                uuid: node_id.clone(),
                name: host.clone(),
                inventories: self.inventories(&r),
                traits: r.traits.iter().cloned().collect(),
            });
            hosts.push(Arc::new(Host {
                name: host.clone(),
                node_id,
                hypervisor_hostname: host,
                hv,
            }));
        }
        tx.commit().await?;
        for chunk in specs.chunks(200) {
            self.placement.ensure_providers(chunk).await?;
        }
        for h in &hosts {
            self.hosts.insert(h.clone());
        }
        Ok(hosts)
    }

    /// Registers the control-plane services of this process (Nova's
    /// scheduler and conductor, which live in it), in the internal zone.
    pub async fn register_control_services(&self, host: &str) -> Result<()> {
        let now = store::now_micros();
        for binary in ["nova-scheduler", "nova-conductor"] {
            store::sqlx::query(
                "INSERT INTO compute_services (id, binary_name, host, zone, last_seen_up, \
                 created_at, updated_at) VALUES ($1, $2, $3, 'internal', $4, $4, $4) \
                 ON CONFLICT (binary_name, host) DO UPDATE SET last_seen_up = $4",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(binary)
            .bind(host)
            .bind(now)
            .execute(self.db.pool())
            .await?;
        }
        Ok(())
    }

    /// Connects to a host agent on another machine.
    pub(crate) async fn connect_agent(&self, agent: &RemoteAgent) -> Result<Arc<dyn Hypervisor>> {
        use agent::remote::client::{RemoteConfig, RemoteHypervisor};
        let token = tokio::fs::read_to_string(&agent.token_file)
            .await
            .map_err(|e| {
                Error::internal(format!(
                    "agent token file {}: {e}",
                    agent.token_file.display()
                ))
            })?;
        let ca_pem = match &agent.ca_file {
            Some(f) => Some(
                tokio::fs::read(f)
                    .await
                    .map_err(|e| Error::internal(format!("agent CA file {}: {e}", f.display())))?,
            ),
            None => None,
        };
        let hv = RemoteHypervisor::connect(RemoteConfig {
            url: agent.url.clone(),
            token: token.trim().to_string(),
            scratch_dir: self.instances_dir().join("_remote"),
            ca_pem,
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))?;
        Ok(Arc::new(hv))
    }

    /// Registers the agents that were unreachable at start-up and answer
    /// now (reconciled and followed like the others); returns those that
    /// still do not.
    pub(crate) async fn join_agents(
        self: &Arc<Self>,
        agents: Vec<RemoteAgent>,
    ) -> Vec<RemoteAgent> {
        let mut still = Vec::new();
        for agent in agents {
            let joined = async {
                let hv = self.connect_agent(&agent).await?;
                let host = self
                    .register_hosts(vec![hv])
                    .await?
                    .pop()
                    .ok_or_else(|| Error::internal("the host did not register"))?;
                let name = host.name.clone();
                self.reconcile_host(&host, true).await?;
                self.watch_events(host);
                Ok::<_, Error>(name)
            }
            .await;
            match joined {
                Ok(name) => tracing::info!(agent = %agent.url, host = %name, "host agent joined"),
                Err(e) => {
                    tracing::debug!(agent = %agent.url, error = %e, "host agent still unavailable");
                    still.push(agent);
                }
            }
        }
        still
    }

    /// Marks every host of this process that answers as alive (a remote
    /// agent that does not answer goes down after `service_down_time`).
    /// Returns the hosts that answer again after a failed ping, or whose
    /// agent restarted: what happened meanwhile (servers deleted here,
    /// work an agent lost or left behind) is reconciled by the caller.
    pub async fn heartbeat(&self) -> Result<Vec<Arc<Host>>> {
        let mut names = Vec::new();
        let mut back = Vec::new();
        for h in self.hosts.all() {
            match h.hv.ping().await {
                Ok(run) => {
                    names.push(h.name.clone());
                    let restarted = self.hosts.note_run(&h.name, &run);
                    if restarted {
                        tracing::info!(host = %h.name, "the host's agent restarted");
                    }
                    if self.hosts.mark_up(&h.name) || restarted {
                        back.push(h);
                    }
                }
                Err(e) => {
                    tracing::warn!(host = %h.name, error = %e, "host does not answer");
                    self.hosts.mark_down(&h.name);
                }
            }
        }
        let now = store::now_micros();
        if names.is_empty() {
            store::sqlx::query(
                "UPDATE compute_services SET last_seen_up = $1 \
                 WHERE binary_name IN ('nova-scheduler', 'nova-conductor')",
            )
            .bind(now)
            .execute(self.db.pool())
            .await?;
        }
        for chunk in names.chunks(500) {
            let sql = format!(
                "UPDATE compute_services SET last_seen_up = $1 WHERE host IN ({}) \
                 OR binary_name IN ('nova-scheduler', 'nova-conductor')",
                (2..chunk.len() + 2)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = store::sqlx::query(&sql).bind(now);
            for n in chunk {
                q = q.bind(n);
            }
            q.execute(self.db.pool()).await?;
        }
        store::sqlx::query("UPDATE compute_operations SET heartbeat = $1 WHERE owner = $2")
            .bind(now)
            .bind(&self.owner)
            .execute(self.db.pool())
            .await?;
        if !back.is_empty() {
            // The scheduler's cached host states still say down.
            self.invalidate_host_cache();
        }
        Ok(back)
    }

    /// Reconciles hosts that answer again; one that fails stays marked
    /// down, so the next heartbeat tries again.
    pub(crate) async fn rejoin(self: &Arc<Self>, hosts: Vec<Arc<Host>>) {
        for h in hosts {
            tracing::info!(host = %h.name, "host answers again; reconciling");
            if let Err(e) = self.reconcile_host(&h, false).await {
                tracing::warn!(host = %h.name, error = %e, "reconciling a returning host failed");
                self.hosts.mark_down(&h.name);
            }
        }
    }
}
