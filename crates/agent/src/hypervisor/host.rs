//! What a Linux host offers: CPUs and their features (as os-traits
//! names), memory, and the disk under the instances directory.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use super::error::{Error, Result};
use super::types::CpuInfo;

/// `/proc/cpuinfo` flag -> os-traits names. Nova's libvirt driver maps
/// libvirt's feature names to the same traits (`CPU_TRAITS_MAPPING`); the
/// kernel spells some features differently (`pni` is SSE3, `sse4_1`,
/// `pclmulqdq`, `sha_ni`, `avx512_vnni`).
const FLAG_TRAITS: &[(&str, &[&str])] = &[
    ("3dnow", &["HW_CPU_X86_3DNOW"]),
    ("abm", &["HW_CPU_X86_ABM"]),
    ("aes", &["HW_CPU_X86_AESNI"]),
    ("amx_bf16", &["HW_CPU_X86_AMXBF16"]),
    ("amx_int8", &["HW_CPU_X86_AMXINT8"]),
    ("amx_tile", &["HW_CPU_X86_AMXTILE"]),
    ("avx", &["HW_CPU_X86_AVX"]),
    ("avx2", &["HW_CPU_X86_AVX2"]),
    ("avx512bw", &["HW_CPU_X86_AVX512BW"]),
    ("avx512cd", &["HW_CPU_X86_AVX512CD"]),
    ("avx512dq", &["HW_CPU_X86_AVX512DQ"]),
    ("avx512er", &["HW_CPU_X86_AVX512ER"]),
    ("avx512f", &["HW_CPU_X86_AVX512F"]),
    ("avx512pf", &["HW_CPU_X86_AVX512PF"]),
    ("avx512vl", &["HW_CPU_X86_AVX512VL"]),
    ("avx512_vnni", &["HW_CPU_X86_AVX512VNNI"]),
    ("avx512vbmi", &["HW_CPU_X86_AVX512VBMI"]),
    ("avx512ifma", &["HW_CPU_X86_AVX512IFMA"]),
    ("avx512_vbmi2", &["HW_CPU_X86_AVX512VBMI2"]),
    ("avx512_bitalg", &["HW_CPU_X86_AVX512BITALG"]),
    ("vaes", &["HW_CPU_X86_AVX512VAES"]),
    ("gfni", &["HW_CPU_X86_AVX512GFNI"]),
    ("vpclmulqdq", &["HW_CPU_X86_AVX512VPCLMULQDQ"]),
    ("avx512_vpopcntdq", &["HW_CPU_X86_AVX512VPOPCNTDQ"]),
    ("bmi1", &["HW_CPU_X86_BMI"]),
    ("bmi2", &["HW_CPU_X86_BMI2"]),
    ("pclmulqdq", &["HW_CPU_X86_CLMUL"]),
    ("f16c", &["HW_CPU_X86_F16C"]),
    ("fma", &["HW_CPU_X86_FMA3"]),
    ("fma4", &["HW_CPU_X86_FMA4"]),
    ("mmx", &["HW_CPU_X86_MMX"]),
    ("mpx", &["HW_CPU_X86_MPX"]),
    ("sha_ni", &["HW_CPU_X86_SHA"]),
    ("sse", &["HW_CPU_X86_SSE"]),
    ("sse2", &["HW_CPU_X86_SSE2"]),
    ("pni", &["HW_CPU_X86_SSE3"]),
    ("sse4_1", &["HW_CPU_X86_SSE41"]),
    ("sse4_2", &["HW_CPU_X86_SSE42"]),
    ("sse4a", &["HW_CPU_X86_SSE4A"]),
    ("ssse3", &["HW_CPU_X86_SSSE3"]),
    ("svm", &["HW_CPU_X86_SVM", "HW_CPU_X86_AMD_SVM"]),
    ("tbm", &["HW_CPU_X86_TBM"]),
    ("vmx", &["HW_CPU_X86_VMX", "HW_CPU_X86_INTEL_VMX"]),
    ("xop", &["HW_CPU_X86_XOP"]),
    // os-traits names beyond Nova's table, from the same kernel flags.
    ("pdpe1gb", &["HW_CPU_X86_PDPE1GB"]),
    ("stibp", &["HW_CPU_X86_STIBP"]),
    ("sgx", &["HW_CPU_X86_SGX"]),
    ("rtm", &["HW_CPU_X86_TSX"]),
];

/// Vendor-specific os-traits (`HW_CPU_X86_INTEL_*`, `HW_CPU_X86_AMD_*`).
const INTEL_TRAITS: &[(&str, &str)] = &[
    ("md_clear", "HW_CPU_X86_INTEL_MD_CLEAR"),
    ("pcid", "HW_CPU_X86_INTEL_PCID"),
    ("ssbd", "HW_CPU_X86_INTEL_SSBD"),
    ("tdx_guest", "HW_CPU_X86_INTEL_TDX"),
];
const AMD_TRAITS: &[(&str, &str)] = &[
    ("sev", "HW_CPU_X86_AMD_SEV"),
    ("sev_es", "HW_CPU_X86_AMD_SEV_ES"),
    ("sev_snp", "HW_CPU_X86_AMD_SEV_SNP"),
    ("ibpb", "HW_CPU_X86_AMD_IBPB"),
    ("ssbd", "HW_CPU_X86_AMD_SSBD"),
    ("virt_ssbd", "HW_CPU_X86_AMD_VIRT_SSBD"),
];

/// What the QEMU driver supports, as os-traits capability names (what
/// Nova's drivers report through `capabilities`, limited to what is true
/// here: qcow2/raw images, virtio and IDE disks, virtio and e1000 NICs, no
/// graphics, BIOS firmware, x86_64 guests).
pub const QEMU_CAPABILITY_TRAITS: &[&str] = &[
    "COMPUTE_ARCH_X86_64",
    "COMPUTE_FIRMWARE_BIOS",
    "COMPUTE_GRAPHICS_MODEL_NONE",
    "COMPUTE_IMAGE_TYPE_QCOW2",
    "COMPUTE_IMAGE_TYPE_RAW",
    "COMPUTE_NET_VIF_MODEL_E1000",
    "COMPUTE_NET_VIF_MODEL_VIRTIO",
    "COMPUTE_STORAGE_BUS_IDE",
    "COMPUTE_STORAGE_BUS_VIRTIO",
    "HW_ARCH_X86_64",
];

/// Parses `/proc/cpuinfo` (x86 layout): the CPU and the number of logical
/// CPUs.
pub fn parse_cpuinfo(text: &str) -> (CpuInfo, u32) {
    let mut info = CpuInfo {
        arch: std::env::consts::ARCH.to_string(),
        ..CpuInfo::default()
    };
    let mut physical_ids = HashSet::new();
    let mut logical = 0u32;
    let mut cores_per_socket = 0u32;
    let mut siblings = 0u32;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => logical += 1,
            "vendor_id" if info.vendor.is_empty() => info.vendor = value.to_string(),
            "model name" if info.model.is_empty() => info.model = value.to_string(),
            "physical id" => {
                physical_ids.insert(value.to_string());
            }
            "cpu cores" if cores_per_socket == 0 => cores_per_socket = value.parse().unwrap_or(0),
            "siblings" if siblings == 0 => siblings = value.parse().unwrap_or(0),
            "flags" if info.flags.is_empty() => {
                let set: BTreeSet<&str> = value.split_whitespace().collect();
                info.flags = set.into_iter().map(str::to_string).collect();
            }
            _ => {}
        }
    }
    let logical = logical.max(1);
    info.sockets = (physical_ids.len() as u32).max(1);
    info.cores = if cores_per_socket > 0 {
        cores_per_socket
    } else {
        logical / info.sockets
    }
    .max(1);
    info.threads = if siblings > 0 && cores_per_socket > 0 {
        (siblings / cores_per_socket).max(1)
    } else {
        1
    };
    (info, logical)
}

/// The CPU traits of a host with these flags.
pub fn cpu_traits(cpu: &CpuInfo) -> BTreeSet<String> {
    let flags: HashSet<&str> = cpu.flags.iter().map(String::as_str).collect();
    let mut traits = BTreeSet::new();
    for (flag, names) in FLAG_TRAITS {
        if flags.contains(flag) {
            traits.extend(names.iter().map(|n| n.to_string()));
        }
    }
    let vendor_table = match cpu.vendor.as_str() {
        "GenuineIntel" => INTEL_TRAITS,
        "AuthenticAMD" => AMD_TRAITS,
        _ => &[],
    };
    for (flag, name) in vendor_table {
        if flags.contains(flag) {
            traits.insert(name.to_string());
        }
    }
    traits
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in MiB.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let mut total = 0;
    let mut available = None;
    let mut free = 0;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(kb)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok()))
        else {
            continue;
        };
        match key {
            "MemTotal:" => total = kb / 1024,
            "MemAvailable:" => available = Some(kb / 1024),
            "MemFree:" => free = kb / 1024,
            _ => {}
        }
    }
    (total, available.unwrap_or(free))
}

/// Total and available GiB of the file system holding `dir`.
pub fn disk_gb(dir: &Path) -> Result<(u64, u64)> {
    let st = rustix::fs::statvfs(dir)
        .map_err(|e| Error::io(format!("statvfs {}", dir.display()), e.into()))?;
    let gib = 1u64 << 30;
    Ok((
        st.f_blocks.saturating_mul(st.f_frsize) / gib,
        st.f_bavail.saturating_mul(st.f_frsize) / gib,
    ))
}

/// This machine's address as Nova guesses `my_ip`: the source address of
/// the route to a public address (no packet is sent); loopback when there
/// is no such route.
pub fn default_ip() -> std::net::IpAddr {
    let guess = || -> std::io::Result<std::net::IpAddr> {
        let s = std::net::UdpSocket::bind("0.0.0.0:0")?;
        // TEST-NET-3: only the route lookup matters.
        s.connect("203.0.113.1:9")?;
        Ok(s.local_addr()?.ip())
    };
    guess()
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into())
}

pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// CPU, logical CPU count, total and available memory (MiB) of this
/// machine.
pub(crate) async fn read_host() -> Result<(CpuInfo, u32, u64, u64)> {
    let cpuinfo = tokio::fs::read_to_string("/proc/cpuinfo")
        .await
        .map_err(|e| Error::io("read /proc/cpuinfo", e))?;
    let meminfo = tokio::fs::read_to_string("/proc/meminfo")
        .await
        .map_err(|e| Error::io("read /proc/meminfo", e))?;
    let (total, avail) = parse_meminfo(&meminfo);
    let (cpu, logical) = parse_cpuinfo(&cpuinfo);
    Ok((cpu, logical, total, avail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ip_is_one_of_this_machines() {
        let ip = default_ip();
        assert!(!ip.is_unspecified());
        // Only an address of a local interface can be bound.
        std::net::UdpSocket::bind((ip, 0)).unwrap();
    }

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nphysical id\t: 0\nsiblings\t: 2\ncpu cores\t: 1\nflags\t\t: fpu sse sse2 pni ssse3 sse4_1 sse4_2 avx avx2 aes pclmulqdq sha_ni bmi1 fma avx512f avx512_vnni pcid md_clear pdpe1gb hypervisor\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nphysical id\t: 0\nsiblings\t: 2\ncpu cores\t: 1\nflags\t\t: fpu sse\n";

    #[test]
    fn cpuinfo_topology_and_flags() {
        let (cpu, logical) = parse_cpuinfo(CPUINFO);
        assert_eq!(logical, 2);
        assert_eq!(cpu.vendor, "GenuineIntel");
        assert_eq!(cpu.model, "Intel(R) Xeon(R) Processor");
        assert_eq!((cpu.sockets, cpu.cores, cpu.threads), (1, 1, 2));
        assert!(cpu.flags.contains(&"sse4_1".to_string()));
    }

    #[test]
    fn flags_map_to_os_traits() {
        let t = cpu_traits(&parse_cpuinfo(CPUINFO).0);
        for want in [
            "HW_CPU_X86_SSE",
            "HW_CPU_X86_SSE2",
            "HW_CPU_X86_SSE3",
            "HW_CPU_X86_SSSE3",
            "HW_CPU_X86_SSE41",
            "HW_CPU_X86_SSE42",
            "HW_CPU_X86_AVX",
            "HW_CPU_X86_AVX2",
            "HW_CPU_X86_AESNI",
            "HW_CPU_X86_CLMUL",
            "HW_CPU_X86_SHA",
            "HW_CPU_X86_BMI",
            "HW_CPU_X86_FMA3",
            "HW_CPU_X86_AVX512F",
            "HW_CPU_X86_AVX512VNNI",
            "HW_CPU_X86_PDPE1GB",
            "HW_CPU_X86_INTEL_PCID",
            "HW_CPU_X86_INTEL_MD_CLEAR",
        ] {
            assert!(t.contains(want), "missing {want} in {t:?}");
        }
        assert!(!t.contains("HW_CPU_X86_VMX"));
        assert!(!t.iter().any(|n| n.contains("AMD")));
        assert!(!t.iter().any(|n| n.contains("HYPERVISOR")));
    }

    #[test]
    fn amd_flags_get_amd_traits() {
        let cpu = CpuInfo {
            vendor: "AuthenticAMD".into(),
            flags: vec!["svm".into(), "ssbd".into(), "sev".into()],
            ..CpuInfo::default()
        };
        let t = cpu_traits(&cpu);
        assert!(t.contains("HW_CPU_X86_SVM"));
        assert!(t.contains("HW_CPU_X86_AMD_SVM"));
        assert!(t.contains("HW_CPU_X86_AMD_SSBD"));
        assert!(t.contains("HW_CPU_X86_AMD_SEV"));
        assert!(!t.contains("HW_CPU_X86_INTEL_SSBD"));
    }

    #[test]
    fn meminfo() {
        let (t, a) = parse_meminfo(
            "MemTotal:       24615236 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n",
        );
        assert_eq!((t, a), (24038, 19531));
        let (_, a) = parse_meminfo("MemTotal: 2048 kB\nMemFree: 1024 kB\n");
        assert_eq!(a, 1);
    }

    #[tokio::test]
    async fn this_host_can_be_read() {
        let (cpu, logical, mem, _) = read_host().await.unwrap();
        assert!(cpu.sockets >= 1 && logical >= 1);
        assert!(mem > 0);
        let (total, _) = disk_gb(Path::new("/")).unwrap();
        assert!(total > 0 || cfg!(not(target_os = "linux")));
        assert!(!hostname().is_empty());
    }
}
