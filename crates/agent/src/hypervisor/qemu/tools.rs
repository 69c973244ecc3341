//! The helper programs: qemu-img (overlays, resize, convert, info) and
//! genisoimage/xorriso (config drives). Each runs with an argument vector,
//! no shell, a time limit, and is killed if the caller goes away.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::hypervisor::{ConfigDrive, DiskFormat, Error, ImageSource, Result};

const INFO_TIMEOUT: Duration = Duration::from_secs(30);
const CREATE_TIMEOUT: Duration = Duration::from_secs(60);
const CONVERT_TIMEOUT: Duration = Duration::from_secs(3600);

/// Finds `name` in `PATH` (or takes it as given when it has a slash).
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return is_executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[derive(Debug, Clone)]
pub(crate) enum IsoTool {
    Genisoimage(PathBuf),
    Xorriso(PathBuf),
}

impl IsoTool {
    pub fn find() -> Option<IsoTool> {
        which("genisoimage")
            .map(IsoTool::Genisoimage)
            .or_else(|| which("xorriso").map(IsoTool::Xorriso))
    }
}

/// Runs a program to completion; non-zero exit is an error carrying the
/// end of its stderr.
pub(crate) async fn run<I, S>(program: &Path, args: I, timeout: Duration) -> Result<Vec<u8>>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| Error::Timeout(format!("{name} ran longer than {timeout:?}")))?
        .map_err(|e| Error::io(format!("run {}", program.display()), e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        let tail: String = err
            .char_indices()
            .rev()
            .nth(500)
            .map(|(i, _)| err[i..].to_string())
            .unwrap_or_else(|| err.to_string());
        return Err(Error::Tool {
            program: name,
            message: format!("{}: {tail}", out.status),
        });
    }
    Ok(out.stdout)
}

/// What `qemu-img info` says about a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
    pub actual_size: u64,
    pub backing_file: Option<String>,
    pub data_file: Option<String>,
}

pub(crate) fn parse_info(json: &[u8]) -> Result<ImageInfo> {
    let v: Value = serde_json::from_slice(json).map_err(|e| Error::Tool {
        program: "qemu-img".into(),
        message: format!("unreadable info output: {e}"),
    })?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Ok(ImageInfo {
        format: s("format").unwrap_or_default(),
        virtual_size: v["virtual-size"].as_u64().unwrap_or(0),
        actual_size: v["actual-size"].as_u64().unwrap_or(0),
        backing_file: s("backing-filename"),
        data_file: v["format-specific"]["data"]["data-file"]
            .as_str()
            .map(str::to_string),
    })
}

#[derive(Debug, Clone)]
pub(crate) struct QemuImg {
    pub path: PathBuf,
    /// Checked base images, by path and the file's identity (device,
    /// inode, size, modification time): cached bases are never written, so
    /// two `qemu-img info` runs per server are needed only once per image.
    pub checked: std::sync::Arc<std::sync::Mutex<HashMap<(PathBuf, FileStamp), ImageInfo>>>,
}

/// What tells one version of a file from another.
pub(crate) type FileStamp = (u64, u64, u64, i64, i64);

fn stamp(meta: &std::fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    (
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

impl QemuImg {
    /// `qemu-img info`, reading the file as `format` (or probing it when
    /// `None`).
    pub async fn info(
        &self,
        file: &Path,
        format: Option<DiskFormat>,
        force_share: bool,
    ) -> Result<ImageInfo> {
        let mut args: Vec<&OsStr> = vec!["info".as_ref(), "--output=json".as_ref()];
        if let Some(f) = format {
            args.push(OsStr::new("-f"));
            args.push(OsStr::new(f.as_str()));
        }
        if force_share {
            args.push("-U".as_ref());
        }
        args.push(file.as_os_str());
        parse_info(&run(&self.path, args, INFO_TIMEOUT).await?)
    }

    /// Checks that an image is what it claims to be and stands alone: the
    /// declared format matches what the bytes say (a raw image holding a
    /// qcow2 header would otherwise be opened as qcow2 later), and no
    /// backing or external data file points elsewhere on the host.
    pub async fn inspect_base(&self, image: &ImageSource) -> Result<ImageInfo> {
        let bad = |reason: String| Error::Image {
            path: image.path.clone(),
            reason,
        };
        let meta = tokio::fs::metadata(&image.path)
            .await
            .map_err(|e| bad(format!("cannot be read: {e}")))?;
        if !meta.is_file() {
            return Err(bad("is not a regular file".into()));
        }
        let key = (image.path.clone(), stamp(&meta));
        let known = self.checked.lock().ok().and_then(|m| m.get(&key).cloned());
        if let Some(info) = known.filter(|i| i.format == image.format.as_str()) {
            return Ok(info);
        }
        let probed = self.info(&image.path, None, true).await?;
        if probed.format != image.format.as_str() {
            return Err(bad(format!(
                "is {} but was declared {}",
                probed.format,
                image.format.as_str()
            )));
        }
        let info = self.info(&image.path, Some(image.format), true).await?;
        if let Some(b) = info.backing_file {
            return Err(bad(format!("has a backing file ({b})")));
        }
        if let Some(d) = info.data_file {
            return Err(bad(format!("has an external data file ({d})")));
        }
        if info.virtual_size == 0 {
            return Err(bad("has no size".into()));
        }
        if let Ok(mut m) = self.checked.lock() {
            m.insert(key, info.clone());
        }
        Ok(info)
    }

    /// A qcow2 overlay of `base` at `disk`, `size` bytes (`None`: the
    /// base's size).
    pub async fn create_overlay(
        &self,
        base: &ImageSource,
        disk: &Path,
        size: Option<u64>,
    ) -> Result<()> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "create".into(),
            "-q".into(),
            "-f".into(),
            "qcow2".into(),
            "-F".into(),
            base.format.as_str().into(),
            "-b".into(),
            base.path.clone().into(),
            disk.as_os_str().into(),
        ];
        if let Some(size) = size {
            args.push(size.to_string().into());
        }
        run(&self.path, args, CREATE_TIMEOUT).await.map(|_| ())
    }

    /// Grows a stopped server's qcow2 disk to `size` bytes.
    pub async fn resize(&self, disk: &Path, size: u64) -> Result<()> {
        run(
            &self.path,
            [
                "resize".as_ref(),
                "-q".as_ref(),
                "-f".as_ref(),
                "qcow2".as_ref(),
                disk.as_os_str(),
                size.to_string().as_ref(),
            ],
            CREATE_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    /// Flattens the disk (and its backing chain) into a standalone image.
    /// `force_share` reads a disk a paused QEMU holds open.
    pub async fn convert(
        &self,
        disk: &Path,
        dest: &Path,
        format: DiskFormat,
        force_share: bool,
    ) -> Result<()> {
        let mut args: Vec<&OsStr> = vec![
            "convert".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-O".as_ref(),
            format.as_str().as_ref(),
        ];
        if force_share {
            args.push("-U".as_ref());
        }
        args.extend([disk.as_os_str(), dest.as_os_str()]);
        run(&self.path, args, CONVERT_TIMEOUT).await.map(|_| ())
    }
}

/// Lays out the config drive's files under `staging` (OpenStack layout),
/// replacing what an earlier attempt left there. Synchronous: one blocking
/// task does it all (on a busy host every hop to the blocking pool waits
/// for a CPU).
pub(crate) fn stage_config_drive(cd: &ConfigDrive, staging: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(staging);
    let latest = staging.join("openstack").join("latest");
    std::fs::create_dir_all(&latest)
        .map_err(|e| Error::io(format!("create {}", latest.display()), e))?;
    let empty = serde_json::json!({});
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        ("meta_data.json", cd.meta_data.to_string().into_bytes()),
        (
            "network_data.json",
            cd.network_data.to_string().into_bytes(),
        ),
        (
            "vendor_data.json",
            cd.vendor_data
                .as_ref()
                .unwrap_or(&empty)
                .to_string()
                .into_bytes(),
        ),
        ("vendor_data2.json", b"{}".to_vec()),
    ];
    if let Some(ud) = &cd.user_data {
        files.push(("user_data", ud.clone()));
    }
    for (name, body) in files {
        let p = latest.join(name);
        std::fs::write(&p, body).map_err(|e| Error::io(format!("write {}", p.display()), e))?;
    }
    Ok(())
}

/// Builds the ISO9660 config drive (label `config-2`, Rock Ridge and
/// Joliet names) from a staged tree.
pub(crate) async fn make_iso(tool: &IsoTool, staging: &Path, out: &Path) -> Result<()> {
    let common: [&OsStr; 8] = [
        "-quiet".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        "-V".as_ref(),
        "config-2".as_ref(),
        "-r".as_ref(),
        "-J".as_ref(),
        staging.as_os_str(),
    ];
    match tool {
        IsoTool::Genisoimage(p) => run(p, common, CREATE_TIMEOUT).await,
        IsoTool::Xorriso(p) => {
            let args = ["-as".as_ref(), "mkisofs".as_ref()]
                .into_iter()
                .chain(common);
            run(p, args.collect::<Vec<&OsStr>>(), CREATE_TIMEOUT).await
        }
    }
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_json() {
        let i = parse_info(
            br#"{"virtual-size": 67108864, "filename": "x", "format": "qcow2", "actual-size": 13557760,
                "backing-filename": "/etc/shadow", "format-specific": {"type": "qcow2", "data": {"data-file": "/dev/sda"}}}"#,
        )
        .unwrap();
        assert_eq!(i.format, "qcow2");
        assert_eq!(i.virtual_size, 64 << 20);
        assert_eq!(i.backing_file.as_deref(), Some("/etc/shadow"));
        assert_eq!(i.data_file.as_deref(), Some("/dev/sda"));
        assert!(parse_info(b"not json").is_err());
    }

    #[test]
    fn which_finds_sh() {
        assert!(which("sh").is_some());
        assert!(which("/bin/sh").is_some());
        assert!(which("no-such-program-oxistack").is_none());
    }

    #[tokio::test]
    async fn failing_tool_reports_stderr() {
        let err = run(
            Path::new("/bin/sh"),
            ["-c", "echo boom >&2; exit 3"],
            Duration::from_secs(10),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("boom") && err.contains("sh failed"), "{err}");
        let err = run(Path::new("/bin/sleep"), ["5"], Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout(_)));
    }

    #[tokio::test]
    async fn config_drive_layout() {
        let dir = tempfile::tempdir().unwrap();
        let meta = crate::hypervisor::InstanceMetadata {
            uuid: uuid::Uuid::nil(),
            name: "vm".into(),
            hostname: "vm.novalocal".into(),
            ..Default::default()
        };
        let cd = ConfigDrive::new(&meta, Some(b"#!/bin/sh\necho hi\n".to_vec()));
        let stage = dir.path().join("stage");
        stage_config_drive(&cd, &stage).unwrap();
        let latest = stage.join("openstack/latest");
        let md: Value =
            serde_json::from_slice(&std::fs::read(latest.join("meta_data.json")).unwrap()).unwrap();
        assert_eq!(md["hostname"], "vm.novalocal");
        assert_eq!(
            std::fs::read(latest.join("user_data")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
        assert!(latest.join("network_data.json").exists());
        assert!(latest.join("vendor_data2.json").exists());
        if let Some(tool) = IsoTool::find() {
            let iso = dir.path().join("cd.iso");
            make_iso(&tool, &stage, &iso).await.unwrap();
            let bytes = std::fs::read(&iso).unwrap();
            // The volume id sits at offset 40 of the primary volume
            // descriptor (sector 16).
            assert_eq!(&bytes[16 * 2048 + 40..16 * 2048 + 48], b"config-2");
        } else {
            eprintln!("no genisoimage/xorriso: ISO not built");
        }
    }
}
