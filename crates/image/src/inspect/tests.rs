//! Inspector tests: hand-built headers for the refusals, and images made by
//! `qemu-img` (from Debian's qemu-utils, which the test command installs)
//! for detection and virtual sizes, fed in chunks of several sizes.

use super::*;

fn rules(declared: &str) -> Rules {
    Rules {
        declared: declared.into(),
        require_match: true,
        vmdk_allowed: vec!["streamOptimized".into(), "monolithicSparse".into()],
    }
}

fn inspect(declared: &str, data: &[u8], chunk: usize) -> Result<Outcome, InspectError> {
    let mut i = Inspector::new(rules(declared));
    for c in data.chunks(chunk.max(1)) {
        i.feed(c)?;
    }
    i.finish()
}

/// Runs with several chunkings; all must agree.
fn check(declared: &str, data: &[u8]) -> Result<Outcome, InspectError> {
    let first = inspect(declared, data, 1 << 20);
    for chunk in [512, 4096, 65_536 + 17, 300_000] {
        assert_eq!(inspect(declared, data, chunk), first, "chunk size {chunk}");
    }
    first
}

fn qcow2_header(version: u32, backing: u64, incompatible: u64) -> Vec<u8> {
    let mut h = vec![0u8; 4096];
    h[0..4].copy_from_slice(b"QFI\xfb");
    h[4..8].copy_from_slice(&version.to_be_bytes());
    h[8..16].copy_from_slice(&backing.to_be_bytes());
    h[20..24].copy_from_slice(&16u32.to_be_bytes());
    h[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
    if version == 3 {
        h[72..80].copy_from_slice(&incompatible.to_be_bytes());
        h[96..100].copy_from_slice(&4u32.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
    }
    h
}

#[test]
fn qcow2_headers() {
    let ok = check("qcow2", &qcow2_header(3, 0, 0)).unwrap();
    assert_eq!(ok.format, Format::Qcow2);
    assert_eq!(ok.virtual_size, Some(1 << 30));
    assert!(check("qcow2", &qcow2_header(2, 0, 0)).is_ok());
    // A backing file is refused, in either version, whatever is declared.
    for v in [2, 3] {
        let e = check("qcow2", &qcow2_header(v, 4096, 0)).unwrap_err();
        assert!(matches!(e, InspectError::Unsafe(_)), "{e}");
    }
    // External data file (incompatible feature bit 2) and unknown features.
    let e = check("qcow2", &qcow2_header(3, 0, 1 << 2)).unwrap_err();
    assert!(e.to_string().contains("external data file"), "{e}");
    let e = check("qcow2", &qcow2_header(3, 0, 1 << 9)).unwrap_err();
    assert!(matches!(e, InspectError::Unsafe(_)), "{e}");
    // The data-file header extension alone is refused too.
    let mut h = qcow2_header(3, 0, 0);
    h[112..116].copy_from_slice(&0x4441_5441u32.to_be_bytes());
    h[116..120].copy_from_slice(&8u32.to_be_bytes());
    h[120..128].copy_from_slice(b"data.raw");
    assert!(matches!(
        check("qcow2", &h).unwrap_err(),
        InspectError::Unsafe(_)
    ));
    // Nonsense after the magic is not a qcow2.
    let mut h = qcow2_header(3, 0, 0);
    h[20..24].copy_from_slice(&40u32.to_be_bytes());
    assert!(matches!(
        check("qcow2", &h).unwrap_err(),
        InspectError::Invalid(_)
    ));
}

#[test]
fn refusals_come_as_soon_as_the_header_arrives() {
    // A qcow2 with a backing file followed by lots of data: the error comes
    // from the first chunk, before the rest is fed.
    let mut i = Inspector::new(rules("qcow2"));
    let mut h = qcow2_header(3, 4096, 0);
    h.resize(HEAD_LEN as usize, 0);
    assert!(i.feed(&h).is_err());
    // Declared qcow2, but the first 64 KiB are plain data.
    let mut i = Inspector::new(rules("qcow2"));
    assert!(matches!(
        i.feed(&vec![0u8; HEAD_LEN as usize]),
        Err(InspectError::Mismatch { .. })
    ));
    // Declared raw, but it is a qcow2.
    let mut i = Inspector::new(rules("raw"));
    assert!(i.feed(&qcow2_header(3, 0, 0)).is_ok());
    assert!(matches!(
        i.feed(&vec![0u8; HEAD_LEN as usize]),
        Err(InspectError::Mismatch { .. })
    ));
}

#[test]
fn raw_iso_and_others() {
    let data = vec![7u8; 200_000];
    let o = check("raw", &data).unwrap();
    assert_eq!((o.format, o.virtual_size), (Format::Raw, Some(200_000)));
    // A short upload is inspected at the end.
    assert_eq!(check("raw", b"hello").unwrap().virtual_size, Some(5));
    assert!(matches!(
        check("qcow2", b"hello").unwrap_err(),
        InspectError::Mismatch { .. }
    ));
    assert!(check("iso", &data).is_err());
    // Formats nothing inspects accept anything that is not a container.
    assert!(check("ami", &data).is_ok());
    assert!(check("ploop", &qcow2_header(3, 0, 0)).is_err());
    // An ISO 9660 primary volume descriptor.
    let mut iso = vec![0u8; 40 * 2048];
    iso[0x8000] = 1;
    iso[0x8001..0x8006].copy_from_slice(b"CD001");
    iso[0x8000 + 80..0x8000 + 84].copy_from_slice(&40u32.to_le_bytes());
    iso[0x8000 + 128..0x8000 + 130].copy_from_slice(&2048u16.to_le_bytes());
    let o = check("iso", &iso).unwrap();
    assert_eq!((o.format, o.virtual_size), (Format::Iso, Some(40 * 2048)));
    // An ISO may be uploaded as raw.
    assert_eq!(check("raw", &iso).unwrap().format, Format::Iso);
    // Not matching is allowed when the operator says so, but unsafe never is.
    let mut lax = rules("qcow2");
    lax.require_match = false;
    let mut i = Inspector::new(lax);
    i.feed(&data).unwrap();
    assert!(i.finish().is_ok());
    let mut h = qcow2_header(3, 512, 0);
    h.resize(HEAD_LEN as usize, 0);
    let mut i = Inspector::new(Rules {
        declared: "raw".into(),
        require_match: false,
        vmdk_allowed: vec![],
    });
    assert!(matches!(i.feed(&h), Err(InspectError::Unsafe(_))));
}

#[test]
fn vhd_footers_and_differencing_disks() {
    let footer = |disk_type: u32| {
        let mut f = vec![0u8; 512];
        f[0..8].copy_from_slice(b"conectix");
        f[48..56].copy_from_slice(&(1u64 << 20).to_be_bytes());
        f[60..64].copy_from_slice(&disk_type.to_be_bytes());
        f
    };
    // Fixed: data then footer.
    let mut fixed = vec![1u8; 1 << 20];
    fixed.extend(footer(2));
    let o = check("vhd", &fixed).unwrap();
    assert_eq!(
        (o.format, o.virtual_size),
        (Format::VhdFixed, Some(1 << 20))
    );
    assert!(check("raw", &fixed).is_ok());
    // Dynamic: a footer copy first.
    let mut dynamic = footer(3);
    dynamic.resize(200_000, 0);
    assert_eq!(check("vhd", &dynamic).unwrap().format, Format::Vhd);
    assert!(check("raw", &dynamic).is_err());
    let mut diff = footer(4);
    diff.resize(200_000, 0);
    assert!(matches!(
        check("vhd", &diff).unwrap_err(),
        InspectError::Unsafe(_)
    ));
}

fn vmdk_with(descriptor: &str) -> Vec<u8> {
    let mut h = vec![0u8; 512 * 40];
    h[0..4].copy_from_slice(b"KDMV");
    h[4..8].copy_from_slice(&1u32.to_le_bytes());
    h[12..20].copy_from_slice(&2048u64.to_le_bytes());
    h[20..28].copy_from_slice(&128u64.to_le_bytes());
    h[28..36].copy_from_slice(&1u64.to_le_bytes());
    h[36..44].copy_from_slice(&20u64.to_le_bytes());
    h[512..512 + descriptor.len()].copy_from_slice(descriptor.as_bytes());
    h
}

#[test]
fn vmdk_descriptors() {
    let good = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
                createType=\"monolithicSparse\"\n\nRW 2048 SPARSE \"disk.vmdk\"\n";
    let o = check("vmdk", &vmdk_with(good)).unwrap();
    assert_eq!((o.format, o.virtual_size), (Format::Vmdk, Some(2048 * 512)));
    for bad in [
        good.replace("monolithicSparse", "monolithicFlat"),
        good.replace("SPARSE", "FLAT"),
        good.replace("parentCID=ffffffff", "parentCID=12345678"),
        format!("{good}parentFileNameHint=\"/etc/shadow\"\n"),
        format!("{good}RW 2048 SPARSE \"other.vmdk\"\n"),
    ] {
        let e = check("vmdk", &vmdk_with(&bad)).unwrap_err();
        assert!(matches!(e, InspectError::Unsafe(_)), "{bad}: {e}");
    }
    // The descriptor may lie beyond the head.
    let mut far = vmdk_with("");
    far[28..36].copy_from_slice(&200u64.to_le_bytes());
    far.resize(200 * 512, 0);
    far.extend_from_slice(good.as_bytes());
    far.resize(260 * 512, 0);
    assert_eq!(check("vmdk", &far).unwrap().format, Format::Vmdk);
}

// ---------------------------------------------------------------- qemu-img

fn qemu_img(args: &[&str]) {
    let out = std::process::Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (Debian package qemu-utils) is needed by these tests");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn made_by_qemu(fmt: &str, opts: &[&str], size: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("img.{fmt}"));
    let p = path.to_str().unwrap();
    let mut args = vec!["create", "-q", "-f", fmt];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[p, size]);
    qemu_img(&args);
    std::fs::read(&path).unwrap()
}

#[test]
fn images_made_by_qemu_img() {
    let mib = 1u64 << 20;
    for (fmt, opts, name, format, vsize) in [
        ("qcow2", &[][..], "qcow2", Format::Qcow2, 64 * mib),
        ("vmdk", &[][..], "vmdk", Format::Vmdk, 64 * mib),
        (
            "vmdk",
            &["-o", "subformat=streamOptimized"][..],
            "vmdk",
            Format::Vmdk,
            64 * mib,
        ),
        ("vhdx", &[][..], "vhdx", Format::Vhdx, 64 * mib),
        ("vdi", &[][..], "vdi", Format::Vdi, 64 * mib),
        ("vpc", &[][..], "vhd", Format::Vhd, 0),
        (
            "vpc",
            &["-o", "subformat=fixed,force_size=on"][..],
            "vhd",
            Format::VhdFixed,
            64 * mib,
        ),
    ] {
        let data = made_by_qemu(fmt, opts, "64M");
        let o = check(name, &data).unwrap_or_else(|e| panic!("{fmt} {opts:?}: {e}"));
        assert_eq!(o.format, format, "{fmt} {opts:?}");
        if vsize > 0 {
            assert_eq!(o.virtual_size, Some(vsize), "{fmt} {opts:?}");
        } else {
            // VHD rounds to its CHS geometry.
            assert!(o.virtual_size.unwrap() >= 63 * mib, "{o:?}");
        }
        // And refused under another container name.
        let other = if name == "qcow2" { "vmdk" } else { "qcow2" };
        assert!(check(other, &data).is_err(), "{fmt} as {other}");
    }
    // monolithicFlat puts the data in another file: its descriptor alone is
    // plain text, which is not a vmdk.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("flat.vmdk");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "vmdk",
        "-o",
        "subformat=monolithicFlat",
        p.to_str().unwrap(),
        "1M",
    ]);
    let data = std::fs::read(&p).unwrap();
    assert!(matches!(
        check("vmdk", &data).unwrap_err(),
        InspectError::Mismatch { .. }
    ));
    // A real qcow2 overlay with a backing file, and one with a data file.
    let base = dir.path().join("base.qcow2");
    let over = dir.path().join("over.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "1M"]);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        over.to_str().unwrap(),
    ]);
    let e = check("qcow2", &std::fs::read(&over).unwrap()).unwrap_err();
    assert!(e.to_string().contains("backing file"), "{e}");
    let ext = dir.path().join("ext.qcow2");
    let raw = dir.path().join("ext.raw");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", raw.display()),
        ext.to_str().unwrap(),
        "1M",
    ]);
    let e = check("qcow2", &std::fs::read(&ext).unwrap()).unwrap_err();
    assert!(e.to_string().contains("external data file"), "{e}");
}

/// Garbage after every magic the inspector knows, in odd chunkings, with
/// offsets pointing anywhere: never a panic, always an answer.
#[test]
fn garbage_never_panics() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let magics: [&[u8]; 5] = [b"QFI\xfb", b"KDMV", b"vhdxfile", b"conectix", b""];
    for round in 0..200 {
        let len = (next() % 400_000) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let magic = magics[round % magics.len()];
        if data.len() >= magic.len() {
            data[..magic.len()].copy_from_slice(magic);
        }
        if round % 7 == 0 && data.len() > 0x8006 {
            data[0x8000] = 1;
            data[0x8001..0x8006].copy_from_slice(b"CD001");
        }
        if round % 5 == 0 && data.len() > 0x50 {
            data[0x40..0x44].copy_from_slice(&0xbeda_107fu32.to_le_bytes());
        }
        for declared in [
            "raw", "qcow2", "vmdk", "vhdx", "vhd", "iso", "vdi", "ami", "",
        ] {
            let mut i = Inspector::new(rules(declared));
            let mut rest = &data[..];
            let mut ok = true;
            while !rest.is_empty() {
                let n = ((next() % 200_000) as usize + 1).min(rest.len());
                if i.feed(&rest[..n]).is_err() {
                    ok = false;
                    break;
                }
                rest = &rest[n..];
            }
            if ok {
                let _ = i.finish();
            }
        }
    }
}
