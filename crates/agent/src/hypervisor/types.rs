//! What the control plane hands the hypervisor and what it gets back, with
//! the validation of everything a user can influence.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::error::{Error, Result};

/// Largest `user_data` Nova accepts (65535 bytes once base64-encoded; we
/// count the decoded bytes, which is never more).
pub const MAX_USER_DATA: usize = 65_535;
/// Upper bound of a config drive's JSON documents, each.
pub const MAX_METADATA_JSON: usize = 1 << 20;
pub const MAX_VCPUS: u32 = 255;
pub const MIN_MEMORY_MB: u64 = 16;
pub const MAX_MEMORY_MB: u64 = 16 << 20;
pub const MAX_ROOT_GB: u64 = 1 << 16;
pub const MAX_NICS: usize = 28;

/// A server's power state as the hypervisor sees it. `nova_power_state()`
/// gives the integer Nova stores (`nova.compute.power_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerState {
    Running,
    Paused,
    /// Memory saved to disk, no process (Nova's suspend).
    Suspended,
    /// No process: never started, powered off, or stopped by the agent.
    Shutoff,
    /// No process, and it did not end by a shutdown: killed, crashed, or
    /// found dead after an agent restart. Treat like `Shutoff` (Nova's power
    /// sync does).
    Crashed,
}

impl PowerState {
    pub fn nova_power_state(self) -> u8 {
        match self {
            PowerState::Running => 1,
            PowerState::Paused => 3,
            PowerState::Shutoff => 4,
            PowerState::Crashed => 6,
            PowerState::Suspended => 7,
        }
    }

    /// A QEMU process exists for the server.
    pub fn is_active(self) -> bool {
        matches!(self, PowerState::Running | PowerState::Paused)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::Running => "running",
            PowerState::Paused => "paused",
            PowerState::Suspended => "suspended",
            PowerState::Shutoff => "shutoff",
            PowerState::Crashed => "crashed",
        }
    }
}

impl fmt::Display for PowerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Qcow2,
    Raw,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Raw => "raw",
        }
    }
}

/// The cached copy of the server's image that its root disk is layered on.
/// It is never written to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSource {
    pub path: PathBuf,
    pub format: DiskFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VifModel {
    #[default]
    Virtio,
    E1000,
}

/// A network interface: a tap device the network agent created and plugged,
/// and the port's MAC address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub tap: String,
    pub mac: String,
    #[serde(default)]
    pub model: VifModel,
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// The files of an OpenStack config drive (`openstack/latest/...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigDrive {
    /// `meta_data.json`; [`InstanceMetadata::to_json`] builds Nova's shape.
    pub meta_data: Value,
    /// `network_data.json`.
    pub network_data: Value,
    /// `user_data`, written only when present.
    #[serde(default)]
    pub user_data: Option<Vec<u8>>,
    /// `vendor_data.json` / `vendor_data2.json`, written as `{}` when absent.
    #[serde(default)]
    pub vendor_data: Option<Value>,
}

/// Nova's `meta_data.json`, the common part.
#[derive(Debug, Clone, Default)]
pub struct InstanceMetadata {
    pub uuid: Uuid,
    pub name: String,
    /// The full host name (`vm1.novalocal`); the guest uses the part before
    /// the first dot.
    pub hostname: String,
    /// Key pair name -> public key.
    pub public_keys: BTreeMap<String, String>,
    pub availability_zone: Option<String>,
    pub project_id: Option<String>,
    pub launch_index: u32,
    pub meta: BTreeMap<String, String>,
}

impl InstanceMetadata {
    pub fn to_json(&self) -> Value {
        let keys: Vec<Value> = self
            .public_keys
            .iter()
            .map(|(name, data)| json!({"name": name, "type": "ssh", "data": data}))
            .collect();
        json!({
            "uuid": self.uuid,
            "meta": self.meta,
            "public_keys": self.public_keys,
            "keys": keys,
            "hostname": self.hostname,
            "name": self.name,
            "launch_index": self.launch_index,
            "availability_zone": self.availability_zone,
            "project_id": self.project_id,
            "devices": [],
            "dedicated_cpus": [],
        })
    }
}

impl ConfigDrive {
    /// A config drive with Nova's meta_data, no networks and optional
    /// user_data.
    pub fn new(meta: &InstanceMetadata, user_data: Option<Vec<u8>>) -> Self {
        ConfigDrive {
            meta_data: meta.to_json(),
            network_data: json!({"links": [], "networks": [], "services": []}),
            user_data,
            vendor_data: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        for (what, doc) in [
            ("meta_data", Some(&self.meta_data)),
            ("network_data", Some(&self.network_data)),
            ("vendor_data", self.vendor_data.as_ref()),
        ] {
            let Some(doc) = doc else { continue };
            if !doc.is_object() {
                return Err(Error::Invalid(format!("{what} must be a JSON object")));
            }
            if doc.to_string().len() > MAX_METADATA_JSON {
                return Err(Error::Invalid(format!("{what} is too large")));
            }
        }
        if let Some(ud) = &self.user_data {
            if ud.len() > MAX_USER_DATA {
                return Err(Error::Invalid(format!(
                    "user_data is {} bytes, more than {MAX_USER_DATA}",
                    ud.len()
                )));
            }
        }
        Ok(())
    }
}

/// Everything needed to define a server on a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSpec {
    pub id: Uuid,
    /// The display name (free text, metadata only).
    pub name: String,
    /// The guest host name; RFC 1123 labels separated by dots.
    pub hostname: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    /// Root disk size; 0 keeps the image's virtual size.
    pub root_gb: u64,
    pub image: ImageSource,
    #[serde(default)]
    pub nics: Vec<Nic>,
    #[serde(default)]
    pub config_drive: Option<ConfigDrive>,
    /// Where the serial console goes; default `<instance dir>/console.log`.
    #[serde(default)]
    pub console_log: Option<PathBuf>,
}

impl ServerSpec {
    /// Checks every field the user can influence. Paths must also exist
    /// when the hypervisor uses them; that is checked there.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        validate_hostname(&self.hostname)?;
        validate_sizes(self.vcpus, self.memory_mb, self.root_gb)?;
        validate_path("image path", &self.image.path)?;
        validate_nics(&self.nics)?;
        if let Some(cd) = &self.config_drive {
            cd.validate()?;
        }
        if let Some(p) = &self.console_log {
            validate_path("console log path", p)?;
        }
        Ok(())
    }
}

/// New flavor sizes for a resize. The root disk can grow, never shrink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeSpec {
    pub vcpus: u32,
    pub memory_mb: u64,
    pub root_gb: u64,
}

/// A rebuild: a new root disk from `image` (same size), and a new config
/// drive when given (else the old one is kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RebuildSpec {
    pub image: ImageSource,
    pub config_drive: Option<ConfigDrive>,
}

/// How to stop a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOff {
    /// ACPI power button, pressed again every `retry` until the guest is off
    /// or `timeout` passed; then a hard stop (Nova's clean shutdown).
    Graceful { timeout: Duration, retry: Duration },
    /// Stop the virtual machine at once (Nova's destroy).
    Hard,
}

impl PowerOff {
    /// Nova's defaults: `shutdown_timeout` 60 s, retried every 10 s.
    pub fn graceful(timeout: Duration) -> Self {
        PowerOff::Graceful {
            timeout,
            retry: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// The guest powered itself off.
    Clean,
    /// Stopped by the host (hard stop, or the graceful timeout ran out).
    Forced,
    /// Nothing was running.
    AlreadyOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootKind {
    /// ACPI power-off within `timeout`, then a fresh start; falls back to
    /// a hard reboot when the guest does not power off (as Nova does).
    Soft { timeout: Duration },
    /// Stop at once and start again; also starts a stopped, paused or
    /// suspended server (its saved memory is discarded).
    Hard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebootOutcome {
    Soft,
    /// A soft reboot that had to stop the guest by force.
    SoftFellBackToHard,
    Hard,
}

/// What `snapshot` wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub format: DiskFormat,
    /// Bytes of the file.
    pub size: u64,
    /// Bytes of the disk it holds.
    pub virtual_size: u64,
}

/// A server as the hypervisor knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub id: Uuid,
    pub name: String,
    pub state: PowerState,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub root_gb: u64,
    /// The cached image the root disk is layered on (still in use while
    /// the server exists).
    pub image: ImageSource,
    /// The QEMU process, when one runs.
    pub pid: Option<u32>,
    /// A resize waits for confirm or revert.
    pub resize_pending: bool,
    /// Boots from a rescue disk, the root disk attached second.
    pub rescued: bool,
}

/// A change of a server's power state that the control plane did not
/// necessarily ask for (the guest powered off, QEMU died, a pause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    pub id: Uuid,
    pub state: PowerState,
    /// Why, in a few words (`guest-shutdown`, `process exited: signal 9`).
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CpuInfo {
    pub arch: String,
    pub vendor: String,
    pub model: String,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    /// Flags as `/proc/cpuinfo` names them.
    pub flags: Vec<String>,
}

/// What a host offers, for its resource provider and `hypervisor show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostResources {
    pub hostname: String,
    /// `QEMU` (Nova's libvirt driver says the same for KVM and TCG) or `fake`.
    pub hypervisor_type: String,
    /// Nova's integer form: major * 1,000,000 + minor * 1,000 + micro.
    pub hypervisor_version: u64,
    pub accel: Accel,
    /// Logical CPUs.
    pub vcpus: u32,
    pub memory_mb: u64,
    pub memory_mb_available: u64,
    /// The file system of the instances directory.
    pub disk_gb: u64,
    pub disk_gb_available: u64,
    /// The address this host is reached at (Nova's `my_ip`).
    #[serde(default = "loopback")]
    pub host_ip: std::net::IpAddr,
    pub cpu: CpuInfo,
    /// `HW_CPU_X86_*`, `HW_ARCH_*` and `COMPUTE_*` traits.
    pub traits: BTreeSet<String>,
}

fn loopback() -> std::net::IpAddr {
    std::net::Ipv4Addr::LOCALHOST.into()
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.chars().count() > 255 {
        return Err(Error::Invalid("name is longer than 255 characters".into()));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::Invalid("name contains control characters".into()));
    }
    Ok(())
}

pub(crate) fn validate_hostname(h: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::Invalid(format!("hostname {h:?}: {why}")));
    if h.is_empty() || h.len() > 253 {
        return bad("must be 1 to 253 characters");
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("labels must be 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("only letters, digits, '-' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with '-'");
        }
    }
    Ok(())
}

pub(crate) fn validate_sizes(vcpus: u32, memory_mb: u64, root_gb: u64) -> Result<()> {
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(Error::Invalid(format!(
            "vcpus must be 1 to {MAX_VCPUS}, not {vcpus}"
        )));
    }
    if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&memory_mb) {
        return Err(Error::Invalid(format!(
            "memory_mb must be {MIN_MEMORY_MB} to {MAX_MEMORY_MB}, not {memory_mb}"
        )));
    }
    if root_gb > MAX_ROOT_GB {
        return Err(Error::Invalid(format!(
            "root_gb must be at most {MAX_ROOT_GB}, not {root_gb}"
        )));
    }
    Ok(())
}

/// A path handed to QEMU or qemu-img: absolute, UTF-8, normalised (no `.`
/// or `..`), no control characters and no commas (QEMU's option syntax).
pub(crate) fn validate_path(what: &str, p: &Path) -> Result<()> {
    let Some(s) = p.to_str() else {
        return Err(Error::Invalid(format!("{what} is not UTF-8")));
    };
    if !p.is_absolute() {
        return Err(Error::Invalid(format!("{what} {s:?} is not absolute")));
    }
    if s.len() > 1024 {
        return Err(Error::Invalid(format!("{what} is too long")));
    }
    if s.chars().any(|c| c.is_control() || c == ',') {
        return Err(Error::Invalid(format!(
            "{what} {s:?} contains a comma or control character"
        )));
    }
    if s.len() > 1 && s[1..].split('/').any(|seg| matches!(seg, "" | "." | "..")) {
        return Err(Error::Invalid(format!("{what} {s:?} is not normalised")));
    }
    Ok(())
}

/// Linux interface names: 1 to 15 bytes of `[A-Za-z0-9_.-]`.
pub(crate) fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("bad tap device name {name:?}")))
    }
}

/// `aa:bb:cc:dd:ee:ff`, unicast.
pub(crate) fn validate_mac(mac: &str) -> Result<()> {
    let parts: Vec<&str> = mac.split(':').collect();
    let hex_ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    let unicast = hex_ok
        && u8::from_str_radix(parts[0], 16)
            .map(|b| b & 1 == 0)
            .unwrap_or(false);
    if unicast {
        Ok(())
    } else {
        Err(Error::Invalid(format!("bad MAC address {mac:?}")))
    }
}

fn validate_nics(nics: &[Nic]) -> Result<()> {
    if nics.len() > MAX_NICS {
        return Err(Error::Invalid(format!("more than {MAX_NICS} NICs")));
    }
    let mut taps = BTreeSet::new();
    let mut macs = BTreeSet::new();
    for nic in nics {
        validate_ifname(&nic.tap)?;
        validate_mac(&nic.mac)?;
        if let Some(mtu) = nic.mtu {
            if !(68..=65535).contains(&mtu) {
                return Err(Error::Invalid(format!("bad MTU {mtu}")));
            }
        }
        if !taps.insert(nic.tap.as_str()) {
            return Err(Error::Invalid(format!("tap {} given twice", nic.tap)));
        }
        if !macs.insert(nic.mac.to_ascii_lowercase()) {
            return Err(Error::Invalid(format!("MAC {} given twice", nic.mac)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServerSpec {
        ServerSpec {
            id: Uuid::new_v4(),
            name: "vm 1".into(),
            hostname: "vm1.novalocal".into(),
            vcpus: 1,
            memory_mb: 256,
            root_gb: 1,
            image: ImageSource {
                path: "/var/cache/img.qcow2".into(),
                format: DiskFormat::Qcow2,
            },
            nics: vec![Nic {
                tap: "tap0123abcd-01".into(),
                mac: "fa:16:3e:00:00:01".into(),
                model: VifModel::Virtio,
                mtu: Some(1450),
            }],
            config_drive: None,
            console_log: None,
        }
    }

    #[test]
    fn a_good_spec_passes() {
        spec().validate().unwrap();
    }

    #[test]
    fn hostnames() {
        for ok in ["a", "vm-1", "vm1.novalocal", "A1.b2.c3"] {
            validate_hostname(ok).unwrap();
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "a b",
            "a;reboot",
            "$(x)",
            &"x".repeat(64),
        ] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_that_qemu_could_misread_are_refused() {
        for bad in [
            "relative/disk",
            "/a,b/disk",
            "/a/../etc/shadow",
            "/a/./b",
            "/a\nb",
            "/dir/",
            "/a//b",
            "/a/..",
        ] {
            assert!(validate_path("p", Path::new(bad)).is_err(), "{bad:?}");
        }
        validate_path("p", Path::new("/var/lib/oxistack/instances/x/disk")).unwrap();
    }

    #[test]
    fn nics_are_checked() {
        let mut s = spec();
        s.nics[0].tap = "tap/../../x".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.nics[0].tap = "a-very-long-tap-name".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.nics[0].mac = "01:00:5e:00:00:01".into(); // multicast
        assert!(s.validate().is_err());
        let mut s = spec();
        s.nics[0].mac = "fa:16:3e:00:00:1".into();
        assert!(s.validate().is_err());
        let mut s = spec();
        let mut second = s.nics[0].clone();
        second.tap = "tap2".into();
        s.nics.push(second);
        assert!(s.validate().is_err(), "duplicate MAC");
    }

    #[test]
    fn sizes_are_bounded() {
        let mut s = spec();
        s.vcpus = 0;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.memory_mb = 1;
        assert!(s.validate().is_err());
        let mut s = spec();
        s.root_gb = MAX_ROOT_GB + 1;
        assert!(s.validate().is_err());
    }

    #[test]
    fn config_drive_limits() {
        let meta = InstanceMetadata {
            uuid: Uuid::nil(),
            name: "n".into(),
            hostname: "n.novalocal".into(),
            ..Default::default()
        };
        let mut cd = ConfigDrive::new(&meta, Some(vec![b'x'; MAX_USER_DATA]));
        cd.validate().unwrap();
        cd.user_data = Some(vec![b'x'; MAX_USER_DATA + 1]);
        assert!(cd.validate().is_err());
        cd.user_data = None;
        cd.meta_data = json!([1, 2]);
        assert!(cd.validate().is_err());
    }

    #[test]
    fn metadata_has_nova_shape() {
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_string(), "ssh-ed25519 AAAA k1\n".to_string());
        let m = InstanceMetadata {
            uuid: Uuid::nil(),
            name: "vm1".into(),
            hostname: "vm1.novalocal".into(),
            public_keys: keys,
            availability_zone: Some("nova".into()),
            project_id: Some("p".into()),
            launch_index: 0,
            meta: BTreeMap::new(),
        }
        .to_json();
        assert_eq!(m["hostname"], "vm1.novalocal");
        assert_eq!(m["public_keys"]["k1"], "ssh-ed25519 AAAA k1\n");
        assert_eq!(m["keys"][0]["type"], "ssh");
        assert_eq!(m["uuid"], Uuid::nil().to_string());
    }

    #[test]
    fn power_state_codes_match_nova() {
        assert_eq!(PowerState::Running.nova_power_state(), 1);
        assert_eq!(PowerState::Paused.nova_power_state(), 3);
        assert_eq!(PowerState::Shutoff.nova_power_state(), 4);
        assert_eq!(PowerState::Crashed.nova_power_state(), 6);
        assert_eq!(PowerState::Suspended.nova_power_state(), 7);
    }
}
