//! A small asynchronous QMP client: JSON lines over a Unix socket.
//!
//! After the greeting and `qmp_capabilities`, a reader task routes every
//! reply to its caller by the `id` we attach to each command, and every
//! asynchronous event (`SHUTDOWN`, `STOP`, `RESUME`, ...) to the receiver
//! returned by [`Qmp::connect`]. When QEMU goes away the socket reaches
//! end-of-file: pending commands fail with [`QmpError::Closed`], the event
//! receiver ends and [`Qmp::closed`] resolves. File descriptors (for
//! `getfd`) travel as `SCM_RIGHTS` ancillary data with the command.

use std::collections::HashMap;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};

/// Longest line accepted from QEMU (replies are small; this bounds memory).
const MAX_LINE: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP connection closed")]
    Closed,
    #[error("QMP command {0} got no reply in time")]
    Timeout(String),
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    #[error("QMP socket: {0}")]
    Io(#[from] std::io::Error),
}

/// An asynchronous QMP event.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub name: String,
    pub data: Value,
}

type Reply = Result<Value, QmpError>;

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, oneshot::Sender<Reply>>,
    closed: bool,
}

struct Inner {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    greeting: Value,
    closed: watch::Receiver<bool>,
    reader: Mutex<Option<tokio::task::AbortHandle>>,
}

/// A connected QMP monitor. Cheap to clone; all clones share the
/// connection.
#[derive(Clone)]
pub struct Qmp {
    inner: Arc<Inner>,
}

impl Qmp {
    /// Connects to the QMP socket at `path` and negotiates capabilities.
    pub async fn connect(
        path: &Path,
        timeout: Duration,
    ) -> Result<(Qmp, mpsc::UnboundedReceiver<QmpEvent>), QmpError> {
        let stream = UnixStream::connect(path).await?;
        Self::handshake(stream, timeout).await
    }

    /// Negotiates on an already connected stream.
    pub async fn handshake(
        stream: UnixStream,
        timeout: Duration,
    ) -> Result<(Qmp, mpsc::UnboundedReceiver<QmpEvent>), QmpError> {
        let (read, writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        let greeting = tokio::time::timeout(timeout, read_message(&mut reader))
            .await
            .map_err(|_| QmpError::Timeout("greeting".into()))??
            .ok_or(QmpError::Closed)?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected the QMP greeting, got {greeting}"
            )));
        }
        let (closed_tx, closed_rx) = watch::channel(false);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            writer: tokio::sync::Mutex::new(writer),
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            greeting,
            closed: closed_rx,
            reader: Mutex::new(None),
        });
        let task = tokio::spawn(read_loop(reader, Arc::clone(&inner), events_tx, closed_tx));
        *inner.reader.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        let qmp = Qmp { inner };
        qmp.execute("qmp_capabilities", None, timeout).await?;
        Ok((qmp, events_rx))
    }

    /// QEMU's version as `(major, minor, micro)`, from the greeting.
    pub fn version(&self) -> (u64, u64, u64) {
        let v = &self.inner.greeting["QMP"]["version"]["qemu"];
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        (n("major"), n("minor"), n("micro"))
    }

    /// Resolves once the connection is gone.
    pub async fn closed(&self) {
        let mut rx = self.inner.closed.clone();
        // An error means the reader task is gone: closed as well.
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Drops the connection (QEMU keeps running and accepts the next
    /// client). Pending and later commands fail with [`QmpError::Closed`].
    pub fn close(&self) {
        if let Some(task) = self
            .inner
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
        let waiters = {
            let mut p = lock(&self.inner.pending);
            p.closed = true;
            std::mem::take(&mut p.waiters)
        };
        for (_, tx) in waiters {
            let _ = tx.send(Err(QmpError::Closed));
        }
    }

    pub fn is_closed(&self) -> bool {
        *self.inner.closed.borrow()
    }

    /// Runs a command and returns its `return` value.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        self.execute_inner(command, arguments, None, timeout).await
    }

    /// Runs a command with a file descriptor attached (`getfd`,
    /// `add-fd`).
    pub async fn execute_with_fd(
        &self,
        command: &str,
        arguments: Option<Value>,
        fd: BorrowedFd<'_>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        self.execute_inner(command, arguments, Some(fd), timeout)
            .await
    }

    async fn execute_inner(
        &self,
        command: &str,
        arguments: Option<Value>,
        fd: Option<BorrowedFd<'_>>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"execute": command, "id": id});
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string().into_bytes();
        line.push(b'\n');

        let (tx, rx) = oneshot::channel();
        {
            let mut p = lock(&self.inner.pending);
            if p.closed {
                return Err(QmpError::Closed);
            }
            p.waiters.insert(id, tx);
        }
        let sent = tokio::time::timeout(timeout, self.send(&line, fd)).await;
        let reply = match sent {
            Ok(Ok(())) => match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(_)) => Err(QmpError::Closed),
                Err(_) => Err(QmpError::Timeout(command.to_string())),
            },
            Ok(Err(e)) => Err(e),
            Err(_) => Err(QmpError::Timeout(command.to_string())),
        };
        lock(&self.inner.pending).waiters.remove(&id);
        reply.map_err(|e| match e {
            QmpError::Command { class, desc, .. } => QmpError::Command {
                command: command.to_string(),
                class,
                desc,
            },
            other => other,
        })
    }

    async fn send(&self, line: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<(), QmpError> {
        let mut w = self.inner.writer.lock().await;
        let mut start = 0;
        if let Some(fd) = fd {
            let stream: &UnixStream = (*w).as_ref();
            loop {
                stream.writable().await?;
                let fds = [fd];
                let res = stream.try_io(Interest::WRITABLE, || {
                    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                    let mut control = SendAncillaryBuffer::new(&mut space);
                    control.push(SendAncillaryMessage::ScmRights(&fds));
                    rustix::net::sendmsg(
                        stream,
                        &[IoSlice::new(line)],
                        &mut control,
                        SendFlags::NOSIGNAL,
                    )
                    .map_err(std::io::Error::from)
                });
                match res {
                    Ok(n) => {
                        start = n;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if start < line.len() {
            w.write_all(&line[start..]).await?;
        }
        Ok(())
    }
}

fn lock(m: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One JSON message, or `None` at end-of-file.
async fn read_message(reader: &mut BufReader<OwnedReadHalf>) -> Result<Option<Value>, QmpError> {
    loop {
        let mut buf = Vec::new();
        let n = (&mut *reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() != Some(&b'\n') && n as u64 >= MAX_LINE {
            return Err(QmpError::Protocol("line too long".into()));
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        return serde_json::from_str(text)
            .map(Some)
            .map_err(|e| QmpError::Protocol(format!("bad JSON from QEMU: {e}")));
    }
}

async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    inner: Arc<Inner>,
    events: mpsc::UnboundedSender<QmpEvent>,
    closed: watch::Sender<bool>,
) {
    loop {
        let msg = match read_message(&mut reader).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "QMP read failed; closing");
                break;
            }
        };
        if let Some(name) = msg.get("event").and_then(Value::as_str) {
            let data = msg.get("data").cloned().unwrap_or(Value::Null);
            // Nobody listening is fine.
            let _ = events.send(QmpEvent {
                name: name.to_string(),
                data,
            });
            continue;
        }
        let Some(id) = msg.get("id").and_then(Value::as_u64) else {
            tracing::debug!(%msg, "QMP message without id ignored");
            continue;
        };
        let reply = if let Some(ret) = msg.get("return") {
            Ok(ret.clone())
        } else if let Some(err) = msg.get("error") {
            Err(QmpError::Command {
                command: String::new(),
                class: err["class"].as_str().unwrap_or("").to_string(),
                desc: err["desc"].as_str().unwrap_or("").to_string(),
            })
        } else {
            Err(QmpError::Protocol(format!("unexpected message {msg}")))
        };
        if let Some(tx) = lock(&inner.pending).waiters.remove(&id) {
            let _ = tx.send(reply);
        }
    }
    let waiters = {
        let mut p = lock(&inner.pending);
        p.closed = true;
        std::mem::take(&mut p.waiters)
    };
    for (_, tx) in waiters {
        let _ = tx.send(Err(QmpError::Closed));
    }
    let _ = closed.send(true);
}

#[cfg(test)]
mod tests {
    use std::io::IoSliceMut;
    use std::os::fd::{AsFd, OwnedFd};

    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixListener;

    use super::*;

    const T: Duration = Duration::from_secs(5);
    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "Debian"}, "capabilities": ["oob"]}}"#;

    /// Reads one command line from the client side of the fake server.
    async fn next_command<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<Value> {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        serde_json::from_str(&line).ok()
    }

    async fn server_pair() -> (Qmp, mpsc::UnboundedReceiver<QmpEvent>, UnixStream) {
        let (client, server) = UnixStream::pair().unwrap();
        let serve = async move {
            let (r, mut w) = server.into_split();
            w.write_all(GREETING.as_bytes()).await.unwrap();
            w.write_all(b"\r\n").await.unwrap();
            let mut r = BufReader::new(r);
            let cmd = next_command(&mut r).await.unwrap();
            assert_eq!(cmd["execute"], "qmp_capabilities");
            let reply = json!({"return": {}, "id": cmd["id"]});
            w.write_all(format!("{reply}\r\n").as_bytes())
                .await
                .unwrap();
            r.into_inner().reunite(w).unwrap()
        };
        let (client, server) = tokio::join!(Qmp::handshake(client, T), serve);
        let (qmp, events) = client.unwrap();
        (qmp, events, server)
    }

    #[tokio::test]
    async fn replies_are_matched_by_id_and_events_are_routed() {
        let (qmp, mut events, server) = server_pair().await;
        assert_eq!(qmp.version(), (10, 0, 2));
        let (r, mut w) = server.into_split();
        let fake = tokio::spawn(async move {
            let mut r = BufReader::new(r);
            let a = next_command(&mut r).await.unwrap();
            let b = next_command(&mut r).await.unwrap();
            // An event, then the replies in the reverse order.
            w.write_all(b"{\"event\": \"STOP\", \"data\": {}, \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}\r\n")
                .await
                .unwrap();
            for cmd in [&b, &a] {
                let reply = if cmd["execute"] == "query-status" {
                    json!({"return": {"status": "paused", "running": false}, "id": cmd["id"]})
                } else {
                    json!({"error": {"class": "CommandNotFound", "desc": "nope"}, "id": cmd["id"]})
                };
                w.write_all(format!("{reply}\r\n").as_bytes())
                    .await
                    .unwrap();
            }
            (r, w)
        });
        let (status, bad) = tokio::join!(
            qmp.execute("query-status", None, T),
            qmp.execute("bogus", Some(json!({"x": 1})), T)
        );
        assert_eq!(status.unwrap()["status"], "paused");
        match bad {
            Err(QmpError::Command {
                command,
                class,
                desc,
            }) => {
                assert_eq!(
                    (command.as_str(), class.as_str(), desc.as_str()),
                    ("bogus", "CommandNotFound", "nope")
                );
            }
            other => panic!("{other:?}"),
        }
        let ev = events.recv().await.unwrap();
        assert_eq!(ev.name, "STOP");
        let (_r, _w) = fake.await.unwrap();
    }

    #[tokio::test]
    async fn eof_fails_pending_commands_and_ends_events() {
        let (qmp, mut events, server) = server_pair().await;
        let (r, w) = server.into_split();
        let fake = tokio::spawn(async move {
            let mut r = BufReader::new(r);
            let cmd = next_command(&mut r).await.unwrap();
            assert_eq!(cmd["execute"], "quit");
            drop(w);
            drop(r);
        });
        let res = qmp.execute("quit", None, T).await;
        assert!(matches!(res, Err(QmpError::Closed)), "{res:?}");
        fake.await.unwrap();
        tokio::time::timeout(T, qmp.closed()).await.unwrap();
        assert!(qmp.is_closed());
        assert!(events.recv().await.is_none());
        assert!(matches!(
            qmp.execute("query-status", None, T).await,
            Err(QmpError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (qmp, _events, _server) = server_pair().await;
        let res = qmp
            .execute("query-status", None, Duration::from_millis(50))
            .await;
        assert!(matches!(res, Err(QmpError::Timeout(_))), "{res:?}");
    }

    #[tokio::test]
    async fn a_non_qmp_peer_is_refused() {
        let (client, mut server) = UnixStream::pair().unwrap();
        server.write_all(b"{\"hello\": 1}\n").await.unwrap();
        assert!(matches!(
            Qmp::handshake(client, T).await,
            Err(QmpError::Protocol(_))
        ));
        let (client, server) = UnixStream::pair().unwrap();
        drop(server);
        assert!(Qmp::handshake(client, T).await.is_err());
    }

    #[tokio::test]
    async fn file_descriptors_travel_with_getfd() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let fake = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = s.into_std().unwrap();
            s.set_nonblocking(false).unwrap();
            use std::io::Write;
            s.write_all(format!("{GREETING}\r\n").as_bytes()).unwrap();
            // Blocking reads are fine on this dedicated thread-ish task.
            tokio::task::spawn_blocking(move || {
                let mut got_fd: Option<OwnedFd> = None;
                let mut pending = Vec::new();
                let mut replies = 0;
                while replies < 2 {
                    let mut buf = [0u8; 4096];
                    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                    let mut control = RecvAncillaryBuffer::new(&mut space);
                    let msg = rustix::net::recvmsg(
                        &s,
                        &mut [IoSliceMut::new(&mut buf)],
                        &mut control,
                        RecvFlags::empty(),
                    )
                    .unwrap();
                    for m in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(fds) = m {
                            got_fd = fds.into_iter().next();
                        }
                    }
                    pending.extend_from_slice(&buf[..msg.bytes]);
                    while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=pos).collect();
                        let cmd: Value = serde_json::from_slice(&line).unwrap();
                        let ret = if cmd["execute"] == "getfd" {
                            assert_eq!(cmd["arguments"]["fdname"], "state");
                            assert!(got_fd.is_some(), "getfd came without a descriptor");
                            json!({})
                        } else {
                            json!({})
                        };
                        let reply = json!({"return": ret, "id": cmd["id"]});
                        s.write_all(format!("{reply}\r\n").as_bytes()).unwrap();
                        replies += 1;
                    }
                }
                got_fd
            })
            .await
            .unwrap()
        });
        let (qmp, _events) = Qmp::connect(&sock, T).await.unwrap();
        let file_path = dir.path().join("state");
        let file = std::fs::File::create(&file_path).unwrap();
        qmp.execute_with_fd("getfd", Some(json!({"fdname": "state"})), file.as_fd(), T)
            .await
            .unwrap();
        let received = fake.await.unwrap().expect("a descriptor");
        // The received descriptor is the same open file.
        let mut received = std::fs::File::from(received);
        use std::io::Write;
        received.write_all(b"via SCM_RIGHTS").unwrap();
        assert_eq!(std::fs::read(&file_path).unwrap(), b"via SCM_RIGHTS");
    }
}
