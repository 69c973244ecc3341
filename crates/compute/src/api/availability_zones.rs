//! Availability zones (`/os-availability-zone`): the zones of the compute
//! hosts (from aggregate metadata, else the default zone) and, for
//! admins, the hosts and services in each, the internal zone included.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use serde_json::{json, Map, Value};
use store::Row;

use super::aggregates::naive_time;
use super::{Auth, State};
use crate::db::aggregates as aggdb;
use crate::error::Result;
use crate::Compute;

/// Nova's `internal_service_availability_zone`.
pub const INTERNAL_ZONE: &str = "internal";

/// Services whose zone is not shown (the API services).
const API_SERVICES: [&str; 2] = ["nova-osapi_compute", "nova-metadata"];

struct Service {
    binary: String,
    host: String,
    zone: String,
    disabled: bool,
    forced_down: bool,
    last_seen_up: Option<i64>,
}

/// Every service with its zone set (`set_availability_zones`).
async fn services(state: &Compute) -> Result<Vec<Service>> {
    let rows = store::sqlx::query(
        "SELECT binary_name, host, disabled, forced_down, last_seen_up FROM compute_services \
         ORDER BY host, binary_name",
    )
    .fetch_all(state.db.pool())
    .await?;
    let mut zones: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in aggdb::aggregate_list(&state.db).await? {
        if let Some(z) = a.availability_zone() {
            for h in &a.hosts {
                zones.entry(h.clone()).or_default().insert(z.to_string());
            }
        }
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let binary: String = r.try_get(0)?;
        let host: String = r.try_get(1)?;
        let zone = if binary == "nova-compute" {
            match zones.get(&host) {
                Some(z) if !z.is_empty() => z.iter().cloned().collect::<Vec<_>>().join(","),
                _ => state.cfg.default_availability_zone.clone(),
            }
        } else {
            INTERNAL_ZONE.to_string()
        };
        out.push(Service {
            binary,
            host,
            zone,
            disabled: store::flag(r.try_get(2)?),
            forced_down: store::flag(r.try_get(3)?),
            last_seen_up: r.try_get(4)?,
        });
    }
    Ok(out)
}

/// A service is up when it reported within `service_down_time_seconds`
/// and is not forced down.
fn is_up(state: &Compute, s: &Service, now: i64) -> bool {
    let window = i64::try_from(state.cfg.service_down_time_seconds)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    !s.forced_down && s.last_seen_up.is_some_and(|t| now - t <= window)
}

/// Zones with an enabled service, and the other zones of disabled ones.
fn zones(services: &[Service]) -> (BTreeSet<String>, BTreeSet<String>) {
    let available: BTreeSet<String> = services
        .iter()
        .filter(|s| !s.disabled)
        .map(|s| s.zone.clone())
        .collect();
    let unavailable = services
        .iter()
        .filter(|s| s.disabled && !available.contains(&s.zone))
        .map(|s| s.zone.clone())
        .collect();
    (available, unavailable)
}

pub async fn index(state: State, Auth(caller): Auth) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "os_compute_api:os-availability-zone:list",
        &Compute::project_target(caller.project(), None),
    )?;
    let services = services(&state).await?;
    let (available, unavailable) = zones(&services);
    let mut info = Vec::new();
    for (set, ok) in [(&available, true), (&unavailable, false)] {
        for z in set.iter().filter(|z| z.as_str() != INTERNAL_ZONE) {
            info.push(json!({ "zoneName": z, "zoneState": { "available": ok }, "hosts": null }));
        }
    }
    Ok(Json(json!({ "availabilityZoneInfo": info })))
}

pub async fn detail(state: State, Auth(caller): Auth) -> Result<Json<Value>> {
    state.authorize(
        &caller,
        "os_compute_api:os-availability-zone:detail",
        &api_common::Target::new(),
    )?;
    let services = services(&state).await?;
    let (available, unavailable) = zones(&services);
    let now = store::now_micros();
    let mut info = Vec::new();
    for zone in &available {
        let mut hosts: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for s in services.iter().filter(|s| {
            !s.disabled && &s.zone == zone && !API_SERVICES.contains(&s.binary.as_str())
        }) {
            hosts.entry(s.host.clone()).or_default().insert(
                s.binary.clone(),
                json!({
                    "available": is_up(&state, s, now),
                    "active": !s.disabled,
                    "updated_at": s.last_seen_up.map(naive_time),
                }),
            );
        }
        info.push(json!({ "zoneName": zone, "zoneState": { "available": true }, "hosts": hosts }));
    }
    for zone in &unavailable {
        info.push(json!({ "zoneName": zone, "zoneState": { "available": false }, "hosts": null }));
    }
    Ok(Json(json!({ "availabilityZoneInfo": info })))
}
