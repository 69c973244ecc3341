//! QEMU processes: telling whether a pid is (still) one of our VMs, waiting
//! for it to end whether or not it is our child, and signalling it.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, Signal};
use tokio::io::unix::AsyncFd;
use uuid::Uuid;

/// A `pidfd` shared between the waiter and whoever sends signals.
#[derive(Clone)]
pub(crate) struct PidFd(Arc<OwnedFd>);

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// A handle to send signals to one process without hitting a recycled pid
/// (through a pidfd when the kernel has them).
#[derive(Clone)]
pub(crate) struct ProcHandle {
    pub pid: i32,
    pidfd: Option<PidFd>,
}

/// Waits for one process to end.
pub(crate) enum Waiter {
    /// Our child: wait (and reap) it.
    Child(tokio::process::Child),
    /// Somebody else's child (adopted after an agent restart).
    PidFd(AsyncFd<PidFd>, i32),
    /// No pidfd support: poll `/proc`.
    Poll(i32),
}

impl ProcHandle {
    /// Opens a handle and a waiter for `pid`; `child` when we spawned it.
    pub fn open(pid: i32, child: Option<tokio::process::Child>) -> (ProcHandle, Waiter) {
        let pidfd = Pid::from_raw(pid)
            .and_then(|p| rustix::process::pidfd_open(p, PidfdFlags::empty()).ok())
            .map(|fd| PidFd(Arc::new(fd)));
        let waiter = match (child, &pidfd) {
            (Some(c), _) => Waiter::Child(c),
            // `AsyncFd::new` is deprecated because the caller must keep the
            // descriptor open while the `AsyncFd` lives (the safe-code
            // replacement is `unsafe`). `PidFd` owns an `Arc<OwnedFd>`, so
            // the descriptor lives exactly as long as the `AsyncFd`.
            #[allow(deprecated)]
            (None, Some(fd)) => match AsyncFd::new(fd.clone()) {
                Ok(a) => Waiter::PidFd(a, pid),
                Err(_) => Waiter::Poll(pid),
            },
            (None, None) => Waiter::Poll(pid),
        };
        (ProcHandle { pid, pidfd }, waiter)
    }

    pub fn signal(&self, sig: Signal) {
        let res = match &self.pidfd {
            Some(fd) => rustix::process::pidfd_send_signal(&*fd.0, sig),
            None => match Pid::from_raw(self.pid) {
                Some(p) => rustix::process::kill_process(p, sig),
                None => Ok(()),
            },
        };
        if let Err(e) = res {
            tracing::debug!(pid = self.pid, ?sig, error = %e, "signal not delivered");
        }
    }
}

impl Waiter {
    /// Resolves when the process has ended; says how, as far as known.
    pub async fn wait(&mut self) -> String {
        match self {
            Waiter::Child(c) => match c.wait().await {
                Ok(st) => describe_status(st),
                Err(e) => format!("wait failed: {e}"),
            },
            Waiter::PidFd(fd, pid) => {
                // Readable means exited (and stays so).
                if fd.readable().await.is_err() {
                    poll_until_gone(*pid).await;
                }
                "process exited".to_string()
            }
            Waiter::Poll(pid) => {
                poll_until_gone(*pid).await;
                "process exited".to_string()
            }
        }
    }
}

fn describe_status(st: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("process exited with status {c}"),
        (None, Some(s)) => format!("process killed by signal {s}"),
        _ => "process exited".to_string(),
    }
}

async fn poll_until_gone(pid: i32) {
    while pid_alive(pid) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The process exists and is not a zombie.
pub(crate) fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and
        // may itself contain ')'.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => false,
        },
        Err(_) => false,
    }
}

/// The server a QEMU command line (`/proc/<pid>/cmdline`) runs: its
/// `-name guest=<uuid>,debug-threads=on`.
fn qemu_guest(cmdline: &[u8]) -> Option<Uuid> {
    let mut args = cmdline.split(|b| *b == 0);
    if !String::from_utf8_lossy(args.next()?).contains("qemu-system") {
        return None;
    }
    args.find_map(|a| {
        let id = std::str::from_utf8(a)
            .ok()?
            .strip_prefix("guest=")?
            .strip_suffix(",debug-threads=on")?;
        Uuid::parse_str(id).ok()
    })
}

/// `pid` is a live QEMU of server `id` (checked on its command line, so a
/// recycled pid is not mistaken for the VM).
pub(crate) fn is_our_qemu(pid: i32, id: Uuid) -> bool {
    pid_alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| qemu_guest(&c) == Some(id))
}

/// Every live QEMU of a server on this machine, by server id, found on
/// the command lines in `/proc` (pidfiles aside).
pub(crate) fn our_qemus() -> std::collections::HashMap<Uuid, i32> {
    let mut found = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if let Some(id) = qemu_guest(&cmdline).filter(|_| pid_alive(pid)) {
            found.insert(id, pid);
        }
    }
    found
}

/// For tests: a process whose command line looks like server `id`'s QEMU
/// (a shell blocked reading its stdin, which is piped, so it ends when the
/// handle is dropped or waited for).
#[doc(hidden)]
pub fn stand_in_qemu(id: Uuid) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .arg0("qemu-system-x86_64")
        .args(["-c", "read _", "sh", "-name"])
        .arg(format!("guest={id},debug-threads=on"))
        .stdin(std::process::Stdio::piped())
        .spawn()
}

pub(crate) async fn read_pidfile(path: &Path) -> Option<i32> {
    let text = tokio::fs::read_to_string(path).await.ok()?;
    text.trim().parse().ok().filter(|p| *p > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_qemus_by_their_command_line() {
        let id = Uuid::new_v4();
        let mut child = stand_in_qemu(id).unwrap();
        let pid = child.id() as i32;
        // Until it has exec'd, the child shows the test's command line.
        let mut found = None;
        for _ in 0..100 {
            found = our_qemus().get(&id).copied();
            if found.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(found, Some(pid));
        assert!(!our_qemus().contains_key(&Uuid::new_v4()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!our_qemus().contains_key(&id));
    }

    #[tokio::test]
    async fn waits_for_children_and_strangers() {
        let child = tokio::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id().unwrap() as i32;
        assert!(pid_alive(pid));
        let (_h, mut w) = ProcHandle::open(pid, Some(child));
        assert_eq!(w.wait().await, "process exited with status 0");
        assert!(!pid_alive(pid));

        // Not waited for through the Child: the pidfd (or /proc) path.
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id().unwrap() as i32;
        let (h, mut w) = ProcHandle::open(pid, None);
        h.signal(Signal::KILL);
        let reaper = tokio::spawn(async move { child.wait().await });
        tokio::time::timeout(Duration::from_secs(10), w.wait())
            .await
            .unwrap();
        reaper.await.unwrap().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn our_qemu_is_recognised_by_its_command_line() {
        let me = std::process::id() as i32;
        assert!(pid_alive(me));
        assert!(!is_our_qemu(me, Uuid::nil()));
        assert!(!pid_alive(i32::MAX));
    }
}
