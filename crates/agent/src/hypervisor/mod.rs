//! The hypervisor layer: one trait, [`Hypervisor`], with a real
//! implementation ([`qemu::QemuHypervisor`]: a QEMU process per server,
//! driven over QMP) and a fake ([`fake::FakeHypervisor`]: state in memory,
//! for control-plane tests at scale).
//!
//! A server is first *defined* (its disks and config drive are made and its
//! spec is recorded), then powered on and off any number of times, and
//! finally deleted (process and files). Which operation is allowed in which
//! [`PowerState`] is one table (`rules.rs`) that both implementations obey.
//! Operations on one server are serialised; different servers proceed in
//! parallel.

mod error;
pub mod fake;
pub mod host;
pub mod qemu;
mod rules;
mod types;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::sync::broadcast;
use uuid::Uuid;

pub use error::{Error, Result};
pub use types::*;

/// What the compute side needs from a hypervisor on one host.
#[async_trait]
pub trait Hypervisor: Send + Sync {
    /// `qemu` or `fake`.
    fn kind(&self) -> &'static str;

    /// Power-state changes nobody asked for (the guest powered off, the
    /// process died) and those that were asked for, as they are observed.
    fn events(&self) -> broadcast::Receiver<LifecycleEvent>;

    /// Whether the host answers (a remote agent may be unreachable), and
    /// which run of the process serving it answers: the id changes when a
    /// remote agent restarts (empty for a host in this process).
    async fn ping(&self) -> Result<String> {
        Ok(String::new())
    }

    /// CPUs, memory, disk, CPU traits and capability traits of the host.
    async fn host_resources(&self) -> Result<HostResources>;

    /// At start-up: find the servers a previous agent process defined and
    /// re-attach to those still running. Idempotent.
    async fn adopt(&self) -> Result<Vec<ServerInfo>>;

    /// Every server defined here.
    async fn list(&self) -> Result<Vec<ServerInfo>>;

    /// One server's state.
    async fn info(&self, id: Uuid) -> Result<ServerInfo>;

    /// Creates the root disk (an overlay on the image, grown to `root_gb`)
    /// and the config drive, and records the spec. The server is `Shutoff`.
    async fn define(&self, spec: ServerSpec) -> Result<ServerInfo>;

    async fn power_on(&self, id: Uuid) -> Result<()>;

    async fn power_off(&self, id: Uuid, how: PowerOff) -> Result<StopOutcome>;

    async fn reboot(&self, id: Uuid, kind: RebootKind) -> Result<RebootOutcome>;

    async fn pause(&self, id: Uuid) -> Result<()>;

    async fn unpause(&self, id: Uuid) -> Result<()>;

    /// Saves the memory to disk and ends the process.
    async fn suspend(&self, id: Uuid) -> Result<()>;

    /// Starts from the saved memory.
    async fn resume(&self, id: Uuid) -> Result<()>;

    /// Offline resize to new flavor sizes (server stopped). The previous
    /// disk and sizes are kept until [`Hypervisor::resize_confirm`] or
    /// [`Hypervisor::resize_revert`].
    async fn resize(&self, id: Uuid, to: ResizeSpec) -> Result<()>;

    /// Drops what a resize kept for a revert. Nothing pending: no-op.
    async fn resize_confirm(&self, id: Uuid) -> Result<()>;

    /// Puts back the disk and sizes from before the resize (stopped).
    async fn resize_revert(&self, id: Uuid) -> Result<()>;

    /// New root disk from an image (server stopped).
    async fn rebuild(&self, id: Uuid, spec: RebuildSpec) -> Result<()>;

    /// Makes a rescue disk from `image` that the next power-on boots from,
    /// with the root disk attached as the second disk (server stopped).
    async fn rescue(&self, id: Uuid, image: ImageSource) -> Result<()>;

    /// Drops the rescue disk: the next power-on boots the root disk again
    /// (server stopped). Not rescued: no-op.
    async fn unrescue(&self, id: Uuid) -> Result<()>;

    /// Writes the root disk as a standalone image file at `dest` (which
    /// must not exist). A running server is paused while the disk is read.
    async fn snapshot(&self, id: Uuid, dest: &Path, format: DiskFormat) -> Result<SnapshotInfo>;

    /// A Unix socket connected to the running server's serial port: bytes
    /// written to it reach the guest's console, the guest's output comes
    /// back (and is still logged).
    async fn serial_console(&self, id: Uuid) -> Result<PathBuf>;

    /// The serial console log, the last `tail_lines` lines when given.
    async fn console_log(&self, id: Uuid, tail_lines: Option<usize>) -> Result<String>;

    /// Stops the server at once and removes all its files.
    async fn delete(&self, id: Uuid) -> Result<()>;
}
