//! The scheduler: placement's allocation candidates for the request,
//! Nova's filters (enabled and up service, availability zone, server group
//! policy, same_host / different_host), a RAM weigher, and a claim with a
//! consumer generation that moves to the next host when it loses a race.

use std::collections::{BTreeMap, BTreeSet};

use placement::api::allocations::ConsumerRequest;
use placement::local::{ClaimError, HostCandidate};
use store::Row;

use crate::db::flavors::Flavor;
use crate::error::{Error, Result};
use crate::Compute;

/// What a server asks of the scheduler (kept as the instance's
/// `request_spec`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RequestSpec {
    pub availability_zone: Option<String>,
    pub group: Option<String>,
    #[serde(default)]
    pub same_host: Vec<String>,
    #[serde(default)]
    pub different_host: Vec<String>,
    /// Traits the image requires (`trait:X=required` image properties).
    #[serde(default)]
    pub image_required: Vec<String>,
    #[serde(default)]
    pub image_forbidden: Vec<String>,
    /// A host the admin forced (`availability_zone=az:host`).
    pub force_host: Option<String>,
}

/// The host a server was placed on.
#[derive(Clone, Debug)]
pub struct Placed {
    pub host: String,
    pub node_id: String,
    pub availability_zone: String,
}

/// A host as the filters see it.
#[derive(Clone, Debug)]
pub struct HostState {
    name: String,
    usable: bool,
    zone: String,
}

/// The placement query for a flavor (and image traits): VCPU, MEMORY_MB,
/// DISK_GB from the flavor, overridden or extended by `resources:CLASS=N`
/// extra specs; `trait:NAME=required|forbidden` as required traits.
pub fn placement_query(flavor: &Flavor, spec: &RequestSpec) -> Vec<(String, String)> {
    let mut resources: BTreeMap<String, i64> = BTreeMap::new();
    resources.insert("VCPU".into(), flavor.vcpus);
    resources.insert("MEMORY_MB".into(), flavor.memory_mb);
    resources.insert(
        "DISK_GB".into(),
        flavor.root_gb + flavor.ephemeral_gb + (flavor.swap + 1023) / 1024,
    );
    let mut required: BTreeSet<String> = spec.image_required.iter().cloned().collect();
    let mut forbidden: BTreeSet<String> = spec.image_forbidden.iter().cloned().collect();
    for (k, v) in &flavor.extra_specs {
        if let Some(class) = k.strip_prefix("resources:") {
            if let Ok(n) = v.trim().parse::<i64>() {
                resources.insert(class.to_string(), n);
            }
        } else if let Some(t) = k.strip_prefix("trait:") {
            match v.as_str() {
                "required" => {
                    required.insert(t.to_string());
                }
                "forbidden" => {
                    forbidden.insert(t.to_string());
                }
                _ => {}
            }
        }
    }
    let res = resources
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{c}:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut q = vec![("resources".to_string(), res)];
    let traits: Vec<String> = required
        .iter()
        .cloned()
        .chain(forbidden.iter().map(|t| format!("!{t}")))
        .collect();
    if !traits.is_empty() {
        q.push(("required".into(), traits.join(",")));
    }
    q
}

pub fn no_valid_host(reason: &str) -> Error {
    Error::internal(format!("No valid host was found. {reason}"))
}

impl Compute {
    /// Every compute host with whether it can take servers and its zone,
    /// read at most once a second (and again after a service or aggregate
    /// change in this process): with a thousand hosts, reading them for
    /// every create would dominate scheduling.
    async fn host_states(&self) -> Result<std::sync::Arc<BTreeMap<String, HostState>>> {
        {
            let cached = self.host_cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, states)) = cached.as_ref() {
                if at.elapsed() < std::time::Duration::from_secs(1) {
                    return Ok(states.clone());
                }
            }
        }
        let states = std::sync::Arc::new(self.read_host_states().await?);
        *self.host_cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((std::time::Instant::now(), states.clone()));
        Ok(states)
    }

    /// Forgets the cached host states (a service or aggregate changed).
    pub fn invalidate_host_cache(&self) {
        *self.host_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn read_host_states(&self) -> Result<BTreeMap<String, HostState>> {
        let down_before = store::now_micros()
            - (self.cfg.service_down_time_seconds as i64).saturating_mul(1_000_000);
        let rows = store::sqlx::query(
            "SELECT n.id, s.host, s.disabled, s.forced_down, s.last_seen_up \
             FROM compute_services s JOIN compute_nodes n ON n.host = s.host \
             WHERE s.binary_name = 'nova-compute'",
        )
        .fetch_all(self.db.pool())
        .await?;
        let zones = self.host_zones().await?;
        let mut out = BTreeMap::new();
        for r in rows {
            let node: String = r.try_get(0)?;
            let host: String = r.try_get(1)?;
            let disabled: i64 = r.try_get(2)?;
            let forced: i64 = r.try_get(3)?;
            let seen: Option<i64> = r.try_get(4)?;
            let up = forced == 0 && seen.is_some_and(|s| s >= down_before);
            let zone = zones
                .get(&host)
                .cloned()
                .unwrap_or_else(|| self.cfg.default_availability_zone.clone());
            out.insert(
                node,
                HostState {
                    name: host,
                    usable: disabled == 0 && up,
                    zone,
                },
            );
        }
        Ok(out)
    }

    /// Hosts whose aggregates set an availability zone.
    pub async fn host_zones(&self) -> Result<BTreeMap<String, String>> {
        let rows = store::sqlx::query(
            "SELECT h.host, m.value FROM aggregate_hosts h JOIN aggregate_metadata m \
             ON m.aggregate_id = h.aggregate_id WHERE m.key = 'availability_zone'",
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut out = BTreeMap::new();
        for r in rows {
            out.insert(r.try_get(0)?, r.try_get(1)?);
        }
        Ok(out)
    }

    /// Hosts running the given servers.
    async fn hosts_of(&self, ids: &[String]) -> Result<BTreeMap<String, i64>> {
        Ok(crate::db::instances::host_counts(&self.db, ids).await?)
    }

    /// A server group's policy, rules and the servers in it.
    async fn group_info(&self, id: &str) -> Result<Option<(String, i64, Vec<String>)>> {
        let row = store::sqlx::query("SELECT policy, rules FROM server_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let policy: String = row.try_get(0)?;
        let rules: String = row.try_get(1)?;
        let max_per_host = serde_json::from_str::<serde_json::Value>(&rules)
            .ok()
            .and_then(|v| v.get("max_server_per_host").and_then(|m| m.as_i64()))
            .unwrap_or(1);
        let members =
            store::sqlx::query("SELECT instance_id FROM server_group_members WHERE group_id = $1")
                .bind(id)
                .fetch_all(self.db.pool())
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Some((policy, max_per_host, members)))
    }

    /// Picks a host for one server and claims its resources in placement.
    pub async fn schedule(
        &self,
        instance_id: &str,
        project: &str,
        user: &str,
        flavor: &Flavor,
        spec: &RequestSpec,
    ) -> Result<Placed> {
        let query = placement_query(flavor, spec);
        let candidates: Vec<HostCandidate> = self
            .placement
            .host_candidates(&query)
            .await
            .map_err(|e| no_valid_host(&format!("placement: {}", e.message)))?;
        let states = self.host_states().await?;
        let same = self.hosts_of(&spec.same_host).await?;
        let different = self.hosts_of(&spec.different_host).await?;
        let group = match &spec.group {
            Some(g) => self.group_info(g).await?,
            None => None,
        };
        let group_hosts = match &group {
            Some((_, _, members)) => {
                let others: Vec<String> = members
                    .iter()
                    .filter(|m| *m != instance_id)
                    .cloned()
                    .collect();
                self.hosts_of(&others).await?
            }
            None => BTreeMap::new(),
        };
        let mut passed: Vec<(f64, &HostCandidate, &HostState)> = Vec::new();
        for c in &candidates {
            let Some(h) = states.get(&c.root) else {
                continue;
            };
            if !h.usable {
                continue;
            }
            if let Some(force) = &spec.force_host {
                if &h.name != force {
                    continue;
                }
            }
            if let Some(az) = &spec.availability_zone {
                if &h.zone != az {
                    continue;
                }
            }
            if !spec.same_host.is_empty() && !same.contains_key(&h.name) {
                continue;
            }
            if different.contains_key(&h.name) {
                continue;
            }
            let mut weight = c.free.get("MEMORY_MB").copied().unwrap_or(0) as f64
                * self.cfg.ram_weight_multiplier;
            if let Some((policy, max_per_host, _)) = &group {
                let on_host = group_hosts.get(&h.name).copied().unwrap_or(0);
                match policy.as_str() {
                    "affinity" if !group_hosts.is_empty() && on_host == 0 => continue,
                    "anti-affinity" if on_host >= *max_per_host => continue,
                    "soft-affinity" => weight += on_host as f64 * 1e12,
                    "soft-anti-affinity" => weight -= on_host as f64 * 1e12,
                    _ => {}
                }
            }
            passed.push((weight, c, h));
        }
        passed.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, c, h) in passed {
            let req = ConsumerRequest {
                uuid: instance_id.to_string(),
                project_id: Some(project.to_string()),
                user_id: Some(user.to_string()),
                generation: None,
                consumer_type: Some("INSTANCE".into()),
                allocations: c.allocations.clone(),
            };
            match self.placement.claim(std::slice::from_ref(&req)).await {
                Ok(()) => {
                    return Ok(Placed {
                        host: h.name.clone(),
                        node_id: c.root.clone(),
                        availability_zone: h.zone.clone(),
                    })
                }
                Err(ClaimError::Conflict(why)) => {
                    tracing::debug!(host = %h.name, %why, "claim lost; trying the next host");
                }
                Err(ClaimError::Other(e)) => return Err(Error::internal(e.message)),
            }
        }
        Err(no_valid_host("There are not enough hosts available."))
    }
}
