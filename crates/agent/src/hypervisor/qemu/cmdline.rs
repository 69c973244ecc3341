//! The QEMU command line of a server, and the files of its instance
//! directory.
//!
//! Every path in here lies under the validated instances directory or was
//! validated by [`crate::hypervisor::ServerSpec::validate`] (absolute, no
//! commas or control characters), so QEMU's `key=value,...` option syntax
//! cannot be subverted; disks use `-blockdev` JSON, which needs no escaping
//! at all. Arguments go to QEMU as an argument vector, never through a
//! shell.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::hypervisor::{Accel, ImageSource, Nic, VifModel};

/// What is kept of a server between agent restarts (`spec.json`). The
/// config drive's contents live only in the ISO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Definition {
    pub id: Uuid,
    pub name: String,
    pub hostname: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub root_gb: u64,
    pub image: ImageSource,
    pub nics: Vec<Nic>,
    pub config_drive: bool,
    pub console_log: PathBuf,
    /// Boot from `disk.rescue`, the root disk second.
    #[serde(default)]
    pub rescue: bool,
}

/// The files of one server, all under `<instances>/<uuid>/`.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(instances: &Path, id: Uuid) -> Self {
        Paths {
            dir: instances.join(id.to_string()),
        }
    }
    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk")
    }
    /// The disk a rescued server boots from (an overlay on the rescue
    /// image).
    pub fn rescue_disk(&self) -> PathBuf {
        self.dir.join("disk.rescue")
    }
    pub fn config_drive(&self) -> PathBuf {
        self.dir.join("disk.config")
    }
    pub fn default_console(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// The serial port's socket (the interactive console).
    pub fn serial(&self) -> PathBuf {
        self.dir.join("serial.sock")
    }
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// QEMU's stdout and stderr.
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// Memory of a suspended server (Nova's "managed save").
    pub fn saved_state(&self) -> PathBuf {
        self.dir.join("suspend.state")
    }
    /// Present when the last run ended without a shutdown.
    pub fn crashed_marker(&self) -> PathBuf {
        self.dir.join("crashed")
    }
    /// The disk and spec from before a resize, until confirm or revert.
    pub fn resize_backup(&self) -> PathBuf {
        self.dir.join("resize-backup")
    }
}

/// Host-wide settings that shape every command line.
#[derive(Debug, Clone)]
pub(crate) struct Machine {
    pub accel: Accel,
    /// `-cpu` for TCG (`None`: QEMU's default, qemu64). KVM uses `host`.
    pub tcg_cpu_model: Option<String>,
}

fn arg(v: &mut Vec<String>, flag: &str, value: impl Into<String>) {
    v.push(flag.to_string());
    v.push(value.into());
}

/// The arguments after `qemu-system-x86_64`. The process starts paused
/// (`-S`); the agent connects to QMP, then sends `cont`. With `incoming`
/// it waits for `migrate-incoming` (resume from a saved state).
pub(crate) fn qemu_args(
    def: &Definition,
    paths: &Paths,
    m: &Machine,
    incoming: bool,
) -> Vec<String> {
    let mut v = Vec::new();
    let id = def.id.to_string();
    arg(&mut v, "-name", format!("guest={id},debug-threads=on"));
    arg(&mut v, "-uuid", id.clone());
    v.push("-no-user-config".into());
    v.push("-nodefaults".into());
    v.push("-S".into());
    arg(&mut v, "-machine", "pc");
    arg(&mut v, "-accel", m.accel.as_str());
    match (m.accel, &m.tcg_cpu_model) {
        (Accel::Kvm, _) => arg(&mut v, "-cpu", "host"),
        (Accel::Tcg, Some(model)) => arg(&mut v, "-cpu", model.clone()),
        (Accel::Tcg, None) => {}
    }
    arg(&mut v, "-smp", def.vcpus.to_string());
    arg(&mut v, "-m", def.memory_mb.to_string());
    // What cloud-init's ds-identify looks for to recognise OpenStack.
    arg(
        &mut v,
        "-smbios",
        format!(
            "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,version=oxistack,serial={id},uuid={id},family=Virtual Machine"
        ),
    );
    arg(&mut v, "-display", "none");
    arg(&mut v, "-rtc", "base=utc");
    arg(&mut v, "-msg", "timestamp=on");
    // No forking, no privilege changes, no obsolete syscalls.
    arg(
        &mut v,
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    );
    arg(&mut v, "-pidfile", path(&paths.pidfile()));
    arg(
        &mut v,
        "-chardev",
        format!(
            "socket,id=qmp,path={},server=on,wait=off",
            path(&paths.qmp())
        ),
    );
    arg(&mut v, "-mon", "chardev=qmp,mode=control");
    // The serial console: a socket for an interactive session (at most one
    // client; output is dropped while none is connected) whose output is
    // also logged, kept across power cycles (append).
    arg(
        &mut v,
        "-chardev",
        format!(
            "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=on",
            path(&paths.serial()),
            path(&def.console_log)
        ),
    );
    arg(&mut v, "-device", "isa-serial,chardev=serial0");
    // A rescued server boots the rescue disk, which the guest sees first
    // (vda), with its own root disk as vdb, as Nova's libvirt driver does.
    if def.rescue {
        arg(
            &mut v,
            "-blockdev",
            json!({
                "node-name": "rescue",
                "driver": "qcow2",
                "file": {"driver": "file", "filename": path(&paths.rescue_disk())},
            })
            .to_string(),
        );
        arg(
            &mut v,
            "-device",
            "virtio-blk-pci,drive=rescue,id=rescue0,bootindex=1",
        );
    }
    arg(
        &mut v,
        "-blockdev",
        json!({
            "node-name": "root",
            "driver": "qcow2",
            "discard": "unmap",
            "file": {"driver": "file", "filename": path(&paths.disk())},
        })
        .to_string(),
    );
    arg(
        &mut v,
        "-device",
        format!(
            "virtio-blk-pci,drive=root,id=disk0,bootindex={}",
            if def.rescue { 2 } else { 1 }
        ),
    );
    if def.config_drive {
        arg(
            &mut v,
            "-blockdev",
            json!({
                "node-name": "config",
                "driver": "raw",
                "read-only": true,
                "file": {"driver": "file", "filename": path(&paths.config_drive()), "read-only": true},
            })
            .to_string(),
        );
        // A CD-ROM on the second IDE bus, as Nova attaches config drives.
        arg(
            &mut v,
            "-device",
            "ide-cd,drive=config,bus=ide.1,unit=0,id=cd0",
        );
    }
    for (i, nic) in def.nics.iter().enumerate() {
        nic_args(&mut v, i, nic, m.accel);
    }
    arg(
        &mut v,
        "-object",
        "rng-random,id=rng0,filename=/dev/urandom",
    );
    arg(&mut v, "-device", "virtio-rng-pci,rng=rng0");
    if incoming {
        arg(&mut v, "-incoming", "defer");
    }
    v
}

fn nic_args(v: &mut Vec<String>, i: usize, nic: &Nic, accel: Accel) {
    let vhost = if accel == Accel::Kvm && nic.model == VifModel::Virtio {
        ",vhost=on"
    } else {
        ""
    };
    arg(
        v,
        "-netdev",
        format!(
            "tap,id=net{i},ifname={},script=no,downscript=no{vhost}",
            nic.tap
        ),
    );
    let model = match nic.model {
        VifModel::Virtio => "virtio-net-pci",
        VifModel::E1000 => "e1000",
    };
    let mtu = match (nic.model, nic.mtu) {
        (VifModel::Virtio, Some(mtu)) => format!(",host_mtu={mtu}"),
        _ => String::new(),
    };
    arg(
        v,
        "-device",
        format!(
            "{model},netdev=net{i},mac={},id=nic{i}{mtu}",
            nic.mac.to_ascii_lowercase()
        ),
    );
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::DiskFormat;

    fn def() -> Definition {
        Definition {
            id: Uuid::parse_str("11111111-2222-3333-4444-555555555555").unwrap(),
            name: "vm".into(),
            hostname: "vm".into(),
            vcpus: 2,
            memory_mb: 256,
            root_gb: 1,
            image: ImageSource {
                path: "/img".into(),
                format: DiskFormat::Qcow2,
            },
            nics: vec![Nic {
                tap: "tapabc".into(),
                mac: "FA:16:3E:00:00:01".into(),
                model: VifModel::Virtio,
                mtu: Some(1450),
            }],
            config_drive: true,
            console_log: "/i/x/console.log".into(),
            rescue: false,
        }
    }

    fn find(v: &[String], flag: &str) -> Vec<String> {
        v.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].clone())
            .collect()
    }

    #[test]
    fn rescue_disk_boots_first() {
        let mut d = def();
        d.rescue = true;
        let paths = Paths::new(Path::new("/i"), d.id);
        let m = Machine {
            accel: Accel::Tcg,
            tcg_cpu_model: None,
        };
        let v = qemu_args(&d, &paths, &m, false);
        let blockdevs = find(&v, "-blockdev");
        let first: serde_json::Value = serde_json::from_str(&blockdevs[0]).unwrap();
        assert_eq!(
            first["file"]["filename"],
            "/i/11111111-2222-3333-4444-555555555555/disk.rescue"
        );
        let disks: Vec<String> = find(&v, "-device")
            .into_iter()
            .filter(|d| d.starts_with("virtio-blk-pci"))
            .collect();
        assert_eq!(
            disks,
            [
                "virtio-blk-pci,drive=rescue,id=rescue0,bootindex=1",
                "virtio-blk-pci,drive=root,id=disk0,bootindex=2"
            ]
        );
        d.rescue = false;
        let v = qemu_args(&d, &paths, &m, false);
        assert!(!v.iter().any(|a| a.contains("rescue")));
    }

    #[test]
    fn command_line() {
        let d = def();
        let paths = Paths::new(Path::new("/i"), d.id);
        let m = Machine {
            accel: Accel::Tcg,
            tcg_cpu_model: None,
        };
        let v = qemu_args(&d, &paths, &m, false);
        assert_eq!(find(&v, "-accel"), ["tcg"]);
        assert!(find(&v, "-cpu").is_empty());
        assert_eq!(find(&v, "-smp"), ["2"]);
        assert_eq!(find(&v, "-m"), ["256"]);
        assert!(v.contains(&"-S".to_string()));
        assert!(!v.contains(&"-incoming".to_string()));
        assert!(!v.contains(&"-no-reboot".to_string()));
        let blockdevs = find(&v, "-blockdev");
        let root: serde_json::Value = serde_json::from_str(&blockdevs[0]).unwrap();
        assert_eq!(
            root["file"]["filename"],
            "/i/11111111-2222-3333-4444-555555555555/disk"
        );
        let cd: serde_json::Value = serde_json::from_str(&blockdevs[1]).unwrap();
        assert_eq!(cd["read-only"], true);
        assert!(find(&v, "-chardev")
            .iter()
            .any(|c| c == "socket,id=serial0,path=/i/11111111-2222-3333-4444-555555555555/serial.sock,server=on,wait=off,logfile=/i/x/console.log,logappend=on"));
        assert_eq!(
            find(&v, "-netdev"),
            ["tap,id=net0,ifname=tapabc,script=no,downscript=no"]
        );
        assert!(find(&v, "-device").contains(
            &"virtio-net-pci,netdev=net0,mac=fa:16:3e:00:00:01,id=nic0,host_mtu=1450".to_string()
        ));

        let kvm = Machine {
            accel: Accel::Kvm,
            tcg_cpu_model: Some("max".into()),
        };
        let v = qemu_args(&d, &paths, &kvm, true);
        assert_eq!(find(&v, "-cpu"), ["host"]);
        assert_eq!(find(&v, "-incoming"), ["defer"]);
        assert!(find(&v, "-netdev")[0].ends_with(",vhost=on"));
    }

    #[test]
    fn no_config_drive_no_cdrom() {
        let mut d = def();
        d.config_drive = false;
        d.nics.clear();
        let paths = Paths::new(Path::new("/i"), d.id);
        let m = Machine {
            accel: Accel::Tcg,
            tcg_cpu_model: Some("max".into()),
        };
        let v = qemu_args(&d, &paths, &m, false);
        assert_eq!(find(&v, "-blockdev").len(), 1);
        assert!(find(&v, "-netdev").is_empty());
        assert_eq!(find(&v, "-cpu"), ["max"]);
    }
}
