//! JSON bodies of `GET /allocation_candidates` per microversion.

use serde_json::{json, Map, Value};

use crate::search::Candidates;

/// Renders the response body at microversion `1.<minor>`:
/// - allocation_requests: a list of `{"allocations": [{"resource_provider":
///   {"uuid"}, "resources"}]}` before 1.12, `{"allocations": {uuid:
///   {"resources"}}}` from 1.12, plus `"mappings"` from 1.34;
/// - provider_summaries: `{uuid: {"resources": {rc: {"capacity","used"}}}}`
///   with only the requested classes before 1.27, `"traits"` from 1.17,
///   `"parent_provider_uuid"`/`"root_provider_uuid"` from 1.29.
pub fn render_candidates(c: &Candidates, minor: u16) -> Value {
    let areqs: Vec<Value> = c
        .allocation_requests
        .iter()
        .map(|ar| {
            if minor >= 12 {
                let mut allocs = Map::new();
                for (uuid, res) in &ar.allocations {
                    let mut r = Map::new();
                    for (rc, amt) in res {
                        r.insert(rc.clone(), json!(amt));
                    }
                    allocs.insert(uuid.clone(), json!({ "resources": r }));
                }
                let mut o = Map::new();
                o.insert("allocations".into(), Value::Object(allocs));
                if minor >= 34 {
                    let mut mp = Map::new();
                    for (suffix, uuids) in &ar.mappings {
                        mp.insert(suffix.clone(), json!(uuids));
                    }
                    o.insert("mappings".into(), Value::Object(mp));
                }
                Value::Object(o)
            } else {
                let allocs: Vec<Value> = ar
                    .allocations
                    .iter()
                    .map(|(uuid, res)| {
                        let mut r = Map::new();
                        for (rc, amt) in res {
                            r.insert(rc.clone(), json!(amt));
                        }
                        json!({ "resource_provider": { "uuid": uuid }, "resources": r })
                    })
                    .collect();
                json!({ "allocations": allocs })
            }
        })
        .collect();
    let mut sums = Map::new();
    for s in &c.provider_summaries {
        let mut res = Map::new();
        for r in &s.resources {
            if minor >= 27 || c.requested_classes.contains(&r.resource_class) {
                res.insert(
                    r.resource_class.clone(),
                    json!({ "capacity": r.capacity, "used": r.used }),
                );
            }
        }
        let mut o = Map::new();
        o.insert("resources".into(), Value::Object(res));
        if minor >= 17 {
            o.insert("traits".into(), json!(s.traits));
        }
        if minor >= 29 {
            o.insert("parent_provider_uuid".into(), json!(s.parent_uuid));
            o.insert("root_provider_uuid".into(), json!(s.root_uuid));
        }
        sums.insert(s.uuid.clone(), Value::Object(o));
    }
    json!({ "allocation_requests": areqs, "provider_summaries": sums })
}
