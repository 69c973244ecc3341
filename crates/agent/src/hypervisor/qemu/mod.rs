//! The real hypervisor: one `qemu-system-x86_64` process per server,
//! driven over QMP, no libvirt.
//!
//! # Files
//! Everything of a server lives in `<instances>/<uuid>/`: `spec.json` (the
//! definition), `disk` (qcow2 overlay on the cached image), `disk.config`
//! (ISO9660 config drive, label `config-2`), `console.log` (serial port,
//! appended across power cycles, rotated at 4 MiB), `qmp.sock`, `qemu.pid`,
//! `qemu.log` (QEMU's stdout/stderr), and while suspended `suspend.state`;
//! during a resize `resize-backup/`; after an unexplained death `crashed`.
//!
//! # Processes
//! QEMU runs in its own session (`setsid`), with its output in `qemu.log`
//! and a cleared environment, so it outlives the agent. It starts paused
//! (`-S`); the agent connects to QMP, then sends `cont`. A monitor task per
//! process follows QMP events (STOP, RESUME, SHUTDOWN) and waits for the
//! process to end (a pidfd, so this works for processes adopted from an
//! earlier agent too); when it ends the server becomes `Shutoff` if a
//! shutdown was seen or requested, else `Crashed`, at once.
//! [`QemuHypervisor::adopt`] finds live QEMUs through `qemu.pid`, checks
//! their command line names the server, and reconnects to `qmp.sock`.
//!
//! # Power semantics
//! * Graceful stop: `system_powerdown` (ACPI button), repeated every
//!   `retry`, then a hard stop when `timeout` passes.
//! * Hard stop: QMP `quit`, then SIGTERM, then SIGKILL.
//! * A reboot from inside the guest resets the machine in the same process
//!   (no `-no-reboot`), as libvirt's default `on_reboot=restart`; a guest
//!   power-off ends the process (no `-no-shutdown`) and the server is
//!   `Shutoff`.
//! * Soft reboot (API): a graceful stop and a fresh start (so flavor or
//!   disk changes apply), hard reboot when the guest ignores ACPI; hard
//!   reboot: hard stop and start. Both as Nova's libvirt driver does.
//! * Suspend: QEMU 7.2 (Debian 12) has no `file:` migration URI, so the
//!   memory goes through a descriptor passed with `getfd` (SCM_RIGHTS):
//!   `stop`, `migrate fd:...` into `suspend.state`, `quit`. Resume starts
//!   QEMU with `-incoming defer` and `migrate-incoming fd:...` from the
//!   file, then `cont`. This is what libvirt's managed save does.
//! * Snapshot of a running server: `stop` (QEMU drains and flushes), `qemu-img
//!   convert -U`, `cont`.
//! * Rescue is not implemented yet (it would boot a rescue image with the
//!   root disk attached second).
//!
//! # Acceleration
//! KVM only if probe guests really run under it, and fast (see
//! `probe.rs`); the verdict is cached in `<instances>/.accel.json`.
//! Otherwise TCG.

mod cmdline;
mod probe;
mod process;
pub mod qmp;
mod tools;

#[doc(hidden)]
pub use self::process::stand_in_qemu;

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rustix::process::Signal;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch, OnceCell};
use uuid::Uuid;

use self::cmdline::{qemu_args, Definition, Machine, Paths};
use self::process::{is_our_qemu, our_qemus, read_pidfile, ProcHandle, Waiter};
use self::qmp::{Qmp, QmpError, QmpEvent};
use self::tools::{IsoTool, QemuImg};
use super::host::{cpu_traits, default_ip, disk_gb, hostname, read_host, QEMU_CAPABILITY_TRAITS};
use super::rules::{plan, Op, Plan};
use super::types::validate_path;
use super::*;

const GIB: u64 = 1 << 30;
const CONSOLE_ROTATE_BYTES: u64 = 4 << 20;
const CONSOLE_READ_BYTES: u64 = 1 << 20;

/// How to choose the accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelMode {
    /// KVM if the probe guest runs, else TCG.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// Where servers' directories go. Absolute, short enough for a Unix
    /// socket path below it, no commas.
    pub instances_dir: PathBuf,
    /// The host name reported to the control plane (`None`: the system's).
    pub hostname: Option<String>,
    /// The address reported for the host (`None`: [`default_ip`]).
    pub my_ip: Option<std::net::IpAddr>,
    pub qemu_binary: String,
    pub qemu_img: String,
    pub accel: AccelMode,
    /// A Linux kernel the KVM probe boots (`None`: the project's guest
    /// kernel or the host's, when found).
    pub probe_kernel: Option<PathBuf>,
    /// How long the probe's kernel may take to boot under KVM.
    pub probe_timeout: Duration,
    /// `-cpu` under TCG (`None`: QEMU's default).
    pub tcg_cpu_model: Option<String>,
    /// From spawning QEMU to QMP answering.
    pub start_timeout: Duration,
    /// Per QMP command.
    pub qmp_timeout: Duration,
    /// Saving or loading a suspended server's memory.
    pub save_timeout: Duration,
}

impl QemuConfig {
    pub fn new(instances_dir: impl Into<PathBuf>) -> Self {
        QemuConfig {
            instances_dir: instances_dir.into(),
            hostname: None,
            my_ip: None,
            qemu_binary: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
            accel: AccelMode::Auto,
            probe_kernel: None,
            probe_timeout: Duration::from_secs(20),
            tcg_cpu_model: None,
            start_timeout: Duration::from_secs(30),
            qmp_timeout: Duration::from_secs(30),
            save_timeout: Duration::from_secs(600),
        }
    }
}

/// Why the agent is ending a process (read by the monitor when it ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    None,
    Stop,
    Suspend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Status {
    state: PowerState,
    pid: Option<u32>,
}

/// The process of a running server.
#[derive(Clone)]
struct Run {
    generation: u64,
    proc: ProcHandle,
    /// `None` when an adopted QEMU did not answer on QMP (only signals
    /// then).
    qmp: Option<Qmp>,
}

struct Vm {
    id: Uuid,
    paths: Paths,
    def: Mutex<Definition>,
    /// Serialises operations on this server.
    ops: Arc<tokio::sync::Mutex<()>>,
    run: Mutex<Option<Run>>,
    intent: Mutex<Intent>,
    status: watch::Sender<Status>,
    resize_pending: AtomicBool,
    deleted: AtomicBool,
    /// The task following the current process.
    monitor: Mutex<Option<tokio::task::AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Vm {
    fn new(paths: Paths, def: Definition, state: PowerState) -> Arc<Vm> {
        let resize_pending = paths.resize_backup().exists();
        Arc::new(Vm {
            id: def.id,
            paths,
            def: Mutex::new(def),
            ops: Arc::new(tokio::sync::Mutex::new(())),
            run: Mutex::new(None),
            intent: Mutex::new(Intent::None),
            status: watch::channel(Status { state, pid: None }).0,
            resize_pending: AtomicBool::new(resize_pending),
            deleted: AtomicBool::new(false),
            monitor: Mutex::new(None),
        })
    }

    fn state(&self) -> PowerState {
        self.status.borrow().state
    }

    fn set_state(&self, state: PowerState, pid: Option<u32>) {
        self.status.send_replace(Status { state, pid });
    }

    fn info(&self) -> ServerInfo {
        let d = lock(&self.def);
        let st = *self.status.borrow();
        ServerInfo {
            id: self.id,
            name: d.name.clone(),
            state: st.state,
            vcpus: d.vcpus,
            memory_mb: d.memory_mb,
            root_gb: d.root_gb,
            image: d.image.clone(),
            pid: st.pid,
            resize_pending: self.resize_pending.load(Ordering::Relaxed),
            rescued: d.rescue,
        }
    }

    fn current_run(&self) -> Option<Run> {
        lock(&self.run).clone()
    }

    fn qmp(&self) -> Result<Qmp> {
        self.current_run()
            .and_then(|r| r.qmp)
            .ok_or_else(|| Error::Qmp(format!("no QMP connection to server {}", self.id)))
    }

    /// Waits until no process runs (true) or `timeout` passes (false).
    async fn wait_stopped(&self, timeout: Duration) -> bool {
        let mut rx = self.status.subscribe();
        let res = tokio::time::timeout(timeout, rx.wait_for(|s| !s.state.is_active())).await;
        res.is_ok()
    }
}

pub struct QemuHypervisor {
    cfg: QemuConfig,
    dir: PathBuf,
    qemu: PathBuf,
    qemu_img: QemuImg,
    iso: Option<IsoTool>,
    setsid: Option<PathBuf>,
    version: (u64, u64, u64),
    version_text: String,
    accel: OnceCell<(Accel, String)>,
    vms: Mutex<HashMap<Uuid, Arc<Vm>>>,
    defining: Mutex<HashSet<Uuid>>,
    generation: AtomicU64,
    events: broadcast::Sender<LifecycleEvent>,
}

impl QemuHypervisor {
    /// Checks the configuration and the tools. Does not touch running VMs:
    /// call [`Hypervisor::adopt`] next.
    pub async fn new(cfg: QemuConfig) -> Result<Self> {
        validate_path("instances directory", &cfg.instances_dir)?;
        tokio::fs::create_dir_all(&cfg.instances_dir)
            .await
            .map_err(|e| Error::io(format!("create {}", cfg.instances_dir.display()), e))?;
        let dir = tokio::fs::canonicalize(&cfg.instances_dir)
            .await
            .map_err(|e| Error::io(format!("resolve {}", cfg.instances_dir.display()), e))?;
        validate_path("instances directory", &dir)?;
        // <dir>/<36-char uuid>/qmp.sock must fit a sockaddr_un (108 bytes).
        let longest = dir.as_os_str().len() + 1 + 36 + "/qmp.sock".len();
        if longest >= 108 {
            return Err(Error::Invalid(format!(
                "instances directory {} is too long for QMP socket paths",
                dir.display()
            )));
        }
        let qemu = tools::which(&cfg.qemu_binary)
            .ok_or_else(|| Error::Unsupported(format!("{} not found", cfg.qemu_binary)))?;
        let qemu_img = tools::which(&cfg.qemu_img)
            .ok_or_else(|| Error::Unsupported(format!("{} not found", cfg.qemu_img)))?;
        let out = tools::run(&qemu, ["--version"], Duration::from_secs(20)).await?;
        let version_text = String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let version = probe::parse_version(&version_text).ok_or_else(|| {
            Error::Unsupported(format!("cannot read QEMU's version from {version_text:?}"))
        })?;
        if version < (7, 2, 0) {
            return Err(Error::Unsupported(format!(
                "QEMU {}.{}.{} is older than 7.2",
                version.0, version.1, version.2
            )));
        }
        Ok(QemuHypervisor {
            dir,
            qemu,
            qemu_img: QemuImg {
                path: qemu_img,
                checked: Arc::new(Mutex::new(HashMap::new())),
            },
            iso: IsoTool::find(),
            setsid: tools::which("setsid"),
            version,
            version_text,
            accel: OnceCell::new(),
            vms: Mutex::new(HashMap::new()),
            defining: Mutex::new(HashSet::new()),
            generation: AtomicU64::new(1),
            events: broadcast::channel(256).0,
            cfg,
        })
    }

    pub fn instances_dir(&self) -> &Path {
        &self.dir
    }

    /// The accelerator servers get, probing (once) when needed, and why.
    pub async fn accel(&self) -> (Accel, String) {
        self.accel
            .get_or_init(|| async {
                let (accel, why) = self.choose_accel().await;
                tracing::info!(accel = accel.as_str(), reason = %why, "QEMU accelerator");
                (accel, why)
            })
            .await
            .clone()
    }

    async fn choose_accel(&self) -> (Accel, String) {
        match self.cfg.accel {
            AccelMode::Tcg => return (Accel::Tcg, "configured".into()),
            AccelMode::Kvm => return (Accel::Kvm, "configured".into()),
            AccelMode::Auto => {}
        }
        let cpu_model = read_host()
            .await
            .map(|(cpu, ..)| cpu.model)
            .unwrap_or_default();
        let key = probe::cache_key(&self.version_text, &cpu_model);
        let cache = self.dir.join(".accel.json");
        if let Some(v) = probe::read_cache(&cache, &key).await {
            return (v.accel, format!("cached: {}", v.detail));
        }
        let workdir = self.dir.join(".probe");
        let kernel = probe::find_kernel(self.cfg.probe_kernel.as_deref());
        let (accel, detail) = match probe::probe_kvm(
            &self.qemu,
            &workdir,
            kernel.as_deref(),
            self.cfg.probe_timeout,
        )
        .await
        {
            Ok(d) => (Accel::Kvm, d),
            Err(d) => (Accel::Tcg, d),
        };
        probe::write_cache(
            &cache,
            &probe::Verdict {
                key,
                accel,
                detail: detail.clone(),
            },
        )
        .await;
        (accel, detail)
    }

    fn get(&self, id: Uuid) -> Result<Arc<Vm>> {
        lock(&self.vms).get(&id).cloned().ok_or(Error::NotFound(id))
    }

    /// The server, with its operation lock held.
    async fn lock_vm(&self, id: Uuid) -> Result<(Arc<Vm>, tokio::sync::OwnedMutexGuard<()>)> {
        let vm = self.get(id)?;
        let g = Arc::clone(&vm.ops).lock_owned().await;
        if vm.deleted.load(Ordering::Acquire) {
            return Err(Error::NotFound(id));
        }
        Ok((vm, g))
    }

    fn emit(&self, id: Uuid, state: PowerState, reason: impl Into<String>) {
        let _ = self.events.send(LifecycleEvent {
            id,
            state,
            reason: reason.into(),
        });
    }

    async fn save_definition(&self, paths: &Paths, def: &Definition) -> Result<()> {
        write_atomic(
            &paths.spec(),
            &serde_json::to_vec_pretty(def).unwrap_or_default(),
        )
        .await
    }

    /// Root disk size in bytes for `root_gb` over an image of
    /// `virtual_size` bytes (`None`: the image's size).
    fn root_size(root_gb: u64, virtual_size: u64, image: &Path) -> Result<Option<u64>> {
        if root_gb == 0 {
            return Ok(None);
        }
        let want = root_gb * GIB;
        if want < virtual_size {
            return Err(Error::Image {
                path: image.to_path_buf(),
                reason: format!(
                    "its virtual size ({virtual_size} bytes) is larger than the {root_gb} GB root disk"
                ),
            });
        }
        Ok(Some(want))
    }

    async fn build_config_drive(&self, paths: &Paths, cd: &ConfigDrive) -> Result<()> {
        let tool = self.iso.as_ref().ok_or_else(|| {
            Error::Unsupported("a config drive needs genisoimage or xorriso".into())
        })?;
        let staging = paths.dir.join("config-drive.d");
        let tmp = paths.dir.join("disk.config.tmp");
        let res = async {
            let (cd, dir) = (cd.clone(), staging.clone());
            blocking(move || tools::stage_config_drive(&cd, &dir)).await?;
            tools::make_iso(tool, &staging, &tmp).await
        }
        .await;
        let dest = paths.config_drive();
        blocking(move || {
            let moved = match res {
                Ok(()) => std::fs::rename(&tmp, &dest).map_err(|e| {
                    Error::io(format!("rename {} to {}", tmp.display(), dest.display()), e)
                }),
                Err(e) => Err(e),
            };
            let _ = std::fs::remove_dir_all(&staging);
            let _ = std::fs::remove_file(&tmp);
            moved
        })
        .await
    }

    async fn define_files(&self, spec: &ServerSpec, paths: &Paths) -> Result<Definition> {
        let info = self.qemu_img.inspect_base(&spec.image).await?;
        let size = Self::root_size(spec.root_gb, info.virtual_size, &spec.image.path)?;
        // Two helper processes, independent of each other: run together
        // (on a busy host each mostly waits for a CPU).
        let disk_path = paths.disk();
        let disk = self.qemu_img.create_overlay(&spec.image, &disk_path, size);
        let config_drive = async {
            match &spec.config_drive {
                Some(cd) => self.build_config_drive(paths, cd).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(disk, config_drive)?;
        let console_log = match &spec.console_log {
            Some(p) => {
                let parent_ok = p.parent().map(|d| d.is_dir()).unwrap_or(false);
                if !parent_ok {
                    return Err(Error::Invalid(format!(
                        "console log directory of {} does not exist",
                        p.display()
                    )));
                }
                p.clone()
            }
            None => paths.default_console(),
        };
        let def = Definition {
            id: spec.id,
            name: spec.name.clone(),
            hostname: spec.hostname.clone(),
            vcpus: spec.vcpus,
            memory_mb: spec.memory_mb,
            root_gb: spec.root_gb,
            image: spec.image.clone(),
            nics: spec.nics.clone(),
            config_drive: spec.config_drive.is_some(),
            console_log,
            rescue: false,
        };
        self.save_definition(paths, &def).await?;
        Ok(def)
    }

    /// Starts QEMU for `vm` (the operation lock is held; no process runs).
    /// `incoming`: load the suspended memory first.
    async fn start(&self, vm: &Arc<Vm>, incoming: bool) -> Result<()> {
        let (accel, _) = self.accel().await;
        let def = lock(&vm.def).clone();
        let paths = &vm.paths;
        let log_start = {
            let stale = [paths.qmp(), paths.pidfile(), paths.crashed_marker()];
            let (console, qemu_log) = (def.console_log.clone(), paths.qemu_log());
            blocking(move || {
                for p in stale {
                    let _ = std::fs::remove_file(&p);
                }
                rotate_console(&console);
                Ok(std::fs::metadata(qemu_log).map(|m| m.len()).unwrap_or(0))
            })
            .await?
        };
        let machine = Machine {
            accel,
            tcg_cpu_model: self.cfg.tcg_cpu_model.clone(),
        };
        let args = qemu_args(&def, paths, &machine, incoming);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(paths.qemu_log())
            .map_err(|e| Error::io(format!("open {}", paths.qemu_log().display()), e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("duplicate log descriptor", e))?;
        let mut cmd = match &self.setsid {
            Some(setsid) => {
                let mut c = tokio::process::Command::new(setsid);
                c.arg(&self.qemu);
                c
            }
            None => {
                let mut c = tokio::process::Command::new(&self.qemu);
                c.process_group(0);
                c
            }
        };
        cmd.args(&args)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LC_ALL", "C")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(false);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io(format!("run {}", self.qemu.display()), e))?;
        let child_pid = child.id().map(|p| p as i32);

        let started = self.connect_new(vm, &mut child).await;
        let (qmp, events) = match started {
            Ok(x) => x,
            Err(msg) => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                let _ = tokio::fs::remove_file(paths.qmp()).await;
                let _ = tokio::fs::remove_file(paths.pidfile()).await;
                return Err(Error::Start {
                    id: vm.id,
                    message: format!("{msg}{}", log_tail(&paths.qemu_log(), log_start).await),
                });
            }
        };
        let pid = match read_pidfile(&paths.pidfile()).await {
            Some(p) => p,
            None => child_pid.unwrap_or(0),
        };
        let child = if Some(pid) == child_pid {
            Some(child)
        } else {
            // `setsid` forked: reap the launcher, watch the real QEMU.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            None
        };
        let (proc, waiter) = ProcHandle::open(pid, child);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        *lock(&vm.run) = Some(Run {
            generation,
            proc: proc.clone(),
            qmp: Some(qmp.clone()),
        });
        *lock(&vm.intent) = Intent::None;
        vm.set_state(PowerState::Paused, Some(pid as u32));
        self.spawn_monitor(vm, generation, waiter, Some(events));

        let res = async {
            if incoming {
                self.load_state(vm, &qmp).await?;
            }
            qmp.execute("cont", None, self.cfg.qmp_timeout)
                .await
                .map_err(qmp_err)?;
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = res {
            self.hard_stop(vm).await.ok();
            return Err(e);
        }
        if incoming {
            let _ = tokio::fs::remove_file(paths.saved_state()).await;
        }
        vm.set_state(PowerState::Running, Some(pid as u32));
        self.emit(
            vm.id,
            PowerState::Running,
            if incoming { "resumed" } else { "started" },
        );
        Ok(())
    }

    /// Waits for a freshly spawned QEMU's QMP socket.
    async fn connect_new(
        &self,
        vm: &Vm,
        child: &mut tokio::process::Child,
    ) -> std::result::Result<(Qmp, mpsc::UnboundedReceiver<QmpEvent>), String> {
        let deadline = Instant::now() + self.cfg.start_timeout;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("QEMU exited at start ({st})"));
            }
            if vm.paths.qmp().exists() {
                match Qmp::connect(&vm.paths.qmp(), self.cfg.qmp_timeout).await {
                    Ok(x) => return Ok(x),
                    Err(QmpError::Io(_)) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "QMP did not answer within {:?}",
                    self.cfg.start_timeout
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn spawn_monitor(
        &self,
        vm: &Arc<Vm>,
        generation: u64,
        waiter: Waiter,
        events: Option<mpsc::UnboundedReceiver<QmpEvent>>,
    ) {
        let bus = self.events.clone();
        let task = tokio::spawn(monitor(Arc::clone(vm), generation, waiter, events, bus));
        *lock(&vm.monitor) = Some(task.abort_handle());
    }

    /// Loads `suspend.state` into a QEMU started with `-incoming defer`.
    async fn load_state(&self, vm: &Vm, qmp: &Qmp) -> Result<()> {
        let path = vm.paths.saved_state();
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        qmp.execute_with_fd(
            "getfd",
            Some(json!({"fdname": "oxistack-resume"})),
            file.as_fd(),
            self.cfg.qmp_timeout,
        )
        .await
        .map_err(qmp_err)?;
        qmp.execute(
            "migrate-incoming",
            Some(json!({"uri": "fd:oxistack-resume"})),
            self.cfg.qmp_timeout,
        )
        .await
        .map_err(qmp_err)?;
        self.wait_migration(qmp).await
    }

    /// Polls `query-migrate` until it completes or fails.
    async fn wait_migration(&self, qmp: &Qmp) -> Result<()> {
        let deadline = Instant::now() + self.cfg.save_timeout;
        loop {
            let info = qmp
                .execute("query-migrate", None, self.cfg.qmp_timeout)
                .await
                .map_err(qmp_err)?;
            match info["status"].as_str().unwrap_or("") {
                "completed" => return Ok(()),
                "failed" | "cancelled" => {
                    return Err(Error::Qmp(format!(
                        "saving or loading memory failed: {}",
                        info["error-desc"].as_str().unwrap_or("no reason given")
                    )))
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                let _ = qmp
                    .execute("migrate_cancel", None, self.cfg.qmp_timeout)
                    .await;
                return Err(Error::Timeout(format!(
                    "memory transfer longer than {:?}",
                    self.cfg.save_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the process now: `quit`, then SIGTERM, then SIGKILL.
    async fn hard_stop(&self, vm: &Vm) -> Result<()> {
        let Some(run) = vm.current_run() else {
            return Ok(());
        };
        {
            let mut i = lock(&vm.intent);
            if *i == Intent::None {
                *i = Intent::Stop;
            }
        }
        if let Some(qmp) = &run.qmp {
            let _ = qmp.execute("quit", None, Duration::from_secs(5)).await;
        }
        if vm.wait_stopped(Duration::from_secs(10)).await {
            return Ok(());
        }
        run.proc.signal(Signal::TERM);
        if vm.wait_stopped(Duration::from_secs(5)).await {
            return Ok(());
        }
        run.proc.signal(Signal::KILL);
        if vm.wait_stopped(Duration::from_secs(20)).await {
            return Ok(());
        }
        Err(Error::Timeout(format!(
            "QEMU of server {} (pid {}) does not exit",
            vm.id, run.proc.pid
        )))
    }

    /// ACPI power button until the guest is off or `timeout` passes.
    async fn graceful_stop(
        &self,
        vm: &Vm,
        timeout: Duration,
        retry: Duration,
    ) -> Result<StopOutcome> {
        *lock(&vm.intent) = Intent::Stop;
        let deadline = Instant::now() + timeout;
        if vm.state() == PowerState::Running {
            let retry = retry.max(Duration::from_millis(100));
            loop {
                if let Ok(qmp) = vm.qmp() {
                    if let Err(e) = qmp
                        .execute("system_powerdown", None, self.cfg.qmp_timeout)
                        .await
                    {
                        tracing::debug!(id = %vm.id, error = %e, "system_powerdown");
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if vm.wait_stopped(left.min(retry)).await {
                    return Ok(StopOutcome::Clean);
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
        }
        self.hard_stop(vm).await?;
        Ok(StopOutcome::Forced)
    }

    async fn discard_saved_state(&self, vm: &Vm) {
        let _ = tokio::fs::remove_file(vm.paths.saved_state()).await;
        vm.set_state(PowerState::Shutoff, None);
    }

    /// Adopts one server directory.
    /// `live`: a live QEMU of this server found in `/proc` (see
    /// [`our_qemus`]), if any.
    async fn adopt_one(&self, id: Uuid, live: Option<i32>) -> Result<Arc<Vm>> {
        let paths = Paths::new(&self.dir, id);
        let bytes = tokio::fs::read(paths.spec())
            .await
            .map_err(|e| Error::io(format!("read {}", paths.spec().display()), e))?;
        let def: Definition = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("{}: {e}", paths.spec().display())))?;
        if def.id != id {
            return Err(Error::Invalid(format!(
                "{} names server {}",
                paths.spec().display(),
                def.id
            )));
        }
        let _ = tokio::fs::remove_file(paths.saved_state().with_extension("state.tmp")).await;
        let pid = read_pidfile(&paths.pidfile()).await;
        if let Some(pid) = pid.filter(|p| is_our_qemu(*p, id)) {
            let vm = Vm::new(paths, def, PowerState::Running);
            let (proc, waiter) = ProcHandle::open(pid, None);
            let (qmp, events) = match Qmp::connect(&vm.paths.qmp(), Duration::from_secs(5)).await {
                Ok((q, e)) => (Some(q), Some(e)),
                Err(e) => {
                    tracing::warn!(%id, pid, error = %e, "adopted QEMU does not answer on QMP; only signals will reach it");
                    (None, None)
                }
            };
            let state = match &qmp {
                Some(q) => match q.execute("query-status", None, self.cfg.qmp_timeout).await {
                    Ok(st) => qemu_status(&st),
                    Err(_) => PowerState::Running,
                },
                None => PowerState::Running,
            };
            let generation = self.generation.fetch_add(1, Ordering::Relaxed);
            *lock(&vm.run) = Some(Run {
                generation,
                proc,
                qmp,
            });
            vm.set_state(state, Some(pid as u32));
            self.spawn_monitor(&vm, generation, waiter, events);
            tracing::info!(%id, pid, state = %state, "adopted running server");
            return Ok(vm);
        }
        if let Some(stray) = live {
            // QEMU writes its pidfile as it starts: a live one without it
            // was being launched when the previous agent died, which never
            // saw it run and reported the start as failed. It is stopped.
            tracing::warn!(%id, pid = stray, "stopping a QEMU whose launch was cut short");
            let (proc, mut waiter) = ProcHandle::open(stray, None);
            proc.signal(Signal::KILL);
            let _ = tokio::time::timeout(Duration::from_secs(10), waiter.wait()).await;
        }
        // QEMU removes its pidfile when it exits normally: one left behind
        // means it died (or the host went down) while we were away.
        let stale_pid = pid.is_some();
        let state = if paths.saved_state().exists() {
            PowerState::Suspended
        } else if stale_pid || paths.crashed_marker().exists() {
            let _ = tokio::fs::write(paths.crashed_marker(), b"").await;
            PowerState::Crashed
        } else {
            PowerState::Shutoff
        };
        for p in [paths.pidfile(), paths.qmp()] {
            let _ = tokio::fs::remove_file(&p).await;
        }
        Ok(Vm::new(paths, def, state))
    }

    /// A server's console log file.
    fn console_path(vm: &Vm) -> PathBuf {
        lock(&vm.def).console_log.clone()
    }
}

fn qmp_err(e: QmpError) -> Error {
    Error::Qmp(e.to_string())
}

/// `query-status` -> power state.
fn qemu_status(v: &Value) -> PowerState {
    match v["status"].as_str().unwrap_or("") {
        "running" => PowerState::Running,
        "guest-panicked" | "internal-error" => PowerState::Crashed,
        "shutdown" => PowerState::Shutoff,
        _ => PowerState::Paused,
    }
}

async fn monitor(
    vm: Arc<Vm>,
    generation: u64,
    mut waiter: Waiter,
    mut events: Option<mpsc::UnboundedReceiver<QmpEvent>>,
    bus: broadcast::Sender<LifecycleEvent>,
) {
    let emit = |state: PowerState, reason: String| {
        let _ = bus.send(LifecycleEvent {
            id: vm.id,
            state,
            reason,
        });
    };
    let mut shutdown: Option<String> = None;
    let exit = loop {
        let ev = async {
            match events.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            how = waiter.wait() => break how,
            ev = ev => match ev {
                Some(ev) => {
                    let pid = vm.status.borrow().pid;
                    match ev.name.as_str() {
                        "STOP" => {
                            vm.set_state(PowerState::Paused, pid);
                            emit(PowerState::Paused, "paused".into());
                        }
                        "RESUME" => {
                            vm.set_state(PowerState::Running, pid);
                            emit(PowerState::Running, "resumed".into());
                        }
                        "SHUTDOWN" => {
                            shutdown = Some(
                                ev.data["reason"].as_str().unwrap_or("shutdown").to_string(),
                            );
                        }
                        "GUEST_PANICKED" => {
                            emit(PowerState::Crashed, "guest panicked".into());
                        }
                        _ => {}
                    }
                }
                None => {
                    // QMP is gone: QEMU is exiting (or hung). Give it a
                    // moment, then make sure.
                    match tokio::time::timeout(Duration::from_secs(10), waiter.wait()).await {
                        Ok(how) => break how,
                        Err(_) => {
                            tracing::warn!(id = %vm.id, "QMP closed but QEMU still runs; killing it");
                            if let Some(run) = vm.current_run() {
                                run.proc.signal(Signal::KILL);
                            }
                            break waiter.wait().await;
                        }
                    }
                }
            }
        }
    };
    let intent = std::mem::replace(&mut *lock(&vm.intent), Intent::None);
    let paths = &vm.paths;
    let state = if intent == Intent::Suspend && paths.saved_state().exists() {
        PowerState::Suspended
    } else if intent != Intent::None || shutdown.is_some() {
        PowerState::Shutoff
    } else {
        let _ = tokio::fs::write(paths.crashed_marker(), b"").await;
        PowerState::Crashed
    };
    let reason = match (&shutdown, state) {
        (_, PowerState::Suspended) => "suspended".to_string(),
        (Some(r), _) => r.clone(),
        (None, PowerState::Crashed) => format!("QEMU died: {exit}"),
        (None, _) => exit.clone(),
    };
    tracing::info!(id = %vm.id, state = %state, %reason, "QEMU ended");
    for p in [paths.pidfile(), paths.qmp()] {
        let _ = tokio::fs::remove_file(&p).await;
    }
    {
        let mut run = lock(&vm.run);
        if run.as_ref().map(|r| r.generation) == Some(generation) {
            *run = None;
        }
    }
    vm.set_state(state, None);
    emit(state, reason);
}

async fn write_atomic(path: &Path, body: &[u8]) -> Result<()> {
    let (path, body) = (path.to_path_buf(), body.to_vec());
    blocking(move || {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, body).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), path.display()), e))
    })
    .await
}

/// Runs a batch of file system work as one blocking task (tokio's file
/// functions take one trip to the blocking pool each).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("file task", std::io::Error::other(e.to_string())))?
}

async fn rename(from: &Path, to: &Path) -> Result<()> {
    tokio::fs::rename(from, to)
        .await
        .map_err(|e| Error::io(format!("rename {} to {}", from.display(), to.display()), e))
}

fn rotate_console(path: &Path) {
    if let Ok(m) = std::fs::metadata(path) {
        if m.len() > CONSOLE_ROTATE_BYTES {
            let mut old = path.as_os_str().to_owned();
            old.push(".0");
            let _ = std::fs::rename(path, PathBuf::from(old));
        }
    }
}

/// What QEMU wrote to `qemu.log` since `from`, for an error message.
async fn log_tail(path: &Path, from: u64) -> String {
    let Ok(bytes) = tokio::fs::read(path).await else {
        return String::new();
    };
    let start = (from as usize).min(bytes.len());
    let text = String::from_utf8_lossy(&bytes[start..]);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let tail: String = text
        .chars()
        .rev()
        .take(2000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!(": {tail}")
}

/// The last `CONSOLE_READ_BYTES` of a file, lossily decoded, without `\r`.
async fn read_console(path: &Path) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| Error::io("console log size", e))?
        .len();
    let start = len.saturating_sub(CONSOLE_READ_BYTES);
    f.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| Error::io("seek console log", e))?;
    let mut buf = Vec::new();
    f.take(CONSOLE_READ_BYTES)
        .read_to_end(&mut buf)
        .await
        .map_err(|e| Error::io("read console log", e))?;
    let mut text = String::from_utf8_lossy(&buf).replace('\r', "");
    if start > 0 {
        // Drop the partial first line.
        if let Some(i) = text.find('\n') {
            text.drain(..=i);
        }
    }
    Ok(text)
}

impl Drop for QemuHypervisor {
    /// Detaches from every VM: monitors stop, QMP connections close, the
    /// QEMU processes keep running (a new hypervisor adopts them).
    fn drop(&mut self) {
        let vms: Vec<Arc<Vm>> = lock(&self.vms).drain().map(|(_, v)| v).collect();
        for vm in vms {
            if let Some(m) = lock(&vm.monitor).take() {
                m.abort();
            }
            if let Some(run) = lock(&vm.run).take() {
                if let Some(q) = run.qmp {
                    q.close();
                }
            }
        }
    }
}

#[async_trait]
impl Hypervisor for QemuHypervisor {
    fn kind(&self) -> &'static str {
        "qemu"
    }

    fn events(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.events.subscribe()
    }

    async fn host_resources(&self) -> Result<HostResources> {
        let (cpu, logical, memory_mb, memory_mb_available) = read_host().await?;
        let (disk_total, disk_available) = disk_gb(&self.dir)?;
        let (accel, _) = self.accel().await;
        let mut traits = cpu_traits(&cpu);
        traits.extend(QEMU_CAPABILITY_TRAITS.iter().map(|t| t.to_string()));
        let (major, minor, micro) = self.version;
        Ok(HostResources {
            hostname: self.cfg.hostname.clone().unwrap_or_else(hostname),
            hypervisor_type: "QEMU".into(),
            hypervisor_version: major * 1_000_000 + minor * 1_000 + micro,
            accel,
            vcpus: logical,
            memory_mb,
            memory_mb_available,
            disk_gb: disk_total,
            disk_gb_available: disk_available,
            host_ip: self.cfg.my_ip.unwrap_or_else(default_ip),
            cpu,
            traits,
        })
    }

    async fn adopt(&self) -> Result<Vec<ServerInfo>> {
        let mut entries = tokio::fs::read_dir(&self.dir)
            .await
            .map_err(|e| Error::io(format!("read {}", self.dir.display()), e))?;
        let mut ids = Vec::new();
        while let Some(e) = entries
            .next_entry()
            .await
            .map_err(|e| Error::io(format!("read {}", self.dir.display()), e))?
        {
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| Uuid::parse_str(n).ok()) else {
                continue;
            };
            // Only the canonical spelling is ours.
            if name.to_str() != Some(id.to_string().as_str()) {
                continue;
            }
            ids.push(id);
        }
        ids.sort();
        let mut out = Vec::new();
        // Looked up once, and only when some server is not known yet.
        let mut running: Option<std::collections::HashMap<Uuid, i32>> = None;
        for id in ids {
            if let Some(vm) = lock(&self.vms).get(&id).cloned() {
                out.push(vm.info());
                continue;
            }
            if lock(&self.defining).contains(&id) {
                continue;
            }
            let paths = Paths::new(&self.dir, id);
            if !paths.spec().exists() {
                // A define that never finished (the agent died during it).
                tracing::warn!(%id, "removing a half-defined server directory");
                let _ = tokio::fs::remove_dir_all(&paths.dir).await;
                continue;
            }
            if running.is_none() {
                running = Some(
                    tokio::task::spawn_blocking(our_qemus)
                        .await
                        .unwrap_or_default(),
                );
            }
            let live = running.as_ref().and_then(|m| m.get(&id).copied());
            match self.adopt_one(id, live).await {
                Ok(vm) => {
                    out.push(vm.info());
                    lock(&self.vms).insert(id, vm);
                }
                Err(e) => tracing::error!(%id, error = %e, "cannot adopt server"),
            }
        }
        let _ = tokio::fs::remove_dir_all(self.dir.join(".probe")).await;
        Ok(out)
    }

    async fn list(&self) -> Result<Vec<ServerInfo>> {
        let vms: Vec<Arc<Vm>> = lock(&self.vms).values().cloned().collect();
        let mut out: Vec<ServerInfo> = vms.iter().map(|v| v.info()).collect();
        out.sort_by_key(|i| i.id);
        Ok(out)
    }

    async fn info(&self, id: Uuid) -> Result<ServerInfo> {
        Ok(self.get(id)?.info())
    }

    async fn define(&self, spec: ServerSpec) -> Result<ServerInfo> {
        spec.validate()?;
        let id = spec.id;
        if lock(&self.vms).contains_key(&id) || !lock(&self.defining).insert(id) {
            return Err(Error::AlreadyExists(id));
        }
        let paths = Paths::new(&self.dir, id);
        let res = async {
            // 0700: the config drive holds user_data, the console log
            // whatever the guest prints.
            let mut dir = tokio::fs::DirBuilder::new();
            dir.mode(0o700);
            match dir.create(&paths.dir).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::AlreadyExists(id))
                }
                Err(e) => return Err(Error::io(format!("create {}", paths.dir.display()), e)),
            }
            match self.define_files(&spec, &paths).await {
                Ok(def) => Ok(def),
                Err(e) => {
                    let _ = tokio::fs::remove_dir_all(&paths.dir).await;
                    Err(e)
                }
            }
        }
        .await;
        let out = res.map(|def| {
            let vm = Vm::new(paths, def, PowerState::Shutoff);
            let info = vm.info();
            lock(&self.vms).insert(id, vm);
            info
        });
        lock(&self.defining).remove(&id);
        out
    }

    async fn power_on(&self, id: Uuid) -> Result<()> {
        let (vm, _g) = self.lock_vm(id).await?;
        if plan(id, Op::PowerOn, vm.state())? == Plan::AlreadyDone {
            return Ok(());
        }
        self.start(&vm, false).await
    }

    async fn power_off(&self, id: Uuid, how: PowerOff) -> Result<StopOutcome> {
        let (vm, _g) = self.lock_vm(id).await?;
        let state = vm.state();
        let op = match how {
            PowerOff::Graceful { .. } => Op::PowerOffGraceful,
            PowerOff::Hard => Op::PowerOffHard,
        };
        if plan(id, op, state)? == Plan::AlreadyDone {
            return Ok(StopOutcome::AlreadyOff);
        }
        if state == PowerState::Suspended {
            self.discard_saved_state(&vm).await;
            self.emit(id, PowerState::Shutoff, "saved state discarded");
            return Ok(StopOutcome::Forced);
        }
        match how {
            PowerOff::Graceful { timeout, retry } => self.graceful_stop(&vm, timeout, retry).await,
            PowerOff::Hard => self.hard_stop(&vm).await.map(|_| StopOutcome::Forced),
        }
    }

    async fn reboot(&self, id: Uuid, kind: RebootKind) -> Result<RebootOutcome> {
        let (vm, _g) = self.lock_vm(id).await?;
        let state = vm.state();
        let outcome = match kind {
            RebootKind::Soft { timeout } => {
                plan(id, Op::RebootSoft, state)?;
                match self
                    .graceful_stop(&vm, timeout, Duration::from_secs(10))
                    .await?
                {
                    StopOutcome::Forced => RebootOutcome::SoftFellBackToHard,
                    _ => RebootOutcome::Soft,
                }
            }
            RebootKind::Hard => {
                plan(id, Op::RebootHard, state)?;
                if state == PowerState::Suspended {
                    self.discard_saved_state(&vm).await;
                }
                self.hard_stop(&vm).await?;
                RebootOutcome::Hard
            }
        };
        self.start(&vm, false).await?;
        Ok(outcome)
    }

    async fn pause(&self, id: Uuid) -> Result<()> {
        let (vm, _g) = self.lock_vm(id).await?;
        if plan(id, Op::Pause, vm.state())? == Plan::AlreadyDone {
            return Ok(());
        }
        vm.qmp()?
            .execute("stop", None, self.cfg.qmp_timeout)
            .await
            .map_err(qmp_err)?;
        let pid = vm.status.borrow().pid;
        vm.set_state(PowerState::Paused, pid);
        Ok(())
    }

    async fn unpause(&self, id: Uuid) -> Result<()> {
        let (vm, _g) = self.lock_vm(id).await?;
        if plan(id, Op::Unpause, vm.state())? == Plan::AlreadyDone {
            return Ok(());
        }
        vm.qmp()?
            .execute("cont", None, self.cfg.qmp_timeout)
            .await
            .map_err(qmp_err)?;
        let pid = vm.status.borrow().pid;
        vm.set_state(PowerState::Running, pid);
        Ok(())
    }

    async fn suspend(&self, id: Uuid) -> Result<()> {
        let (vm, _g) = self.lock_vm(id).await?;
        let state = vm.state();
        if plan(id, Op::Suspend, state)? == Plan::AlreadyDone {
            return Ok(());
        }
        let qmp = vm.qmp()?;
        let t = self.cfg.qmp_timeout;
        if state == PowerState::Running {
            qmp.execute("stop", None, t).await.map_err(qmp_err)?;
        }
        let target = vm.paths.saved_state();
        let tmp = target.with_extension("state.tmp");
        let saved = async {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
            qmp.execute_with_fd(
                "getfd",
                Some(json!({"fdname": "oxistack-suspend"})),
                file.as_fd(),
                t,
            )
            .await
            .map_err(qmp_err)?;
            // QEMU's default rate limit is meant for networks; a local file
            // can take everything at once.
            let _ = qmp
                .execute(
                    "migrate-set-parameters",
                    Some(json!({"max-bandwidth": 1u64 << 40})),
                    t,
                )
                .await;
            qmp.execute("migrate", Some(json!({"uri": "fd:oxistack-suspend"})), t)
                .await
                .map_err(qmp_err)?;
            self.wait_migration(&qmp).await?;
            file.sync_all()
                .map_err(|e| Error::io(format!("sync {}", tmp.display()), e))?;
            rename(&tmp, &target).await
        }
        .await;
        if let Err(e) = saved {
            let _ = tokio::fs::remove_file(&tmp).await;
            if state == PowerState::Running {
                let _ = qmp.execute("cont", None, t).await;
            }
            return Err(e);
        }
        *lock(&vm.intent) = Intent::Suspend;
        let _ = qmp.execute("quit", None, Duration::from_secs(5)).await;
        if !vm.wait_stopped(Duration::from_secs(20)).await {
            self.hard_stop(&vm).await?;
        }
        Ok(())
    }

    async fn resume(&self, id: Uuid) -> Result<()> {
        let (vm, _g) = self.lock_vm(id).await?;
        if plan(id, Op::Resume, vm.state())? == Plan::AlreadyDone {
            return Ok(());
        }
        let res = self.start(&vm, true).await;
        if res.is_err() && vm.state() != PowerState::Running {
            // The saved state is still there: stay suspended.
            vm.set_state(PowerState::Suspended, None);
        }
        res
    }

    async fn resize(&self, id: Uuid, to: ResizeSpec) -> Result<()> {
        types::validate_sizes(to.vcpus, to.memory_mb, to.root_gb)?;
        let (vm, _g) = self.lock_vm(id).await?;
        plan(id, Op::Offline, vm.state())?;
        let paths = &vm.paths;
        let backup = paths.resize_backup();
        if backup.exists() {
            return Err(Error::Invalid(format!(
                "server {id} has a resize waiting for confirm or revert"
            )));
        }
        let old = lock(&vm.def).clone();
        let current = self
            .qemu_img
            .info(&paths.disk(), Some(DiskFormat::Qcow2), false)
            .await?
            .virtual_size;
        let new_size = if to.root_gb == 0 {
            current
        } else {
            to.root_gb * GIB
        };
        if new_size < current {
            return Err(Error::Invalid(format!(
                "cannot shrink the root disk from {current} to {new_size} bytes"
            )));
        }
        // Keep the old disk and definition first, so an interrupted resize
        // can still be reverted.
        tokio::fs::create_dir(&backup)
            .await
            .map_err(|e| Error::io(format!("create {}", backup.display()), e))?;
        let res = async {
            let tmp = backup.join("disk.tmp");
            tokio::fs::copy(paths.disk(), &tmp)
                .await
                .map_err(|e| Error::io("copy the root disk", e))?;
            rename(&tmp, &backup.join("disk")).await?;
            write_atomic(
                &backup.join("spec.json"),
                &serde_json::to_vec_pretty(&old).unwrap_or_default(),
            )
            .await?;
            if new_size > current {
                self.qemu_img.resize(&paths.disk(), new_size).await?;
            }
            let mut new = old.clone();
            new.vcpus = to.vcpus;
            new.memory_mb = to.memory_mb;
            new.root_gb = if to.root_gb == 0 {
                old.root_gb
            } else {
                to.root_gb
            };
            self.save_definition(paths, &new).await?;
            *lock(&vm.def) = new;
            Ok(())
        }
        .await;
        match res {
            Ok(()) => {
                vm.resize_pending.store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                // Nothing changed that the backup would be needed for,
                // unless the disk was already grown: put it back then.
                if backup.join("disk").exists() && backup.join("spec.json").exists() {
                    let _ = tokio::fs::rename(backup.join("disk"), paths.disk()).await;
                }
                let _ = self.save_definition(paths, &old).await;
                *lock(&vm.def) = old;
                let _ = tokio::fs::remove_dir_all(&backup).await;
                Err(e)
            }
        }
    }

    async fn resize_confirm(&self, id: Uuid) -> Result<()> {
        let (vm, _g) = self.lock_vm(id).await?;
        let backup = vm.paths.resize_backup();
        match tokio::fs::remove_dir_all(&backup).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", backup.display()), e)),
        }
        vm.resize_pending.store(false, Ordering::Relaxed);
        Ok(())
    }

    async fn resize_revert(&self, id: Uuid) -> Result<()> {
        let (vm, _g) = self.lock_vm(id).await?;
        plan(id, Op::Offline, vm.state())?;
        let paths = &vm.paths;
        let backup = paths.resize_backup();
        let bytes = tokio::fs::read(backup.join("spec.json"))
            .await
            .map_err(|_| Error::Invalid(format!("server {id} has no resize to revert")))?;
        let old: Definition = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("resize backup of {id}: {e}")))?;
        if backup.join("disk").exists() {
            rename(&backup.join("disk"), &paths.disk()).await?;
        }
        self.save_definition(paths, &old).await?;
        *lock(&vm.def) = old;
        let _ = tokio::fs::remove_dir_all(&backup).await;
        vm.resize_pending.store(false, Ordering::Relaxed);
        Ok(())
    }

    async fn rebuild(&self, id: Uuid, spec: RebuildSpec) -> Result<()> {
        validate_path("image path", &spec.image.path)?;
        if let Some(cd) = &spec.config_drive {
            cd.validate()?;
        }
        let (vm, _g) = self.lock_vm(id).await?;
        plan(id, Op::Offline, vm.state())?;
        if vm.resize_pending.load(Ordering::Relaxed) {
            return Err(Error::Invalid(format!(
                "server {id} has a resize waiting for confirm or revert"
            )));
        }
        let paths = &vm.paths;
        let mut def = lock(&vm.def).clone();
        let info = self.qemu_img.inspect_base(&spec.image).await?;
        let size = Self::root_size(def.root_gb, info.virtual_size, &spec.image.path)?;
        let new_disk = paths.dir.join("disk.new");
        let _ = tokio::fs::remove_file(&new_disk).await;
        if let Err(e) = self
            .qemu_img
            .create_overlay(&spec.image, &new_disk, size)
            .await
        {
            let _ = tokio::fs::remove_file(&new_disk).await;
            return Err(e);
        }
        if let Some(cd) = &spec.config_drive {
            if let Err(e) = self.build_config_drive(paths, cd).await {
                let _ = tokio::fs::remove_file(&new_disk).await;
                return Err(e);
            }
            def.config_drive = true;
        }
        rename(&new_disk, &paths.disk()).await?;
        for p in [paths.saved_state(), paths.crashed_marker()] {
            let _ = tokio::fs::remove_file(&p).await;
        }
        def.image = spec.image;
        self.save_definition(paths, &def).await?;
        *lock(&vm.def) = def;
        Ok(())
    }

    async fn rescue(&self, id: Uuid, image: ImageSource) -> Result<()> {
        validate_path("image path", &image.path)?;
        let (vm, _g) = self.lock_vm(id).await?;
        plan(id, Op::Offline, vm.state())?;
        let paths = &vm.paths;
        let disk = paths.rescue_disk();
        let _ = tokio::fs::remove_file(&disk).await;
        self.qemu_img.inspect_base(&image).await?;
        if let Err(e) = self.qemu_img.create_overlay(&image, &disk, None).await {
            let _ = tokio::fs::remove_file(&disk).await;
            return Err(e);
        }
        let mut def = lock(&vm.def).clone();
        def.rescue = true;
        if let Err(e) = self.save_definition(paths, &def).await {
            let _ = tokio::fs::remove_file(&disk).await;
            return Err(e);
        }
        *lock(&vm.def) = def;
        Ok(())
    }

    async fn unrescue(&self, id: Uuid) -> Result<()> {
        let (vm, _g) = self.lock_vm(id).await?;
        plan(id, Op::Offline, vm.state())?;
        let mut def = lock(&vm.def).clone();
        if def.rescue {
            def.rescue = false;
            self.save_definition(&vm.paths, &def).await?;
            *lock(&vm.def) = def;
        }
        let _ = tokio::fs::remove_file(vm.paths.rescue_disk()).await;
        Ok(())
    }

    async fn snapshot(&self, id: Uuid, dest: &Path, format: DiskFormat) -> Result<SnapshotInfo> {
        validate_path("snapshot path", dest)?;
        let parent_ok = dest.parent().map(Path::is_dir).unwrap_or(false);
        if !parent_ok {
            return Err(Error::Invalid(format!(
                "the directory of {} does not exist",
                dest.display()
            )));
        }
        if tokio::fs::symlink_metadata(dest).await.is_ok() {
            return Err(Error::Invalid(format!("{} already exists", dest.display())));
        }
        let (vm, _g) = self.lock_vm(id).await?;
        let state = vm.state();
        let part = {
            let mut p = dest.as_os_str().to_owned();
            p.push(".part");
            PathBuf::from(p)
        };
        let t = self.cfg.qmp_timeout;
        let qmp = if state.is_active() {
            Some(vm.qmp()?)
        } else {
            None
        };
        if state == PowerState::Running {
            if let Some(q) = &qmp {
                q.execute("stop", None, t).await.map_err(qmp_err)?;
            }
        }
        let res = self
            .qemu_img
            .convert(&vm.paths.disk(), &part, format, state.is_active())
            .await;
        if state == PowerState::Running {
            if let Some(q) = &qmp {
                if let Err(e) = q.execute("cont", None, t).await {
                    tracing::error!(%id, error = %e, "cannot resume after the snapshot");
                }
            }
        }
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(e);
        }
        let info = self.qemu_img.info(&part, Some(format), false).await;
        let info = match info {
            Ok(i) => i,
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e);
            }
        };
        rename(&part, dest).await?;
        let size = tokio::fs::metadata(dest)
            .await
            .map(|m| m.len())
            .unwrap_or(info.actual_size);
        Ok(SnapshotInfo {
            path: dest.to_path_buf(),
            format,
            size,
            virtual_size: info.virtual_size,
        })
    }

    async fn serial_console(&self, id: Uuid) -> Result<PathBuf> {
        let vm = self.get(id)?;
        if !vm.state().is_active() {
            return Err(Error::InvalidState {
                id,
                op: "connect to the serial console of",
                state: vm.state(),
            });
        }
        let sock = vm.paths.serial();
        if tokio::fs::symlink_metadata(&sock).await.is_err() {
            // Started by a version that logged the console to a file only.
            return Err(Error::Invalid(format!(
                "server {id} has no serial console socket (restart it to get one)"
            )));
        }
        Ok(sock)
    }

    async fn console_log(&self, id: Uuid, tail_lines: Option<usize>) -> Result<String> {
        let vm = self.get(id)?;
        let text = read_console(&Self::console_path(&vm)).await?;
        Ok(match tail_lines {
            Some(n) => fake::tail(&text, n),
            None => text,
        })
    }

    async fn delete(&self, id: Uuid) -> Result<()> {
        let (vm, _g) = self.lock_vm(id).await?;
        if vm.state().is_active() {
            self.hard_stop(&vm).await?;
        }
        vm.deleted.store(true, Ordering::Release);
        let console = Self::console_path(&vm);
        if !console.starts_with(&vm.paths.dir) {
            let _ = tokio::fs::remove_file(&console).await;
            let mut old = console.as_os_str().to_owned();
            old.push(".0");
            let _ = tokio::fs::remove_file(PathBuf::from(old)).await;
        }
        let res = tokio::fs::remove_dir_all(&vm.paths.dir).await;
        lock(&self.vms).remove(&id);
        vm.set_state(PowerState::Shutoff, None);
        self.emit(id, PowerState::Shutoff, "deleted");
        res.map_err(|e| Error::io(format!("remove {}", vm.paths.dir.display()), e))
    }
}
