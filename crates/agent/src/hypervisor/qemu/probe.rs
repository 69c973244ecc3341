//! Is KVM usable here? `/dev/kvm` existing is not enough (nested
//! virtualisation can hand out a device whose guests never run), so the
//! probe boots something: a 512-byte boot sector that prints a marker on
//! the serial port and leaves QEMU through the `isa-debug-exit` device with
//! a known status. KVM is used only if that status comes back within the
//! time limit. The verdict is cached in the instances directory, keyed by
//! QEMU's version, the kernel release and the CPU model, so a restart does
//! not probe again.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::process::Command;

use crate::hypervisor::Accel;

/// What `isa-debug-exit` turns our `out 0xf4, 0x10` into: (0x10 << 1) | 1.
const PROBE_EXIT: i32 = 33;
pub(crate) const PROBE_MARKER: &str = "OXISTACK-PROBE-OK";

/// A boot sector (16-bit real mode, loaded at 0x7c00):
/// ```text
///   cli; cld; xor ax,ax; mov ds,ax; mov si,msg; mov dx,0x3f8
/// l: lodsb; test al,al; jz d; out dx,al; jmp l
/// d: mov al,0x10; out 0xf4,al; h: hlt; jmp h
/// msg: "OXISTACK-PROBE-OK\r\n\0"   ... 0x55 0xaa at 510
/// ```
pub(crate) fn boot_sector() -> Vec<u8> {
    let mut s = vec![
        0xFA, 0xFC, 0x31, 0xC0, 0x8E, 0xD8, 0xBE, 0x1B, 0x7C, 0xBA, 0xF8, 0x03, // setup
        0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8, // print loop
        0xB0, 0x10, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD, // exit, halt
    ];
    debug_assert_eq!(s.len(), 0x1B);
    s.extend_from_slice(PROBE_MARKER.as_bytes());
    s.extend_from_slice(b"\r\n\0");
    s.resize(510, 0);
    s.extend_from_slice(&[0x55, 0xAA]);
    // A few sectors more so firmware sees a plausible disk.
    s.resize(64 * 1024, 0);
    s
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Verdict {
    pub key: String,
    pub accel: Accel,
    pub detail: String,
}

/// What the verdict depends on.
pub(crate) fn cache_key(qemu_version: &str, cpu_model: &str) -> String {
    let kernel = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    format!("{qemu_version}|{kernel}|{cpu_model}")
}

pub(crate) async fn read_cache(file: &Path, key: &str) -> Option<Verdict> {
    let bytes = tokio::fs::read(file).await.ok()?;
    let v: Verdict = serde_json::from_slice(&bytes).ok()?;
    (v.key == key).then_some(v)
}

pub(crate) async fn write_cache(file: &Path, v: &Verdict) {
    let tmp = file.with_extension("tmp");
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    if tokio::fs::write(&tmp, body).await.is_ok() {
        let _ = tokio::fs::rename(&tmp, file).await;
    }
}

/// Boots the probe sector under KVM in `workdir`; `Ok(detail)` when it ran,
/// `Err(why not)` otherwise.
pub(crate) async fn probe_kvm(
    qemu: &Path,
    workdir: &Path,
    timeout: Duration,
) -> Result<String, String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("/dev/kvm not usable: {e}"));
    }
    let _ = tokio::fs::remove_dir_all(workdir).await;
    tokio::fs::create_dir_all(workdir)
        .await
        .map_err(|e| format!("create {}: {e}", workdir.display()))?;
    let result = run_probe(qemu, workdir, timeout).await;
    let _ = tokio::fs::remove_dir_all(workdir).await;
    result
}

async fn run_probe(qemu: &Path, workdir: &Path, timeout: Duration) -> Result<String, String> {
    let disk = workdir.join("probe.img");
    let serial = workdir.join("serial.log");
    tokio::fs::write(&disk, boot_sector())
        .await
        .map_err(|e| format!("write {}: {e}", disk.display()))?;
    let blockdev = json!({
        "node-name": "probe",
        "driver": "raw",
        "read-only": true,
        "file": {"driver": "file", "filename": disk.to_string_lossy(), "read-only": true},
    })
    .to_string();
    let start = Instant::now();
    let mut child = Command::new(qemu)
        .args([
            "-accel", "kvm", "-machine", "pc", "-cpu", "host", "-m", "32",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args([
            "-blockdev",
            &blockdev,
            "-device",
            "ide-hd,drive=probe,bootindex=1",
        ])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-chardev")
        .arg(format!("file,id=s0,path={}", serial.to_string_lossy()))
        .args(["-device", "isa-serial,chardev=s0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("run {}: {e}", qemu.display()))?;
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => return Err(format!("wait for the probe: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            return Err(format!(
                "a KVM guest did not run within {:.1} s (nested virtualisation?)",
                timeout.as_secs_f64()
            ));
        }
    };
    let printed = tokio::fs::read_to_string(&serial)
        .await
        .map(|s| s.contains(PROBE_MARKER))
        .unwrap_or(false);
    if status.code() == Some(PROBE_EXIT) && printed {
        Ok(format!(
            "probe guest ran under KVM in {} ms",
            start.elapsed().as_millis()
        ))
    } else {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ = e.read_to_string(&mut err).await;
        }
        Err(format!(
            "probe guest under KVM ended with {status} (marker {}): {}",
            if printed { "seen" } else { "missing" },
            err.trim()
        ))
    }
}

/// `QEMU emulator version 10.0.2 (Debian ...)` -> (10, 0, 2).
pub(crate) fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let rest = text.split("version ").nth(1)?;
    let ver = rest.split_whitespace().next()?;
    let mut it = ver.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u64>()
            .ok()
    });
    Some((
        it.next()??,
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_shape() {
        let s = boot_sector();
        assert_eq!(&s[510..512], &[0x55, 0xAA]);
        // mov si points at the message.
        let msg_at = u16::from_le_bytes([s[7], s[8]]) as usize - 0x7c00;
        assert_eq!(
            &s[msg_at..msg_at + PROBE_MARKER.len()],
            PROBE_MARKER.as_bytes()
        );
    }

    #[test]
    fn versions() {
        assert_eq!(
            parse_version(
                "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright"
            ),
            Some((10, 0, 2))
        );
        assert_eq!(
            parse_version("QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)"),
            Some((7, 2, 19))
        );
        assert_eq!(parse_version("QEMU emulator version 8.1"), Some((8, 1, 0)));
        assert_eq!(parse_version("nonsense"), None);
    }

    #[tokio::test]
    async fn cache_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("accel.json");
        let v = Verdict {
            key: cache_key("10.0.2", "Xeon"),
            accel: Accel::Tcg,
            detail: "no".into(),
        };
        write_cache(&f, &v).await;
        assert_eq!(read_cache(&f, &v.key).await, Some(v.clone()));
        assert_eq!(read_cache(&f, "other").await, None);
    }
}
