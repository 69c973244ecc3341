#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end with real QEMU: boots the project's guest image (guest/) under
//! TCG through the QEMU hypervisor with a config drive, and drives it
//! through its life: console markers, pause, ACPI power-off, start, agent
//! restart and adoption, suspend/resume, snapshot, an unexpected death,
//! resize, delete.
//!
//! Runs only when OXISTACK_TEST_QEMU=1 (scripts/test.sh sets it); then a
//! missing QEMU, qemu-img, genisoimage or guest image is a failure, not a
//! skip. OXISTACK_GUEST_IMAGE names the image; otherwise guest/build.sh
//! builds or reuses it. OXISTACK_TEST_QEMU_BINARY and OXISTACK_TEST_QEMU_IMG
//! choose other QEMU builds (e.g. Debian 12's 7.2 unpacked elsewhere).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::hypervisor::qemu::{AccelMode, QemuConfig, QemuHypervisor};
use agent::hypervisor::*;
use uuid::Uuid;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

fn enabled(test: &str) -> bool {
    if std::env::var("OXISTACK_TEST_QEMU").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "NOT RUN: {test} boots real VMs; set OXISTACK_TEST_QEMU=1 to run it \
         (needs qemu-system-x86, qemu-utils, genisoimage and guest/build.sh)"
    );
    false
}

fn guest_image() -> PathBuf {
    if let Ok(p) = std::env::var("OXISTACK_GUEST_IMAGE") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "OXISTACK_GUEST_IMAGE={} is not a file",
            p.display()
        );
        return p;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/build.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "guest/build.sh failed: {}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().trim().to_string();
    let p = PathBuf::from(&last);
    assert!(p.is_file(), "guest/build.sh printed {last:?}, not an image");
    p
}

/// Kills whatever QEMU is left under the instances directory when the test
/// ends (they are detached on purpose, so nothing else would).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir(&self.0) else {
            return;
        };
        for d in dirs.flatten() {
            let Ok(pid) = std::fs::read_to_string(d.path().join("qemu.pid")) else {
                continue;
            };
            let Ok(pid) = pid.trim().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*self.0.to_string_lossy()) {
                if let Some(p) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
        }
    }
}

fn config(dir: &Path) -> QemuConfig {
    let mut cfg = QemuConfig::new(dir);
    if let Ok(q) = std::env::var("OXISTACK_TEST_QEMU_BINARY") {
        cfg.qemu_binary = q;
    }
    cfg.qemu_img = qemu_img();
    cfg
}

fn qemu_img() -> String {
    std::env::var("OXISTACK_TEST_QEMU_IMG").unwrap_or_else(|_| "qemu-img".into())
}

async fn new_hv(dir: &Path) -> QemuHypervisor {
    let mut cfg = config(dir);
    cfg.accel = AccelMode::Tcg;
    QemuHypervisor::new(cfg)
        .await
        .unwrap_or_else(|e| panic!("QEMU hypervisor: {e}"))
}

fn count(log: &str, line: &str) -> usize {
    log.lines().filter(|l| l.trim_end() == line).count()
}

/// Waits until the console has `n` lines equal to `line`.
async fn wait_console(hv: &dyn Hypervisor, id: Uuid, line: &str, n: usize) {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        let log = hv.console_log(id, None).await.unwrap();
        if count(&log, line) >= n {
            return;
        }
        let st = hv.info(id).await.unwrap().state;
        if Instant::now() > deadline || !st.is_active() {
            let tail = hv.console_log(id, Some(40)).await.unwrap();
            panic!("console never showed {line:?} x{n} (state {st}); last lines:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<LifecycleEvent>,
    id: Uuid,
    state: PowerState,
) -> LifecycleEvent {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) if ev.id == id && ev.state == state => return ev,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("event stream: {e}"),
            Err(_) => panic!("no {state} event for {id}"),
        }
    }
}

fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z"))
            .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_end_to_end() {
    if !enabled("qemu_end_to_end") {
        return;
    }
    let t0 = Instant::now();
    let image = guest_image();
    let image_stamp = std::fs::metadata(&image).unwrap().modified().unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("oxi-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().join("inst");
    let _cleanup = Cleanup(dir.clone());
    let snaps = tmp.path().join("snaps");
    std::fs::create_dir(&snaps).unwrap();

    let long = tmp.path().join("x".repeat(80));
    assert!(
        matches!(
            QemuHypervisor::new(config(&long)).await,
            Err(Error::Invalid(_))
        ),
        "QMP socket paths must fit in sockaddr_un"
    );
    let hv = new_hv(&dir).await;
    let dir = hv.instances_dir().to_path_buf();
    let res = hv.host_resources().await.unwrap();
    assert_eq!(res.hypervisor_type, "QEMU");
    assert!(res.vcpus >= 1 && res.memory_mb > 0);
    assert!(res.traits.contains("COMPUTE_IMAGE_TYPE_QCOW2"));
    assert!(res.traits.iter().any(|t| t.starts_with("HW_CPU_X86_")));

    // --- define with a config drive -------------------------------------
    let id = Uuid::new_v4();
    let mut keys = BTreeMap::new();
    keys.insert(
        "e2e".to_string(),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxistackE2eTestKeyOnlyForTheConfigDrive0 e2e\n"
            .to_string(),
    );
    let meta = InstanceMetadata {
        uuid: id,
        name: "oxi e2e".into(),
        hostname: "oxi-e2e.novalocal".into(),
        public_keys: keys,
        availability_zone: Some("nova".into()),
        project_id: Some("p1".into()),
        launch_index: 0,
        meta: BTreeMap::new(),
    };
    let spec = ServerSpec {
        id,
        name: "oxi e2e".into(),
        hostname: "oxi-e2e.novalocal".into(),
        vcpus: 1,
        memory_mb: 256,
        root_gb: 1,
        image: ImageSource {
            path: image.clone(),
            format: DiskFormat::Qcow2,
        },
        nics: vec![],
        config_drive: Some(ConfigDrive::new(
            &meta,
            Some(b"#!/bin/sh\necho e2e user data ran\n".to_vec()),
        )),
        console_log: None,
    };
    let info = hv.define(spec.clone()).await.unwrap();
    assert_eq!(info.state, PowerState::Shutoff);
    assert!(matches!(
        hv.define(spec.clone()).await,
        Err(Error::AlreadyExists(_))
    ));
    let vm_dir = dir.join(id.to_string());
    assert!(vm_dir.join("disk").is_file() && vm_dir.join("disk.config").is_file());

    // A bad image is refused and leaves nothing behind.
    let raw_liar = snaps.join("liar.raw");
    std::fs::copy(&image, &raw_liar).unwrap();
    let mut bad = spec.clone();
    bad.id = Uuid::new_v4();
    bad.image = ImageSource {
        path: raw_liar.clone(),
        format: DiskFormat::Raw,
    };
    assert!(matches!(
        hv.define(bad.clone()).await,
        Err(Error::Image { .. })
    ));
    assert!(!dir.join(bad.id.to_string()).exists());

    // --- boot -------------------------------------------------------------
    let mut events = hv.events();
    hv.power_on(id).await.unwrap();
    let running = hv.info(id).await.unwrap();
    assert_eq!(running.state, PowerState::Running);
    let pid1 = running.pid.unwrap();
    wait_console(&hv, id, "OXISTACK-GUEST-BOOTED", 1).await;
    wait_console(&hv, id, "hostname: oxi-e2e", 1).await;
    let t_boot = t0.elapsed();
    // user_data from the config drive ran.
    wait_console(&hv, id, "e2e user data ran", 1).await;

    // --- pause / unpause --------------------------------------------------
    hv.pause(id).await.unwrap();
    assert_eq!(hv.info(id).await.unwrap().state, PowerState::Paused);
    wait_event(&mut events, id, PowerState::Paused).await;
    hv.unpause(id).await.unwrap();
    assert_eq!(hv.info(id).await.unwrap().state, PowerState::Running);
    assert!(hv.power_on(id).await.is_ok(), "start when running: no-op");

    // --- ACPI power-off ---------------------------------------------------
    let out = hv
        .power_off(
            id,
            PowerOff::Graceful {
                timeout: Duration::from_secs(60),
                retry: Duration::from_secs(10),
            },
        )
        .await
        .unwrap();
    assert_eq!(out, StopOutcome::Clean, "the guest powers off on ACPI");
    assert_eq!(hv.info(id).await.unwrap().state, PowerState::Shutoff);
    assert!(!pid_exists(pid1), "QEMU {pid1} is gone");
    assert!(!vm_dir.join("qemu.pid").exists());
    let log = hv.console_log(id, None).await.unwrap();
    assert_eq!(count(&log, "OXISTACK-GUEST-POWEROFF"), 1);

    // --- start again --------------------------------------------------------
    hv.power_on(id).await.unwrap();
    let pid2 = hv.info(id).await.unwrap().pid.unwrap();
    assert_ne!(pid1, pid2);
    wait_console(&hv, id, "OXISTACK-GUEST-BOOTED", 2).await;
    wait_console(&hv, id, "hostname: oxi-e2e", 2).await;

    // --- soft reboot: ACPI power-off, then a fresh process --------------------
    let out = hv
        .reboot(
            id,
            RebootKind::Soft {
                timeout: Duration::from_secs(60),
            },
        )
        .await
        .unwrap();
    assert_eq!(out, RebootOutcome::Soft);
    let pid2 = hv.info(id).await.unwrap().pid.unwrap();
    wait_console(&hv, id, "OXISTACK-GUEST-BOOTED", 3).await;
    wait_console(&hv, id, "hostname: oxi-e2e", 3).await;

    // --- the agent restarts -------------------------------------------------
    drop(events);
    drop(hv);
    assert!(pid_exists(pid2), "QEMU outlives the agent");
    let hv = new_hv(&dir).await;
    let adopted = hv.adopt().await.unwrap();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].id, id);
    assert_eq!(adopted[0].state, PowerState::Running);
    assert_eq!(adopted[0].pid, Some(pid2));
    assert_eq!(hv.adopt().await.unwrap(), adopted, "adopt is idempotent");
    let mut events = hv.events();
    hv.pause(id).await.unwrap();
    assert_eq!(hv.info(id).await.unwrap().state, PowerState::Paused);
    hv.unpause(id).await.unwrap();

    // --- suspend / resume (memory to a file and back) -----------------------
    hv.suspend(id).await.unwrap();
    let s = hv.info(id).await.unwrap();
    assert_eq!((s.state, s.pid), (PowerState::Suspended, None));
    assert!(vm_dir.join("suspend.state").is_file());
    assert!(!pid_exists(pid2));
    assert!(
        hv.power_on(id).await.is_err(),
        "a suspended server resumes, not starts"
    );
    hv.resume(id).await.unwrap();
    let r = hv.info(id).await.unwrap();
    assert_eq!(r.state, PowerState::Running);
    assert!(!vm_dir.join("suspend.state").exists());
    let before = count(
        &hv.console_log(id, None).await.unwrap(),
        "OXISTACK-GUEST-BOOTED",
    );
    // The guest continues where it was: it answers ACPI without booting.
    let pid3 = r.pid.unwrap();

    // --- snapshot of the running server --------------------------------------
    let snap = snaps.join("snap.qcow2");
    let si = hv.snapshot(id, &snap, DiskFormat::Qcow2).await.unwrap();
    assert_eq!(si.virtual_size, 1 << 30);
    assert!(snap.is_file() && si.size > 0);
    assert_eq!(hv.info(id).await.unwrap().state, PowerState::Running);
    let snap_info = std::process::Command::new(qemu_img())
        .args(["info", "--output=json", "-U"])
        .arg(&snap)
        .output()
        .unwrap();
    let snap_info: serde_json::Value = serde_json::from_slice(&snap_info.stdout).unwrap();
    assert_eq!(snap_info["format"], "qcow2");
    assert!(snap_info.get("backing-filename").is_none(), "standalone");
    assert!(
        hv.snapshot(id, &snap, DiskFormat::Qcow2).await.is_err(),
        "no overwrite"
    );

    // --- the process dies unexpectedly ---------------------------------------
    let p = rustix::process::Pid::from_raw(pid3 as i32).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::KILL).unwrap();
    let ev = wait_event(&mut events, id, PowerState::Crashed).await;
    assert!(ev.reason.contains("QEMU died"), "{}", ev.reason);
    assert_eq!(hv.info(id).await.unwrap().state, PowerState::Crashed);
    assert_eq!(
        count(
            &hv.console_log(id, None).await.unwrap(),
            "OXISTACK-GUEST-BOOTED"
        ),
        before,
        "resume did not boot again"
    );

    // --- resize with revert and confirm (offline) -----------------------------
    let to = ResizeSpec {
        vcpus: 2,
        memory_mb: 320,
        root_gb: 2,
    };
    hv.resize(id, to).await.unwrap();
    let i = hv.info(id).await.unwrap();
    assert_eq!(
        (i.vcpus, i.memory_mb, i.root_gb, i.resize_pending),
        (2, 320, 2, true)
    );
    hv.resize_revert(id).await.unwrap();
    let i = hv.info(id).await.unwrap();
    assert_eq!((i.vcpus, i.root_gb, i.resize_pending), (1, 1, false));
    hv.resize(id, to).await.unwrap();
    hv.resize_confirm(id).await.unwrap();
    assert!(!vm_dir.join("resize-backup").exists());
    let shrink = ResizeSpec { root_gb: 1, ..to };
    assert!(hv.resize(id, shrink).await.is_err());
    let disk_info = std::process::Command::new(qemu_img())
        .args(["info", "--output=json"])
        .arg(vm_dir.join("disk"))
        .output()
        .unwrap();
    let disk_info: serde_json::Value = serde_json::from_slice(&disk_info.stdout).unwrap();
    assert_eq!(disk_info["virtual-size"], 2u64 << 30);

    // --- the process dies while the agent is away ----------------------------
    hv.power_on(id).await.unwrap();
    let pid4 = hv.info(id).await.unwrap().pid.unwrap();
    let argv = std::fs::read(format!("/proc/{pid4}/cmdline")).unwrap();
    let argv: Vec<String> = argv
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        argv.windows(2).any(|w| w[0] == "-smp" && w[1] == "2"),
        "resized vCPUs"
    );
    assert!(
        argv.windows(2).any(|w| w[0] == "-m" && w[1] == "320"),
        "resized memory"
    );
    drop(events);
    drop(hv);
    let p = rustix::process::Pid::from_raw(pid4 as i32).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::KILL).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_exists(pid4) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hv = new_hv(&dir).await;
    let adopted = hv.adopt().await.unwrap();
    assert_eq!(
        (adopted[0].state, adopted[0].pid),
        (PowerState::Crashed, None)
    );

    // --- a launch the previous agent did not finish -------------------------
    // A live QEMU of the server that no pidfile names (the agent died
    // between spawning it and QEMU writing the pidfile) is stopped when the
    // next agent adopts the server: nobody saw it start.
    drop(hv);
    let mut stray = agent::hypervisor::qemu::stand_in_qemu(id).unwrap();
    let stray_cmdline = format!("/proc/{}/cmdline", stray.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stray_cmdline)
        .unwrap_or_default()
        .contains("guest=")
    {
        assert!(Instant::now() < deadline, "the stand-in QEMU never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hv = new_hv(&dir).await;
    let adopted = hv.adopt().await.unwrap();
    assert_eq!(
        (adopted[0].state, adopted[0].pid),
        (PowerState::Crashed, None)
    );
    let status = stray.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );

    // --- delete a running server ---------------------------------------------------
    hv.power_on(id).await.unwrap();
    let pid5 = hv.info(id).await.unwrap().pid.unwrap();
    hv.delete(id).await.unwrap();
    assert!(!pid_exists(pid5), "QEMU {pid5} is gone");
    assert!(!vm_dir.exists(), "instance files are gone");
    assert!(matches!(hv.info(id).await, Err(Error::NotFound(_))));
    assert!(hv.list().await.unwrap().is_empty());
    assert_eq!(
        std::fs::metadata(&image).unwrap().modified().unwrap(),
        image_stamp,
        "the base image is never written"
    );
    eprintln!(
        "qemu_end_to_end: first boot marker after {:.1} s, whole test {:.1} s",
        t_boot.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// The accelerator probe reaches a verdict, says why, and caches it.
/// OXISTACK_TEST_EXPECT_ACCEL=kvm|tcg also checks which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accelerator_probe() {
    if !enabled("accelerator_probe") {
        return;
    }
    let tmp = tempfile::Builder::new()
        .prefix("oxi-probe-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().join("inst");
    let t = Instant::now();
    let hv = QemuHypervisor::new(config(&dir)).await.unwrap();
    let (accel, why) = hv.accel().await;
    eprintln!(
        "accelerator_probe: {} after {:.1} s: {why}",
        accel.as_str(),
        t.elapsed().as_secs_f64()
    );
    assert!(!why.is_empty());
    assert!(hv.instances_dir().join(".accel.json").is_file());
    assert!(
        !hv.instances_dir().join(".probe").exists(),
        "probe files removed"
    );
    let again = QemuHypervisor::new(config(&dir)).await.unwrap();
    let (accel2, why2) = again.accel().await;
    assert_eq!(accel2, accel);
    assert!(why2.starts_with("cached: "), "{why2}");
    assert_eq!(again.host_resources().await.unwrap().accel, accel);
    if let Ok(want) = std::env::var("OXISTACK_TEST_EXPECT_ACCEL") {
        assert_eq!(accel.as_str(), want, "{why}");
    }
}

/// The same QEMU host driven as a control plane drives a remote one: the
/// agent's internal API on loopback, `RemoteHypervisor` on the other end.
/// The image travels to the agent, the serial console and a snapshot
/// travel back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_through_the_agent_api() {
    use agent::remote::client::{RemoteConfig, RemoteHypervisor};
    use agent::remote::server::{router, AgentState};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    if !enabled("qemu_through_the_agent_api") {
        return;
    }
    let image = guest_image();
    let tmp = tempfile::Builder::new()
        .prefix("oxi-rm-")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path().join("inst");
    let _cleanup = Cleanup(dir.clone());
    let hv = std::sync::Arc::new(new_hv(&dir).await);
    let agent_images = tmp.path().join("agent-images");
    let state = AgentState::new(
        hv.clone(),
        "e2e-token".into(),
        agent_images.clone(),
        tmp.path().join("agent-scratch"),
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    let remote = RemoteHypervisor::connect(RemoteConfig {
        url,
        token: "e2e-token".into(),
        scratch_dir: tmp.path().join("control"),
        ca_pem: None,
    })
    .await
    .unwrap();
    assert_eq!(remote.kind(), "qemu");
    assert_eq!(
        remote.host_resources().await.unwrap().hypervisor_type,
        "QEMU"
    );

    // The control plane's cached copy of the image, named by its key.
    let base = tmp.path().join("base");
    std::fs::create_dir(&base).unwrap();
    let key = "e2e-guest-image";
    std::fs::copy(&image, base.join(key)).unwrap();
    let id = Uuid::new_v4();
    let meta = InstanceMetadata {
        uuid: id,
        name: "oxi remote".into(),
        hostname: "oxi-remote.novalocal".into(),
        ..Default::default()
    };
    let spec = ServerSpec {
        id,
        name: "oxi remote".into(),
        hostname: "oxi-remote.novalocal".into(),
        vcpus: 1,
        memory_mb: 256,
        root_gb: 1,
        image: ImageSource {
            path: base.join(key),
            format: DiskFormat::Qcow2,
        },
        nics: vec![],
        config_drive: Some(ConfigDrive::new(&meta, None)),
        console_log: None,
    };
    let mut events = remote.events();
    let info = remote.define(spec).await.unwrap();
    assert_eq!(info.state, PowerState::Shutoff);
    // The image was sent whole and the server is layered on the agent's copy.
    assert_eq!(
        std::fs::metadata(agent_images.join(key)).unwrap().len(),
        std::fs::metadata(&image).unwrap().len()
    );
    assert_eq!(info.image.path, agent_images.join(key));

    remote.power_on(id).await.unwrap();
    wait_event(&mut events, id, PowerState::Running).await;
    wait_console(&remote, id, "OXISTACK-GUEST-BOOTED", 1).await;
    wait_console(&remote, id, "hostname: oxi-remote", 1).await;

    // The serial console: a key press brings getty's prompt back.
    let sock = remote.serial_console(id).await.unwrap();
    let mut conn = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while !String::from_utf8_lossy(&seen).contains("login:") {
        assert!(
            Instant::now() < deadline,
            "no login prompt over the serial console: {:?}",
            String::from_utf8_lossy(&seen)
        );
        conn.write_all(b"\r").await.unwrap();
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf)).await {
            assert!(n > 0, "the serial console closed");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    drop(conn);

    // A snapshot of the running server comes back as a qcow2 file.
    let dest = tmp.path().join("snap.qcow2");
    let snap = remote.snapshot(id, &dest, DiskFormat::Qcow2).await.unwrap();
    assert_eq!(snap.path, dest);
    let data = std::fs::read(&dest).unwrap();
    assert_eq!(data.len() as u64, snap.size);
    assert_eq!(&data[..4], b"QFI\xfb", "a qcow2 header");
    assert_eq!(
        remote.info(id).await.unwrap().state,
        PowerState::Running,
        "running again after the snapshot"
    );

    let out = remote
        .power_off(id, PowerOff::graceful(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(out, StopOutcome::Clean);
    remote.delete(id).await.unwrap();
    assert!(!dir.join(id.to_string()).exists());
    assert!(matches!(remote.info(id).await, Err(Error::NotFound(_))));
}
