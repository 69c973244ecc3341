//! The host agent's internal API: a [`Hypervisor`] on one machine served
//! over HTTP ([`server::router`], run by `oxistack agent`), and the
//! control plane's side of it ([`client::RemoteHypervisor`], which
//! implements the same trait, so the compute service drives a remote host
//! exactly as it drives one in process).
//!
//! Every request carries `Authorization: Bearer <token>`, a secret shared by
//! the agent and the control plane (a 0600 file on both sides). Requests
//! are JSON; three routes stream instead:
//!
//! * `PUT /v1/images/{key}`: the control plane uploads a cached base image
//!   the agent does not have yet (`GET` tells whether it has it). Specs
//!   name images by key; the agent resolves the key inside its own image
//!   directory and accepts no other path.
//! * `POST /v1/servers/{id}/snapshot`: the agent writes the snapshot to a
//!   scratch file, unlinks it and streams it back (its [`SnapshotInfo`] in
//!   a header); the client writes it to the destination it was given.
//! * `GET /v1/events`: lifecycle events as newline-delimited JSON, one
//!   long response (a blank line every few seconds keeps it alive); the
//!   client reconnects when it breaks.
//! * `GET /v1/servers/{id}/serial`: a WebSocket carrying the serial port's
//!   bytes; the client offers it to local callers as a Unix socket.
//!
//! [`Hypervisor`]: crate::hypervisor::Hypervisor

pub mod client;
pub mod server;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::hypervisor::{
    Error, ImageSource, LifecycleEvent, PowerOff, PowerState, RebootKind, RebuildSpec, ResizeSpec,
};

/// The header that carries a snapshot's [`crate::hypervisor::SnapshotInfo`].
pub const SNAPSHOT_INFO_HEADER: &str = "x-oxistack-snapshot";

/// What `GET /v1/health` answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    /// The hypervisor kind (`qemu`, `fake`).
    pub kind: String,
    pub version: String,
    /// Names this run of the agent: a new agent process answers with a new
    /// one, which tells the control plane to reconcile the host even when
    /// no ping failed in between.
    #[serde(default)]
    pub instance: String,
}

/// An image the agent holds, by key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageEntry {
    pub key: String,
    pub size: u64,
}

/// A power-off request on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WirePowerOff {
    Graceful { timeout_ms: u64, retry_ms: u64 },
    Hard,
}

impl From<PowerOff> for WirePowerOff {
    fn from(p: PowerOff) -> Self {
        match p {
            PowerOff::Graceful { timeout, retry } => WirePowerOff::Graceful {
                timeout_ms: millis(timeout),
                retry_ms: millis(retry),
            },
            PowerOff::Hard => WirePowerOff::Hard,
        }
    }
}

impl From<WirePowerOff> for PowerOff {
    fn from(p: WirePowerOff) -> Self {
        match p {
            WirePowerOff::Graceful {
                timeout_ms,
                retry_ms,
            } => PowerOff::Graceful {
                timeout: Duration::from_millis(timeout_ms),
                retry: Duration::from_millis(retry_ms),
            },
            WirePowerOff::Hard => PowerOff::Hard,
        }
    }
}

/// A reboot request on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireReboot {
    Soft { timeout_ms: u64 },
    Hard,
}

impl From<RebootKind> for WireReboot {
    fn from(k: RebootKind) -> Self {
        match k {
            RebootKind::Soft { timeout } => WireReboot::Soft {
                timeout_ms: millis(timeout),
            },
            RebootKind::Hard => WireReboot::Hard,
        }
    }
}

impl From<WireReboot> for RebootKind {
    fn from(k: WireReboot) -> Self {
        match k {
            WireReboot::Soft { timeout_ms } => RebootKind::Soft {
                timeout: Duration::from_millis(timeout_ms),
            },
            WireReboot::Hard => RebootKind::Hard,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `POST /v1/servers/{id}/action`: one operation on a defined server.
/// Image paths in `rebuild` and `rescue` are image keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    PowerOn,
    PowerOff { how: WirePowerOff },
    Reboot { kind: WireReboot },
    Pause,
    Unpause,
    Suspend,
    Resume,
    Resize { to: ResizeSpec },
    ResizeConfirm,
    ResizeRevert,
    Rebuild { spec: RebuildSpec },
    Rescue { image: ImageSource },
    Unrescue,
}

/// A lifecycle event on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireEvent {
    pub id: Uuid,
    pub state: PowerState,
    pub reason: String,
}

impl From<LifecycleEvent> for WireEvent {
    fn from(e: LifecycleEvent) -> Self {
        WireEvent {
            id: e.id,
            state: e.state,
            reason: e.reason,
        }
    }
}

impl From<WireEvent> for LifecycleEvent {
    fn from(e: WireEvent) -> Self {
        LifecycleEvent {
            id: e.id,
            state: e.state,
            reason: e.reason,
        }
    }
}

/// An error on the wire: `{"error": {"kind": ..., "message": ..., "id": ...}}`.
/// `not_found` and `already_exists` come back as the same [`Error`]
/// variants (the compute service acts on them); everything else as
/// [`Error::Remote`] with the agent's message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: WireError,
}

impl WireError {
    pub fn from_error(e: &Error) -> (u16, Self) {
        let (status, kind, id) = match e {
            Error::NotFound(id) => (404, "not_found", Some(*id)),
            Error::AlreadyExists(id) => (409, "already_exists", Some(*id)),
            Error::InvalidState { id, .. } => (409, "invalid_state", Some(*id)),
            Error::Invalid(_) | Error::Image { .. } => (400, "invalid", None),
            Error::Unsupported(_) => (501, "unsupported", None),
            Error::Timeout(_) => (504, "timeout", None),
            _ => (500, "failed", None),
        };
        (
            status,
            WireError {
                kind: kind.into(),
                message: e.to_string(),
                id,
            },
        )
    }

    pub fn into_error(self) -> Error {
        match (self.kind.as_str(), self.id) {
            ("not_found", Some(id)) => Error::NotFound(id),
            ("already_exists", Some(id)) => Error::AlreadyExists(id),
            _ => Error::Remote(self.message),
        }
    }
}

/// What a WebSocket frame means to a serial console.
pub(crate) enum Frame {
    Data(bytes::Bytes),
    Close,
    Other,
}

/// Copies between a WebSocket (of either library: `data` makes a frame,
/// `frame` reads one) and a serial port's socket until either side ends.
pub(crate) async fn pump_serial<W, M, E>(
    ws: W,
    stream: tokio::net::UnixStream,
    data: impl Fn(bytes::Bytes) -> M,
    frame: impl Fn(M) -> Frame,
    close: M,
) where
    W: futures_util::Stream<Item = Result<M, E>> + futures_util::Sink<M> + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut tx, mut rx) = ws.split();
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(data(bytes::Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break;
                    }
                }
            },
            msg = rx.next() => match msg.map(|m| m.map(&frame)) {
                Some(Ok(Frame::Data(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Frame::Other)) => {}
                Some(Ok(Frame::Close)) | Some(Err(_)) | None => break,
            },
        }
    }
    let _ = tx.send(close).await;
}

/// Writes a byte stream to `file` and syncs it; the number of bytes.
/// `broke` turns a stream error into the caller's error.
pub(crate) async fn write_stream<S, E>(
    file: &mut tokio::fs::File,
    mut stream: S,
    what: &str,
    broke: impl Fn(E) -> Error,
) -> Result<u64, Error>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(&broke)?;
        size += chunk.len() as u64;
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::io(format!("write the {what}"), e))?;
    }
    file.sync_all()
        .await
        .map_err(|e| Error::io(format!("sync the {what}"), e))?;
    Ok(size)
}

/// A key names a base image on the agent: one path component of letters,
/// digits, `-`, `_` and `.`, not starting with a dot.
pub fn valid_image_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keys() {
        assert!(valid_image_key("2b6c1a38-5b4e-4b1f-9d55-1f3f2f6a7f10"));
        assert!(valid_image_key("img.qcow2"));
        for bad in ["", ".", "..", ".hidden", "a/b", "../x", "a b", "x\0"] {
            assert!(!valid_image_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn errors_round_trip() {
        let id = Uuid::new_v4();
        let (status, w) = WireError::from_error(&Error::NotFound(id));
        assert_eq!(status, 404);
        assert!(matches!(w.into_error(), Error::NotFound(x) if x == id));
        let e = Error::InvalidState {
            id,
            op: "pause",
            state: PowerState::Shutoff,
        };
        let (status, w) = WireError::from_error(&e);
        assert_eq!(status, 409);
        let back = w.into_error();
        assert!(
            matches!(&back, Error::Remote(m) if m == &e.to_string()),
            "{back}"
        );
    }

    #[test]
    fn power_off_round_trip() {
        let p = PowerOff::Graceful {
            timeout: Duration::from_secs(60),
            retry: Duration::from_millis(2500),
        };
        let w: WirePowerOff = p.into();
        let json = serde_json::to_string(&w).unwrap_or_default();
        let back: WirePowerOff = serde_json::from_str(&json).unwrap_or(WirePowerOff::Hard);
        assert_eq!(PowerOff::from(back), p);
        let r = RebootKind::Soft {
            timeout: Duration::from_secs(5),
        };
        assert_eq!(RebootKind::from(WireReboot::from(r)), r);
    }
}
