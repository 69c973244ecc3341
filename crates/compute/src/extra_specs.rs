//! Flavor extra spec validation, as Nova's `nova.api.validation.extra_specs`
//! registry does it: a known spec must have a valid value; an unknown spec
//! in a namespace Nova knows (`hw:`, `resources:`, `trait:`, ...) is
//! refused; anything else (no namespace, or another namespace) is allowed.
//!
//! Nova's API applies this from microversion 2.86 on (flavor extra spec
//! create and update); at older microversions extra specs are only checked
//! for the shape of their keys and values. Server create can use
//! [`validate`] to check the flavor it is given.

use std::sync::OnceLock;

use regex::Regex;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Int {
        min: Option<i128>,
        max: Option<i128>,
    },
    Bool,
    Str,
    Enum(&'static [&'static str]),
    Pattern(&'static str),
}

struct Validator {
    /// The human-readable name, with `{param}` placeholders.
    name: String,
    name_regex: Regex,
    kind: Kind,
    value_regex: Option<Regex>,
}

const GROUP: &str = "([a-zA-Z0-9_-]{1,64})?";
const CPU_MASK: &str = r"\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*";

fn int(min: Option<i128>, max: Option<i128>) -> Kind {
    Kind::Int { min, max }
}

type Entry = (String, Vec<(&'static str, &'static str)>, Kind);

fn plain(v: &mut Vec<Entry>, name: &str, kind: Kind) {
    v.push((name.to_string(), vec![], kind));
}

/// (name template, [(parameter, pattern)], kind), as Nova registers them.
fn table() -> Vec<Entry> {
    let mut v: Vec<Entry> = Vec::new();
    // hw
    plain(&mut v, "hw:cpu_realtime", Kind::Bool);
    plain(
        &mut v,
        "hw:cpu_realtime_mask",
        Kind::Pattern(r"(\^)?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"),
    );
    plain(&mut v, "hw:hide_hypervisor_id", Kind::Bool);
    plain(
        &mut v,
        "hw:cpu_policy",
        Kind::Enum(&["dedicated", "shared", "mixed"]),
    );
    plain(
        &mut v,
        "hw:cpu_thread_policy",
        Kind::Enum(&["prefer", "isolate", "require"]),
    );
    plain(
        &mut v,
        "hw:emulator_threads_policy",
        Kind::Enum(&["isolate", "share"]),
    );
    plain(&mut v, "hw:cpu_dedicated_mask", Kind::Pattern(CPU_MASK));
    plain(
        &mut v,
        "hw:mem_page_size",
        Kind::Pattern(r"(large|small|any|\d+([kKMGT]i?)?(b|bit|B)?)"),
    );
    plain(&mut v, "hw:locked_memory", Kind::Bool);
    plain(&mut v, "hw:numa_nodes", int(Some(1), None));
    v.push((
        "hw:numa_cpus.{num}".into(),
        vec![("num", r"\d+")],
        Kind::Pattern(CPU_MASK),
    ));
    v.push((
        "hw:numa_mem.{num}".into(),
        vec![("num", r"\d+")],
        int(Some(1), None),
    ));
    plain(
        &mut v,
        "hw:pci_numa_affinity_policy",
        Kind::Enum(&["required", "preferred", "legacy", "socket"]),
    );
    for n in [
        "hw:cpu_sockets",
        "hw:cpu_cores",
        "hw:cpu_threads",
        "hw:cpu_max_sockets",
        "hw:cpu_max_cores",
        "hw:cpu_max_threads",
    ] {
        plain(&mut v, n, int(Some(1), None));
    }
    plain(&mut v, "hw:boot_menu", Kind::Bool);
    plain(&mut v, "hw:vif_multiqueue_enabled", Kind::Bool);
    plain(&mut v, "hw:mem_encryption", Kind::Bool);
    plain(
        &mut v,
        "hw:mem_encryption_model",
        Kind::Enum(&["amd-sev", "amd-sev-es", "amd-sev-snp"]),
    );
    plain(&mut v, "hw:pmem", Kind::Pattern("([a-zA-Z0-9_]+(,)?)+"));
    plain(&mut v, "hw:pmu", Kind::Bool);
    plain(&mut v, "hw:serial_port_count", int(Some(0), None));
    plain(&mut v, "hw:tpm_model", Kind::Enum(&["tpm-tis", "tpm-crb"]));
    plain(&mut v, "hw:tpm_version", Kind::Enum(&["1.2", "2.0"]));
    plain(
        &mut v,
        "hw:tpm_secret_security",
        Kind::Enum(&["user", "host", "deployment"]),
    );
    plain(
        &mut v,
        "hw:watchdog_action",
        Kind::Enum(&["none", "pause", "poweroff", "reset", "disabled"]),
    );
    plain(
        &mut v,
        "hw:viommu_model",
        Kind::Enum(&["intel", "smmuv3", "virtio", "auto"]),
    );
    plain(&mut v, "hw:virtio_packed_ring", Kind::Bool);
    plain(
        &mut v,
        "hw:sound_model",
        Kind::Enum(&[
            "sb16", "es1370", "pcspk", "ac97", "ich6", "ich9", "usb", "virtio",
        ]),
    );
    plain(
        &mut v,
        "hw:usb_model",
        Kind::Enum(&["none", "nec-xhci", "qemu-xhci"]),
    );
    plain(&mut v, "hw:redirected_usb_ports", int(Some(0), Some(15)));
    plain(&mut v, "hw:ephemeral_encryption", Kind::Bool);
    plain(
        &mut v,
        "hw:ephemeral_encryption_format",
        Kind::Enum(&["plain", "luks", "luksv2"]),
    );
    // hw_rng, hw_video, os, accel, pci_passthrough, no namespace
    plain(&mut v, "hw_rng:allowed", Kind::Bool);
    plain(&mut v, "hw_rng:rate_bytes", int(Some(0), None));
    plain(&mut v, "hw_rng:rate_period", int(Some(0), None));
    plain(&mut v, "hw_video:ram_max_mb", int(Some(0), None));
    plain(
        &mut v,
        "os:secure_boot",
        Kind::Enum(&["disabled", "required"]),
    );
    plain(&mut v, "accel:device_profile", Kind::Str);
    plain(
        &mut v,
        "pci_passthrough:alias",
        Kind::Pattern(r"[^:]+:\d+(?:\s*,\s*[^:]+:\d+)*"),
    );
    plain(&mut v, "hide_hypervisor_id", Kind::Bool);
    plain(&mut v, "group_policy", Kind::Enum(&["isolate", "none"]));
    // quota
    for key in ["cpu", "memory", "disk_io", "vif"] {
        plain(&mut v, &format!("quota:{key}_limit"), int(Some(0), None));
        plain(&mut v, &format!("quota:{key}_reservation"), int(None, None));
        plain(
            &mut v,
            &format!("quota:{key}_shares_level"),
            Kind::Enum(&["custom", "high", "normal", "low"]),
        );
        plain(
            &mut v,
            &format!("quota:{key}_shares_share"),
            int(Some(0), None),
        );
    }
    plain(&mut v, "quota:cpu_shares", int(Some(0), None));
    plain(&mut v, "quota:cpu_period", int(Some(0), None));
    plain(&mut v, "quota:cpu_quota", int(None, None));
    for stat in ["read", "write", "total"] {
        for metric in ["bytes", "iops"] {
            plain(
                &mut v,
                &format!("quota:disk_{stat}_{metric}_sec"),
                int(Some(0), None),
            );
        }
    }
    for stat in ["inbound", "outbound"] {
        for metric in ["average", "peak", "burst"] {
            plain(
                &mut v,
                &format!("quota:vif_{stat}_{metric}"),
                int(Some(0), None),
            );
        }
    }
    // resources, traits
    for class in placement::standard::RESOURCE_CLASSES {
        v.push((
            format!("resources{{group}}:{class}"),
            vec![("group", GROUP)],
            int(None, None),
        ));
    }
    v.push((
        "resources{group}:CUSTOM_{resource}".into(),
        vec![("group", GROUP), ("resource", "[A-Z0-9_]+")],
        int(None, None),
    ));
    let required = Kind::Enum(&["required", "forbidden"]);
    for t in placement::standard::TRAITS {
        v.push((
            format!("trait{{group}}:{t}"),
            vec![("group", GROUP)],
            required,
        ));
    }
    v.push((
        "trait{group}:CUSTOM_{trait}".into(),
        vec![("group", GROUP), ("trait", "[A-Z0-9_]+")],
        required,
    ));
    // Scheduler filters: any value.
    v.push((
        "aggregate_instance_extra_specs:{key}".into(),
        vec![("key", "[^:]+")],
        Kind::Str,
    ));
    v.push((
        "capabilities:{capability}".into(),
        vec![("capability", ".+")],
        Kind::Str,
    ));
    v
}

fn registry() -> &'static (Vec<Validator>, Vec<Regex>) {
    static REG: OnceLock<(Vec<Validator>, Vec<Regex>)> = OnceLock::new();
    REG.get_or_init(|| {
        let mut validators = Vec::new();
        let mut namespaces: Vec<String> = Vec::new();
        for (name, params, kind) in table() {
            let mut rx = regex::escape(&name);
            for (p, pattern) in &params {
                rx = rx.replace(
                    &regex::escape(&format!("{{{p}}}")),
                    &format!("(?P<{p}>{pattern})"),
                );
            }
            if let Some((ns, _)) = rx.split_once(':') {
                if !namespaces.iter().any(|n| n == ns) {
                    namespaces.push(ns.to_string());
                }
            }
            let Ok(name_regex) = Regex::new(&format!("^(?:{rx})$")) else {
                continue;
            };
            let value_regex = match kind {
                Kind::Pattern(p) => Regex::new(&format!("^(?:{p})$")).ok(),
                _ => None,
            };
            validators.push(Validator {
                name,
                name_regex,
                kind,
                value_regex,
            });
        }
        let namespaces = namespaces
            .iter()
            .filter_map(|n| Regex::new(&format!("^(?:{n})$")).ok())
            .collect();
        (validators, namespaces)
    })
}

/// Python's `strutils.bool_from_string(value, strict=True)`.
pub fn bool_from_string(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// Python's `int(value)` on a string.
fn py_int(value: &str) -> Option<i128> {
    let s = value.trim();
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    // Out of range of i128 is still an integer to Python; saturate.
    clean.parse::<i128>().ok().or(Some(if s.starts_with('-') {
        i128::MIN
    } else {
        i128::MAX
    }))
}

fn check_value(v: &Validator, value: &str) -> Result<(), String> {
    match v.kind {
        Kind::Int { min, max } => {
            let n = py_int(value).ok_or_else(|| {
                format!("Validation failed; '{value}' is not a valid integer value.")
            })?;
            if let Some(max) = max.filter(|&m| m < n) {
                return Err(format!(
                    "Validation failed; '{n}' is greater than the max value of '{max}'."
                ));
            }
            if let Some(min) = min.filter(|&m| m > n) {
                return Err(format!(
                    "Validation failed; '{n}' is less than the min value of '{min}'."
                ));
            }
            Ok(())
        }
        Kind::Bool => bool_from_string(value).map(|_| ()).ok_or_else(|| {
            format!("Validation failed; '{value}' is not a valid boolean-like value.")
        }),
        Kind::Str => Ok(()),
        Kind::Enum(values) => {
            if values.contains(&value) {
                Ok(())
            } else {
                Err(format!(
                    "Validation failed; '{value}' is not one of: {}.",
                    values.join(", ")
                ))
            }
        }
        Kind::Pattern(p) => {
            if v.value_regex.as_ref().is_some_and(|r| r.is_match(value)) {
                Ok(())
            } else {
                Err(format!(
                    "Validation failed; '{value}' is not of the format '{p}'."
                ))
            }
        }
    }
}

/// Validates one extra spec; the error is Nova's message (a 400).
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let (validators, namespaces) = registry();
    if let Some(v) = validators.iter().find(|v| v.name == name) {
        return check_value(v, value);
    }
    if let Some(v) = validators.iter().find(|v| v.name_regex.is_match(name)) {
        return check_value(v, value);
    }
    let Some((ns, _)) = name.split_once(':') else {
        return Ok(());
    };
    if namespaces.iter().any(|r| r.is_match(ns)) {
        return Err(format!(
            "Validation failed; extra spec '{name}' does not appear to be a valid extra spec."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(k: &str, v: &str) {
        assert_eq!(validate(k, v), Ok(()), "{k}={v}");
    }

    fn err(k: &str, v: &str, msg: &str) {
        assert_eq!(validate(k, v), Err(msg.to_string()), "{k}={v}");
    }

    #[test]
    fn resources() {
        ok("resources:VCPU", "2");
        ok("resources1:MEMORY_MB", "1024");
        ok("resources_gpu:CUSTOM_FOO", "1");
        ok("resources:DISK_GB", "0");
        err(
            "resources:VCPU",
            "two",
            "Validation failed; 'two' is not a valid integer value.",
        );
        err(
            "resources:NOT_A_CLASS",
            "1",
            "Validation failed; extra spec 'resources:NOT_A_CLASS' does not appear to be a valid extra spec.",
        );
        err(
            "resources:custom_lower",
            "1",
            "Validation failed; extra spec 'resources:custom_lower' does not appear to be a valid extra spec.",
        );
    }

    #[test]
    fn traits() {
        ok("trait:HW_CPU_X86_AVX2", "required");
        ok("trait1:CUSTOM_MAGIC", "forbidden");
        err(
            "trait:HW_CPU_X86_AVX2",
            "maybe",
            "Validation failed; 'maybe' is not one of: required, forbidden.",
        );
        err(
            "trait:NO_SUCH_TRAIT",
            "required",
            "Validation failed; extra spec 'trait:NO_SUCH_TRAIT' does not appear to be a valid extra spec.",
        );
    }

    #[test]
    fn hw() {
        ok("hw:cpu_policy", "dedicated");
        err(
            "hw:cpu_policy",
            "sometimes",
            "Validation failed; 'sometimes' is not one of: dedicated, shared, mixed.",
        );
        ok("hw:mem_page_size", "large");
        ok("hw:mem_page_size", "2048");
        ok("hw:mem_page_size", "1GiB");
        err(
            "hw:mem_page_size",
            "huge",
            "Validation failed; 'huge' is not of the format '(large|small|any|\\d+([kKMGT]i?)?(b|bit|B)?)'.",
        );
        ok("hw:numa_nodes", "2");
        err(
            "hw:numa_nodes",
            "0",
            "Validation failed; '0' is less than the min value of '1'.",
        );
        ok("hw:numa_cpus.0", "0-3,^2");
        ok("hw:numa_mem.1", "1024");
        ok("hw:cpu_sockets", "2");
        ok("hw:cpu_cores", "4");
        ok("hw:cpu_threads", "2");
        err(
            "hw:cpu_threads",
            "x",
            "Validation failed; 'x' is not a valid integer value.",
        );
        ok("hw:watchdog_action", "reset");
        ok("hw:boot_menu", "yes");
        err(
            "hw:boot_menu",
            "perhaps",
            "Validation failed; 'perhaps' is not a valid boolean-like value.",
        );
        err(
            "hw:redirected_usb_ports",
            "16",
            "Validation failed; '16' is greater than the max value of '15'.",
        );
        err(
            "hw:no_such_thing",
            "1",
            "Validation failed; extra spec 'hw:no_such_thing' does not appear to be a valid extra spec.",
        );
    }

    #[test]
    fn other_namespaces() {
        ok("hw_rng:allowed", "true");
        ok("quota:disk_read_bytes_sec", "10240");
        err(
            "quota:vif_inbound_peak",
            "-1",
            "Validation failed; '-1' is less than the min value of '0'.",
        );
        ok("os:secure_boot", "required");
        ok("pci_passthrough:alias", "a1:2, b2:1");
        ok("aggregate_instance_extra_specs:ssd", "true");
        ok("capabilities:cpu_info:arch", "x86_64");
        ok("group_policy", "isolate");
        // Unknown namespaces and names without one are not checked.
        ok("mycorp:anything", "goes");
        ok("plainkey", "value");
    }
}
