//! Placement in process: what the compute service asks of it (Nova's
//! scheduler report client), without going over HTTP. Every write goes
//! through the same transactions, generation checks and change log as the
//! HTTP API, so other API processes see it.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::allocations::{write_retrying, ConsumerRequest, WriteError};
use crate::cache::{commit, Changes};
use crate::db::{self, InventoryRow, ProviderRow};
use crate::{Error, Placement, Result};

/// The microversion in-process writes run at (consumer generations and
/// types).
const MINOR: u16 = 39;

/// A compute host's root resource provider as the host reports it.
#[derive(Clone, Debug)]
pub struct ProviderSpec {
    pub uuid: String,
    pub name: String,
    pub inventories: Vec<InventoryRow>,
    /// Traits the host has; names placement does not know are skipped.
    pub traits: Vec<String>,
}

/// One allocation candidate, reduced to what a scheduler needs.
#[derive(Clone, Debug, PartialEq)]
pub struct HostCandidate {
    /// The root provider (the compute node).
    pub root: String,
    /// provider uuid -> class -> amount.
    pub allocations: BTreeMap<String, BTreeMap<String, i64>>,
    /// Capacity left on the root provider per class, before this claim.
    pub free: BTreeMap<String, i64>,
}

/// Why a claim failed.
#[derive(Debug)]
pub enum ClaimError {
    /// Capacity, inventory constraints or a generation: try another host.
    Conflict(String),
    Other(Error),
}

impl From<WriteError> for ClaimError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Api(e) if e.status.as_u16() == 409 => ClaimError::Conflict(e.message),
            WriteError::Api(e) => ClaimError::Other(e),
            WriteError::Retry => ClaimError::Conflict("concurrent update".into()),
            WriteError::NoSuchClass(c) => {
                ClaimError::Other(Error::bad_request(format!("No such resource class {c}.")))
            }
            WriteError::Invalid(m) => ClaimError::Conflict(m),
        }
    }
}

impl Placement {
    /// Creates or updates the root providers of hosts: inventories and
    /// traits, in one transaction. Providers that did not change are not
    /// written.
    pub async fn ensure_providers(&self, specs: &[ProviderSpec]) -> Result<()> {
        let mut tx = self.db.write().await?;
        let mut changes = Changes::default();
        let mut wanted_traits: Vec<String> = specs
            .iter()
            .flat_map(|s| s.traits.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let known = db::traits_existing(&mut tx.tx, &wanted_traits).await?;
        wanted_traits.retain(|t| known.contains(t));
        for spec in specs {
            let now = store::now_micros();
            let row = match db::provider_get(&mut tx.tx, &spec.uuid).await? {
                Some(r) => r,
                None => {
                    if let Some(other) = db::provider_by_name(&mut tx.tx, &spec.name).await? {
                        return Err(Error::conflict(format!(
                            "resource provider name {} is taken by {}",
                            spec.name, other.uuid
                        )));
                    }
                    let r = ProviderRow {
                        uuid: spec.uuid.clone(),
                        name: spec.name.clone(),
                        generation: 0,
                        parent_uuid: None,
                        root_uuid: spec.uuid.clone(),
                        created_at: now,
                        updated_at: now,
                    };
                    db::provider_insert(&mut tx.tx, &r).await?;
                    r
                }
            };
            let mut changed = false;
            if row.name != spec.name {
                db::provider_update(&mut tx.tx, &row.uuid, &spec.name, None, &row.root_uuid)
                    .await?;
                changed = true;
            }
            let have = db::inventory_list(&mut tx.tx, &spec.uuid).await?;
            for inv in &spec.inventories {
                match have.iter().find(|h| h.resource_class == inv.resource_class) {
                    None => {
                        db::inventory_insert(&mut tx.tx, &spec.uuid, inv).await?;
                        changed = true;
                    }
                    Some(h) if !same_inventory(h, inv) => {
                        db::inventory_update(&mut tx.tx, &spec.uuid, inv).await?;
                        changed = true;
                    }
                    Some(_) => {}
                }
            }
            for h in &have {
                if !spec
                    .inventories
                    .iter()
                    .any(|i| i.resource_class == h.resource_class)
                    && db::usages_of_provider(&mut tx.tx, &spec.uuid)
                        .await?
                        .get(&h.resource_class)
                        .copied()
                        .unwrap_or(0)
                        == 0
                {
                    db::inventory_delete(&mut tx.tx, &spec.uuid, &h.resource_class).await?;
                    changed = true;
                }
            }
            let mut traits: Vec<String> = spec
                .traits
                .iter()
                .filter(|t| known.contains(*t))
                .cloned()
                .collect();
            traits.sort();
            traits.dedup();
            let mut current = db::traits_of_provider(&mut tx.tx, &spec.uuid).await?;
            current.sort();
            if current != traits {
                db::provider_traits_replace(&mut tx.tx, &spec.uuid, &traits).await?;
                changed = true;
            }
            if changed {
                let generation = db::provider_get(&mut tx.tx, &spec.uuid)
                    .await?
                    .map(|r| r.generation)
                    .unwrap_or(row.generation);
                db::provider_bump_generation(&mut tx.tx, &spec.uuid, generation).await?;
                changes.add(&spec.uuid);
            }
        }
        if changes.providers.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        Ok(commit(&self.db, &self.cache, tx, changes).await?)
    }

    /// Sets the aggregates a provider is a member of.
    pub async fn set_provider_aggregates(&self, uuid: &str, aggregates: &[String]) -> Result<()> {
        let mut tx = self.db.write().await?;
        let Some(row) = db::provider_get(&mut tx.tx, uuid).await? else {
            return Ok(());
        };
        let mut current = db::aggregates_of_provider(&mut tx.tx, uuid).await?;
        current.sort();
        let mut wanted = aggregates.to_vec();
        wanted.sort();
        wanted.dedup();
        if current == wanted {
            tx.commit().await?;
            return Ok(());
        }
        db::provider_aggregates_replace(&mut tx.tx, uuid, &wanted).await?;
        db::provider_bump_generation(&mut tx.tx, uuid, row.generation).await?;
        Ok(commit(&self.db, &self.cache, tx, Changes::provider(uuid)).await?)
    }

    /// Allocation candidates for a query in placement's query syntax
    /// (`resources=VCPU:1,MEMORY_MB:512&required=...`), from the
    /// in-memory model.
    pub async fn host_candidates(&self, pairs: &[(String, String)]) -> Result<Vec<HostCandidate>> {
        let mut request = placement_engine::parse_candidates_query(pairs, MINOR)
            .map_err(crate::api::candidates_engine_error)?;
        request.randomize = self.config.randomize_allocation_candidates;
        self.cache.refresh(&self.db).await?;
        let model = self.cache.read();
        let found = model
            .allocation_candidates(&request)
            .map_err(crate::api::candidates_engine_error)?;
        let mut free_of: BTreeMap<u32, BTreeMap<String, i64>> = BTreeMap::new();
        let mut root_of: BTreeMap<u32, u32> = BTreeMap::new();
        for s in &found.provider_summaries {
            root_of.insert(s.provider, s.root);
            if s.provider == s.root {
                free_of.insert(
                    s.provider,
                    s.resources
                        .iter()
                        .map(|(c, cap, used)| (found.class_name(*c).to_string(), cap - used))
                        .collect(),
                );
            }
        }
        let mut out = Vec::with_capacity(found.allocation_requests.len());
        for ar in &found.allocation_requests {
            let mut allocations: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
            let mut root = None;
            for (p, c, n) in &ar.resources {
                root.get_or_insert(root_of.get(p).copied().unwrap_or(*p));
                allocations
                    .entry(found.provider_uuid(*p).to_string())
                    .or_default()
                    .insert(found.class_name(*c).to_string(), *n);
            }
            let Some(root) = root else { continue };
            out.push(HostCandidate {
                root: found.provider_uuid(root).to_string(),
                allocations,
                free: free_of.get(&root).cloned().unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Writes the allocations of one or more consumers atomically (each
    /// consumer's previous allocations are replaced; an empty map removes
    /// them). `generation` is the consumer generation expected (None for a
    /// new consumer).
    pub async fn claim(
        &self,
        consumers: &[ConsumerRequest],
    ) -> std::result::Result<(), ClaimError> {
        write_retrying(self, MINOR, consumers)
            .await
            .map_err(ClaimError::from)
    }

    /// A consumer's allocations and generation (None: no allocations).
    pub async fn consumer_allocations(
        &self,
        consumer: &str,
    ) -> Result<Option<(i64, BTreeMap<String, BTreeMap<String, i64>>)>> {
        use store::sqlx::{self, Row};
        let mut conn = self.db.pool().acquire().await?;
        let gen = sqlx::query("SELECT generation FROM placement_consumers WHERE uuid = $1")
            .bind(consumer)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(gen) = gen else { return Ok(None) };
        let generation: i64 = gen.try_get(0)?;
        let rows = sqlx::query(
            "SELECT provider_uuid, resource_class, used FROM placement_allocations \
             WHERE consumer_uuid = $1",
        )
        .bind(consumer)
        .fetch_all(&mut *conn)
        .await?;
        let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for r in rows {
            out.entry(r.try_get(0)?)
                .or_default()
                .insert(r.try_get(1)?, r.try_get(2)?);
        }
        Ok(Some((generation, out)))
    }

    /// Removes every allocation of a consumer (no-op when it has none).
    pub async fn free(&self, consumer: &str) -> Result<()> {
        for _ in 0..10 {
            let Some((generation, _)) = self.consumer_allocations(consumer).await? else {
                return Ok(());
            };
            let req = ConsumerRequest {
                uuid: consumer.to_string(),
                project_id: None,
                user_id: None,
                generation: Some(generation),
                consumer_type: None,
                allocations: BTreeMap::new(),
            };
            match self.claim(std::slice::from_ref(&req)).await {
                Ok(()) => return Ok(()),
                Err(ClaimError::Conflict(_)) => continue,
                Err(ClaimError::Other(e)) => return Err(e),
            }
        }
        Err(Error::conflict(format!(
            "allocations of {consumer} kept changing"
        )))
    }
}

fn same_inventory(a: &InventoryRow, b: &InventoryRow) -> bool {
    a.total == b.total
        && a.reserved == b.reserved
        && a.min_unit == b.min_unit
        && a.max_unit == b.max_unit
        && a.step_size == b.step_size
        && (a.allocation_ratio - b.allocation_ratio).abs() < 1e-9
}
