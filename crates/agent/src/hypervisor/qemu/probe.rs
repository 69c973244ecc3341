//! Is KVM usable here? `/dev/kvm` existing is not enough: under nested
//! virtualisation a KVM guest may run, but so slowly that a kernel never
//! finishes booting (on the development machine the Debian kernel's
//! decompressor advances a few thousand loop iterations per second under
//! KVM; firmware that takes 0.4 s under TCG takes 2 to 5 s).
//!
//! So the probe boots things and times them:
//! 1. `/dev/kvm` must open read-write.
//! 2. A 512-byte boot sector (`probe.S`: BIOS timer interrupts in real
//!    mode, then protected mode, then long mode with paging, a marker on
//!    the serial port, and an exit through `isa-debug-exit`) boots under
//!    TCG, then under KVM. KVM must finish it no slower than 1.5 x TCG's
//!    time + 0.2 s: hardware virtualisation that loses to emulation is
//!    not worth using.
//! 3. When a Linux kernel is at hand (the configured one, the project's
//!    guest kernel in /var/cache/oxistack/guest, or the host's own in
//!    /boot), it must boot under KVM up to its "no root file system" panic
//!    within the probe timeout (about a second on a working KVM).
//!
//! The verdict is cached in the instances directory, keyed by QEMU's
//! version, the kernel release and the CPU model, so a restart does not
//! probe again.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::process::Command;

use crate::hypervisor::Accel;

/// What `isa-debug-exit` turns our `out 0xf4, 0x10` into: (0x10 << 1) | 1.
const PROBE_EXIT: i32 = 33;
pub(crate) const PROBE_MARKER: &str = "RTPL OXISTACK-PROBE-OK";

/// `probe.S`, assembled (without the zero padding and the 0x55 0xaa
/// signature, which [`boot_sector`] adds).
const SECTOR: &[u8] = &[
    0xfa, 0xfc, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0xbc, 0x00, 0x7c, 0xba, 0xf8, 0x03,
    0xb0, 0x52, 0xee, 0xfb, 0x8b, 0x1e, 0x6c, 0x04, 0x83, 0xc3, 0x04, 0xf4, 0xa1, 0x6c, 0x04, 0x39,
    0xd8, 0x75, 0xf8, 0xfa, 0xb0, 0x54, 0xee, 0xbf, 0x00, 0x10, 0xb9, 0x00, 0x18, 0x31, 0xc0, 0xf3,
    0xab, 0x66, 0xc7, 0x06, 0x00, 0x10, 0x03, 0x20, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x20, 0x03,
    0x30, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x30, 0x83, 0x00, 0x00, 0x00, 0x0f, 0x01, 0x16, 0xe0,
    0x7c, 0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f, 0x22, 0xc0, 0xea, 0x60, 0x7c, 0x08, 0x00,
    0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0x66, 0xba, 0xf8, 0x03, 0xb0, 0x50,
    0xee, 0x0f, 0x20, 0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f,
    0x22, 0xd8, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30,
    0x0f, 0x20, 0xc0, 0x0d, 0x00, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0xea, 0xa2, 0x7c, 0x00, 0x00,
    0x18, 0x00, 0x66, 0xba, 0xf8, 0x03, 0xb0, 0x4c, 0xee, 0x48, 0x8d, 0x35, 0x36, 0x00, 0x00, 0x00,
    0xac, 0x84, 0xc0, 0x74, 0x03, 0xee, 0xeb, 0xf8, 0xb0, 0x10, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd, 0x90,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
    0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00,
    0x1f, 0x00, 0xc0, 0x7c, 0x00, 0x00, 0x20, 0x4f, 0x58, 0x49, 0x53, 0x54, 0x41, 0x43, 0x4b, 0x2d,
    0x50, 0x52, 0x4f, 0x42, 0x45, 0x2d, 0x4f, 0x4b, 0x0d, 0x0a, 0x00,
];

/// The probe's disk: the boot sector and some empty sectors.
pub(crate) fn boot_sector() -> Vec<u8> {
    let mut s = SECTOR.to_vec();
    s.resize(510, 0);
    s.extend_from_slice(&[0x55, 0xAA]);
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

/// A Linux kernel to boot in the probe: `configured`, else the project's
/// guest kernel, else the host's.
pub(crate) fn find_kernel(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(k) = configured {
        return Some(k.to_path_buf());
    }
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    [
        PathBuf::from("/var/cache/oxistack/guest/vmlinuz"),
        PathBuf::from(format!("/boot/vmlinuz-{release}")),
        PathBuf::from("/boot/vmlinuz"),
        PathBuf::from("/vmlinuz"),
    ]
    .into_iter()
    .find(|p| std::fs::File::open(p).is_ok())
}

/// Runs the probe in `workdir` (created and removed here); `Ok(detail)`
/// when KVM is worth using, `Err(why not)` otherwise.
pub(crate) async fn probe_kvm(
    qemu: &Path,
    workdir: &Path,
    kernel: Option<&Path>,
    kernel_timeout: Duration,
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
    let result = run_probes(qemu, workdir, kernel, kernel_timeout).await;
    let _ = tokio::fs::remove_dir_all(workdir).await;
    result
}

async fn run_probes(
    qemu: &Path,
    workdir: &Path,
    kernel: Option<&Path>,
    kernel_timeout: Duration,
) -> Result<String, String> {
    let disk = workdir.join("probe.img");
    tokio::fs::write(&disk, boot_sector())
        .await
        .map_err(|e| format!("write {}: {e}", disk.display()))?;
    let blockdev = json!({
        "node-name": "probe",
        "driver": "raw",
        "file": {"driver": "file", "filename": disk.to_string_lossy()},
    })
    .to_string();
    let sector_args: Vec<String> = [
        "-blockdev",
        &blockdev,
        "-device",
        "ide-hd,drive=probe,bootindex=1",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let tcg = boot(
        qemu,
        workdir,
        Accel::Tcg,
        &sector_args,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| format!("the probe does not even boot under TCG: {e}"))?;
    if tcg.status != Some(PROBE_EXIT) || !tcg.serial.contains(PROBE_MARKER) {
        return Err(format!("the probe misbehaved under TCG: {tcg:?}"));
    }
    let limit = (tcg.elapsed.mul_f64(1.5) + Duration::from_millis(200)).max(Duration::from_secs(1));
    let kvm = boot(qemu, workdir, Accel::Kvm, &sector_args, limit)
        .await
        .map_err(|e| {
            format!(
                "KVM: the probe sector did not finish within {:.2} s (TCG took {:.2} s): {e}",
                limit.as_secs_f64(),
                tcg.elapsed.as_secs_f64()
            )
        })?;
    if kvm.status != Some(PROBE_EXIT) || !kvm.serial.contains(PROBE_MARKER) {
        return Err(format!(
            "KVM: the probe sector ended with {:?}, serial {:?}: {}",
            kvm.status,
            kvm.serial.trim(),
            kvm.stderr.trim()
        ));
    }
    let mut detail = format!(
        "probe sector: KVM {:.2} s, TCG {:.2} s",
        kvm.elapsed.as_secs_f64(),
        tcg.elapsed.as_secs_f64()
    );
    let Some(kernel) = kernel else {
        detail.push_str("; no Linux kernel found for a full boot check");
        return Ok(detail);
    };
    let kernel_args: Vec<String> = vec![
        "-kernel".into(),
        kernel.to_string_lossy().into_owned(),
        "-append".into(),
        "console=ttyS0 panic=-1 loglevel=1".into(),
    ];
    let k = boot(qemu, workdir, Accel::Kvm, &kernel_args, kernel_timeout)
        .await
        .map_err(|e| {
            format!(
                "KVM: {} did not boot within {:.0} s ({detail}): {e}",
                kernel.display(),
                kernel_timeout.as_secs_f64()
            )
        })?;
    if !k.serial.contains("Kernel panic") {
        return Err(format!(
            "KVM: {} ended ({:?}) before its root-mount panic: {}",
            kernel.display(),
            k.status,
            k.stderr.trim()
        ));
    }
    detail.push_str(&format!(
        "; {} booted to its root-mount panic in {:.2} s",
        kernel.display(),
        k.elapsed.as_secs_f64()
    ));
    Ok(detail)
}

#[derive(Debug)]
struct Boot {
    status: Option<i32>,
    elapsed: Duration,
    serial: String,
    stderr: String,
}

/// Runs a throw-away VM until it exits by itself or `limit` passes.
async fn boot(
    qemu: &Path,
    workdir: &Path,
    accel: Accel,
    extra: &[String],
    limit: Duration,
) -> Result<Boot, String> {
    let serial = workdir.join(format!("serial-{}.log", accel.as_str()));
    let _ = tokio::fs::remove_file(&serial).await;
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", accel.as_str(), "-machine", "pc", "-m", "128"]);
    if accel == Accel::Kvm {
        cmd.args(["-cpu", "host"]);
    }
    cmd.args([
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ])
    .args(extra)
    .arg("-chardev")
    .arg(format!("file,id=s0,path={}", serial.to_string_lossy()))
    .args(["-device", "isa-serial,chardev=s0"])
    .env_clear()
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("run {}: {e}", qemu.display()))?;
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .map_err(|_| format!("no exit after {:.2} s", limit.as_secs_f64()))?
        .map_err(|e| format!("wait: {e}"))?;
    let elapsed = start.elapsed();
    Ok(Boot {
        status: out.status.code(),
        elapsed,
        serial: tokio::fs::read_to_string(&serial).await.unwrap_or_default(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
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
        let text = String::from_utf8_lossy(&s[..510]);
        assert!(text.contains(" OXISTACK-PROBE-OK\r\n"));
    }

    /// The embedded bytes are `probe.S` assembled (when binutils exist).
    #[test]
    fn boot_sector_matches_its_source() {
        let Some(as_) = crate::hypervisor::qemu::tools::which("as") else {
            eprintln!("no GNU as: not checked");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/hypervisor/qemu/probe.S");
        let (o, elf, bin) = (
            dir.path().join("p.o"),
            dir.path().join("p.elf"),
            dir.path().join("p.bin"),
        );
        let run = |prog: &Path, args: &[&std::ffi::OsStr]| {
            let st = std::process::Command::new(prog)
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "{} failed", prog.display());
        };
        run(
            &as_,
            &[
                "--64".as_ref(),
                "-o".as_ref(),
                o.as_os_str(),
                src.as_os_str(),
            ],
        );
        run(
            Path::new("ld"),
            &[
                "-m".as_ref(),
                "elf_x86_64".as_ref(),
                "-Ttext".as_ref(),
                "0x7c00".as_ref(),
                "-e".as_ref(),
                "_start".as_ref(),
                "-o".as_ref(),
                elf.as_os_str(),
                o.as_os_str(),
            ],
        );
        run(
            Path::new("objcopy"),
            &[
                "-O".as_ref(),
                "binary".as_ref(),
                "-j".as_ref(),
                ".text".as_ref(),
                elf.as_os_str(),
                bin.as_os_str(),
            ],
        );
        let built = std::fs::read(&bin).unwrap();
        assert_eq!(built, boot_sector()[..512].to_vec());
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
            parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"),
            Some((7, 2, 22))
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
