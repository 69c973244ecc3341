//! Rough timings of the benchmark queries (build with --release):
//! `cargo run --release -p placement-engine --example timing`.

use std::time::Instant;

use placement_engine::perfload::{flat_model, nested_model, FLAT_QUERY, NESTED_QUERY};
use placement_engine::{parse_candidates_query, render_candidates_json, Model};

fn pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn time(label: &str, m: &Model, q: &str) {
    let Ok(req) = parse_candidates_query(&pairs(q), 39) else {
        eprintln!("{label}: bad query");
        return;
    };
    let mut best = f64::MAX;
    let mut n = 0;
    let mut bytes = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let Ok(c) = m.allocation_candidates(&req) else {
            eprintln!("{label}: search failed");
            return;
        };
        let search = t.elapsed().as_secs_f64();
        let body = render_candidates_json(&c, 39);
        let total = t.elapsed().as_secs_f64();
        if total < best {
            best = total;
            n = c.allocation_requests.len();
            bytes = body.len();
            println!(
                "{label}: {n} candidates, search {:.2} ms, search+render+serialize {:.2} ms, {bytes} bytes",
                search * 1e3,
                total * 1e3
            );
        }
    }
    println!(
        "{label}: best {:.2} ms ({n} candidates, {bytes} bytes)",
        best * 1e3
    );
}

fn main() {
    let t = Instant::now();
    let flat = flat_model(10_100);
    println!(
        "flat model (10,100 providers) built in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    time("flat", &flat, FLAT_QUERY);

    let t = Instant::now();
    let mut nested = nested_model(10_000);
    println!(
        "nested model (70,000 providers) built in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    time("nested (all trees)", &nested, NESTED_QUERY);
    for t in 0..9_000 {
        let numa1 = format!("{:08x}-2222-4000-8000-{:012x}", t, 4);
        nested.set_usages(&numa1, [("MEMORY_MB", 2048)]);
    }
    time("nested (1,000 trees free)", &nested, NESTED_QUERY);

    // Single-provider write cost.
    let t = Instant::now();
    for i in 0..10_000 {
        let numa1 = format!("{:08x}-2222-4000-8000-{:012x}", i, 4);
        nested.add_usage(&numa1, "VCPU", 1);
        nested.add_usage(&numa1, "VCPU", -1);
    }
    println!(
        "20,000 add_usage calls: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    for i in 0..1_000 {
        let uuid = format!("{:08x}-2222-4000-8000-{:012x}", i, 5);
        if let Some(rec) = nested.provider(&uuid).cloned() {
            nested.upsert_provider(rec);
        }
    }
    println!(
        "1,000 upsert_provider calls: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
}
