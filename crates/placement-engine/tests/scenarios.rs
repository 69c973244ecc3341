#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Scenarios modelled on upstream's gabbi fixtures and tests
//! (allocation-candidates.yaml with SharedStorageFixture, granular.yaml with
//! GranularFixture, same_subtree with a NUMA tree).

mod common;

use common::*;
use placement_engine::{parse_candidates_query, parse_providers_query, Model};

struct Shared {
    b: Builder,
    cn1: String,
    cn2: String,
    ss: String,
    ss2: String,
    numa1_1: String,
    pf1_1: String,
    pf1_2: String,
}

/// SharedStorageFixture.
fn shared() -> Shared {
    let mut b = Builder::new();
    let agg = "5e08ea53-c4c6-448e-9334-ac4953de3cfa";
    let cn1 = b.provider("cn1", None, &[agg]);
    let cn2 = b.provider("cn2", None, &[agg]);
    let ss = b.provider("ss", None, &[agg]);
    let ss2 = b.provider("ss2", None, &[agg]);
    let numa1_1 = b.provider("numa1_1", Some(&cn1), &[]);
    let numa1_2 = b.provider("numa1_2", Some(&cn1), &[]);
    let numa2_1 = b.provider("numa2_1", Some(&cn2), &[]);
    let numa2_2 = b.provider("numa2_2", Some(&cn2), &[]);
    let pf1_1 = b.provider("pf1_1", Some(&numa1_1), &[]);
    let pf1_2 = b.provider("pf1_2", Some(&numa1_2), &[]);
    let pf2_1 = b.provider("pf2_1", Some(&numa2_1), &[]);
    let pf2_2 = b.provider("pf2_2", Some(&numa2_2), &[]);
    for cn in [&cn1, &cn2] {
        b.inv(cn, "VCPU", 24, |i| i.allocation_ratio = 16.0);
        b.inv(cn, "MEMORY_MB", 128 * 1024, |i| i.allocation_ratio = 1.5);
    }
    b.traits(&cn1, &["HW_CPU_X86_SSE", "HW_CPU_X86_SSE2"]);
    b.inv(&cn2, "DISK_GB", 2000, |i| i.reserved = 100);
    for s in [&ss, &ss2] {
        b.inv(s, "DISK_GB", 2000, |i| i.reserved = 100);
        b.traits(s, &["MISC_SHARES_VIA_AGGREGATE"]);
    }
    for pf in [&pf1_1, &pf1_2, &pf2_1, &pf2_2] {
        b.inv_simple(pf, "SRIOV_NET_VF", 8);
    }
    Shared {
        b,
        cn1,
        cn2,
        ss,
        ss2,
        numa1_1,
        pf1_1,
        pf1_2,
    }
}

#[test]
fn shared_storage_basic() {
    let s = shared();
    let m = &s.b.model;
    let v = body(m, "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100", 12);
    assert_eq!(n_areqs(&v), 5);
    assert_eq!(n_sums(&v), 4);
    assert_eq!(amounts(&v, &s.cn2, "VCPU"), vec![1, 1, 1]);
    assert_eq!(amounts(&v, &s.cn2, "DISK_GB"), vec![100]);
    assert_eq!(amounts(&v, &s.ss, "DISK_GB"), vec![100, 100]);
    assert_eq!(amounts(&v, &s.ss2, "DISK_GB"), vec![100, 100]);
    let ps = &v["provider_summaries"];
    assert_eq!(ps[&s.cn1]["resources"]["VCPU"]["capacity"], 384);
    assert_eq!(ps[&s.cn1]["resources"]["MEMORY_MB"]["capacity"], 196608);
    assert_eq!(ps[&s.cn2]["resources"]["DISK_GB"]["capacity"], 1900);
    assert_eq!(ps[&s.ss]["resources"]["DISK_GB"]["used"], 0);

    // 1.10 list format.
    let v = body(m, "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100", 10);
    assert_eq!(n_areqs(&v), 5);
    let first = &v["allocation_requests"][0]["allocations"];
    assert!(first.is_array());
    assert!(first[0]["resource_provider"]["uuid"].is_string());

    // limit
    let v = body(m, "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100&limit=1", 16);
    assert_eq!(n_areqs(&v), 1);
    let v = body(
        m,
        "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100&limit=10&limit=1",
        16,
    );
    assert_eq!(n_areqs(&v), 5);
    // no traits before 1.17
    let v = body(m, "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100", 16);
    assert_eq!(
        v["provider_summaries"][&s.cn1].as_object().unwrap().len(),
        1
    );
}

#[test]
fn shared_storage_traits() {
    let s = shared();
    let m = &s.b.model;
    let v = body(
        m,
        "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100&required=HW_CPU_X86_SSE",
        17,
    );
    assert_eq!(n_areqs(&v), 2);
    assert_eq!(n_sums(&v), 3);
    assert_eq!(
        v["provider_summaries"][&s.cn1].as_object().unwrap().len(),
        2
    );
    assert_eq!(
        v["provider_summaries"][&s.cn1]["traits"],
        serde_json::json!(["HW_CPU_X86_SSE", "HW_CPU_X86_SSE2"])
    );
    let v = body(
        m,
        "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100&required=HW_CPU_X86_SSE,HW_CPU_X86_SSE2",
        17,
    );
    assert_eq!(n_areqs(&v), 2);
    let v = body(
        m,
        "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100&required=!HW_CPU_X86_SSE",
        22,
    );
    assert_eq!(n_areqs(&v), 3);
    assert_eq!(amounts(&v, &s.cn2, "VCPU"), vec![1, 1, 1]);
    assert_eq!(amounts(&v, &s.ss, "DISK_GB"), vec![100]);
    let v = body(
        m,
        "resources=VCPU:1,MEMORY_MB:1024,DISK_GB:100&required=HW_CPU_X86_SSE3",
        17,
    );
    assert_eq!(n_areqs(&v), 0);
    assert_eq!(n_sums(&v), 0);

    // Unknown trait / class: errors from the search.
    let req =
        parse_candidates_query(&pairs("resources=VCPU:1&required=INVALID_TRAIT"), 17).unwrap();
    let e = m.allocation_candidates(&req).unwrap_err();
    assert_eq!(e.message, "No such trait(s): INVALID_TRAIT.");
    let req = parse_candidates_query(&pairs("resources=MCPU:99"), 10).unwrap();
    let e = m.allocation_candidates(&req).unwrap_err();
    assert!(e
        .message
        .starts_with("Invalid resource class in resources parameter: No such resource class MCPU"));
}

#[test]
fn shared_storage_versions() {
    let s = shared();
    let m = &s.b.model;
    let v = body(m, "resources=VCPU:1", 26);
    assert_eq!(n_areqs(&v), 2);
    assert_eq!(n_sums(&v), 2);
    assert_eq!(
        v["provider_summaries"][&s.cn1]["resources"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
    let v = body(m, "resources=VCPU:1", 27);
    assert_eq!(
        v["provider_summaries"][&s.cn2]["resources"]
            .as_object()
            .unwrap()
            .len(),
        3
    );
    let v = body(m, "resources=VCPU:1", 28);
    assert_eq!(n_sums(&v), 2);
    assert_eq!(
        v["provider_summaries"][&s.cn1].as_object().unwrap().len(),
        2
    );
    let v = body(m, "resources=VCPU:1", 29);
    assert_eq!(n_areqs(&v), 2);
    assert_eq!(n_sums(&v), 10);
    assert_eq!(
        v["provider_summaries"][&s.cn1].as_object().unwrap().len(),
        4
    );
    assert_eq!(
        v["provider_summaries"][&s.cn1]["parent_provider_uuid"],
        serde_json::Value::Null
    );
    assert_eq!(
        v["provider_summaries"][&s.pf1_1]["parent_provider_uuid"],
        s.numa1_1.as_str()
    );
    assert_eq!(
        v["provider_summaries"][&s.pf1_1]["root_provider_uuid"],
        s.cn1.as_str()
    );

    let v = body(m, "resources=SRIOV_NET_VF:4", 28);
    assert_eq!((n_areqs(&v), n_sums(&v)), (4, 4));
    let v = body(m, "resources=SRIOV_NET_VF:4", 29);
    assert_eq!((n_areqs(&v), n_sums(&v)), (4, 10));
    let v = body(m, "resources=VCPU:1,SRIOV_NET_VF:4", 28);
    assert_eq!((n_areqs(&v), n_sums(&v)), (0, 0));
    let v = body(m, "resources=VCPU:1,SRIOV_NET_VF:4", 29);
    assert_eq!((n_areqs(&v), n_sums(&v)), (4, 10));
    assert_eq!(amounts(&v, &s.pf1_1, "SRIOV_NET_VF"), vec![4]);
    let v = body(m, "resources=VCPU:1,SRIOV_NET_VF:4&limit=1", 29);
    assert_eq!((n_areqs(&v), n_sums(&v)), (1, 5));
    assert_eq!(
        v["allocation_requests"][0]["allocations"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    let v = body(m, "resources=DISK_GB:10,SRIOV_NET_VF:4", 28);
    assert_eq!((n_areqs(&v), n_sums(&v)), (8, 6));
}

#[test]
fn shared_storage_in_tree() {
    let s = shared();
    let m = &s.b.model;
    let q = |x: &str| {
        x.replace("CN1", &s.cn1)
            .replace("CN2", &s.cn2)
            .replace("SS", &s.ss)
            .replace("PF12", &s.pf1_2)
            .replace("PF11", &s.pf1_1)
    };
    let v = body(m, &q("resources=VCPU:1,SRIOV_NET_VF:4&in_tree=CN1"), 31);
    assert_eq!((n_areqs(&v), n_sums(&v)), (2, 5));
    let v = body(m, &q("resources=VCPU:1,SRIOV_NET_VF:4&in_tree=PF12"), 31);
    assert_eq!((n_areqs(&v), n_sums(&v)), (2, 5));
    let v = body(m, &q("resources=VCPU:1,DISK_GB:10&in_tree=CN1"), 31);
    assert_eq!(n_areqs(&v), 0);
    let v = body(m, &q("resources=VCPU:1,DISK_GB:10&in_tree=CN2"), 31);
    assert_eq!(n_areqs(&v), 1);
    let v = body(m, &q("resources=VCPU:1,DISK_GB:10&in_tree=SS"), 31);
    assert_eq!(n_areqs(&v), 0);
    let v = body(m, &q("resources1=VCPU:1&in_tree1=CN1"), 31);
    assert_eq!(n_areqs(&v), 1);
    let v = body(m, &q("resources1=VCPU:1&in_tree1=PF11"), 31);
    assert_eq!(n_areqs(&v), 1);
    let v = body(m, &q("resources1=SRIOV_NET_VF:4&in_tree1=CN1"), 31);
    assert_eq!(n_areqs(&v), 2);
    let v = body(
        m,
        &q("resources=VCPU:1&resources1=DISK_GB:10&in_tree1=CN1"),
        31,
    );
    assert_eq!(n_areqs(&v), 0);
    let v = body(
        m,
        &q("resources=VCPU:1&resources1=DISK_GB:10&in_tree1=CN2"),
        31,
    );
    assert_eq!(n_areqs(&v), 1);
    let v = body(
        m,
        &q("resources=VCPU:1&resources1=DISK_GB:10&in_tree1=SS"),
        31,
    );
    assert_eq!(n_areqs(&v), 2);
    assert_eq!(amounts(&v, &s.ss, "DISK_GB"), vec![10, 10]);
    let v = body(
        m,
        &q("resources=VCPU:1&in_tree=CN1&resources1=DISK_GB:10"),
        31,
    );
    assert_eq!(n_areqs(&v), 2);
    let v = body(
        m,
        &q("resources=VCPU:1&in_tree=CN2&resources1=DISK_GB:10"),
        31,
    );
    assert_eq!(n_areqs(&v), 3);
    let v = body(
        m,
        &q("resources1=VCPU:1&in_tree1=CN1&resources2=DISK_GB:10&in_tree2=SS&group_policy=none"),
        31,
    );
    assert_eq!(n_areqs(&v), 1);
}

struct Granular {
    b: Builder,
    left: String,
    middle: String,
    right: String,
    shr1: String,
    shr2: String,
}

const AGGA: &str = "aaaaaaaa-0000-0000-0000-000000000000";
const AGGB: &str = "bbbbbbbb-0000-0000-0000-000000000000";
const AGGC: &str = "cccccccc-0000-0000-0000-000000000000";

/// GranularFixture.
fn granular() -> Granular {
    let mut b = Builder::new();
    let left = b.provider("cn_left", None, &[AGGA]);
    for (rc, t) in [
        ("VCPU", 8),
        ("MEMORY_MB", 4096),
        ("DISK_GB", 500),
        ("VGPU", 8),
        ("SRIOV_NET_VF", 8),
        ("CUSTOM_NET_MBPS", 4000),
    ] {
        b.inv_simple(&left, rc, t);
    }
    b.traits(
        &left,
        &[
            "HW_CPU_X86_AVX",
            "HW_CPU_X86_AVX2",
            "HW_GPU_API_DXVA",
            "HW_NIC_DCB_PFC",
            "CUSTOM_FOO",
        ],
    );
    let middle = b.provider("cn_middle", None, &[AGGA, AGGB]);
    for (rc, t) in [
        ("VCPU", 8),
        ("MEMORY_MB", 4096),
        ("SRIOV_NET_VF", 8),
        ("CUSTOM_NET_MBPS", 4000),
    ] {
        b.inv_simple(&middle, rc, t);
    }
    b.traits(
        &middle,
        &[
            "HW_CPU_X86_AVX",
            "HW_CPU_X86_AVX2",
            "HW_CPU_X86_SSE",
            "HW_NIC_ACCEL_TLS",
        ],
    );
    let right = b.provider("cn_right", None, &[AGGB, AGGC]);
    for (rc, t) in [("VCPU", 8), ("MEMORY_MB", 4096), ("DISK_GB", 500)] {
        b.inv_simple(&right, rc, t);
    }
    b.inv(&right, "VGPU", 8, |i| i.max_unit = 2);
    b.traits(
        &right,
        &["HW_CPU_X86_MMX", "HW_GPU_API_DXVA", "CUSTOM_DISK_SSD"],
    );
    let shr1 = b.provider("shr_disk_1", None, &[AGGA]);
    b.inv_simple(&shr1, "DISK_GB", 1000);
    b.traits(&shr1, &["MISC_SHARES_VIA_AGGREGATE", "CUSTOM_DISK_SSD"]);
    let shr2 = b.provider("shr_disk_2", None, &[AGGA, AGGB]);
    b.inv_simple(&shr2, "DISK_GB", 1000);
    b.traits(&shr2, &["MISC_SHARES_VIA_AGGREGATE"]);
    let net = b.provider("shr_net", None, &[AGGC]);
    b.inv_simple(&net, "SRIOV_NET_VF", 16);
    b.inv_simple(&net, "CUSTOM_NET_MBPS", 40000);
    b.traits(&net, &["MISC_SHARES_VIA_AGGREGATE"]);
    Granular {
        b,
        left,
        middle,
        right,
        shr1,
        shr2,
    }
}

#[test]
fn granular_policies() {
    let g = granular();
    let m = &g.b.model;
    let v = body(
        m,
        "resources1=VCPU:1&resources2=MEMORY_MB:1024&group_policy=none",
        25,
    );
    assert_eq!((n_areqs(&v), n_sums(&v)), (3, 3));
    assert_eq!(
        v["allocation_requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["allocations"][&g.left]["resources"]
                == serde_json::json!({"VCPU": 1, "MEMORY_MB": 1024}))
            .count(),
        1
    );
    let v = body(
        m,
        "resources1=VCPU:1&resources2=MEMORY_MB:1024&group_policy=isolate",
        25,
    );
    assert_eq!((n_areqs(&v), n_sums(&v)), (0, 0));
    let v = body(
        m,
        "resources1=VCPU:1&resources2=MEMORY_MB:1024&group_policy=isolate&group_policy=none",
        25,
    );
    assert_eq!(n_areqs(&v), 0);
    let v = body(m, "resources=VCPU:3,MEMORY_MB:512&resources1=VCPU:1,MEMORY_MB:1024&resources2=VCPU:2&group_policy=none", 25);
    assert_eq!((n_areqs(&v), n_sums(&v)), (3, 3));
    assert_eq!(amounts(&v, &g.left, "VCPU"), vec![6]);
    assert_eq!(amounts(&v, &g.left, "MEMORY_MB"), vec![1536]);
    let v = body(m, "resources=VCPU:1&resources1=MEMORY_MB:2048", 25);
    assert_eq!((n_areqs(&v), n_sums(&v)), (3, 3));
    let v = body(
        m,
        "resources1=VCPU:1,MEMORY_MB:1024&resources2=DISK_GB:100&group_policy=isolate",
        25,
    );
    assert_eq!((n_areqs(&v), n_sums(&v)), (5, 5));
    let v = body(
        m,
        "resources1=VCPU:1,MEMORY_MB:1024&resources2=DISK_GB:100&group_policy=none",
        25,
    );
    assert_eq!((n_areqs(&v), n_sums(&v)), (7, 5));
    let v = body(m, "resources1=DISK_GB:800", 25);
    assert_eq!((n_areqs(&v), n_sums(&v)), (2, 2));
    assert_eq!(amounts(&v, &g.shr1, "DISK_GB"), vec![800]);
    let v = body(m, "resources=DISK_GB:800", 25);
    assert_eq!((n_areqs(&v), n_sums(&v)), (2, 2));
    assert_eq!(amounts(&v, &g.shr2, "DISK_GB"), vec![800]);
}

#[test]
fn granular_traits_and_aggs() {
    let g = granular();
    let m = &g.b.model;
    let v = body(
        m,
        "resources1=VCPU:1,MEMORY_MB:1024&resources2=DISK_GB:100&required2=CUSTOM_DISK_SSD&group_policy=isolate",
        25,
    );
    assert_eq!((n_areqs(&v), n_sums(&v)), (2, 3));
    assert_eq!(amounts(&v, &g.shr1, "DISK_GB"), vec![100, 100]);
    assert_eq!(
        v["provider_summaries"][&g.left]["resources"]["DISK_GB"]["capacity"],
        500
    );
    let v = body(
        m,
        "resources1=VCPU:1&resources2=DISK_GB:100&required2=!CUSTOM_DISK_SSD&group_policy=none",
        25,
    );
    assert_eq!((n_areqs(&v), n_sums(&v)), (4, 4));
    assert_eq!(amounts(&v, &g.left, "VCPU"), vec![1, 1]);
    assert_eq!(amounts(&v, &g.shr2, "DISK_GB"), vec![100, 100, 100]);
    let v = body(
        m,
        &format!("resources1=VCPU:1&resources2=DISK_GB:100&member_of2={AGGC}&group_policy=none"),
        25,
    );
    assert_eq!((n_areqs(&v), n_sums(&v)), (1, 1));
    assert_eq!(
        v["allocation_requests"][0]["allocations"][&g.right]["resources"],
        serde_json::json!({"VCPU": 1, "DISK_GB": 100})
    );
    let q = format!(
        "resources_compute=VCPU:1&required_compute=!HW_CPU_X86_SSE&resources_disk=DISK_GB:100&required_disk=CUSTOM_DISK_SSD&member_of_disk=in:{AGGA},{AGGC}&group_policy=none"
    );
    let v = body(m, &q, 34);
    assert_eq!((n_areqs(&v), n_sums(&v)), (2, 3));
    assert_eq!(amounts(&v, &g.shr1, "DISK_GB"), vec![100]);
    let maps: Vec<_> = v["allocation_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["mappings"].clone())
        .collect();
    assert!(maps
        .iter()
        .all(|mp| mp["_compute"].as_array().unwrap().len() == 1));
    let _ = &g.middle;
}

#[test]
fn providers_filters() {
    let g = granular();
    let m = &g.b.model;
    let f = parse_providers_query(&pairs("resources=VCPU:8,DISK_GB:500"), 4).unwrap();
    let names: Vec<&str> = m
        .providers_matching(&f)
        .unwrap()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, vec!["cn_left", "cn_right"]);
    let f = parse_providers_query(&pairs("required=HW_CPU_X86_AVX2,!CUSTOM_FOO"), 22).unwrap();
    let names: Vec<&str> = m
        .providers_matching(&f)
        .unwrap()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, vec!["cn_middle"]);
    let f = parse_providers_query(
        &pairs(&format!("member_of=in:{AGGB},{AGGC}&member_of=!{AGGA}")),
        32,
    )
    .unwrap();
    let names: Vec<&str> = m
        .providers_matching(&f)
        .unwrap()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(names, vec!["cn_right", "shr_net"]);
    let f = parse_providers_query(&pairs("required=BOGUS_TRAIT"), 18).unwrap();
    let e = m.providers_matching(&f).unwrap_err();
    assert_eq!(
        e.message,
        "Invalid trait(s) in \"required\" parameter: No such trait(s): BOGUS_TRAIT."
    );
    let f = parse_providers_query(&pairs("resources=FOO:1"), 4).unwrap();
    assert!(m
        .providers_matching(&f)
        .unwrap_err()
        .message
        .contains("Invalid resource class in resources parameter"));
    let f = parse_providers_query(&pairs("required=in:CUSTOM_FOO,HW_CPU_X86_SSE"), 39).unwrap();
    assert_eq!(m.providers_matching(&f).unwrap().len(), 2);
}

/// The perfload "nested" tree, one or more times.
fn nested_model(trees: usize) -> Model {
    let mut m = Model::new();
    m.set_resource_classes(STANDARD_RCS);
    m.set_traits(STANDARD_TRAITS.iter().copied().chain(["CUSTOM_FOO"]));
    nested_trees(&mut m, trees);
    m
}

pub fn nested_trees(m: &mut Model, trees: usize) {
    use placement_engine::{Inventory, ProviderRecord};
    let inv = |total: i64, f: &dyn Fn(&mut Inventory)| {
        let mut i = Inventory {
            total,
            max_unit: total,
            ..Default::default()
        };
        f(&mut i);
        i
    };
    for t in 0..trees {
        let u = |k: usize| format!("{:08x}-0000-4000-8000-{:012x}", t, k);
        let mk = |k: usize,
                  parent: Option<usize>,
                  invs: Vec<(&str, Inventory)>,
                  traits: &[&str]| ProviderRecord {
            uuid: u(k),
            name: format!("p{t}-{k}"),
            parent_uuid: parent.map(u),
            root_uuid: u(0),
            inventories: invs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            traits: traits.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        m.upsert_provider(mk(
            0,
            None,
            vec![("DISK_GB", inv(20480, &|_| {}))],
            &["COMPUTE_VOLUME_MULTI_ATTACH"],
        ));
        m.upsert_provider(mk(
            1,
            Some(0),
            vec![
                ("VCPU", inv(4, &|i| i.reserved = 2)),
                (
                    "MEMORY_MB",
                    inv(2048, &|i| {
                        i.min_unit = 512;
                        i.step_size = 256
                    }),
                ),
            ],
            &["HW_NUMA_ROOT"],
        ));
        m.upsert_provider(mk(2, Some(1), vec![("FPGA", inv(1, &|_| {}))], &[]));
        m.upsert_provider(mk(3, Some(1), vec![("VGPU", inv(8, &|_| {}))], &[]));
        m.upsert_provider(mk(
            4,
            Some(0),
            vec![
                ("VCPU", inv(4, &|_| {})),
                (
                    "MEMORY_MB",
                    inv(2048, &|i| {
                        i.min_unit = 256;
                        i.max_unit = 1024
                    }),
                ),
            ],
            &["HW_NUMA_ROOT", "CUSTOM_FOO"],
        ));
        m.upsert_provider(mk(5, Some(4), vec![("FPGA", inv(1, &|_| {}))], &[]));
        m.upsert_provider(mk(6, Some(4), vec![("FPGA", inv(1, &|_| {}))], &[]));
    }
}

pub const NESTED_Q: &str = "resources=DISK_GB:10&required=COMPUTE_VOLUME_MULTI_ATTACH&resources_COMPUTE=VCPU:1,MEMORY_MB:256&required_COMPUTE=CUSTOM_FOO&resources_FPGA=FPGA:1&group_policy=none&same_subtree=_COMPUTE,_FPGA";

#[test]
fn nested_same_subtree() {
    let m = nested_model(3);
    let c = search(&m, NESTED_Q, 39);
    assert_eq!(c.allocation_requests.len(), 6);
    assert_eq!(c.provider_summaries.len(), 21);
    for ar in &c.allocation_requests {
        let mut provs: Vec<u32> = ar.resources.iter().map(|r| r.0).collect();
        provs.dedup();
        assert_eq!(provs.len(), 3);
        let fpga = ar
            .mappings
            .iter()
            .find(|(g, _)| c.suffix(*g) == "_FPGA")
            .unwrap();
        let u = c.provider_uuid(fpga.1);
        assert!(u.ends_with('5') || u.ends_with('6'), "{u}");
    }
    // Without same_subtree: three FPGAs per tree.
    let q = NESTED_Q.replace("&same_subtree=_COMPUTE,_FPGA", "");
    assert_eq!(search(&m, &q, 39).allocation_requests.len(), 9);
    // isolate changes nothing here (distinct providers anyway).
    let q = NESTED_Q.replace("group_policy=none", "group_policy=isolate");
    assert_eq!(search(&m, &q, 39).allocation_requests.len(), 6);
    // Resourceless same_subtree group: the NUMA root above the FPGA.
    let q = "resources=DISK_GB:10&required_NUMA=HW_NUMA_ROOT&resources_FPGA=FPGA:1&group_policy=none&same_subtree=_NUMA,_FPGA";
    assert_eq!(search(&m, q, 36).allocation_requests.len(), 9);
}

#[test]
fn usages_and_reparenting() {
    let mut m = nested_model(2);
    let root0 = "00000000-0000-4000-8000-000000000000";
    let numa1 = "00000000-0000-4000-8000-000000000004";
    // Use up tree 0's NUMA1 memory: only tree 1 remains.
    assert!(m.set_usages(numa1, [("MEMORY_MB", 2048)]));
    let c = search(&m, NESTED_Q, 39);
    assert_eq!(c.allocation_requests.len(), 2);
    assert!(m.set_usages(numa1, Vec::<(String, i64)>::new()));
    assert_eq!(search(&m, NESTED_Q, 39).allocation_requests.len(), 4);
    // Move tree 1 under tree 0's root: its descendants get the new root.
    let root1 = "00000001-0000-4000-8000-000000000000";
    let mut rec = m.provider(root1).unwrap().clone();
    rec.parent_uuid = Some(root0.to_string());
    m.upsert_provider(rec);
    let fpga = "00000001-0000-4000-8000-000000000006";
    assert_eq!(m.provider(fpga).unwrap().root_uuid, root0);
    // The class index follows: tree 0 now holds 6 FPGAs.
    let c = search(&m, &format!("resources1=FPGA:1&in_tree1={root0}"), 39);
    assert_eq!(c.allocation_requests.len(), 6);
    // Un-parent it again.
    let mut rec = m.provider(root1).unwrap().clone();
    rec.parent_uuid = None;
    m.upsert_provider(rec);
    assert_eq!(m.provider(fpga).unwrap().root_uuid, root1);
    assert_eq!(search(&m, NESTED_Q, 39).allocation_requests.len(), 4);
    assert!(m.remove_provider(fpga));
    assert_eq!(search(&m, NESTED_Q, 39).allocation_requests.len(), 3);
    assert_eq!(m.children("00000001-0000-4000-8000-000000000004").len(), 1);
}

#[test]
fn root_required_and_errors() {
    let s = shared();
    let m = &s.b.model;
    let v = body(m, "resources=VCPU:1&root_required=HW_CPU_X86_SSE", 35);
    assert_eq!(n_areqs(&v), 1);
    let v = body(m, "resources=VCPU:1&root_required=!HW_CPU_X86_SSE", 35);
    assert_eq!(n_areqs(&v), 1);
    assert_eq!(amounts(&v, &s.cn2, "VCPU"), vec![1]);
    let req = parse_candidates_query(&pairs("resources=VCPU:1&root_required=CUSTOM_NO_EXIST"), 35)
        .unwrap();
    assert_eq!(
        m.allocation_candidates(&req).unwrap_err().message,
        "No such trait(s): CUSTOM_NO_EXIST."
    );
    // Disk only from the sharing providers with root_required on the anchor.
    let v = body(
        m,
        "resources=VCPU:1,DISK_GB:10&root_required=HW_CPU_X86_SSE",
        35,
    );
    assert_eq!(n_areqs(&v), 2);
    let _ = (&s.pf1_2, &s.ss2);
}
