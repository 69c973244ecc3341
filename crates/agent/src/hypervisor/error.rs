//! The one error type of the hypervisor layer.

use std::path::PathBuf;

use uuid::Uuid;

use super::PowerState;

/// What a hypervisor operation can fail with. The `Display` text is meant for
/// an instance fault's message; it never contains user data beyond ids and
/// paths the agent chose.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("server {0} is not defined on this host")]
    NotFound(Uuid),
    #[error("server {0} is already defined on this host")]
    AlreadyExists(Uuid),
    #[error("cannot {op} server {id} while it is {state}")]
    InvalidState {
        id: Uuid,
        op: &'static str,
        state: PowerState,
    },
    /// The spec or request is malformed (a name, path, size or MAC address).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The image cannot back a server (bad format, backing file, too big).
    #[error("image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("not supported: {0}")]
    Unsupported(String),
    /// A helper program (qemu-img, genisoimage) failed.
    #[error("{program} failed: {message}")]
    Tool { program: String, message: String },
    /// QEMU refused to start or died while starting.
    #[error("QEMU for server {id} failed to start: {message}")]
    Start { id: Uuid, message: String },
    /// A QMP command failed or the monitor connection broke.
    #[error("QMP: {0}")]
    Qmp(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A remote host agent refused or failed the request.
    #[error("host agent: {0}")]
    Remote(String),
    /// A remote host agent could not be reached (nothing was done there,
    /// as far as this side knows).
    #[error("host agent unreachable: {0}")]
    Unreachable(String),
    /// An error injected into the fake hypervisor by a test.
    #[error("injected failure: {0}")]
    Injected(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
