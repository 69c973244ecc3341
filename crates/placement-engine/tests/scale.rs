#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! The benchmark data at 10x scale: candidate counts only (timings live in
//! bench/ and examples/).

use placement_engine::perfload::{flat_model, nested_model, FLAT_QUERY, NESTED_QUERY};
use placement_engine::{parse_candidates_query, render_candidates};

fn pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn flat_10x() {
    let m = flat_model(10_100);
    let req = parse_candidates_query(&pairs(FLAT_QUERY), 39).unwrap();
    let c = m.allocation_candidates(&req).unwrap();
    assert_eq!(c.allocation_requests.len(), 10_100);
    assert_eq!(c.provider_summaries.len(), 10_100);
    let v = render_candidates(&c, 39);
    assert_eq!(v["allocation_requests"].as_array().unwrap().len(), 10_100);
}

#[test]
fn nested_10x() {
    let mut m = nested_model(10_000);
    let req = parse_candidates_query(&pairs(NESTED_QUERY), 39).unwrap();
    let c = m.allocation_candidates(&req).unwrap();
    assert_eq!(c.allocation_requests.len(), 20_000);
    assert_eq!(c.provider_summaries.len(), 70_000);
    // Consume numa1 memory of 9,000 trees: 1,000 trees remain.
    for t in 0..9_000 {
        let numa1 = format!("{:08x}-2222-4000-8000-{:012x}", t, 4);
        assert!(m.set_usages(&numa1, [("MEMORY_MB", 2048)]));
    }
    let c = m.allocation_candidates(&req).unwrap();
    assert_eq!(c.allocation_requests.len(), 2_000);
    assert_eq!(c.provider_summaries.len(), 7_000);
    let v = render_candidates(&c, 39);
    assert_eq!(v["provider_summaries"].as_object().unwrap().len(), 7_000);
}

#[test]
fn a_used_fpga_is_no_longer_offered() {
    let mut m = nested_model(2);
    let req = parse_candidates_query(&pairs(NESTED_QUERY), 39).unwrap();
    assert_eq!(
        m.allocation_candidates(&req)
            .unwrap()
            .allocation_requests
            .len(),
        4
    );
    // As the service refreshes a provider: the whole record, usages included.
    let fpga = format!("{:08x}-2222-4000-8000-{:012x}", 0, 5);
    let mut rec = m.provider(&fpga).unwrap().clone();
    rec.usages.insert("FPGA".into(), 1);
    m.upsert_providers([rec]);
    assert_eq!(
        m.allocation_candidates(&req)
            .unwrap()
            .allocation_requests
            .len(),
        3
    );
    let numa1 = format!("{:08x}-2222-4000-8000-{:012x}", 0, 4);
    let mut rec = m.provider(&numa1).unwrap().clone();
    rec.usages.insert("VCPU".into(), 1);
    rec.usages.insert("MEMORY_MB".into(), 256);
    m.upsert_providers([rec]);
    assert_eq!(
        m.allocation_candidates(&req)
            .unwrap()
            .allocation_requests
            .len(),
        3
    );
}
