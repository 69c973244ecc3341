//! The data of upstream's perfload jobs (bench/placement), built straight
//! into a [`Model`]: for scale tests and timing examples.

use crate::model::{Inventory, Model, ProviderRecord};

/// Aggregate A of placeload (every flat provider is a member).
pub const FLAT_AGG_A: &str = "14a5c8a3-5a99-4e8f-88be-00d85fcb1c17";
const FLAT_AGG_B: &str = "a2ef5e7a-4b6b-4fd2-b1b6-5ed8b0c6e5a1";
const FLAT_AGG_C: &str = "4a5c1b2e-8a57-4a4b-9c2e-2a3f0a5b7c61";

/// The flat query of the benchmark.
pub const FLAT_QUERY: &str =
    "resources=VCPU:1,DISK_GB:10,MEMORY_MB:256&member_of=14a5c8a3-5a99-4e8f-88be-00d85fcb1c17&required=HW_CPU_X86_AVX2";

/// The nested query of the benchmark.
pub const NESTED_QUERY: &str = "resources=DISK_GB:10&required=COMPUTE_VOLUME_MULTI_ATTACH&resources_COMPUTE=VCPU:1,MEMORY_MB:256&required_COMPUTE=CUSTOM_FOO&resources_FPGA=FPGA:1&group_policy=none&same_subtree=_COMPUTE,_FPGA";

fn inv(total: i64, min_unit: i64, max_unit: i64, step_size: i64, reserved: i64) -> Inventory {
    Inventory {
        total,
        reserved,
        min_unit,
        max_unit,
        step_size,
        allocation_ratio: 1.0,
    }
}

fn base_model() -> Model {
    let mut m = Model::new();
    m.set_resource_classes([
        "VCPU",
        "MEMORY_MB",
        "DISK_GB",
        "FPGA",
        "VGPU",
        "SRIOV_NET_VF",
    ]);
    m.set_traits([
        "MISC_SHARES_VIA_AGGREGATE",
        "HW_CPU_X86_AVX2",
        "HW_CPU_X86_SSE2",
        "STORAGE_DISK_SSD",
        "COMPUTE_VOLUME_MULTI_ATTACH",
        "HW_NUMA_ROOT",
        "CUSTOM_FOO",
    ]);
    m
}

/// `n` flat root providers as placeload creates them.
pub fn flat_model(n: usize) -> Model {
    let mut m = base_model();
    let aggs: [&[&str]; 3] = [
        &[FLAT_AGG_A],
        &[FLAT_AGG_A, FLAT_AGG_B],
        &[FLAT_AGG_A, FLAT_AGG_B, FLAT_AGG_C],
    ];
    let traits: [&[&str]; 3] = [
        &["HW_CPU_X86_AVX2"],
        &["HW_CPU_X86_AVX2", "HW_CPU_X86_SSE2"],
        &["HW_CPU_X86_AVX2", "HW_CPU_X86_SSE2", "STORAGE_DISK_SSD"],
    ];
    for i in 0..n {
        let uuid = format!("{:08x}-1111-4000-8000-000000000000", i);
        let mut rec = ProviderRecord {
            uuid: uuid.clone(),
            name: format!("flat-{i}"),
            root_uuid: uuid,
            aggregates: aggs[i % 3].iter().map(|s| s.to_string()).collect(),
            traits: traits[i % 3].iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        rec.inventories.insert("VCPU".into(), inv(32, 1, 16, 1, 0));
        rec.inventories
            .insert("MEMORY_MB".into(), inv(8192, 128, 8192, 1, 0));
        rec.inventories
            .insert("DISK_GB".into(), inv(8192, 5, 8192, 1, 0));
        m.upsert_provider(rec);
    }
    m
}

/// `trees` trees of 7 providers as upstream's nested perfload creates them.
pub fn nested_model(trees: usize) -> Model {
    let mut m = base_model();
    for t in 0..trees {
        let u = |k: usize| format!("{:08x}-2222-4000-8000-{:012x}", t, k);
        let mk = |k: usize,
                  parent: Option<usize>,
                  invs: Vec<(&str, Inventory)>,
                  traits: &[&str]| ProviderRecord {
            uuid: u(k),
            name: format!("nested-{t}-{k}"),
            parent_uuid: parent.map(u),
            root_uuid: u(0),
            inventories: invs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            traits: traits.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        m.upsert_provider(mk(
            0,
            None,
            vec![("DISK_GB", inv(20480, 1, 20480, 1, 0))],
            &["COMPUTE_VOLUME_MULTI_ATTACH"],
        ));
        m.upsert_provider(mk(
            1,
            Some(0),
            vec![
                ("VCPU", inv(4, 1, 4, 1, 2)),
                ("MEMORY_MB", inv(2048, 512, 2048, 256, 0)),
            ],
            &["HW_NUMA_ROOT"],
        ));
        m.upsert_provider(mk(2, Some(1), vec![("FPGA", inv(1, 1, 1, 1, 0))], &[]));
        m.upsert_provider(mk(3, Some(1), vec![("VGPU", inv(8, 1, 8, 1, 0))], &[]));
        m.upsert_provider(mk(
            4,
            Some(0),
            vec![
                ("VCPU", inv(4, 1, 4, 1, 0)),
                ("MEMORY_MB", inv(2048, 256, 1024, 1, 0)),
            ],
            &["HW_NUMA_ROOT", "CUSTOM_FOO"],
        ));
        m.upsert_provider(mk(5, Some(4), vec![("FPGA", inv(1, 1, 1, 1, 0))], &[]));
        m.upsert_provider(mk(6, Some(4), vec![("FPGA", inv(1, 1, 1, 1, 0))], &[]));
    }
    m
}
