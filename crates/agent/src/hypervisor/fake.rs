//! A hypervisor that only pretends: servers are entries in a map, every
//! operation is recorded, the power states move as on the real thing (same
//! rules table), and the host reports plausible resources. No processes, no
//! files (except the one `snapshot` writes), no tasks: a thousand hosts
//! with five servers each take about 13 MB.
//!
//! Tests can inject failures ([`FakeHypervisor::fail_next`]) and events a
//! real host would produce on its own ([`FakeHypervisor::crash`],
//! [`FakeHypervisor::guest_power_off`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::host::{cpu_traits, QEMU_CAPABILITY_TRAITS};
use super::rules::{plan, Op, Plan};
use super::types::validate_path;
use super::*;

/// The made-up machine a fake hypervisor runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeHost {
    pub hostname: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub disk_gb: u64,
    pub cpu: CpuInfo,
    pub traits: BTreeSet<String>,
}

impl FakeHost {
    /// Host number `n` of a fake fleet: `fake-host-0007`, with sizes that
    /// vary a little from host to host (so weighers have something to do).
    pub fn numbered(n: usize) -> Self {
        let flags: Vec<String> = [
            "sse",
            "sse2",
            "pni",
            "ssse3",
            "sse4_1",
            "sse4_2",
            "avx",
            "avx2",
            "aes",
            "pclmulqdq",
            "fma",
            "bmi1",
            "bmi2",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain((n % 4 == 0).then(|| "avx512f".to_string()))
        .collect();
        let cpu = CpuInfo {
            arch: "x86_64".into(),
            vendor: "GenuineIntel".into(),
            model: "Fake Xeon".into(),
            sockets: 2,
            cores: 8 + 8 * (n % 2) as u32,
            threads: 2,
            flags,
        };
        let mut traits = cpu_traits(&cpu);
        traits.extend(QEMU_CAPABILITY_TRAITS.iter().map(|t| t.to_string()));
        FakeHost {
            hostname: format!("fake-host-{n:04}"),
            vcpus: cpu.sockets * cpu.cores * cpu.threads,
            memory_mb: 65_536 << (n % 3),
            disk_gb: 1_024 << (n % 2),
            cpu,
            traits,
        }
    }
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub op: &'static str,
    pub id: Option<Uuid>,
    pub detail: String,
}

#[derive(Debug, Clone)]
struct FakeServer {
    spec: ServerSpec,
    state: PowerState,
    pid: Option<u32>,
    resize_backup: Option<ResizeSpec>,
    console: String,
    has_config_drive: bool,
    rescued: bool,
    /// An echoing stand-in for the serial port, once asked for.
    serial: Option<(PathBuf, tokio::task::AbortHandle)>,
}

impl FakeServer {
    fn info(&self) -> ServerInfo {
        ServerInfo {
            id: self.spec.id,
            name: self.spec.name.clone(),
            state: self.state,
            vcpus: self.spec.vcpus,
            memory_mb: self.spec.memory_mb,
            root_gb: self.spec.root_gb,
            image: self.spec.image.clone(),
            pid: self.pid,
            resize_pending: self.resize_backup.is_some(),
            rescued: self.rescued,
        }
    }
}

#[derive(Default)]
struct Inner {
    servers: BTreeMap<Uuid, FakeServer>,
    actions: Vec<Action>,
    failures: HashMap<&'static str, VecDeque<String>>,
    next_pid: u32,
}

pub struct FakeHypervisor {
    host: FakeHost,
    record: bool,
    inner: Mutex<Inner>,
    events: broadcast::Sender<LifecycleEvent>,
}

impl FakeHypervisor {
    pub fn new(host: FakeHost) -> Self {
        FakeHypervisor {
            host,
            record: true,
            inner: Mutex::new(Inner {
                next_pid: 1000,
                ..Inner::default()
            }),
            events: broadcast::channel(64).0,
        }
    }

    /// Turns off the action log (long scale runs).
    pub fn without_recording(mut self) -> Self {
        self.record = false;
        self
    }

    pub fn host(&self) -> &FakeHost {
        &self.host
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters to a fake; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The operations so far, oldest first.
    pub fn actions(&self) -> Vec<Action> {
        self.lock().actions.clone()
    }

    pub fn clear_actions(&self) {
        self.lock().actions.clear();
    }

    /// Makes the next call of `op` (the trait method's name, e.g.
    /// `"power_on"`) fail with [`Error::Injected`].
    pub fn fail_next(&self, op: &'static str, message: impl Into<String>) {
        self.lock()
            .failures
            .entry(op)
            .or_default()
            .push_back(message.into());
    }

    /// The QEMU process died by itself: the server is `Crashed`.
    pub fn crash(&self, id: Uuid) -> Result<()> {
        self.external_stop(id, PowerState::Crashed, "process exited: signal 9")
    }

    /// The guest powered itself off: the server is `Shutoff`.
    pub fn guest_power_off(&self, id: Uuid) -> Result<()> {
        self.external_stop(id, PowerState::Shutoff, "guest-shutdown")
    }

    fn external_stop(&self, id: Uuid, state: PowerState, reason: &str) -> Result<()> {
        let mut g = self.lock();
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        if !s.state.is_active() {
            return Err(Error::InvalidState {
                id,
                op: "stop",
                state: s.state,
            });
        }
        s.state = state;
        s.pid = None;
        drop(g);
        self.emit(id, state, reason);
        Ok(())
    }

    fn emit(&self, id: Uuid, state: PowerState, reason: &str) {
        // No receiver is fine.
        let _ = self.events.send(LifecycleEvent {
            id,
            state,
            reason: reason.to_string(),
        });
    }

    /// Records the call, then fails it if a failure was injected.
    fn begin(
        &self,
        g: &mut Inner,
        op: &'static str,
        id: Option<Uuid>,
        detail: String,
    ) -> Result<()> {
        if self.record {
            g.actions.push(Action { op, id, detail });
        }
        if let Some(q) = g.failures.get_mut(op) {
            if let Some(msg) = q.pop_front() {
                return Err(Error::Injected(msg));
            }
        }
        Ok(())
    }

    /// Applies a state change under the rules table; returns whether
    /// anything changed.
    fn transition(
        &self,
        op_name: &'static str,
        id: Uuid,
        op: Op,
        to: PowerState,
        reason: &str,
    ) -> Result<bool> {
        let mut g = self.lock();
        self.begin(&mut g, op_name, Some(id), String::new())?;
        let next_pid = g.next_pid;
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        if plan(id, op, s.state)? == Plan::AlreadyDone {
            return Ok(false);
        }
        let was_active = s.state.is_active();
        s.state = to;
        let mut used_pid = false;
        if to.is_active() && !was_active {
            s.pid = Some(next_pid);
            used_pid = true;
            s.console.push_str(&format!(
                "OXISTACK-GUEST-BOOTED\nhostname: {}\nOXISTACK-GUEST-READY\n",
                s.spec.hostname.split('.').next().unwrap_or_default()
            ));
        } else if !to.is_active() {
            s.pid = None;
        }
        if used_pid {
            g.next_pid += 1;
        }
        drop(g);
        self.emit(id, to, reason);
        Ok(true)
    }
}

#[async_trait]
impl Hypervisor for FakeHypervisor {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn events(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.events.subscribe()
    }

    async fn host_resources(&self) -> Result<HostResources> {
        let mut g = self.lock();
        self.begin(&mut g, "host_resources", None, String::new())?;
        let (mem_used, disk_used) = g.servers.values().fold((0u64, 0u64), |(m, d), s| {
            let m = if s.state.is_active() {
                m + s.spec.memory_mb
            } else {
                m
            };
            (m, d + s.spec.root_gb)
        });
        Ok(HostResources {
            hostname: self.host.hostname.clone(),
            hypervisor_type: "fake".into(),
            hypervisor_version: 1_000,
            accel: Accel::Kvm,
            vcpus: self.host.vcpus,
            memory_mb: self.host.memory_mb,
            memory_mb_available: self.host.memory_mb.saturating_sub(mem_used),
            disk_gb: self.host.disk_gb,
            disk_gb_available: self.host.disk_gb.saturating_sub(disk_used),
            host_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            cpu: self.host.cpu.clone(),
            traits: self.host.traits.clone(),
        })
    }

    async fn adopt(&self) -> Result<Vec<ServerInfo>> {
        let mut g = self.lock();
        self.begin(&mut g, "adopt", None, String::new())?;
        Ok(g.servers.values().map(FakeServer::info).collect())
    }

    async fn list(&self) -> Result<Vec<ServerInfo>> {
        Ok(self.lock().servers.values().map(FakeServer::info).collect())
    }

    async fn info(&self, id: Uuid) -> Result<ServerInfo> {
        self.lock()
            .servers
            .get(&id)
            .map(FakeServer::info)
            .ok_or(Error::NotFound(id))
    }

    async fn define(&self, spec: ServerSpec) -> Result<ServerInfo> {
        let mut g = self.lock();
        self.begin(&mut g, "define", Some(spec.id), spec.name.clone())?;
        spec.validate()?;
        if g.servers.contains_key(&spec.id) {
            return Err(Error::AlreadyExists(spec.id));
        }
        let mut spec = spec;
        let has_config_drive = spec.config_drive.take().is_some();
        let s = FakeServer {
            spec,
            state: PowerState::Shutoff,
            pid: None,
            resize_backup: None,
            console: String::new(),
            has_config_drive,
            rescued: false,
            serial: None,
        };
        let info = s.info();
        g.servers.insert(info.id, s);
        Ok(info)
    }

    async fn power_on(&self, id: Uuid) -> Result<()> {
        self.transition("power_on", id, Op::PowerOn, PowerState::Running, "started")
            .map(|_| ())
    }

    async fn power_off(&self, id: Uuid, how: PowerOff) -> Result<StopOutcome> {
        let (op, outcome) = match how {
            PowerOff::Graceful { .. } => (Op::PowerOffGraceful, StopOutcome::Clean),
            PowerOff::Hard => (Op::PowerOffHard, StopOutcome::Forced),
        };
        let changed = self.transition("power_off", id, op, PowerState::Shutoff, "stopped")?;
        Ok(if changed {
            outcome
        } else {
            StopOutcome::AlreadyOff
        })
    }

    async fn reboot(&self, id: Uuid, kind: RebootKind) -> Result<RebootOutcome> {
        let (op, outcome) = match kind {
            RebootKind::Soft { .. } => (Op::RebootSoft, RebootOutcome::Soft),
            RebootKind::Hard => (Op::RebootHard, RebootOutcome::Hard),
        };
        let mut g = self.lock();
        self.begin(&mut g, "reboot", Some(id), format!("{kind:?}"))?;
        let next_pid = g.next_pid;
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        plan(id, op, s.state)?;
        s.state = PowerState::Running;
        s.pid = Some(next_pid);
        g.next_pid += 1;
        drop(g);
        self.emit(id, PowerState::Running, "rebooted");
        Ok(outcome)
    }

    async fn pause(&self, id: Uuid) -> Result<()> {
        self.transition("pause", id, Op::Pause, PowerState::Paused, "paused")
            .map(|_| ())
    }

    async fn unpause(&self, id: Uuid) -> Result<()> {
        self.transition("unpause", id, Op::Unpause, PowerState::Running, "resumed")
            .map(|_| ())
    }

    async fn suspend(&self, id: Uuid) -> Result<()> {
        self.transition(
            "suspend",
            id,
            Op::Suspend,
            PowerState::Suspended,
            "suspended",
        )
        .map(|_| ())
    }

    async fn resume(&self, id: Uuid) -> Result<()> {
        self.transition("resume", id, Op::Resume, PowerState::Running, "resumed")
            .map(|_| ())
    }

    async fn resize(&self, id: Uuid, to: ResizeSpec) -> Result<()> {
        let mut g = self.lock();
        self.begin(&mut g, "resize", Some(id), format!("{to:?}"))?;
        types::validate_sizes(to.vcpus, to.memory_mb, to.root_gb)?;
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        plan(id, Op::Offline, s.state)?;
        if s.resize_backup.is_some() {
            return Err(Error::Invalid(format!(
                "server {id} has a resize waiting for confirm or revert"
            )));
        }
        if to.root_gb < s.spec.root_gb {
            return Err(Error::Invalid(format!(
                "cannot shrink the root disk from {} to {} GB",
                s.spec.root_gb, to.root_gb
            )));
        }
        s.resize_backup = Some(ResizeSpec {
            vcpus: s.spec.vcpus,
            memory_mb: s.spec.memory_mb,
            root_gb: s.spec.root_gb,
        });
        s.spec.vcpus = to.vcpus;
        s.spec.memory_mb = to.memory_mb;
        s.spec.root_gb = to.root_gb;
        Ok(())
    }

    async fn resize_confirm(&self, id: Uuid) -> Result<()> {
        let mut g = self.lock();
        self.begin(&mut g, "resize_confirm", Some(id), String::new())?;
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        s.resize_backup = None;
        Ok(())
    }

    async fn resize_revert(&self, id: Uuid) -> Result<()> {
        let mut g = self.lock();
        self.begin(&mut g, "resize_revert", Some(id), String::new())?;
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        plan(id, Op::Offline, s.state)?;
        let Some(old) = s.resize_backup.take() else {
            return Err(Error::Invalid(format!(
                "server {id} has no resize to revert"
            )));
        };
        s.spec.vcpus = old.vcpus;
        s.spec.memory_mb = old.memory_mb;
        s.spec.root_gb = old.root_gb;
        Ok(())
    }

    async fn rebuild(&self, id: Uuid, spec: RebuildSpec) -> Result<()> {
        let mut g = self.lock();
        self.begin(
            &mut g,
            "rebuild",
            Some(id),
            spec.image.path.display().to_string(),
        )?;
        validate_path("image path", &spec.image.path)?;
        if let Some(cd) = &spec.config_drive {
            cd.validate()?;
        }
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        plan(id, Op::Offline, s.state)?;
        s.spec.image = spec.image;
        s.has_config_drive |= spec.config_drive.is_some();
        s.console.clear();
        Ok(())
    }

    async fn rescue(&self, id: Uuid, image: ImageSource) -> Result<()> {
        let mut g = self.lock();
        self.begin(&mut g, "rescue", Some(id), image.path.display().to_string())?;
        validate_path("image path", &image.path)?;
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        plan(id, Op::Offline, s.state)?;
        s.rescued = true;
        Ok(())
    }

    async fn unrescue(&self, id: Uuid) -> Result<()> {
        let mut g = self.lock();
        self.begin(&mut g, "unrescue", Some(id), String::new())?;
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        plan(id, Op::Offline, s.state)?;
        s.rescued = false;
        Ok(())
    }

    async fn snapshot(&self, id: Uuid, dest: &Path, format: DiskFormat) -> Result<SnapshotInfo> {
        let root_gb = {
            let mut g = self.lock();
            self.begin(&mut g, "snapshot", Some(id), dest.display().to_string())?;
            validate_path("snapshot path", dest)?;
            g.servers.get(&id).ok_or(Error::NotFound(id))?.spec.root_gb
        };
        let body = format!("fake {} snapshot of server {id}\n", format.as_str());
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .await
            .map_err(|e| Error::io(format!("create {}", dest.display()), e))?;
        tokio::fs::write(dest, body.as_bytes())
            .await
            .map_err(|e| Error::io(format!("write {}", dest.display()), e))?;
        Ok(SnapshotInfo {
            path: dest.to_path_buf(),
            format,
            size: body.len() as u64,
            virtual_size: root_gb << 30,
        })
    }

    async fn serial_console(&self, id: Uuid) -> Result<PathBuf> {
        let mut g = self.lock();
        self.begin(&mut g, "serial_console", Some(id), String::new())?;
        let s = g.servers.get_mut(&id).ok_or(Error::NotFound(id))?;
        if !s.state.is_active() {
            return Err(Error::InvalidState {
                id,
                op: "connect to the serial console of",
                state: s.state,
            });
        }
        if let Some((path, _)) = &s.serial {
            return Ok(path.clone());
        }
        let path = std::env::temp_dir().join(format!(
            "oxistack-fake-serial-{}-{id}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("bind {}", path.display()), e))?;
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let (mut rd, mut wr) = conn.split();
                    if wr.write_all(b"fake serial console\r\n").await.is_ok() {
                        let _ = tokio::io::copy(&mut rd, &mut wr).await;
                    }
                });
            }
        });
        s.serial = Some((path.clone(), task.abort_handle()));
        Ok(path)
    }

    async fn console_log(&self, id: Uuid, tail_lines: Option<usize>) -> Result<String> {
        let g = self.lock();
        let s = g.servers.get(&id).ok_or(Error::NotFound(id))?;
        Ok(match tail_lines {
            Some(n) => tail(&s.console, n),
            None => s.console.clone(),
        })
    }

    async fn delete(&self, id: Uuid) -> Result<()> {
        let mut g = self.lock();
        self.begin(&mut g, "delete", Some(id), String::new())?;
        let s = g.servers.remove(&id).ok_or(Error::NotFound(id))?;
        drop(g);
        if let Some((path, task)) = &s.serial {
            task.abort();
            let _ = std::fs::remove_file(path);
        }
        if s.state != PowerState::Shutoff {
            self.emit(id, PowerState::Shutoff, "deleted");
        }
        Ok(())
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(name: &str) -> ServerSpec {
        ServerSpec {
            id: Uuid::new_v4(),
            name: name.into(),
            hostname: format!("{name}.novalocal"),
            vcpus: 1,
            memory_mb: 512,
            root_gb: 1,
            image: ImageSource {
                path: "/var/cache/oxistack/images/x".into(),
                format: DiskFormat::Qcow2,
            },
            nics: vec![],
            config_drive: Some(ConfigDrive::new(
                &InstanceMetadata {
                    uuid: Uuid::nil(),
                    name: name.into(),
                    hostname: format!("{name}.novalocal"),
                    ..Default::default()
                },
                None,
            )),
            console_log: None,
        }
    }

    fn hv() -> FakeHypervisor {
        FakeHypervisor::new(FakeHost::numbered(1))
    }

    #[tokio::test]
    async fn lifecycle_follows_the_rules() {
        let h = hv();
        let s = h.define(spec("vm1")).await.unwrap();
        assert_eq!(s.state, PowerState::Shutoff);
        assert!(matches!(
            h.define(ServerSpec {
                id: s.id,
                ..spec("vm1")
            })
            .await,
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            h.pause(s.id).await,
            Err(Error::InvalidState { .. })
        ));
        h.power_on(s.id).await.unwrap();
        assert_eq!(h.info(s.id).await.unwrap().state, PowerState::Running);
        assert!(h.info(s.id).await.unwrap().pid.is_some());
        h.power_on(s.id).await.unwrap(); // already running: no-op
        h.pause(s.id).await.unwrap();
        assert_eq!(h.info(s.id).await.unwrap().state, PowerState::Paused);
        h.unpause(s.id).await.unwrap();
        h.suspend(s.id).await.unwrap();
        assert_eq!(h.info(s.id).await.unwrap().state, PowerState::Suspended);
        assert!(h.info(s.id).await.unwrap().pid.is_none());
        assert!(h.power_on(s.id).await.is_err(), "start a suspended server");
        h.resume(s.id).await.unwrap();
        assert_eq!(
            h.reboot(
                s.id,
                RebootKind::Soft {
                    timeout: Duration::from_secs(1)
                }
            )
            .await
            .unwrap(),
            RebootOutcome::Soft
        );
        assert!(
            h.resize(
                s.id,
                ResizeSpec {
                    vcpus: 2,
                    memory_mb: 1024,
                    root_gb: 2
                }
            )
            .await
            .is_err(),
            "resize needs a stopped server"
        );
        assert_eq!(
            h.power_off(s.id, PowerOff::graceful(Duration::from_secs(5)))
                .await
                .unwrap(),
            StopOutcome::Clean
        );
        assert_eq!(
            h.power_off(s.id, PowerOff::Hard).await.unwrap(),
            StopOutcome::AlreadyOff
        );
        let log = h.console_log(s.id, Some(2)).await.unwrap();
        assert_eq!(log, "hostname: vm1\nOXISTACK-GUEST-READY\n");
        h.delete(s.id).await.unwrap();
        assert!(matches!(h.info(s.id).await, Err(Error::NotFound(_))));
        let ops: Vec<&str> = h.actions().iter().map(|a| a.op).collect();
        assert_eq!(ops.first(), Some(&"define"));
        assert_eq!(ops.last(), Some(&"delete"));
        assert!(ops.contains(&"suspend"));
    }

    #[tokio::test]
    async fn resize_confirm_and_revert() {
        let h = hv();
        let s = h.define(spec("vm1")).await.unwrap();
        let to = ResizeSpec {
            vcpus: 2,
            memory_mb: 1024,
            root_gb: 5,
        };
        h.resize(s.id, to).await.unwrap();
        let i = h.info(s.id).await.unwrap();
        assert!(i.resize_pending);
        assert_eq!((i.vcpus, i.memory_mb, i.root_gb), (2, 1024, 5));
        assert!(h.resize(s.id, to).await.is_err(), "one resize at a time");
        h.resize_revert(s.id).await.unwrap();
        let i = h.info(s.id).await.unwrap();
        assert_eq!(
            (i.vcpus, i.memory_mb, i.root_gb, i.resize_pending),
            (1, 512, 1, false)
        );
        h.resize(s.id, to).await.unwrap();
        h.resize_confirm(s.id).await.unwrap();
        let i = h.info(s.id).await.unwrap();
        assert_eq!((i.root_gb, i.resize_pending), (5, false));
        let shrink = ResizeSpec { root_gb: 1, ..to };
        assert!(h.resize(s.id, shrink).await.is_err());
    }

    #[tokio::test]
    async fn injected_failures_and_external_events() {
        let h = hv();
        let mut events = h.events();
        let s = h.define(spec("vm1")).await.unwrap();
        h.fail_next("power_on", "no luck");
        assert!(matches!(h.power_on(s.id).await, Err(Error::Injected(_))));
        assert_eq!(h.info(s.id).await.unwrap().state, PowerState::Shutoff);
        h.power_on(s.id).await.unwrap();
        assert_eq!(events.recv().await.unwrap().state, PowerState::Running);
        h.crash(s.id).unwrap();
        let ev = events.recv().await.unwrap();
        assert_eq!((ev.id, ev.state), (s.id, PowerState::Crashed));
        h.power_on(s.id).await.unwrap();
        h.guest_power_off(s.id).unwrap();
        let _ = events.recv().await.unwrap();
        assert_eq!(events.recv().await.unwrap().state, PowerState::Shutoff);
    }

    #[tokio::test]
    async fn invalid_specs_are_refused() {
        let h = hv();
        let mut bad = spec("vm1");
        bad.hostname = "bad host".into();
        assert!(matches!(h.define(bad).await, Err(Error::Invalid(_))));
    }

    #[tokio::test]
    async fn snapshot_writes_a_file() {
        let h = hv();
        let s = h.define(spec("vm1")).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("snap.qcow2");
        let info = h.snapshot(s.id, &dest, DiskFormat::Qcow2).await.unwrap();
        assert!(dest.exists());
        assert_eq!(info.virtual_size, 1 << 30);
        assert!(h.snapshot(s.id, &dest, DiskFormat::Qcow2).await.is_err());
    }

    #[tokio::test]
    async fn a_thousand_hosts_are_cheap() {
        let rss = || {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        let before = rss();
        let hosts: Vec<FakeHypervisor> = (0..1000)
            .map(|n| FakeHypervisor::new(FakeHost::numbered(n)).without_recording())
            .collect();
        let mut names = BTreeSet::new();
        for (n, h) in hosts.iter().enumerate() {
            let r = h.host_resources().await.unwrap();
            assert!(r.vcpus >= 32 && r.memory_mb >= 65_536);
            assert!(r.traits.contains("HW_CPU_X86_AVX2"));
            assert!(r.traits.contains("COMPUTE_IMAGE_TYPE_QCOW2"));
            names.insert(r.hostname);
            for _ in 0..5 {
                let s = h.define(spec(&format!("vm{n}"))).await.unwrap();
                h.power_on(s.id).await.unwrap();
            }
            assert!(h.actions().is_empty());
        }
        assert_eq!(names.len(), 1000);
        let r = hosts[3].host_resources().await.unwrap();
        assert_eq!(r.memory_mb - r.memory_mb_available, 5 * 512);
        assert_eq!(hosts[3].list().await.unwrap().len(), 5);
        eprintln!(
            "1000 fake hosts with 5 servers each: about {} KiB of RSS",
            rss().saturating_sub(before)
        );
    }
}
