//! The `[compute]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// One QEMU process per server on this machine.
    #[default]
    Qemu,
    /// In-memory hosts (`fake_hosts` of them), for tests and benchmarks.
    Fake,
    /// No host on this machine: only the `remote_agents`.
    None,
}

/// A host agent on another machine (`oxistack agent`) that this process
/// drives. Each agent is driven by one control-plane process.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteAgent {
    /// `http://host:port` of the agent's internal API.
    pub url: String,
    /// A file holding the agent's token (the one `oxistack agent` wrote).
    pub token_file: PathBuf,
    /// For an `https://` agent: the PEM certificate to trust for it (its
    /// own or its CA's); nothing else is trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeConfig {
    /// Serve the compute API and run a local host agent.
    pub enabled: bool,
    pub driver: Driver,
    /// This machine's compute host name (default: the system host name).
    pub host: Option<String>,
    /// The address reported for this machine's compute host (Nova's
    /// `my_ip`; default: the source address of the default route).
    pub my_ip: Option<std::net::IpAddr>,
    /// Where instance disks, config drives and console logs live
    /// (default: `<data dir>/instances`).
    pub instances_dir: Option<PathBuf>,
    /// Host agents on other machines, driven through their internal API.
    pub remote_agents: Vec<RemoteAgent>,
    /// How many fake hosts to register when `driver = "fake"`.
    pub fake_hosts: u32,
    /// Resources reported per fake host.
    pub fake_vcpus: u32,
    pub fake_memory_mb: u64,
    pub fake_disk_gb: u64,
    /// Placement inventory of every host.
    pub cpu_allocation_ratio: f64,
    pub ram_allocation_ratio: f64,
    pub disk_allocation_ratio: f64,
    pub reserved_host_cpus: u32,
    pub reserved_host_memory_mb: u64,
    pub reserved_host_disk_mb: u64,
    /// The zone hosts belong to unless an aggregate says otherwise.
    pub default_availability_zone: String,
    /// The zone a server without one is scheduled to (none: any).
    pub default_schedule_zone: Option<String>,
    /// RAM weigher: positive spreads servers over hosts, negative stacks.
    pub ram_weight_multiplier: f64,
    /// How long a clean shutdown waits for the guest before a hard stop.
    pub shutdown_timeout_seconds: u64,
    /// A host whose agent has not reported for this long is down.
    pub service_down_time_seconds: u64,
    /// How often agents report and the reconciler runs.
    pub report_interval_seconds: u64,
    /// Policy overrides (YAML or JSON: rule name -> check string).
    pub policy_file: Option<PathBuf>,
    /// Default quota limits (quota class `default`).
    pub quota_instances: i64,
    pub quota_cores: i64,
    pub quota_ram: i64,
    pub quota_key_pairs: i64,
    pub quota_metadata_items: i64,
    pub quota_injected_files: i64,
    pub quota_injected_file_content_bytes: i64,
    pub quota_injected_file_path_length: i64,
    pub quota_server_groups: i64,
    pub quota_server_group_members: i64,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            enabled: true,
            driver: Driver::Qemu,
            host: None,
            my_ip: None,
            instances_dir: None,
            remote_agents: Vec::new(),
            fake_hosts: 1,
            fake_vcpus: 16,
            fake_memory_mb: 65_536,
            fake_disk_gb: 1_000,
            cpu_allocation_ratio: 4.0,
            ram_allocation_ratio: 1.0,
            disk_allocation_ratio: 1.0,
            reserved_host_cpus: 0,
            reserved_host_memory_mb: 512,
            reserved_host_disk_mb: 0,
            default_availability_zone: "nova".into(),
            default_schedule_zone: None,
            ram_weight_multiplier: 1.0,
            shutdown_timeout_seconds: 60,
            service_down_time_seconds: 60,
            report_interval_seconds: 10,
            policy_file: None,
            quota_instances: 10,
            quota_cores: 20,
            quota_ram: 51_200,
            quota_key_pairs: 100,
            quota_metadata_items: 128,
            quota_injected_files: 5,
            quota_injected_file_content_bytes: 10_240,
            quota_injected_file_path_length: 255,
            quota_server_groups: 10,
            quota_server_group_members: 10,
        }
    }
}
