//! Per-format detection, safety checks and virtual sizes.
//!
//! Written from the published specifications: QEMU's qcow2 format document,
//! VMware's Virtual Disk Format 1.1, Microsoft's VHD and VHDX specifications,
//! VirtualBox's VDI header layout and ECMA-119 (ISO 9660).

use super::{Capture, InspectError, Rules, MAX_CAPTURE};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Qcow2,
    Vmdk,
    /// A dynamic (or differencing) VHD: a footer copy at the start.
    Vhd,
    /// A fixed VHD: raw data followed by a footer.
    VhdFixed,
    Vhdx,
    Vdi,
    Iso,
}

impl Format {
    /// The `disk_format` name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
            Format::Vmdk => "vmdk",
            Format::Vhd | Format::VhdFixed => "vhd",
            Format::Vhdx => "vhdx",
            Format::Vdi => "vdi",
            Format::Iso => "iso",
        }
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

fn invalid(msg: &str) -> InspectError {
    InspectError::Invalid(msg.to_string())
}

fn truncated(what: &str) -> InspectError {
    InspectError::Invalid(format!("{what} is truncated"))
}

const QCOW2_MAGIC: &[u8] = b"QFI\xfb";
const VMDK_MAGIC: &[u8] = b"KDMV";
const VHD_COOKIE: &[u8] = b"conectix";
const VHDX_SIGNATURE: &[u8] = b"vhdxfile";
const VDI_SIGNATURE: u32 = 0xbeda_107f;
const ISO_PVD: usize = 0x8000;

// VHDX GUIDs as stored on disk (first three fields little-endian).
const VHDX_REGION_METADATA: [u8; 16] = [
    0x06, 0xa2, 0x7c, 0x8b, 0x90, 0x47, 0x9a, 0x4b, 0xb8, 0xfe, 0x57, 0x5f, 0x05, 0x0f, 0x88, 0x6e,
];
const VHDX_META_VIRTUAL_DISK_SIZE: [u8; 16] = [
    0x24, 0x42, 0xa5, 0x2f, 0x1b, 0xcd, 0x76, 0x48, 0xb2, 0x11, 0x5d, 0xbe, 0xd8, 0x3b, 0xf4, 0xb8,
];
const VHDX_META_PARENT_LOCATOR: [u8; 16] = [
    0x2d, 0x5f, 0xd3, 0xa8, 0x0b, 0xb3, 0x4d, 0x45, 0xab, 0xf7, 0xd3, 0xd8, 0x48, 0x34, 0xab, 0x0c,
];
const VHDX_REGION_TABLE: u64 = 192 * 1024;

/// Inspection state once the head has been seen.
pub(super) enum State {
    Raw,
    Iso {
        virtual_size: u64,
    },
    Qcow2 {
        virtual_size: u64,
    },
    Vhd {
        virtual_size: u64,
    },
    Vdi {
        virtual_size: u64,
    },
    Vmdk {
        virtual_size: u64,
        descriptor: Capture,
        checked: bool,
    },
    Vhdx(Box<Vhdx>),
}

pub(super) struct Vhdx {
    regions: Capture,
    metadata: Option<Capture>,
    size_item: Option<Capture>,
    virtual_size: Option<u64>,
}

impl State {
    pub fn format(&self) -> Format {
        match self {
            State::Raw => Format::Raw,
            State::Iso { .. } => Format::Iso,
            State::Qcow2 { .. } => Format::Qcow2,
            State::Vhd { .. } => Format::Vhd,
            State::Vdi { .. } => Format::Vdi,
            State::Vmdk { .. } => Format::Vmdk,
            State::Vhdx(_) => Format::Vhdx,
        }
    }

    /// Detects the format from the first bytes (`head`, all of the stream
    /// when it is shorter than the head) and checks what the head shows.
    pub fn detect(head: &[u8], pos: u64, rules: &Rules) -> Result<State, InspectError> {
        if head.starts_with(QCOW2_MAGIC) {
            return qcow2(head);
        }
        if head.starts_with(VHDX_SIGNATURE) {
            let mut regions = Capture::new(VHDX_REGION_TABLE, 64 * 1024);
            prefill(&mut regions, head, pos)?;
            return Ok(State::Vhdx(Box::new(Vhdx {
                regions,
                metadata: None,
                size_item: None,
                virtual_size: None,
            })));
        }
        if head.starts_with(VMDK_MAGIC) {
            return vmdk(head, pos, rules);
        }
        if le32(head, 0x40) == Some(VDI_SIGNATURE) {
            return vdi(head);
        }
        if head.starts_with(VHD_COOKIE) {
            return vhd_footer(head).map(|virtual_size| State::Vhd { virtual_size });
        }
        if head.get(ISO_PVD) == Some(&1) && head.get(ISO_PVD + 1..ISO_PVD + 6) == Some(b"CD001") {
            let blocks = le32(head, ISO_PVD + 80).unwrap_or(0) as u64;
            let block_size = le16(head, ISO_PVD + 128).unwrap_or(0) as u64;
            return Ok(State::Iso {
                virtual_size: blocks * block_size,
            });
        }
        Ok(State::Raw)
    }

    pub fn feed(&mut self, pos: u64, piece: &[u8]) {
        match self {
            State::Vmdk { descriptor, .. } => descriptor.feed(pos, piece),
            State::Vhdx(v) => {
                v.regions.feed(pos, piece);
                if let Some(m) = &mut v.metadata {
                    m.feed(pos, piece);
                }
                if let Some(s) = &mut v.size_item {
                    s.feed(pos, piece);
                }
            }
            _ => {}
        }
    }

    /// The end of the next region still being captured.
    pub fn next_end(&self, pos: u64) -> Option<u64> {
        let ends: Vec<u64> = match self {
            State::Vmdk { descriptor, .. } if !descriptor.done() => vec![descriptor.end()],
            State::Vhdx(v) => [Some(&v.regions), v.metadata.as_ref(), v.size_item.as_ref()]
                .into_iter()
                .flatten()
                .filter(|c| !c.done())
                .map(|c| c.end())
                .collect(),
            _ => Vec::new(),
        };
        ends.into_iter().filter(|e| *e > pos).min()
    }

    /// Parses regions that have completed; may ask for more regions.
    pub fn progress(
        &mut self,
        pos: u64,
        head: &Capture,
        rules: &Rules,
    ) -> Result<(), InspectError> {
        match self {
            State::Vmdk {
                descriptor,
                checked,
                ..
            } if !*checked && descriptor.done() => {
                vmdk_descriptor(&descriptor.buf, rules)?;
                *checked = true;
            }
            State::Vhdx(v) => v.progress(pos, head)?,
            _ => {}
        }
        Ok(())
    }

    /// Concludes at the end of the stream of `len` bytes.
    pub fn finish(self, len: u64, tail: &[u8]) -> Result<(Format, Option<u64>), InspectError> {
        Ok(match self {
            State::Raw => {
                // A fixed VHD is raw data with a footer in its last sector.
                if len >= 1024 && tail.len() == 512 && tail.starts_with(VHD_COOKIE) {
                    let size = vhd_footer(tail)?;
                    (Format::VhdFixed, Some(size))
                } else {
                    (Format::Raw, Some(len))
                }
            }
            State::Iso { virtual_size } => (Format::Iso, Some(virtual_size)),
            State::Qcow2 { virtual_size } => (Format::Qcow2, Some(virtual_size)),
            State::Vhd { virtual_size } => (Format::Vhd, Some(virtual_size)),
            State::Vdi { virtual_size } => (Format::Vdi, Some(virtual_size)),
            State::Vmdk {
                virtual_size,
                checked,
                ..
            } => {
                if !checked {
                    return Err(truncated("VMDK descriptor"));
                }
                (Format::Vmdk, Some(virtual_size))
            }
            State::Vhdx(v) => match v.virtual_size {
                Some(s) => (Format::Vhdx, Some(s)),
                None => return Err(truncated("VHDX metadata")),
            },
        })
    }
}

/// Fills a new region from the head; the rest must still be ahead in the
/// stream (`pos` is how far it has gone).
fn prefill(c: &mut Capture, head: &[u8], pos: u64) -> Result<(), InspectError> {
    c.feed(0, head);
    if !c.done() && c.offset.saturating_add(c.buf.len() as u64) < pos {
        return Err(InspectError::Invalid(format!(
            "a structure at offset {} comes after data that points to it",
            c.offset
        )));
    }
    Ok(())
}

/// qcow2: version, header sanity, and nothing that points outside the file.
fn qcow2(h: &[u8]) -> Result<State, InspectError> {
    let version = be32(h, 4).ok_or_else(|| truncated("qcow2 header"))?;
    if version != 2 && version != 3 {
        return Err(InspectError::Invalid(format!(
            "unsupported qcow2 version {version}"
        )));
    }
    let backing_offset = be64(h, 8).ok_or_else(|| truncated("qcow2 header"))?;
    let cluster_bits = be32(h, 20).ok_or_else(|| truncated("qcow2 header"))?;
    let size = be64(h, 24).ok_or_else(|| truncated("qcow2 header"))?;
    if !(9..=21).contains(&cluster_bits) {
        return Err(invalid("qcow2 cluster size is out of range"));
    }
    if backing_offset != 0 {
        return Err(InspectError::Unsafe(
            "a qcow2 image may not name a backing file".into(),
        ));
    }
    let mut ext_start = 72usize;
    if version == 3 {
        let incompatible = be64(h, 72).ok_or_else(|| truncated("qcow2 header"))?;
        // Bit 2: the data is in an external file.
        if incompatible & (1 << 2) != 0 {
            return Err(InspectError::Unsafe(
                "a qcow2 image may not use an external data file".into(),
            ));
        }
        // Bits 0-4 are defined (dirty, corrupt, external data, compression
        // type, extended L2); anything else is a feature nobody here knows.
        if incompatible & !0x1f != 0 {
            return Err(InspectError::Unsafe(format!(
                "qcow2 image uses unknown incompatible features {incompatible:#x}"
            )));
        }
        if incompatible & (1 << 1) != 0 {
            return Err(InspectError::Unsafe("qcow2 image is marked corrupt".into()));
        }
        let header_len = be32(h, 100).ok_or_else(|| truncated("qcow2 header"))? as usize;
        if header_len < 104 {
            return Err(invalid("qcow2 header length is too small"));
        }
        ext_start = header_len.next_multiple_of(8);
    }
    // Header extensions, as far as the head goes.
    let cluster = 1usize << cluster_bits;
    let mut at = ext_start;
    while at + 8 <= h.len() && at + 8 <= cluster {
        let (Some(kind), Some(len)) = (be32(h, at), be32(h, at + 4)) else {
            break;
        };
        match kind {
            0 => break,
            // External data file name.
            0x4441_5441 => {
                return Err(InspectError::Unsafe(
                    "a qcow2 image may not use an external data file".into(),
                ))
            }
            // Backing file format (meaningless without a backing file).
            0xe279_2aca => {
                return Err(InspectError::Unsafe(
                    "a qcow2 image may not name a backing file".into(),
                ))
            }
            _ => {}
        }
        at = at
            .saturating_add(8)
            .saturating_add((len as usize).next_multiple_of(8));
    }
    Ok(State::Qcow2 { virtual_size: size })
}

/// VMDK hosted sparse extent header; the descriptor is checked when captured.
fn vmdk(h: &[u8], pos: u64, rules: &Rules) -> Result<State, InspectError> {
    let capacity = le64(h, 12).ok_or_else(|| truncated("VMDK header"))?;
    let desc_sector = le64(h, 28).ok_or_else(|| truncated("VMDK header"))?;
    let desc_sectors = le64(h, 36).ok_or_else(|| truncated("VMDK header"))?;
    if desc_sector == 0 || desc_sectors == 0 {
        return Err(InspectError::Unsafe(
            "a VMDK image must carry its descriptor".into(),
        ));
    }
    let offset = desc_sector
        .checked_mul(512)
        .ok_or_else(|| invalid("VMDK descriptor offset"))?;
    let want = desc_sectors
        .checked_mul(512)
        .filter(|w| *w <= MAX_CAPTURE)
        .ok_or_else(|| invalid("VMDK descriptor is too large"))?;
    let mut descriptor = Capture::new(offset, want);
    prefill(&mut descriptor, h, pos)?;
    let mut st = State::Vmdk {
        virtual_size: capacity.saturating_mul(512),
        descriptor,
        checked: false,
    };
    if let State::Vmdk {
        descriptor,
        checked,
        ..
    } = &mut st
    {
        if descriptor.done() {
            vmdk_descriptor(&descriptor.buf, rules)?;
            *checked = true;
        }
    }
    Ok(st)
}

/// The embedded descriptor: an allowed createType, one sparse extent (the
/// file itself), no parent.
fn vmdk_descriptor(buf: &[u8], rules: &Rules) -> Result<(), InspectError> {
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut create_type = None;
    let mut extents = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let k = k.trim();
            let v = v.trim().trim_matches('"');
            match k {
                "createType" => create_type = Some(v.to_string()),
                "parentFileNameHint" => {
                    return Err(InspectError::Unsafe(
                        "a VMDK image may not refer to a parent disk".into(),
                    ))
                }
                "parentCID" if !v.eq_ignore_ascii_case("ffffffff") => {
                    return Err(InspectError::Unsafe(
                        "a VMDK image may not refer to a parent disk".into(),
                    ))
                }
                _ => {}
            }
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "RW" | "RDONLY" | "NOACCESS") {
            extents.push(line.to_string());
        }
    }
    let Some(create_type) = create_type else {
        return Err(invalid("VMDK descriptor has no createType"));
    };
    if !rules.vmdk_allowed.contains(&create_type) {
        return Err(InspectError::Unsafe(format!(
            "VMDK createType {create_type} is not allowed"
        )));
    }
    if extents.len() != 1 {
        return Err(InspectError::Unsafe(
            "a VMDK image must consist of exactly one extent".into(),
        ));
    }
    let kind = extents[0].split_whitespace().nth(2).unwrap_or("");
    if kind != "SPARSE" {
        return Err(InspectError::Unsafe(format!(
            "VMDK extent type {kind} is not allowed"
        )));
    }
    Ok(())
}

/// A VHD footer (at the start of a dynamic VHD, at the end of a fixed one):
/// returns the disk size; refuses differencing disks.
fn vhd_footer(f: &[u8]) -> Result<u64, InspectError> {
    let size = be64(f, 48).ok_or_else(|| truncated("VHD footer"))?;
    let disk_type = be32(f, 60).ok_or_else(|| truncated("VHD footer"))?;
    match disk_type {
        2 | 3 => Ok(size),
        4 => Err(InspectError::Unsafe(
            "a differencing VHD (with a parent disk) is not allowed".into(),
        )),
        t => Err(InspectError::Invalid(format!("unknown VHD disk type {t}"))),
    }
}

/// VDI header: refuses differencing images.
fn vdi(h: &[u8]) -> Result<State, InspectError> {
    let image_type = le32(h, 0x4c).ok_or_else(|| truncated("VDI header"))?;
    match image_type {
        1 | 2 => {}
        3 | 4 => {
            return Err(InspectError::Unsafe(
                "a differencing VDI (with a parent disk) is not allowed".into(),
            ))
        }
        t => return Err(InspectError::Invalid(format!("unknown VDI image type {t}"))),
    }
    let size = le64(h, 0x170).ok_or_else(|| truncated("VDI header"))?;
    Ok(State::Vdi { virtual_size: size })
}

impl Vhdx {
    fn progress(&mut self, pos: u64, head: &Capture) -> Result<(), InspectError> {
        if self.metadata.is_none() && self.regions.done() {
            let r = &self.regions.buf;
            if r.get(0..4) != Some(b"regi") {
                return Err(invalid("VHDX region table signature"));
            }
            let count = le32(r, 8).unwrap_or(0) as usize;
            if count > 2047 {
                return Err(invalid("VHDX region table entry count"));
            }
            let mut found = None;
            for i in 0..count {
                let e = 16 + i * 32;
                if r.get(e..e + 16) == Some(&VHDX_REGION_METADATA[..]) {
                    let off = le64(r, e + 16).ok_or_else(|| truncated("VHDX region table"))?;
                    let len = le32(r, e + 24).ok_or_else(|| truncated("VHDX region table"))?;
                    found = Some((off, len as u64));
                }
            }
            let Some((off, _len)) = found else {
                return Err(invalid("VHDX has no metadata region"));
            };
            // The table of contents: 32-byte header and up to 2047 entries.
            let mut c = Capture::new(off, 64 * 1024);
            prefill(&mut c, &head.buf, pos)?;
            self.metadata = Some(c);
        }
        if self.size_item.is_none() {
            if let Some(m) = &self.metadata {
                if m.done() {
                    let t = &m.buf;
                    if t.get(0..8) != Some(b"metadata") {
                        return Err(invalid("VHDX metadata table signature"));
                    }
                    let count = le16(t, 10).unwrap_or(0) as usize;
                    let mut item = None;
                    for i in 0..count.min(2047) {
                        let e = 32 + i * 32;
                        let id = t.get(e..e + 16);
                        if id == Some(&VHDX_META_PARENT_LOCATOR[..]) {
                            return Err(InspectError::Unsafe(
                                "a differencing VHDX (with a parent disk) is not allowed".into(),
                            ));
                        }
                        if id == Some(&VHDX_META_VIRTUAL_DISK_SIZE[..]) {
                            let off = le32(t, e + 16).unwrap_or(0) as u64;
                            item = Some(m.offset.saturating_add(off));
                        }
                    }
                    let Some(at) = item else {
                        return Err(invalid("VHDX metadata has no virtual disk size"));
                    };
                    let mut c = Capture::new(at, 8);
                    c.feed(m.offset, &m.buf);
                    prefill(&mut c, &head.buf, pos)?;
                    self.size_item = Some(c);
                }
            }
        }
        if self.virtual_size.is_none() {
            if let Some(s) = &self.size_item {
                if s.done() {
                    self.virtual_size = le64(&s.buf, 0);
                }
            }
        }
        Ok(())
    }
}
