//! Server lifecycle: create (record, schedule, claim, define, power on),
//! power actions, delete, and what keeps the database true to the hosts
//! (lifecycle events, the reconciler at start-up).
//!
//! An operation first moves the server's `task_state` with a
//! compare-and-swap (so two requests cannot both act), and records itself
//! in `compute_operations`; the host work runs in a task; the end state is
//! written and the operation row removed. A process that dies in between
//! leaves the operation row behind, and the reconciler of the next start
//! finishes or rolls it back.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent::hypervisor::{
    ConfigDrive, DiskFormat, ImageSource, InstanceMetadata, PowerOff, PowerState, RebootKind,
    ServerSpec,
};
use base64::Engine as _;
use store::Row;

use crate::db::instances::{self as idb, Instance};
use crate::error::{Error, Result};
use crate::hosts::Host;
use crate::scheduler::RequestSpec;
use crate::Compute;

/// Nova's power_state integers.
pub mod power {
    pub const NOSTATE: i64 = 0;
    pub const RUNNING: i64 = 1;
    pub const PAUSED: i64 = 3;
    pub const SHUTDOWN: i64 = 4;
}

/// A power action on a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerAction {
    Start,
    Stop,
    RebootSoft,
    RebootHard,
    Pause,
    Unpause,
    Suspend,
    Resume,
}

impl PowerAction {
    /// (API action name, vm_states allowed, task_state while it runs,
    /// instance action name)
    fn rules(
        self,
    ) -> (
        &'static str,
        &'static [&'static str],
        &'static str,
        &'static str,
    ) {
        match self {
            PowerAction::Start => ("start", &["stopped"], "powering-on", "start"),
            PowerAction::Stop => ("stop", &["active", "error"], "powering-off", "stop"),
            PowerAction::RebootSoft => ("reboot", &["active"], "rebooting", "reboot"),
            PowerAction::RebootHard => (
                "reboot",
                &["active", "stopped", "paused", "suspended", "error"],
                "rebooting_hard",
                "reboot",
            ),
            PowerAction::Pause => ("pause", &["active"], "pausing", "pause"),
            PowerAction::Unpause => ("unpause", &["paused"], "unpausing", "unpause"),
            PowerAction::Suspend => ("suspend", &["active"], "suspending", "suspend"),
            PowerAction::Resume => ("resume", &["suspended"], "resuming", "resume"),
        }
    }
}

fn nova_power(s: PowerState) -> i64 {
    s.nova_power_state() as i64
}

impl Compute {
    /// The host a server runs on, when this process drives it.
    fn host_of(&self, inst: &Instance) -> Result<Arc<Host>> {
        let name = inst
            .host
            .as_deref()
            .ok_or_else(|| Error::conflict(format!("Instance {} is not on a host.", inst.id)))?;
        self.hosts
            .get(name)
            .ok_or_else(|| Error::Unavailable(format!("Compute host {name} could not be found.")))
    }

    /// The end of an operation that ran in a task: on failure a fault and
    /// the server to `failed_vm_state` (None keeps it) with its task
    /// cleared; then the action's event and the operation row removed.
    #[allow(clippy::too_many_arguments)]
    async fn finish_op(
        &self,
        id: &str,
        action_id: &str,
        event: &str,
        started: i64,
        host: &str,
        result: Result<()>,
        failed_vm_state: Option<&str>,
    ) {
        let outcome = match result {
            Ok(()) => "Success",
            Err(e) => {
                tracing::warn!(server = %id, error = %e, event, "operation failed");
                let _ = idb::add_fault(&self.db, id, 500, &e.to_string(), "", Some(host)).await;
                let _ = idb::set_state(&self.db, id, &[], failed_vm_state, None, None).await;
                "Error"
            }
        };
        let _ = idb::action_event(
            &self.db,
            action_id,
            event,
            started,
            outcome,
            None,
            Some(host),
        )
        .await;
        let _ = self.op_end(id).await;
    }

    /// Records an operation in flight (for the reconciler).
    pub(crate) async fn op_begin(&self, id: &str, op: &str, host: Option<&str>) -> Result<()> {
        let now = store::now_micros();
        store::sqlx::query(
            "INSERT INTO compute_operations (instance_id, op, host, owner, heartbeat, created_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (instance_id) DO UPDATE SET op = $2, \
             host = $3, owner = $4, heartbeat = $5",
        )
        .bind(id)
        .bind(op)
        .bind(host)
        .bind(&self.owner)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The tail every long operation shares: records the instance action,
    /// marks the operation in flight on `host`, and runs `work` in a task
    /// that ends it with [`Compute::finish_op`].
    async fn spawn_op<F, Fut>(
        self: &Arc<Self>,
        caller: &crate::Caller,
        inst_id: &str,
        op: LongOp,
        request_id: &str,
        host: Arc<Host>,
        work: F,
    ) -> Result<()>
    where
        F: FnOnce(Arc<Self>, Arc<Host>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let action_id = idb::action_start(
            &self.db,
            inst_id,
            op.action,
            request_id,
            caller.user(),
            caller.project(),
        )
        .await?;
        self.op_begin(inst_id, op.op, Some(&host.name)).await?;
        let this = self.clone();
        let id = inst_id.to_string();
        tokio::spawn(async move {
            let started = store::now_micros();
            let name = host.name.clone();
            let r = work(this.clone(), host).await;
            this.finish_op(
                &id,
                &action_id,
                op.event,
                started,
                &name,
                r,
                op.failed_vm_state,
            )
            .await;
        });
        Ok(())
    }

    async fn op_end(&self, id: &str) -> Result<()> {
        store::sqlx::query("DELETE FROM compute_operations WHERE instance_id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Makes the cached base image of `image_id` for the hosts of this
    /// machine: a hard link to the image store's file (a copy when linking
    /// is not possible). It is never written to.
    async fn cached_image(&self, image_id: &str) -> Result<ImageSource> {
        let img = image::db::images::image_get(&self.images.db, image_id)
            .await?
            .ok_or_else(|| Error::bad(format!("Image {image_id} could not be found.")))?;
        let location = img
            .row
            .location
            .clone()
            .ok_or_else(|| Error::bad(format!("Image {image_id} has no data.")))?;
        let src =
            self.images.store.local_path(&location).ok_or_else(|| {
                Error::internal(format!("image {image_id} is not on this machine"))
            })?;
        let format = match img.row.disk_format.as_deref() {
            Some("qcow2") => DiskFormat::Qcow2,
            _ => DiskFormat::Raw,
        };
        let base_dir = self.instances_dir().join("_base");
        tokio::fs::create_dir_all(&base_dir).await?;
        let dest = base_dir.join(image_id);
        if tokio::fs::metadata(&dest).await.is_err() {
            let tmp = base_dir.join(format!(".{image_id}.{}", uuid::Uuid::new_v4()));
            if tokio::fs::hard_link(&src, &tmp).await.is_err() {
                tokio::fs::copy(&src, &tmp).await?;
            }
            tokio::fs::rename(&tmp, &dest).await?;
        }
        Ok(ImageSource { path: dest, format })
    }

    pub fn instances_dir(&self) -> PathBuf {
        self.cfg
            .instances_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/oxistack/instances"))
    }

    /// The config drive of a server (Nova's layout).
    fn config_drive(&self, inst: &Instance) -> ConfigDrive {
        let mut keys = BTreeMap::new();
        if let (Some(name), Some(data)) = (&inst.key_name, &inst.key_data) {
            keys.insert(name.clone(), data.clone());
        }
        let meta = InstanceMetadata {
            uuid: uuid::Uuid::parse_str(&inst.id).unwrap_or_default(),
            name: inst.name.clone(),
            hostname: inst.hostname.clone(),
            public_keys: keys,
            availability_zone: inst.availability_zone.clone(),
            project_id: Some(inst.project_id.clone()),
            launch_index: inst.launch_index as u32,
            meta: inst.metadata.clone(),
        };
        let user_data = inst
            .user_data
            .as_deref()
            .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok());
        ConfigDrive::new(&meta, user_data)
    }

    /// Builds a server that was recorded as `building`: schedule, claim,
    /// define, start. Any failure leaves it in ERROR with a fault, its
    /// allocation freed and nothing left on the host.
    pub async fn build(self: &Arc<Self>, id: String, action_id: String) {
        let started = store::now_micros();
        let result = self.build_inner(&id).await;
        let (outcome, host) = match result {
            Ok(host) => ("Success", Some(host)),
            Err((e, host)) => {
                let message = match &e {
                    Error::Internal(m) => m.clone(),
                    other => other.to_string(),
                };
                tracing::warn!(server = %id, error = %message, "build failed");
                if let Some(h) = host.as_deref().and_then(|h| self.hosts.get(h)) {
                    if let Ok(uuid) = uuid::Uuid::parse_str(&id) {
                        let _ = h.hv.delete(uuid).await;
                    }
                }
                if let Err(e) = self.placement.free(&id).await {
                    tracing::error!(server = %id, error = ?e, "freeing the allocation failed");
                }
                // Nova records build failures (NoValidHost included) as 500.
                let code = 500;
                let _ = idb::add_fault(&self.db, &id, code, &message, "", host.as_deref()).await;
                let _ = idb::set_state(&self.db, &id, &[], Some("error"), None, None).await;
                ("Error", host)
            }
        };
        let _ = idb::action_event(
            &self.db,
            &action_id,
            "compute__do_build_and_run_instance",
            started,
            outcome,
            None,
            host.as_deref(),
        )
        .await;
        let _ = self.op_end(&id).await;
    }

    async fn build_inner(&self, id: &str) -> std::result::Result<String, (Error, Option<String>)> {
        let inst = idb::get(&self.db, id, false)
            .await
            .map_err(|e| (e.into(), None))?
            .ok_or_else(|| (Error::server_not_found(id), None))?;
        let spec: RequestSpec =
            serde_json::from_value(inst.request_spec.clone()).unwrap_or_default();
        let t0 = std::time::Instant::now();
        let placed = self
            .schedule(id, &inst.project_id, &inst.user_id, &inst.flavor, &spec)
            .await
            .map_err(|e| (e, None))?;
        let host = placed.host.clone();
        let fail = |e: Error| (e, Some(host.clone()));
        let now = store::now_micros();
        let moved = store::sqlx::query(
            "UPDATE instances SET host = $2, node = $3, availability_zone = $4, \
             task_state = 'spawning', updated_at = $5 WHERE id = $1 AND deleted_at IS NULL \
             AND task_state = 'scheduling'",
        )
        .bind(id)
        .bind(&placed.host)
        .bind(&placed.host)
        .bind(&placed.availability_zone)
        .bind(now)
        .execute(self.db.pool())
        .await
        .map_err(|e| fail(e.into()))?
        .rows_affected();
        if moved != 1 {
            return Err(fail(Error::conflict(
                "the server was deleted while building",
            )));
        }
        self.op_begin(id, "build", Some(&host))
            .await
            .map_err(fail)?;
        let h = self.hosts.get(&host).ok_or_else(|| {
            fail(Error::Unavailable(format!(
                "Compute host {host} could not be found."
            )))
        })?;
        let image = if h.hv.kind() == "fake" {
            ImageSource {
                path: PathBuf::from(format!("/fake/images/{}", inst.image_ref)),
                format: DiskFormat::Qcow2,
            }
        } else {
            self.cached_image(&inst.image_ref).await.map_err(fail)?
        };
        let mut inst = inst;
        inst.availability_zone = Some(placed.availability_zone.clone());
        let server = ServerSpec {
            id: uuid::Uuid::parse_str(id).map_err(|_| fail(Error::bad("bad id")))?,
            name: inst.name.clone(),
            hostname: inst.hostname.clone(),
            vcpus: inst.flavor.vcpus as u32,
            memory_mb: inst.flavor.memory_mb as u64,
            root_gb: inst.flavor.root_gb as u64,
            image,
            nics: Vec::new(),
            config_drive: Some(self.config_drive(&inst)),
            console_log: None,
        };
        let t1 = std::time::Instant::now();
        h.hv.define(server.clone()).await.map_err(|e| {
            fail(Error::internal(format!(
                "Build of instance {id} aborted: {e}"
            )))
        })?;
        let t2 = std::time::Instant::now();
        h.hv.power_on(server.id).await.map_err(|e| {
            fail(Error::internal(format!(
                "Build of instance {id} aborted: {e}"
            )))
        })?;
        let t3 = std::time::Instant::now();
        let done = store::sqlx::query(
            "UPDATE instances SET vm_state = 'active', task_state = NULL, power_state = 1, \
             launched_at = $2, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL \
             AND task_state = 'spawning'",
        )
        .bind(id)
        .bind(store::now_micros())
        .execute(self.db.pool())
        .await
        .map_err(|e| fail(e.into()))?
        .rows_affected();
        if done != 1 {
            return Err(fail(Error::conflict(
                "the server was deleted while building",
            )));
        }
        tracing::debug!(
            server = %id,
            %host,
            schedule_ms = (t1 - t0).as_millis() as u64,
            define_ms = (t2 - t1).as_millis() as u64,
            start_ms = (t3 - t2).as_millis() as u64,
            total_ms = t0.elapsed().as_millis() as u64,
            "server built"
        );
        Ok(host)
    }

    /// Checks and starts a power action; the host work runs in a task.
    pub async fn power_action(
        self: &Arc<Self>,
        inst: &Instance,
        action: PowerAction,
        request_id: &str,
        user: &str,
        project: &str,
    ) -> Result<()> {
        let (name, allowed, task, action_name) = action.rules();
        if !allowed.contains(&inst.vm_state.as_str()) {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                name,
                &inst.id,
            ));
        }
        if let Some(t) = &inst.task_state {
            // Nova lets a hard reboot interrupt a soft one.
            let rebooting = matches!(
                t.as_str(),
                "rebooting" | "reboot_pending" | "reboot_started"
            );
            if !(action == PowerAction::RebootHard && rebooting) {
                return Err(Error::invalid_state("task_state", t, name, &inst.id));
            }
        }
        let host = self.host_of(inst)?;
        let expected: &[Option<&str>] = if action == PowerAction::RebootHard {
            &[
                None,
                Some("rebooting"),
                Some("reboot_pending"),
                Some("reboot_started"),
            ]
        } else {
            &[None]
        };
        if !idb::set_state(&self.db, &inst.id, expected, None, Some(task), None).await? {
            return Err(Error::invalid_state(
                "task_state",
                "(changing)",
                name,
                &inst.id,
            ));
        }
        let action_id =
            idb::action_start(&self.db, &inst.id, action_name, request_id, user, project).await?;
        self.op_begin(&inst.id, action_name, Some(&host.name))
            .await?;
        let this = self.clone();
        let id = inst.id.clone();
        tokio::spawn(async move {
            this.run_power_action(host, id, action, action_id).await;
        });
        Ok(())
    }

    async fn run_power_action(
        self: Arc<Self>,
        host: Arc<Host>,
        id: String,
        action: PowerAction,
        action_id: String,
    ) {
        let started = store::now_micros();
        let Ok(uuid) = uuid::Uuid::parse_str(&id) else {
            return;
        };
        let timeout = Duration::from_secs(self.cfg.shutdown_timeout_seconds);
        let hv = &host.hv;
        let r = match action {
            PowerAction::Start => hv.power_on(uuid).await.map(|_| ("active", power::RUNNING)),
            PowerAction::Stop => hv
                .power_off(uuid, PowerOff::graceful(timeout))
                .await
                .map(|_| ("stopped", power::SHUTDOWN)),
            PowerAction::RebootSoft => hv
                .reboot(uuid, RebootKind::Soft { timeout })
                .await
                .map(|_| ("active", power::RUNNING)),
            PowerAction::RebootHard => hv
                .reboot(uuid, RebootKind::Hard)
                .await
                .map(|_| ("active", power::RUNNING)),
            PowerAction::Pause => hv.pause(uuid).await.map(|_| ("paused", power::PAUSED)),
            PowerAction::Unpause => hv.unpause(uuid).await.map(|_| ("active", power::RUNNING)),
            PowerAction::Suspend => hv
                .suspend(uuid)
                .await
                .map(|_| ("suspended", power::SHUTDOWN)),
            PowerAction::Resume => hv.resume(uuid).await.map(|_| ("active", power::RUNNING)),
        };
        let (_, _, task, event) = action.rules();
        let outcome = match r {
            Ok((vm, p)) => {
                let _ = idb::set_state(&self.db, &id, &[Some(task)], Some(vm), None, Some(p)).await;
                "Success"
            }
            Err(e) => {
                tracing::warn!(server = %id, error = %e, ?action, "power action failed");
                // Back to what the hypervisor says, task cleared (as Nova's
                // reverts_task_state does).
                let state = hv.info(uuid).await.map(|i| i.state).ok();
                let vm = match state {
                    Some(s) if s.is_active() => None,
                    Some(_) => Some("stopped"),
                    None => None,
                };
                let _ = idb::set_state(
                    &self.db,
                    &id,
                    &[Some(task)],
                    vm,
                    None,
                    state.map(nova_power),
                )
                .await;
                let _ =
                    idb::add_fault(&self.db, &id, 500, &e.to_string(), "", Some(&host.name)).await;
                "Error"
            }
        };
        let _ = idb::action_event(
            &self.db,
            &action_id,
            &format!("compute_{event}_instance"),
            started,
            outcome,
            None,
            Some(&host.name),
        )
        .await;
        let _ = self.op_end(&id).await;
    }

    /// Deletes a server: marks it deleting, removes it from its host,
    /// frees its allocation, soft-deletes the row.
    pub async fn delete_server(
        self: &Arc<Self>,
        inst: &Instance,
        request_id: &str,
        user: &str,
    ) -> Result<()> {
        if inst.task_state.as_deref() == Some("deleting") {
            return Ok(());
        }
        store::sqlx::query(
            "UPDATE instances SET task_state = 'deleting', updated_at = $2 WHERE id = $1 \
             AND deleted_at IS NULL",
        )
        .bind(&inst.id)
        .bind(store::now_micros())
        .execute(self.db.pool())
        .await?;
        let action_id = idb::action_start(
            &self.db,
            &inst.id,
            "delete",
            request_id,
            user,
            &inst.project_id,
        )
        .await?;
        self.op_begin(&inst.id, "delete", inst.host.as_deref())
            .await?;
        let this = self.clone();
        let inst = inst.clone();
        tokio::spawn(async move {
            let started = store::now_micros();
            let outcome = match this.finish_delete(&inst).await {
                Ok(()) => "Success",
                Err(e) => {
                    tracing::error!(server = %inst.id, error = %e, "delete failed");
                    let _ = idb::set_state(
                        &this.db,
                        &inst.id,
                        &[Some("deleting")],
                        Some("error"),
                        None,
                        None,
                    )
                    .await;
                    "Error"
                }
            };
            let _ = idb::action_event(
                &this.db,
                &action_id,
                "compute_terminate_instance",
                started,
                outcome,
                None,
                inst.host.as_deref(),
            )
            .await;
            let _ = this.op_end(&inst.id).await;
        });
        Ok(())
    }

    /// The host side of a delete, then the records. Safe to repeat.
    pub async fn finish_delete(&self, inst: &Instance) -> Result<()> {
        if let Some(h) = inst.host.as_deref().and_then(|h| self.hosts.get(h)) {
            if let Ok(uuid) = uuid::Uuid::parse_str(&inst.id) {
                match h.hv.delete(uuid).await {
                    Ok(()) | Err(agent::hypervisor::Error::NotFound(_)) => {}
                    // Nova's local delete: the host removes the server
                    // when it is back (the reconciler deletes servers the
                    // database no longer places there).
                    Err(agent::hypervisor::Error::Unreachable(e)) => {
                        tracing::warn!(server = %inst.id, host = %h.name, error = %e,
                            "host unreachable: deleted here, the host cleans up when it returns");
                    }
                    Err(e) => return Err(Error::internal(format!("delete on host: {e}"))),
                }
            }
        }
        self.placement.free(&inst.id).await?;
        let now = store::now_micros();
        store::sqlx::query(
            "UPDATE instances SET vm_state = 'deleted', task_state = NULL, power_state = 0, \
             terminated_at = $2, deleted_at = $2, updated_at = $2 WHERE id = $1",
        )
        .bind(&inst.id)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        store::sqlx::query("DELETE FROM server_group_members WHERE instance_id = $1")
            .bind(&inst.id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Follows a host's lifecycle events: a server that stopped without
    /// being asked to becomes SHUTOFF at once (Nova's power-state sync).
    pub fn watch_events(self: &Arc<Self>, host: Arc<Host>) {
        let mut rx = host.hv.events();
        let weak = Arc::downgrade(self);
        let mut stop = self.stopping();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = stop.changed() => return,
                };
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(this) = weak.upgrade() else { return };
                let id = ev.id.to_string();
                let p = nova_power(ev.state);
                if matches!(ev.state, PowerState::Shutoff | PowerState::Crashed) {
                    // Events arrive after the fact: act only when the
                    // server is still down now (a reboot's power-off is
                    // followed by a start), and only on a server no
                    // operation is working on.
                    // Read the row first; the update below only applies if
                    // nothing changed it meanwhile (an operation that ends
                    // after this check writes its own state).
                    let row = store::sqlx::query(
                        "SELECT updated_at FROM instances WHERE id = $1 AND task_state IS NULL \
                         AND vm_state IN ('active', 'paused') AND deleted_at IS NULL",
                    )
                    .bind(&id)
                    .fetch_optional(this.db.pool())
                    .await;
                    let Ok(Some(row)) = row else { continue };
                    let Ok(seen) = row.try_get::<i64, _>(0) else {
                        continue;
                    };
                    let down_now = match host.hv.info(ev.id).await {
                        Ok(info) => matches!(info.state, PowerState::Shutoff | PowerState::Crashed),
                        Err(_) => false,
                    };
                    if !down_now {
                        continue;
                    }
                    let vm_active = store::sqlx::query(
                        "UPDATE instances SET vm_state = 'stopped', power_state = $2, updated_at = $3 \
                         WHERE id = $1 AND task_state IS NULL AND vm_state IN ('active', 'paused') \
                         AND updated_at = $4",
                    )
                    .bind(&id)
                    .bind(p)
                    .bind(store::now_micros())
                    .bind(seen)
                    .execute(this.db.pool())
                    .await;
                    if let Err(e) = vm_active {
                        tracing::warn!(server = %id, error = %e, "power sync failed");
                    }
                    tracing::info!(server = %id, reason = %ev.reason, "server stopped on its own");
                }
            }
        });
    }

    /// At start-up: re-adopts the servers still running on this process's
    /// hosts, and finishes or rolls back operations a previous process left
    /// half done.
    pub async fn reconcile(self: &Arc<Self>) -> Result<()> {
        for h in self.hosts.all() {
            self.reconcile_host(&h, true).await?;
        }
        self.sweep_interrupted().await
    }

    /// Brings one host and the database into agreement (see
    /// [`Self::reconcile`]). `at_start`: no operation of this process can be
    /// running on the host, so every operation found was interrupted; else
    /// (a host that answers again) servers with an operation under way are
    /// left to it.
    pub async fn reconcile_host(self: &Arc<Self>, h: &Arc<Host>, at_start: bool) -> Result<()> {
        // The run of the agent reconciled with, so that a later restart is
        // noticed by the heartbeat even when no ping fails in between (a
        // returning host's run was just noted by the heartbeat itself).
        if at_start {
            if let Ok(run) = h.hv.ping().await {
                self.hosts.note_run(&h.name, &run);
            }
        }
        let found =
            h.hv.adopt()
                .await
                .map_err(|e| Error::internal(format!("adopt on {}: {e}", h.name)))?;
        let on_host: BTreeMap<String, (PowerState, bool)> = found
            .iter()
            .map(|s| (s.id.to_string(), (s.state, s.rescued)))
            .collect();
        let known = idb::on_host(&self.db, &h.name).await?;
        // Servers on the host that the database does not place there
        // (deleted while the host was away): removed, as Nova's
        // running-deleted cleanup does.
        for s in &found {
            let id = s.id.to_string();
            if !known.iter().any(|i| i.id == id) {
                tracing::warn!(server = %id, host = %h.name, "removing a server the database does not know");
                if let Err(e) = h.hv.delete(s.id).await {
                    tracing::error!(server = %id, error = %e, "removing an unknown server failed");
                }
            }
        }
        for inst in known {
            let (state, rescued) = match on_host.get(&inst.id) {
                Some((s, r)) => (Some(*s), *r),
                None => (None, false),
            };
            let op = store::sqlx::query("SELECT op FROM compute_operations WHERE instance_id = $1")
                .bind(&inst.id)
                .fetch_optional(self.db.pool())
                .await?;
            let interrupted = op.is_some() || inst.task_state.is_some();
            if !at_start && (interrupted || inst.vm_state == "building") {
                continue;
            }
            if inst.task_state.as_deref() == Some("deleting") {
                self.finish_delete(&inst).await?;
                self.op_end(&inst.id).await?;
                continue;
            }
            if inst.vm_state == "building" {
                // An interrupted create: nothing may be left behind.
                if let Ok(uuid) = uuid::Uuid::parse_str(&inst.id) {
                    let _ = h.hv.delete(uuid).await;
                }
                self.placement.free(&inst.id).await?;
                idb::add_fault(
                    &self.db,
                    &inst.id,
                    500,
                    "Build of instance was interrupted by a restart of the control plane.",
                    "",
                    Some(&h.name),
                )
                .await?;
                idb::set_state(&self.db, &inst.id, &[], Some("error"), None, Some(0)).await?;
                self.op_end(&inst.id).await?;
                continue;
            }
            if inst.vm_state == "error" && inst.launched_at.is_none() {
                // A build that failed: nothing of it may stay on the host.
                // Its own clean-up cannot reach a host that went away in
                // the middle (an agent killed while starting the guest),
                // so what the host still has of it is removed now.
                if state.is_some() {
                    tracing::warn!(server = %inst.id, host = %h.name, "removing what a failed build left on its host");
                    if let Ok(uuid) = uuid::Uuid::parse_str(&inst.id) {
                        if let Err(e) = h.hv.delete(uuid).await {
                            tracing::error!(server = %inst.id, error = %e, "removing a failed build failed");
                        }
                    }
                }
                if interrupted || inst.power_state != 0 {
                    idb::set_state(&self.db, &inst.id, &[], None, None, Some(0)).await?;
                }
                self.op_end(&inst.id).await?;
                continue;
            }
            let (vm, p) = match state {
                // ERROR stays until a reset-state (as in Nova); the power
                // state follows the host.
                Some(s) if inst.vm_state == "error" => (None, nova_power(s)),
                Some(s) if s == PowerState::Paused => (Some("paused"), nova_power(s)),
                Some(s) if s.is_active() && rescued => (Some("rescued"), nova_power(s)),
                Some(s) if s.is_active() => (Some("active"), nova_power(s)),
                Some(PowerState::Suspended) => {
                    (Some("suspended"), nova_power(PowerState::Suspended))
                }
                Some(s) => (Some("stopped"), nova_power(s)),
                None => (Some("error"), 0),
            };
            let vm_changes = vm.is_some_and(|v| v != inst.vm_state);
            if interrupted || vm_changes || inst.power_state != p {
                tracing::info!(server = %inst.id, ?vm, power = p, interrupted, "reconciled");
                idb::set_state(&self.db, &inst.id, &[], vm, None, Some(p)).await?;
                if state.is_none() && vm == Some("error") {
                    idb::add_fault(
                        &self.db,
                        &inst.id,
                        500,
                        "The server is not on its host any more.",
                        "",
                        Some(&h.name),
                    )
                    .await?;
                }
            }
            self.op_end(&inst.id).await?;
        }
        Ok(())
    }

    /// Servers still recorded as building without a host whose scheduling
    /// was interrupted (the process driving it is gone): ERROR, allocation
    /// freed. Runs at start-up and with every heartbeat.
    pub async fn sweep_interrupted(&self) -> Result<()> {
        let rows = store::sqlx::query(&format!(
            "SELECT {} FROM instances WHERE vm_state = 'building' AND host IS NULL \
             AND deleted_at IS NULL",
            idb::COLS
        ))
        .fetch_all(self.db.pool())
        .await?;
        let fresh = store::now_micros()
            - (self.cfg.service_down_time_seconds as i64).saturating_mul(1_000_000);
        for r in rows {
            let inst = idb::from_row(&r)?;
            let op = store::sqlx::query(
                "SELECT owner, heartbeat FROM compute_operations WHERE instance_id = $1",
            )
            .bind(&inst.id)
            .fetch_optional(self.db.pool())
            .await?;
            let live = match op {
                Some(op) => {
                    let owner: String = op.try_get(0)?;
                    let beat: i64 = op.try_get(1)?;
                    owner == self.owner || (beat >= fresh && owner_alive(&owner))
                }
                None => inst.updated_at >= fresh,
            };
            if live {
                continue;
            }
            tracing::warn!(server = %inst.id, "scheduling was interrupted; server to ERROR");
            self.placement.free(&inst.id).await?;
            idb::add_fault(
                &self.db,
                &inst.id,
                500,
                "Scheduling was interrupted.",
                "",
                None,
            )
            .await?;
            idb::set_state(&self.db, &inst.id, &[], Some("error"), None, Some(0)).await?;
            self.op_end(&inst.id).await?;
        }
        Ok(())
    }
}

/// Whether the API process named by an operation owner
/// (`host:pid:nonce`) may still be alive: on this machine the process is
/// looked up; elsewhere only its heartbeat tells.
fn owner_alive(owner: &str) -> bool {
    let mut parts = owner.splitn(3, ':');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return true;
    };
    if host != crate::system_hostname() {
        return true;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return true;
    };
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("oxistack"))
        .unwrap_or(false)
}

/// A validated create request (from the API).
#[derive(Clone, Debug)]
pub struct CreateRequest {
    pub name: String,
    pub flavor_id: String,
    pub image_ref: String,
    pub key_name: Option<String>,
    pub user_data: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub min_count: i64,
    pub max_count: i64,
    pub spec: RequestSpec,
    pub access_ip_v4: Option<String>,
    pub access_ip_v6: Option<String>,
}

impl Compute {
    /// Checks a create against flavor, image, key pair and quota, records
    /// the servers as BUILD and starts building them. Returns the servers
    /// and the reservation id.
    pub async fn create_servers(
        self: &Arc<Self>,
        caller: &crate::Caller,
        req: CreateRequest,
        request_id: &str,
    ) -> Result<(Vec<Instance>, String)> {
        let project = caller.project().to_string();
        let user = caller.user().to_string();
        let flavor = crate::db::flavors::flavor_get(&self.db, &req.flavor_id)
            .await?
            .filter(|f| !f.disabled)
            .ok_or_else(|| Error::bad(format!("Flavor {} could not be found.", req.flavor_id)))?;
        if !caller.is_admin
            && !crate::db::flavors::flavor_accessible(&self.db, &flavor, &project).await?
        {
            return Err(Error::bad(format!(
                "Flavor {} could not be found.",
                req.flavor_id
            )));
        }
        // The image: visible to the caller, active, and small enough.
        let img = image::db::images::image_get(&self.images.db, &req.image_ref)
            .await?
            .filter(|i| {
                let r = &i.row;
                caller.is_admin
                    || matches!(r.visibility.as_str(), "public" | "community")
                    || r.owner.as_deref() == Some(project.as_str())
                    || r.visibility == "shared"
            })
            .ok_or_else(|| Error::bad(format!("Image {} could not be found.", req.image_ref)))?;
        if img.row.status != "active" {
            return Err(Error::bad(format!(
                "Image {} is not active.",
                req.image_ref
            )));
        }
        const GIB: i64 = 1 << 30;
        let size = img.row.size.unwrap_or(0);
        let vsize = img.row.virtual_size.unwrap_or(size);
        if flavor.root_gb > 0 {
            if flavor.root_gb * GIB < size.max(vsize) {
                return Err(Error::bad(format!(
                    "Flavor's disk is too small for requested image. Flavor disk is {} bytes, image is {} bytes.",
                    flavor.root_gb * GIB,
                    size.max(vsize)
                )));
            }
            if flavor.root_gb < img.row.min_disk {
                return Err(Error::bad(format!(
                    "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is {} bytes, minimum size is {} bytes.",
                    flavor.root_gb * GIB,
                    img.row.min_disk * GIB
                )));
            }
        }
        if flavor.memory_mb < img.row.min_ram {
            return Err(Error::bad(
                "Flavor's memory is too small for requested image.",
            ));
        }
        let mut spec = req.spec.clone();
        for (k, v) in &img.properties {
            if let (Some(t), Some(v)) = (k.strip_prefix("trait:"), v.as_deref()) {
                match v {
                    "required" => spec.image_required.push(t.to_string()),
                    "forbidden" => spec.image_forbidden.push(t.to_string()),
                    _ => {}
                }
            }
        }
        if let Some(g) = &spec.group {
            let found = store::sqlx::query("SELECT project_id FROM server_groups WHERE id = $1")
                .bind(g)
                .fetch_optional(self.db.pool())
                .await?;
            match found {
                Some(r) if caller.is_admin || r.try_get::<String, _>(0)? == project => {}
                _ => return Err(Error::bad(format!("Invalid server group {g}"))),
            }
        }
        // The key pair.
        let key_data = match &req.key_name {
            Some(k) => {
                let row = store::sqlx::query(
                    "SELECT public_key FROM keypairs WHERE user_id = $1 AND name = $2",
                )
                .bind(&user)
                .bind(k)
                .fetch_optional(self.db.pool())
                .await?;
                match row {
                    Some(r) => Some(r.try_get::<String, _>(0)?),
                    None => return Err(Error::bad("Invalid key_name provided.")),
                }
            }
            None => None,
        };
        crate::quota::check_metadata_items(self, &project, &user, req.metadata.len() as i64)
            .await?;
        if let Some(g) = &spec.group {
            crate::quota::check_server_group_members(self, &project, &user, g, req.max_count)
                .await?;
        }
        let count = crate::quota::check_num_instances(
            self,
            &project,
            &user,
            flavor.vcpus,
            flavor.memory_mb,
            req.min_count,
            req.max_count,
        )
        .await?;
        let reservation_id = format!("r-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let now = store::now_micros();
        let mut created = Vec::new();
        let mut tx = self.db.write().await?;
        for n in 0..count {
            let id = uuid::Uuid::new_v4().to_string();
            let name = if count > 1 {
                format!("{}-{}", req.name, n + 1)
            } else {
                req.name.clone()
            };
            let inst = Instance {
                id: id.clone(),
                hostname: crate::api::servers::hostname_from(&name),
                name,
                project_id: project.clone(),
                user_id: user.clone(),
                host: None,
                node: None,
                availability_zone: spec.availability_zone.clone(),
                flavor: flavor.clone(),
                old_flavor: None,
                image_ref: req.image_ref.clone(),
                key_name: req.key_name.clone(),
                key_data: key_data.clone(),
                user_data: req.user_data.clone(),
                config_drive: "True".into(),
                description: req.description.clone(),
                access_ip_v4: req.access_ip_v4.clone(),
                access_ip_v6: req.access_ip_v6.clone(),
                vm_state: "building".into(),
                task_state: Some("scheduling".into()),
                power_state: power::NOSTATE,
                progress: 0,
                locked_by: None,
                locked_reason: None,
                reservation_id: reservation_id.clone(),
                launch_index: n,
                request_spec: serde_json::to_value(&spec)?,
                system_metadata: serde_json::json!({}),
                launched_at: None,
                terminated_at: None,
                created_at: now + n,
                updated_at: now,
                deleted_at: None,
                metadata: req.metadata.clone(),
                tags: req.tags.clone(),
            };
            idb::insert(&mut tx.tx, &inst).await?;
            if let Some(g) = &spec.group {
                store::sqlx::query(
                    "INSERT INTO server_group_members (group_id, instance_id) VALUES ($1, $2)",
                )
                .bind(g)
                .bind(&id)
                .execute(&mut *tx.tx)
                .await?;
            }
            store::sqlx::query(
                "INSERT INTO compute_operations (instance_id, op, owner, heartbeat, created_at) \
                 VALUES ($1, 'build', $2, $3, $3)",
            )
            .bind(&id)
            .bind(&self.owner)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
            created.push(inst);
        }
        tx.commit().await?;
        for inst in &created {
            let action_id =
                idb::action_start(&self.db, &inst.id, "create", request_id, &user, &project)
                    .await?;
            let this = self.clone();
            let id = inst.id.clone();
            tokio::spawn(async move { this.build(id, action_id).await });
        }
        Ok((created, reservation_id))
    }

    /// The serial console log (the last `length` lines when given).
    pub async fn console_output(&self, inst: &Instance, length: Option<usize>) -> Result<String> {
        if inst.vm_state == "building" || inst.host.is_none() {
            return Err(Error::conflict(format!(
                "Instance {} has not been created yet or is being built.",
                inst.id
            )));
        }
        let host = self.host_of(inst)?;
        let uuid =
            uuid::Uuid::parse_str(&inst.id).map_err(|_| Error::server_not_found(&inst.id))?;
        host.hv
            .console_log(uuid, length)
            .await
            .map_err(|e| Error::internal(format!("console log: {e}")))
    }

    /// The server groups a server is in.
    pub async fn groups_of(&self, id: &str) -> Result<Vec<String>> {
        let rows =
            store::sqlx::query("SELECT group_id FROM server_group_members WHERE instance_id = $1")
                .bind(id)
                .fetch_all(self.db.pool())
                .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(Error::from))
            .collect()
    }
}

/// Allowed vm_states of the actions below (Nova's `check_instance_state`).
const SNAPSHOT_STATES: &[&str] = &["active", "stopped", "paused", "suspended"];
const REBUILD_STATES: &[&str] = &["active", "stopped", "error"];

/// What confirm and revert clear from a resized server's system metadata.
const RESIZE_SYSMETA_CLEARED: &[(&str, serde_json::Value)] = &[
    ("migration", serde_json::Value::Null),
    ("old_vm_state", serde_json::Value::Null),
];

/// The names a long operation is recorded under.
#[derive(Clone, Copy)]
struct LongOp {
    /// The instance action (`openstack server event list`).
    action: &'static str,
    /// The `compute_operations` row the reconciler reads.
    op: &'static str,
    /// The action's event.
    event: &'static str,
    /// Where a failure leaves vm_state (`None`: unchanged).
    failed_vm_state: Option<&'static str>,
}

/// A validated rebuild request.
#[derive(Clone, Debug, Default)]
pub struct RebuildRequest {
    pub image_ref: String,
    pub name: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub description: Option<Option<String>>,
    /// Some(None) removes the key pair (2.54).
    pub key_name: Option<Option<String>>,
    /// Some(None) removes the user data (2.57).
    pub user_data: Option<Option<String>>,
}

impl Compute {
    fn check_task_free(inst: &Instance, action: &str) -> Result<()> {
        match &inst.task_state {
            Some(t) => Err(Error::invalid_state("task_state", t, action, &inst.id)),
            None => Ok(()),
        }
    }

    /// createImage: records a queued image, snapshots the root disk and
    /// uploads it in a task. Returns the image id.
    pub async fn snapshot_server(
        self: &Arc<Self>,
        caller: &crate::Caller,
        inst: &Instance,
        name: &str,
        metadata: BTreeMap<String, String>,
        request_id: &str,
    ) -> Result<String> {
        if !SNAPSHOT_STATES.contains(&inst.vm_state.as_str()) {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "createImage",
                &inst.id,
            ));
        }
        Self::check_task_free(inst, "createImage")?;
        let host = self.host_of(inst)?;
        let base = image::db::images::image_get(&self.images.db, &inst.image_ref).await?;
        let mut properties: BTreeMap<String, String> = BTreeMap::new();
        if let Some(b) = &base {
            for (k, v) in &b.properties {
                if let Some(v) = v {
                    if !k.starts_with("oxistack_") {
                        properties.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        properties.extend(metadata);
        properties.insert("instance_uuid".into(), inst.id.clone());
        properties.insert("image_type".into(), "snapshot".into());
        properties.insert("base_image_ref".into(), inst.image_ref.clone());
        properties.insert("user_id".into(), caller.user().to_string());
        let disk_format = if host.hv.kind() == "fake" {
            "raw"
        } else {
            "qcow2"
        };
        let image_id = self
            .images
            .create_queued(&image::bootstrap::NewImage {
                name: name.to_string(),
                owner: inst.project_id.clone(),
                visibility: "private".into(),
                disk_format: disk_format.into(),
                container_format: "bare".into(),
                min_disk: inst
                    .flavor
                    .root_gb
                    .max(base.as_ref().map(|b| b.row.min_disk).unwrap_or(0)),
                min_ram: base.as_ref().map(|b| b.row.min_ram).unwrap_or(0),
                properties,
            })
            .await
            .map_err(|e| Error::internal(format!("snapshot image: {e}")))?;
        if !idb::set_state(
            &self.db,
            &inst.id,
            &[None],
            None,
            Some("image_snapshot"),
            None,
        )
        .await?
        {
            return Err(Error::invalid_state(
                "task_state",
                "(changing)",
                "createImage",
                &inst.id,
            ));
        }
        let action_id = idb::action_start(
            &self.db,
            &inst.id,
            "createImage",
            request_id,
            caller.user(),
            caller.project(),
        )
        .await?;
        self.op_begin(&inst.id, "snapshot", Some(&host.name))
            .await?;
        let this = self.clone();
        let id = inst.id.clone();
        let img = image_id.clone();
        let format = if disk_format == "raw" {
            DiskFormat::Raw
        } else {
            DiskFormat::Qcow2
        };
        tokio::spawn(async move {
            let started = store::now_micros();
            let r = this.run_snapshot(&host, &id, &img, format).await;
            let outcome = match r {
                Ok(()) => "Success",
                Err(e) => {
                    tracing::warn!(server = %id, image = %img, error = %e, "snapshot failed");
                    if let Ok(mut tx) = this.images.db.write().await {
                        if image::db::images::image_delete(&mut tx, &img).await.is_ok() {
                            let _ = tx.commit().await;
                        }
                    }
                    "Error"
                }
            };
            let _ = idb::set_state(&this.db, &id, &[], None, None, None).await;
            let _ = idb::action_event(
                &this.db,
                &action_id,
                "compute_snapshot_instance",
                started,
                outcome,
                None,
                Some(&host.name),
            )
            .await;
            let _ = this.op_end(&id).await;
        });
        Ok(image_id)
    }

    async fn run_snapshot(
        &self,
        host: &Host,
        id: &str,
        image_id: &str,
        format: DiskFormat,
    ) -> Result<()> {
        let uuid = uuid::Uuid::parse_str(id).map_err(|_| Error::server_not_found(id))?;
        let dir = self.instances_dir().join("_snapshots");
        tokio::fs::create_dir_all(&dir).await?;
        let dest = dir.join(format!("{image_id}.{}", format.as_str()));
        let _ = tokio::fs::remove_file(&dest).await;
        idb::set_state(&self.db, id, &[], None, Some("image_pending_upload"), None).await?;
        let snap = host
            .hv
            .snapshot(uuid, &dest, format)
            .await
            .map_err(|e| Error::internal(format!("snapshot: {e}")));
        let result = match snap {
            Ok(_) => {
                idb::set_state(&self.db, id, &[], None, Some("image_uploading"), None).await?;
                self.images
                    .upload_file(image_id, &dest)
                    .await
                    .map_err(|e| Error::internal(format!("snapshot upload: {e}")))
            }
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&dest).await;
        result
    }

    /// rebuild: a new root disk from an image (and a new config drive),
    /// keeping the server's power state.
    pub async fn rebuild_server(
        self: &Arc<Self>,
        caller: &crate::Caller,
        inst: &Instance,
        req: RebuildRequest,
        request_id: &str,
    ) -> Result<()> {
        if !REBUILD_STATES.contains(&inst.vm_state.as_str()) {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "rebuild",
                &inst.id,
            ));
        }
        Self::check_task_free(inst, "rebuild")?;
        let host = self.host_of(inst)?;
        let img = self.usable_image(caller, inst, &req.image_ref).await?;
        if inst.flavor.root_gb > 0 && inst.flavor.root_gb < img.row.min_disk {
            return Err(Error::bad(format!(
                "Flavor's disk is smaller than the minimum size specified in image metadata. Flavor disk is {} bytes, minimum size is {} bytes.",
                inst.flavor.root_gb << 30,
                img.row.min_disk << 30
            )));
        }
        if inst.flavor.memory_mb < img.row.min_ram {
            return Err(Error::bad(
                "Flavor's memory is too small for requested image.",
            ));
        }
        let key_data = match &req.key_name {
            Some(Some(k)) => {
                let row = store::sqlx::query(
                    "SELECT public_key FROM keypairs WHERE user_id = $1 AND name = $2",
                )
                .bind(caller.user())
                .bind(k)
                .fetch_optional(self.db.pool())
                .await?;
                match row {
                    Some(r) => Some(Some(r.try_get::<String, _>(0)?)),
                    None => return Err(Error::bad("Invalid key_name provided.")),
                }
            }
            Some(None) => Some(None),
            None => None,
        };
        if let Some(m) = &req.metadata {
            crate::quota::check_metadata_items(
                self,
                &inst.project_id,
                &inst.user_id,
                m.len() as i64,
            )
            .await?;
        }
        // The record first (Nova saves the new image, name and metadata at
        // the API), then the host work.
        let mut tx = self.db.write().await?;
        let moved = store::sqlx::query(
            "UPDATE instances SET image_ref = $2, name = COALESCE($3, name), \
             description = CASE WHEN $4 = 1 THEN $5 ELSE description END, \
             key_name = CASE WHEN $6 = 1 THEN $7 ELSE key_name END, \
             key_data = CASE WHEN $6 = 1 THEN $8 ELSE key_data END, \
             user_data = CASE WHEN $9 = 1 THEN $10 ELSE user_data END, \
             task_state = 'rebuilding', updated_at = $11 \
             WHERE id = $1 AND deleted_at IS NULL AND task_state IS NULL",
        )
        .bind(&inst.id)
        .bind(&req.image_ref)
        .bind(&req.name)
        .bind(req.description.is_some() as i64)
        .bind(req.description.clone().flatten())
        .bind(req.key_name.is_some() as i64)
        .bind(req.key_name.clone().flatten())
        .bind(key_data.clone().flatten())
        .bind(req.user_data.is_some() as i64)
        .bind(req.user_data.clone().flatten())
        .bind(store::now_micros())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(Error::invalid_state(
                "task_state",
                "(changing)",
                "rebuild",
                &inst.id,
            ));
        }
        if let Some(m) = &req.metadata {
            store::sqlx::query("DELETE FROM instance_metadata WHERE instance_id = $1")
                .bind(&inst.id)
                .execute(&mut *tx.tx)
                .await?;
            for (k, v) in m {
                store::sqlx::query(
                    "INSERT INTO instance_metadata (instance_id, key, value) VALUES ($1, $2, $3)",
                )
                .bind(&inst.id)
                .bind(k)
                .bind(v)
                .execute(&mut *tx.tx)
                .await?;
            }
        }
        tx.commit().await?;
        let id = inst.id.clone();
        let was_running = inst.vm_state == "active";
        let op = LongOp {
            action: "rebuild",
            op: "rebuild",
            event: "compute_rebuild_instance",
            failed_vm_state: Some("error"),
        };
        self.spawn_op(
            caller,
            &inst.id,
            op,
            request_id,
            host,
            move |this, host| async move { this.run_rebuild(&host, &id, was_running).await },
        )
        .await
    }

    /// An image the caller may boot `inst` from: visible to the server's
    /// project (or an admin) and active.
    async fn usable_image(
        &self,
        caller: &crate::Caller,
        inst: &Instance,
        image_ref: &str,
    ) -> Result<image::db::images::Image> {
        let img = image::db::images::image_get(&self.images.db, image_ref)
            .await?
            .filter(|i| {
                let r = &i.row;
                caller.is_admin
                    || matches!(r.visibility.as_str(), "public" | "community" | "shared")
                    || r.owner.as_deref() == Some(inst.project_id.as_str())
            })
            .ok_or_else(|| Error::bad(format!("Image {image_ref} could not be found.")))?;
        if img.row.status != "active" {
            return Err(Error::bad(format!("Image {image_ref} is not active.")));
        }
        Ok(img)
    }

    /// The base image a host boots `image_id` from.
    async fn host_image(&self, host: &Host, image_id: &str) -> Result<ImageSource> {
        if host.hv.kind() == "fake" {
            Ok(ImageSource {
                path: PathBuf::from(format!("/fake/images/{image_id}")),
                format: DiskFormat::Qcow2,
            })
        } else {
            self.cached_image(image_id).await
        }
    }

    /// rescue: the server boots a rescue image (its own image unless
    /// another is named), with its root disk attached second; RESCUE.
    pub async fn rescue_server(
        self: &Arc<Self>,
        caller: &crate::Caller,
        inst: &Instance,
        rescue_image: Option<String>,
        request_id: &str,
    ) -> Result<()> {
        if !RESCUE_STATES.contains(&inst.vm_state.as_str()) {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "rescue",
                &inst.id,
            ));
        }
        Self::check_task_free(inst, "rescue")?;
        let host = self.host_of(inst)?;
        let image_ref = rescue_image.unwrap_or_else(|| inst.image_ref.clone());
        if image_ref.is_empty() {
            return Err(Error::bad(
                "Cannot rescue a volume-backed instance without a rescue image.",
            ));
        }
        self.usable_image(caller, inst, &image_ref).await?;
        self.begin_task(inst, "rescuing", "rescue").await?;
        let id = inst.id.clone();
        let op = LongOp {
            action: "rescue",
            op: "rescue",
            event: "compute_rescue_instance",
            failed_vm_state: Some("error"),
        };
        self.spawn_op(
            caller,
            &inst.id,
            op,
            request_id,
            host,
            move |this, host| async move { this.run_rescue(&host, &id, Some(&image_ref)).await },
        )
        .await
    }

    /// unrescue: back to booting the root disk; ACTIVE.
    pub async fn unrescue_server(
        self: &Arc<Self>,
        caller: &crate::Caller,
        inst: &Instance,
        request_id: &str,
    ) -> Result<()> {
        if inst.vm_state != "rescued" {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "unrescue",
                &inst.id,
            ));
        }
        Self::check_task_free(inst, "unrescue")?;
        let host = self.host_of(inst)?;
        self.begin_task(inst, "unrescuing", "unrescue").await?;
        let id = inst.id.clone();
        let op = LongOp {
            action: "unrescue",
            op: "unrescue",
            event: "compute_unrescue_instance",
            failed_vm_state: Some("error"),
        };
        self.spawn_op(
            caller,
            &inst.id,
            op,
            request_id,
            host,
            move |this, host| async move { this.run_rescue(&host, &id, None).await },
        )
        .await
    }

    /// Sets `task` if no other task runs (409 otherwise).
    async fn begin_task(&self, inst: &Instance, task: &str, action: &str) -> Result<()> {
        let moved = store::sqlx::query(
            "UPDATE instances SET task_state = $2, updated_at = $3 \
             WHERE id = $1 AND deleted_at IS NULL AND task_state IS NULL",
        )
        .bind(&inst.id)
        .bind(task)
        .bind(store::now_micros())
        .execute(self.db.pool())
        .await?
        .rows_affected();
        if moved != 1 {
            return Err(Error::invalid_state(
                "task_state",
                "(changing)",
                action,
                &inst.id,
            ));
        }
        Ok(())
    }

    /// The host side of rescue (`image` given) and unrescue: stop, swap the
    /// disks, start.
    async fn run_rescue(&self, host: &Host, id: &str, image: Option<&str>) -> Result<()> {
        let uuid = uuid::Uuid::parse_str(id).map_err(|_| Error::server_not_found(id))?;
        let what = if image.is_some() {
            "rescue"
        } else {
            "unrescue"
        };
        let hv_err = |e: agent::hypervisor::Error| Error::internal(format!("{what}: {e}"));
        if host.hv.info(uuid).await.map_err(hv_err)?.state.is_active() {
            host.hv
                .power_off(uuid, PowerOff::Hard)
                .await
                .map_err(hv_err)?;
        }
        let vm_state = match image {
            Some(image_id) => {
                let source = self.host_image(host, image_id).await?;
                host.hv.rescue(uuid, source).await.map_err(hv_err)?;
                "rescued"
            }
            None => {
                host.hv.unrescue(uuid).await.map_err(hv_err)?;
                "active"
            }
        };
        host.hv.power_on(uuid).await.map_err(hv_err)?;
        store::sqlx::query(
            "UPDATE instances SET vm_state = $2, task_state = NULL, power_state = $3, \
             updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(vm_state)
        .bind(power::RUNNING)
        .bind(store::now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    async fn run_rebuild(&self, host: &Host, id: &str, was_running: bool) -> Result<()> {
        let uuid = uuid::Uuid::parse_str(id).map_err(|_| Error::server_not_found(id))?;
        let inst = idb::get(&self.db, id, false)
            .await?
            .ok_or_else(|| Error::server_not_found(id))?;
        let hv_err = |e: agent::hypervisor::Error| Error::internal(format!("rebuild: {e}"));
        if host.hv.info(uuid).await.map_err(hv_err)?.state.is_active() {
            host.hv
                .power_off(uuid, PowerOff::Hard)
                .await
                .map_err(hv_err)?;
        }
        idb::set_state(&self.db, id, &[], None, Some("rebuild_spawning"), None).await?;
        let image = self.host_image(host, &inst.image_ref).await?;
        host.hv
            .rebuild(
                uuid,
                agent::hypervisor::RebuildSpec {
                    image,
                    config_drive: Some(self.config_drive(&inst)),
                },
            )
            .await
            .map_err(hv_err)?;
        let (vm, p) = if was_running {
            host.hv.power_on(uuid).await.map_err(hv_err)?;
            ("active", power::RUNNING)
        } else {
            ("stopped", power::SHUTDOWN)
        };
        store::sqlx::query(
            "UPDATE instances SET vm_state = $2, task_state = NULL, power_state = $3, \
             launched_at = $4, updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(vm)
        .bind(p)
        .bind(store::now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }
}

const RESIZE_STATES: &[&str] = &["active", "stopped"];
const RESCUE_STATES: &[&str] = &["active", "stopped", "error"];
const SHELVE_STATES: &[&str] = &["active", "stopped", "paused", "suspended"];
const UNSHELVE_STATES: &[&str] = &["shelved", "shelved_offloaded"];

fn sysmeta_str(inst: &Instance, key: &str) -> Option<String> {
    inst.system_metadata
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

impl Compute {
    async fn set_sysmeta(&self, id: &str, changes: &[(&str, serde_json::Value)]) -> Result<()> {
        let inst = idb::get(&self.db, id, false)
            .await?
            .ok_or_else(|| Error::server_not_found(id))?;
        let mut meta = inst.system_metadata.clone();
        if !meta.is_object() {
            meta = serde_json::json!({});
        }
        for (key, value) in changes {
            if value.is_null() {
                if let Some(m) = meta.as_object_mut() {
                    m.remove(*key);
                }
            } else {
                meta[*key] = value.clone();
            }
        }
        store::sqlx::query("UPDATE instances SET system_metadata = $2 WHERE id = $1")
            .bind(id)
            .bind(meta.to_string())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Moves a migration record to `status`.
    async fn migration_status(&self, migration: &str, status: &str) -> Result<()> {
        store::sqlx::query("UPDATE migrations SET status = $2, updated_at = $3 WHERE uuid = $1")
            .bind(migration)
            .bind(status)
            .bind(store::now_micros())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// resize: same-host offline resize to a new flavor, waiting for
    /// confirm or revert (VERIFY_RESIZE). Placement: the old allocation
    /// moves to the migration, the instance claims the new flavor, in one
    /// write.
    pub async fn resize_server(
        self: &Arc<Self>,
        caller: &crate::Caller,
        inst: &Instance,
        flavor_id: &str,
        request_id: &str,
    ) -> Result<()> {
        if !RESIZE_STATES.contains(&inst.vm_state.as_str()) {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "resize",
                &inst.id,
            ));
        }
        Self::check_task_free(inst, "resize")?;
        let host = self.host_of(inst)?;
        let flavor = crate::db::flavors::flavor_get(&self.db, flavor_id)
            .await?
            .filter(|f| !f.disabled)
            .ok_or_else(|| Error::bad(format!("Flavor {flavor_id} could not be found.")))?;
        if !caller.is_admin
            && !crate::db::flavors::flavor_accessible(&self.db, &flavor, &inst.project_id).await?
        {
            return Err(Error::bad(format!(
                "Flavor {flavor_id} could not be found."
            )));
        }
        if flavor.id == inst.flavor.id {
            return Err(Error::bad("When resizing, instances must change flavor!"));
        }
        if flavor.root_gb < inst.flavor.root_gb {
            return Err(Error::bad(
                "Resizing to a smaller disk flavor is not allowed.",
            ));
        }
        crate::quota::check_resize(
            self,
            &inst.project_id,
            &inst.user_id,
            flavor.vcpus - inst.flavor.vcpus,
            flavor.memory_mb - inst.flavor.memory_mb,
        )
        .await?;
        if !idb::set_state(&self.db, &inst.id, &[None], None, Some("resize_prep"), None).await? {
            return Err(Error::invalid_state(
                "task_state",
                "(changing)",
                "resize",
                &inst.id,
            ));
        }
        let op = LongOp {
            action: "resize",
            op: "resize",
            event: "compute_resize_instance",
            failed_vm_state: None,
        };
        let target = inst.clone();
        self.spawn_op(
            caller,
            &inst.id,
            op,
            request_id,
            host,
            move |this, host| async move { this.run_resize(&host, &target, &flavor).await },
        )
        .await
    }

    async fn run_resize(
        &self,
        host: &Host,
        inst: &Instance,
        flavor: &crate::db::flavors::Flavor,
    ) -> Result<()> {
        use placement::api::allocations::ConsumerRequest;
        let uuid =
            uuid::Uuid::parse_str(&inst.id).map_err(|_| Error::server_not_found(&inst.id))?;
        let hv_err = |e: agent::hypervisor::Error| Error::internal(format!("resize: {e}"));
        // Placement: old allocation to the migration, new one to the server.
        let (generation, current) = self
            .placement
            .consumer_allocations(&inst.id)
            .await?
            .ok_or_else(|| Error::internal("the server has no allocation"))?;
        let spec: crate::scheduler::RequestSpec =
            serde_json::from_value(inst.request_spec.clone()).unwrap_or_default();
        let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
        for pair in crate::scheduler::placement_query(flavor, &spec) {
            if pair.0 == "resources" {
                for item in pair.1.split(',') {
                    if let Some((c, n)) = item.split_once(':') {
                        wanted.insert(c.to_string(), n.parse().unwrap_or(0));
                    }
                }
            }
        }
        let node = host.node_id.clone();
        let migration = uuid::Uuid::new_v4().to_string();
        let claim = self
            .placement
            .claim(&[
                ConsumerRequest {
                    uuid: migration.clone(),
                    project_id: Some(inst.project_id.clone()),
                    user_id: Some(inst.user_id.clone()),
                    generation: None,
                    consumer_type: Some("MIGRATION".into()),
                    allocations: current,
                },
                ConsumerRequest {
                    uuid: inst.id.clone(),
                    project_id: Some(inst.project_id.clone()),
                    user_id: Some(inst.user_id.clone()),
                    generation: Some(generation),
                    consumer_type: Some("INSTANCE".into()),
                    allocations: [(node, wanted)].into_iter().collect(),
                },
            ])
            .await;
        if let Err(e) = claim {
            let why = match e {
                placement::local::ClaimError::Conflict(m) => m,
                placement::local::ClaimError::Other(e) => e.message,
            };
            return Err(crate::scheduler::no_valid_host(&format!(
                "Unable to resize on host {}: {why}",
                host.name
            )));
        }
        let now = store::now_micros();
        let mut tx = self.db.write().await?;
        let id_row = store::sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 FROM migrations")
            .fetch_one(&mut *tx.tx)
            .await?;
        let mig_id: i64 = id_row.try_get(0)?;
        store::sqlx::query(
            "INSERT INTO migrations (id, uuid, instance_id, migration_type, status, \
             source_compute, dest_compute, source_node, dest_node, old_flavor_id, new_flavor_id, \
             old_instance_type_id, new_instance_type_id, \
             project_id, user_id, created_at, updated_at) VALUES ($1, $2, $3, 'resize', \
             'migrating', $4, $4, $4, $4, $5, $6, \
             (SELECT internal_id FROM flavors WHERE id = $5), \
             (SELECT internal_id FROM flavors WHERE id = $6), $7, $8, $9, $9)",
        )
        .bind(mig_id)
        .bind(&migration)
        .bind(&inst.id)
        .bind(&host.name)
        .bind(&inst.flavor.id)
        .bind(&flavor.id)
        .bind(&inst.project_id)
        .bind(&inst.user_id)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        idb::set_state(
            &self.db,
            &inst.id,
            &[],
            None,
            Some("resize_migrating"),
            None,
        )
        .await?;
        let was_running = inst.vm_state == "active";
        let timeout = Duration::from_secs(self.cfg.shutdown_timeout_seconds);
        let host_work = async {
            if host.hv.info(uuid).await.map_err(hv_err)?.state.is_active() {
                host.hv
                    .power_off(uuid, PowerOff::graceful(timeout))
                    .await
                    .map_err(hv_err)?;
            }
            host.hv
                .resize(
                    uuid,
                    agent::hypervisor::ResizeSpec {
                        vcpus: flavor.vcpus as u32,
                        memory_mb: flavor.memory_mb as u64,
                        root_gb: flavor.root_gb as u64,
                    },
                )
                .await
                .map_err(hv_err)?;
            if was_running {
                host.hv.power_on(uuid).await.map_err(hv_err)?;
            }
            Ok::<(), Error>(())
        };
        if let Err(e) = host_work.await {
            // Give the allocation back to the server.
            self.swap_back_allocations(inst, &migration).await?;
            self.migration_status(&migration, "error").await?;
            if was_running {
                let _ = host.hv.power_on(uuid).await;
            }
            return Err(e);
        }
        // What confirm and revert read comes first: once the server shows
        // VERIFY_RESIZE, a confirm may arrive at once.
        self.set_sysmeta(
            &inst.id,
            &[
                ("old_vm_state", serde_json::json!(inst.vm_state)),
                ("migration", serde_json::json!(migration)),
            ],
        )
        .await?;
        self.migration_status(&migration, "finished").await?;
        store::sqlx::query(
            "UPDATE instances SET flavor = $2, old_flavor = $3, vcpus = $4, memory_mb = $5, \
             root_gb = $6, vm_state = 'resized', task_state = NULL, power_state = $7, \
             updated_at = $8 WHERE id = $1",
        )
        .bind(&inst.id)
        .bind(serde_json::to_string(flavor)?)
        .bind(serde_json::to_string(&inst.flavor)?)
        .bind(flavor.vcpus)
        .bind(flavor.memory_mb)
        .bind(flavor.root_gb)
        .bind(if was_running {
            power::RUNNING
        } else {
            power::SHUTDOWN
        })
        .bind(store::now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The migration's allocation back to the server, in one write.
    async fn swap_back_allocations(&self, inst: &Instance, migration: &str) -> Result<()> {
        use placement::api::allocations::ConsumerRequest;
        for _ in 0..10 {
            let Some((mgen, old)) = self.placement.consumer_allocations(migration).await? else {
                return Ok(());
            };
            let igen = self
                .placement
                .consumer_allocations(&inst.id)
                .await?
                .map(|(g, _)| g);
            let r = self
                .placement
                .claim(&[
                    ConsumerRequest {
                        uuid: inst.id.clone(),
                        project_id: Some(inst.project_id.clone()),
                        user_id: Some(inst.user_id.clone()),
                        generation: igen,
                        consumer_type: Some("INSTANCE".into()),
                        allocations: old,
                    },
                    ConsumerRequest {
                        uuid: migration.to_string(),
                        project_id: Some(inst.project_id.clone()),
                        user_id: Some(inst.user_id.clone()),
                        generation: Some(mgen),
                        consumer_type: Some("MIGRATION".into()),
                        allocations: BTreeMap::new(),
                    },
                ])
                .await;
            match r {
                Ok(()) => return Ok(()),
                Err(placement::local::ClaimError::Conflict(_)) => continue,
                Err(placement::local::ClaimError::Other(e)) => {
                    return Err(Error::internal(e.message))
                }
            }
        }
        Err(Error::internal("allocations kept changing"))
    }

    /// confirmResize: drops what a revert would need.
    pub async fn confirm_resize(
        &self,
        inst: &Instance,
        request_id: &str,
        caller: &crate::Caller,
    ) -> Result<()> {
        if inst.vm_state != "resized" {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "confirmResize",
                &inst.id,
            ));
        }
        Self::check_task_free(inst, "confirmResize")?;
        let host = self.host_of(inst)?;
        let uuid =
            uuid::Uuid::parse_str(&inst.id).map_err(|_| Error::server_not_found(&inst.id))?;
        host.hv
            .resize_confirm(uuid)
            .await
            .map_err(|e| Error::internal(format!("confirm resize: {e}")))?;
        if let Some(m) = sysmeta_str(inst, "migration") {
            self.placement.free(&m).await?;
            self.migration_status(&m, "confirmed").await?;
        }
        let running = inst.power_state == power::RUNNING;
        store::sqlx::query(
            "UPDATE instances SET old_flavor = NULL, vm_state = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(&inst.id)
        .bind(if running { "active" } else { "stopped" })
        .bind(store::now_micros())
        .execute(self.db.pool())
        .await?;
        self.set_sysmeta(&inst.id, RESIZE_SYSMETA_CLEARED).await?;
        idb::action_start(
            &self.db,
            &inst.id,
            "confirmResize",
            request_id,
            caller.user(),
            caller.project(),
        )
        .await?;
        Ok(())
    }

    /// revertResize: the old disk, sizes and allocation come back.
    pub async fn revert_resize(
        self: &Arc<Self>,
        inst: &Instance,
        request_id: &str,
        caller: &crate::Caller,
    ) -> Result<()> {
        if inst.vm_state != "resized" {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "revertResize",
                &inst.id,
            ));
        }
        Self::check_task_free(inst, "revertResize")?;
        let host = self.host_of(inst)?;
        let old = inst
            .old_flavor
            .clone()
            .ok_or_else(|| Error::conflict("the server has no resize to revert"))?;
        if !idb::set_state(
            &self.db,
            &inst.id,
            &[None],
            None,
            Some("resize_reverting"),
            None,
        )
        .await?
        {
            return Err(Error::invalid_state(
                "task_state",
                "(changing)",
                "revertResize",
                &inst.id,
            ));
        }
        let op = LongOp {
            action: "revertResize",
            op: "revert_resize",
            event: "compute_revert_resize",
            failed_vm_state: Some("error"),
        };
        let target = inst.clone();
        self.spawn_op(
            caller,
            &inst.id,
            op,
            request_id,
            host,
            move |this, host| async move { this.run_revert(&host, &target, &old).await },
        )
        .await
    }

    /// The host side of a revert: back to the old disk and sizes, the
    /// allocation back to the server, power as before the resize.
    async fn run_revert(
        &self,
        host: &Host,
        inst: &Instance,
        old: &crate::db::flavors::Flavor,
    ) -> Result<()> {
        let uuid =
            uuid::Uuid::parse_str(&inst.id).map_err(|_| Error::server_not_found(&inst.id))?;
        let hv_err = |e: agent::hypervisor::Error| Error::internal(format!("revert resize: {e}"));
        if host.hv.info(uuid).await.map_err(hv_err)?.state.is_active() {
            host.hv
                .power_off(uuid, PowerOff::Hard)
                .await
                .map_err(hv_err)?;
        }
        host.hv.resize_revert(uuid).await.map_err(hv_err)?;
        if let Some(m) = sysmeta_str(inst, "migration") {
            self.swap_back_allocations(inst, &m).await?;
            self.migration_status(&m, "reverted").await?;
        }
        let was_running = sysmeta_str(inst, "old_vm_state").as_deref() != Some("stopped");
        if was_running {
            host.hv.power_on(uuid).await.map_err(hv_err)?;
        }
        store::sqlx::query(
            "UPDATE instances SET flavor = $2, old_flavor = NULL, vcpus = $3, memory_mb = $4, \
             root_gb = $5, vm_state = $6, task_state = NULL, power_state = $7, updated_at = $8 \
             WHERE id = $1",
        )
        .bind(&inst.id)
        .bind(serde_json::to_string(old)?)
        .bind(old.vcpus)
        .bind(old.memory_mb)
        .bind(old.root_gb)
        .bind(if was_running { "active" } else { "stopped" })
        .bind(if was_running {
            power::RUNNING
        } else {
            power::SHUTDOWN
        })
        .bind(store::now_micros())
        .execute(self.db.pool())
        .await?;
        self.set_sysmeta(&inst.id, RESIZE_SYSMETA_CLEARED).await?;
        Ok(())
    }

    /// shelve: power off, snapshot to an image, then offload at once
    /// (Nova's default `shelved_offload_time = 0`): the server leaves its
    /// host and frees its allocation.
    pub async fn shelve_server(
        self: &Arc<Self>,
        caller: &crate::Caller,
        inst: &Instance,
        request_id: &str,
    ) -> Result<()> {
        if !SHELVE_STATES.contains(&inst.vm_state.as_str()) {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "shelve",
                &inst.id,
            ));
        }
        Self::check_task_free(inst, "shelve")?;
        let host = self.host_of(inst)?;
        let disk_format = if host.hv.kind() == "fake" {
            "raw"
        } else {
            "qcow2"
        };
        let image_id = self
            .images
            .create_queued(&image::bootstrap::NewImage {
                name: format!("{}-shelved", inst.name),
                owner: inst.project_id.clone(),
                visibility: "private".into(),
                disk_format: disk_format.into(),
                container_format: "bare".into(),
                min_disk: inst.flavor.root_gb,
                min_ram: 0,
                properties: [
                    ("instance_uuid".to_string(), inst.id.clone()),
                    ("image_type".to_string(), "snapshot".to_string()),
                    ("base_image_ref".to_string(), inst.image_ref.clone()),
                ]
                .into_iter()
                .collect(),
            })
            .await
            .map_err(|e| Error::internal(format!("shelve image: {e}")))?;
        if !idb::set_state(&self.db, &inst.id, &[None], None, Some("shelving"), None).await? {
            return Err(Error::invalid_state(
                "task_state",
                "(changing)",
                "shelve",
                &inst.id,
            ));
        }
        let action_id = idb::action_start(
            &self.db,
            &inst.id,
            "shelve",
            request_id,
            caller.user(),
            caller.project(),
        )
        .await?;
        self.op_begin(&inst.id, "shelve", Some(&host.name)).await?;
        let this = self.clone();
        let inst = inst.clone();
        let format = if disk_format == "raw" {
            DiskFormat::Raw
        } else {
            DiskFormat::Qcow2
        };
        tokio::spawn(async move {
            let started = store::now_micros();
            let r = async {
                let uuid = uuid::Uuid::parse_str(&inst.id).map_err(|_| Error::server_not_found(&inst.id))?;
                let hv_err = |e: agent::hypervisor::Error| Error::internal(format!("shelve: {e}"));
                let timeout = Duration::from_secs(this.cfg.shutdown_timeout_seconds);
                let state = host.hv.info(uuid).await.map_err(hv_err)?.state;
                if state == PowerState::Paused {
                    host.hv.power_off(uuid, PowerOff::Hard).await.map_err(hv_err)?;
                } else if state.is_active() {
                    host.hv.power_off(uuid, PowerOff::graceful(timeout)).await.map_err(hv_err)?;
                }
                this.run_snapshot(&host, &inst.id, &image_id, format).await?;
                this.set_sysmeta(&inst.id, &[("shelved_image_id", serde_json::json!(image_id))]).await?;
                // Offload.
                idb::set_state(&this.db, &inst.id, &[], None, Some("shelving_offloading"), None).await?;
                host.hv.delete(uuid).await.map_err(hv_err)?;
                this.placement.free(&inst.id).await?;
                store::sqlx::query(
                    "UPDATE instances SET host = NULL, node = NULL, vm_state = 'shelved_offloaded', \
                     task_state = NULL, power_state = $2, updated_at = $3 WHERE id = $1",
                )
                .bind(&inst.id)
                .bind(power::SHUTDOWN)
                .bind(store::now_micros())
                .execute(this.db.pool())
                .await?;
                Ok::<(), Error>(())
            }
            .await;
            let outcome = match r {
                Ok(()) => "Success",
                Err(e) => {
                    tracing::warn!(server = %inst.id, error = %e, "shelve failed");
                    if let Ok(mut tx) = this.images.db.write().await {
                        if image::db::images::image_delete(&mut tx, &image_id)
                            .await
                            .is_ok()
                        {
                            let _ = tx.commit().await;
                        }
                    }
                    let _ = idb::add_fault(
                        &this.db,
                        &inst.id,
                        500,
                        &e.to_string(),
                        "",
                        Some(&host.name),
                    )
                    .await;
                    let _ = idb::set_state(&this.db, &inst.id, &[], None, None, None).await;
                    "Error"
                }
            };
            let _ = idb::action_event(
                &this.db,
                &action_id,
                "compute_shelve_instance",
                started,
                outcome,
                None,
                Some(&host.name),
            )
            .await;
            let _ = this.op_end(&inst.id).await;
        });
        Ok(())
    }

    /// unshelve: scheduled again (a new claim), spawned from the shelved
    /// image, which is then deleted.
    pub async fn unshelve_server(
        self: &Arc<Self>,
        caller: &crate::Caller,
        inst: &Instance,
        az: Option<String>,
        request_id: &str,
    ) -> Result<()> {
        if !UNSHELVE_STATES.contains(&inst.vm_state.as_str()) {
            return Err(Error::invalid_state(
                "vm_state",
                &inst.vm_state,
                "unshelve",
                &inst.id,
            ));
        }
        Self::check_task_free(inst, "unshelve")?;
        let image_id = sysmeta_str(inst, "shelved_image_id").ok_or_else(|| {
            Error::conflict(format!("Instance {} has no shelved image.", inst.id))
        })?;
        if !idb::set_state(&self.db, &inst.id, &[None], None, Some("unshelving"), None).await? {
            return Err(Error::invalid_state(
                "task_state",
                "(changing)",
                "unshelve",
                &inst.id,
            ));
        }
        let action_id = idb::action_start(
            &self.db,
            &inst.id,
            "unshelve",
            request_id,
            caller.user(),
            caller.project(),
        )
        .await?;
        self.op_begin(&inst.id, "unshelve", None).await?;
        let this = self.clone();
        let inst = inst.clone();
        tokio::spawn(async move {
            let started = store::now_micros();
            let mut placed_host: Option<String> = None;
            let r = async {
                let mut spec: RequestSpec =
                    serde_json::from_value(inst.request_spec.clone()).unwrap_or_default();
                if az.is_some() {
                    spec.availability_zone = az.clone();
                }
                let placed = this
                    .schedule(
                        &inst.id,
                        &inst.project_id,
                        &inst.user_id,
                        &inst.flavor,
                        &spec,
                    )
                    .await?;
                placed_host = Some(placed.host.clone());
                let h = this.hosts.get(&placed.host).ok_or_else(|| {
                    Error::Unavailable(format!("Compute host {} could not be found.", placed.host))
                })?;
                store::sqlx::query(
                    "UPDATE instances SET host = $2, node = $2, availability_zone = $3, \
                     task_state = 'spawning', updated_at = $4 WHERE id = $1",
                )
                .bind(&inst.id)
                .bind(&placed.host)
                .bind(&placed.availability_zone)
                .bind(store::now_micros())
                .execute(this.db.pool())
                .await?;
                let image = if h.hv.kind() == "fake" {
                    ImageSource {
                        path: PathBuf::from(format!("/fake/images/{image_id}")),
                        format: DiskFormat::Qcow2,
                    }
                } else {
                    this.cached_image(&image_id).await?
                };
                let mut inst2 = inst.clone();
                inst2.availability_zone = Some(placed.availability_zone.clone());
                let server = ServerSpec {
                    id: uuid::Uuid::parse_str(&inst.id)
                        .map_err(|_| Error::server_not_found(&inst.id))?,
                    name: inst.name.clone(),
                    hostname: inst.hostname.clone(),
                    vcpus: inst.flavor.vcpus as u32,
                    memory_mb: inst.flavor.memory_mb as u64,
                    root_gb: inst.flavor.root_gb as u64,
                    image,
                    nics: Vec::new(),
                    config_drive: Some(this.config_drive(&inst2)),
                    console_log: None,
                };
                let hv_err =
                    |e: agent::hypervisor::Error| Error::internal(format!("unshelve: {e}"));
                h.hv.define(server.clone()).await.map_err(hv_err)?;
                if let Err(e) = h.hv.power_on(server.id).await {
                    let _ = h.hv.delete(server.id).await;
                    return Err(hv_err(e));
                }
                store::sqlx::query(
                    "UPDATE instances SET vm_state = 'active', task_state = NULL, power_state = 1, \
                     launched_at = $2, updated_at = $2 WHERE id = $1",
                )
                .bind(&inst.id)
                .bind(store::now_micros())
                .execute(this.db.pool())
                .await?;
                this.set_sysmeta(&inst.id, &[("shelved_image_id", serde_json::Value::Null)])
                    .await?;
                // The shelved image is not needed any more. Its file stays
                // while the cached base (a link to it) backs the disk.
                if let Ok(mut tx) = this.images.db.write().await {
                    if let Ok(Some(row)) = image::db::images::image_delete(&mut tx, &image_id).await
                    {
                        if tx.commit().await.is_ok() {
                            if let Some(loc) = row.location {
                                let _ = this.images.store.delete(&loc).await;
                            }
                        }
                    }
                }
                Ok::<(), Error>(())
            }
            .await;
            let outcome = match r {
                Ok(()) => "Success",
                Err(e) => {
                    tracing::warn!(server = %inst.id, error = %e, "unshelve failed");
                    let _ = this.placement.free(&inst.id).await;
                    let _ = store::sqlx::query(
                        "UPDATE instances SET host = NULL, node = NULL, task_state = NULL, updated_at = $2 WHERE id = $1",
                    )
                    .bind(&inst.id)
                    .bind(store::now_micros())
                    .execute(this.db.pool())
                    .await;
                    let _ = idb::add_fault(
                        &this.db,
                        &inst.id,
                        500,
                        &e.to_string(),
                        "",
                        placed_host.as_deref(),
                    )
                    .await;
                    "Error"
                }
            };
            let _ = idb::action_event(
                &this.db,
                &action_id,
                "compute_unshelve_instance",
                started,
                outcome,
                None,
                placed_host.as_deref(),
            )
            .await;
            let _ = this.op_end(&inst.id).await;
        });
        Ok(())
    }
}
