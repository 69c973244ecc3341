#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use placement_engine::{
    parse_candidates_query, render_candidates, render_candidates_json, Candidates, Inventory,
    Model, ProviderRecord,
};
use serde_json::Value;

pub const STANDARD_RCS: &[&str] = &[
    "VCPU",
    "MEMORY_MB",
    "DISK_GB",
    "PCI_DEVICE",
    "SRIOV_NET_VF",
    "NUMA_SOCKET",
    "NUMA_CORE",
    "NUMA_THREAD",
    "NUMA_MEMORY_MB",
    "IPV4_ADDRESS",
    "VGPU",
    "VGPU_DISPLAY_HEAD",
    "NET_BW_EGR_KILOBIT_PER_SEC",
    "NET_BW_IGR_KILOBIT_PER_SEC",
    "PCPU",
    "MEM_ENCRYPTION_CONTEXT",
    "FPGA",
    "PGPU",
];

pub const STANDARD_TRAITS: &[&str] = &[
    "MISC_SHARES_VIA_AGGREGATE",
    "HW_CPU_X86_SSE",
    "HW_CPU_X86_SSE2",
    "HW_CPU_X86_SSE3",
    "HW_CPU_X86_AVX",
    "HW_CPU_X86_AVX2",
    "HW_CPU_X86_MMX",
    "HW_GPU_API_DXVA",
    "HW_NIC_DCB_PFC",
    "HW_NIC_ACCEL_TLS",
    "HW_NIC_OFFLOAD_GENEVE",
    "HW_NUMA_ROOT",
    "COMPUTE_VOLUME_MULTI_ATTACH",
    "STORAGE_DISK_SSD",
];

/// A small builder mirroring upstream's test helpers (`create_provider`,
/// `add_inventory` with max_unit defaulting to total, `set_traits`).
pub struct Builder {
    pub model: Model,
    pub recs: BTreeMap<String, ProviderRecord>,
    counter: u32,
}

impl Builder {
    pub fn new() -> Self {
        let mut model = Model::new();
        model.set_resource_classes(
            STANDARD_RCS
                .iter()
                .copied()
                .chain(["CUSTOM_NET_MBPS", "CUSTOM_MAGIC"]),
        );
        model.set_traits(STANDARD_TRAITS.iter().copied().chain([
            "CUSTOM_FOO",
            "CUSTOM_DISK_SSD",
            "CUSTOM_MAGIC",
        ]));
        Builder {
            model,
            recs: BTreeMap::new(),
            counter: 0,
        }
    }

    /// Creates a provider; returns its uuid (deterministic from the name).
    pub fn provider(&mut self, name: &str, parent: Option<&str>, aggs: &[&str]) -> String {
        self.counter += 1;
        let uuid = format!("00000000-0000-0000-0000-{:012}", self.counter);
        let root = match parent {
            Some(p) => self
                .model
                .provider(p)
                .map(|r| r.root_uuid.clone())
                .unwrap_or_default(),
            None => uuid.clone(),
        };
        let rec = ProviderRecord {
            uuid: uuid.clone(),
            name: name.to_string(),
            generation: 0,
            parent_uuid: parent.map(str::to_string),
            root_uuid: root,
            aggregates: aggs.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        self.model.upsert_provider(rec.clone());
        self.recs.insert(uuid.clone(), rec);
        uuid
    }

    pub fn inv(&mut self, uuid: &str, rc: &str, total: i64, f: impl FnOnce(&mut Inventory)) {
        let mut inv = Inventory {
            total,
            max_unit: total,
            ..Default::default()
        };
        f(&mut inv);
        let rec = self.recs.get_mut(uuid).unwrap();
        rec.inventories.insert(rc.to_string(), inv);
        self.model.upsert_provider(rec.clone());
    }

    pub fn inv_simple(&mut self, uuid: &str, rc: &str, total: i64) {
        self.inv(uuid, rc, total, |_| {});
    }

    pub fn traits(&mut self, uuid: &str, traits: &[&str]) {
        let rec = self.recs.get_mut(uuid).unwrap();
        rec.traits = traits.iter().map(|t| t.to_string()).collect();
        self.model.upsert_provider(rec.clone());
    }

    pub fn usage(&mut self, uuid: &str, rc: &str, used: i64) {
        let rec = self.recs.get_mut(uuid).unwrap();
        rec.usages.insert(rc.to_string(), used);
        let u = rec.usages.clone();
        self.model.set_usages(uuid, u);
    }
}

pub fn pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

pub fn search(m: &Model, q: &str, minor: u16) -> Candidates {
    let req = parse_candidates_query(&pairs(q), minor).unwrap_or_else(|e| panic!("parse {q}: {e}"));
    m.allocation_candidates(&req)
        .unwrap_or_else(|e| panic!("search {q}: {e}"))
}

/// Renders both ways and checks they agree.
pub fn body(m: &Model, q: &str, minor: u16) -> Value {
    let c = search(m, q, minor);
    let v = render_candidates(&c, minor);
    let s = render_candidates_json(&c, minor);
    let parsed: Value = serde_json::from_str(&s).unwrap();
    assert_eq!(parsed, v, "string and Value renderings differ for {q}");
    v
}

pub fn n_areqs(v: &Value) -> usize {
    v["allocation_requests"].as_array().unwrap().len()
}

pub fn n_sums(v: &Value) -> usize {
    v["provider_summaries"].as_object().unwrap().len()
}

/// All amounts of `rc` allocated from `uuid` across the allocation
/// requests (1.12+ format), sorted.
pub fn amounts(v: &Value, uuid: &str, rc: &str) -> Vec<i64> {
    let mut out: Vec<i64> = v["allocation_requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|ar| ar["allocations"][uuid]["resources"][rc].as_i64())
        .collect();
    out.sort_unstable();
    out
}
