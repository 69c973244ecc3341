//! JSON bodies of `GET /allocation_candidates` per microversion.

use std::fmt::Write;

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
            let groups = group_by_provider(&ar.resources);
            if minor >= 12 {
                let mut allocs = Map::new();
                for res in &groups {
                    let mut r = Map::new();
                    for (_, rc, amt) in *res {
                        r.insert(c.class_name(*rc).to_string(), json!(amt));
                    }
                    allocs.insert(c.provider_uuid(res[0].0).to_string(), json!({ "resources": r }));
                }
                let mut o = Map::new();
                o.insert("allocations".into(), Value::Object(allocs));
                if minor >= 34 {
                    let mut mp = Map::new();
                    for (g, p) in &ar.mappings {
                        let e = mp
                            .entry(c.suffix(*g).to_string())
                            .or_insert_with(|| Value::Array(Vec::new()));
                        if let Value::Array(a) = e {
                            a.push(json!(c.provider_uuid(*p)));
                        }
                    }
                    o.insert("mappings".into(), Value::Object(mp));
                }
                Value::Object(o)
            } else {
                let allocs: Vec<Value> = groups
                    .iter()
                    .map(|res| {
                        let mut r = Map::new();
                        for (_, rc, amt) in *res {
                            r.insert(c.class_name(*rc).to_string(), json!(amt));
                        }
                        json!({ "resource_provider": { "uuid": c.provider_uuid(res[0].0) }, "resources": r })
                    })
                    .collect();
                json!({ "allocations": allocs })
            }
        })
        .collect();
    let mut sums = Map::new();
    for s in &c.provider_summaries {
        let mut res = Map::new();
        for (rc, cap, used) in &s.resources {
            if minor >= 27 || c.requested.contains(rc) {
                res.insert(
                    c.class_name(*rc).to_string(),
                    json!({ "capacity": cap, "used": used }),
                );
            }
        }
        let mut o = Map::new();
        o.insert("resources".into(), Value::Object(res));
        if minor >= 17 {
            let t: Vec<&str> = s.traits.iter().map(|t| c.trait_name(*t)).collect();
            o.insert("traits".into(), json!(t));
        }
        if minor >= 29 {
            o.insert(
                "parent_provider_uuid".into(),
                json!(s.parent.map(|p| c.provider_uuid(p))),
            );
            o.insert("root_provider_uuid".into(), json!(c.provider_uuid(s.root)));
        }
        sums.insert(c.provider_uuid(s.provider).to_string(), Value::Object(o));
    }
    json!({ "allocation_requests": areqs, "provider_summaries": sums })
}

/// Splits adjacent (provider, class, amount) entries by provider.
fn group_by_provider(r: &[(u32, u32, i64)]) -> Vec<&[(u32, u32, i64)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=r.len() {
        if i == r.len() || r[i].0 != r[start].0 {
            if i > start {
                out.push(&r[start..i]);
            }
            start = i;
        }
    }
    out
}

pub(crate) fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Pushes a string known not to need escaping.
fn push_plain(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(s);
    out.push('"');
}

fn push_json_str(out: &mut String, s: &str) {
    if !needs_escape(s) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        let _ = write!(out, "{n}");
        return;
    }
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut v = n as u64;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(*b as char);
    }
}

/// The same body as [`render_candidates`], serialized directly to a JSON
/// string (much faster for large answers: no intermediate `Value`). Object
/// keys keep the engine's order instead of being sorted.
pub fn render_candidates_json(c: &Candidates, minor: u16) -> String {
    let esc = c.providers_need_escape;
    let push_uuid = |out: &mut String, i: u32| {
        if esc {
            push_json_str(out, c.provider_uuid(i))
        } else {
            push_plain(out, c.provider_uuid(i))
        }
    };
    let class_esc: Vec<bool> = c.classes.iter().map(|x| needs_escape(x)).collect();
    let trait_esc: Vec<bool> = c.traits.iter().map(|x| needs_escape(x)).collect();
    let push_class = |out: &mut String, i: u32| {
        if class_esc.get(i as usize).copied().unwrap_or(true) {
            push_json_str(out, c.class_name(i))
        } else {
            push_plain(out, c.class_name(i))
        }
    };
    let push_trait = |out: &mut String, i: u32| {
        if trait_esc.get(i as usize).copied().unwrap_or(true) {
            push_json_str(out, c.trait_name(i))
        } else {
            push_plain(out, c.trait_name(i))
        }
    };
    let per_areq = c
        .allocation_requests
        .first()
        .map(|a| 64 + a.resources.len() * 70 + a.mappings.len() * 60)
        .unwrap_or(0);
    let mut out = String::with_capacity(
        256 + c.allocation_requests.len() * per_areq + c.provider_summaries.len() * 400,
    );
    out.push_str("{\"allocation_requests\": [");
    for (i, ar) in c.allocation_requests.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let groups = group_by_provider(&ar.resources);
        if minor >= 12 {
            out.push_str("{\"allocations\": {");
            for (j, res) in groups.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                push_uuid(&mut out, res[0].0);
                out.push_str(": {\"resources\": {");
                for (k, (_, rc, amt)) in res.iter().enumerate() {
                    if k > 0 {
                        out.push_str(", ");
                    }
                    push_class(&mut out, *rc);
                    out.push_str(": ");
                    push_int(&mut out, *amt);
                }
                out.push_str("}}");
            }
            out.push('}');
            if minor >= 34 {
                out.push_str(", \"mappings\": {");
                let mut prev: Option<u32> = None;
                for (g, p) in &ar.mappings {
                    if prev != Some(*g) {
                        if prev.is_some() {
                            out.push_str("], ");
                        }
                        push_json_str(&mut out, c.suffix(*g));
                        out.push_str(": [");
                    } else {
                        out.push_str(", ");
                    }
                    push_uuid(&mut out, *p);
                    prev = Some(*g);
                }
                if prev.is_some() {
                    out.push(']');
                }
                out.push('}');
            }
            out.push('}');
        } else {
            out.push_str("{\"allocations\": [");
            for (j, res) in groups.iter().enumerate() {
                if j > 0 {
                    out.push_str(", ");
                }
                out.push_str("{\"resource_provider\": {\"uuid\": ");
                push_uuid(&mut out, res[0].0);
                out.push_str("}, \"resources\": {");
                for (k, (_, rc, amt)) in res.iter().enumerate() {
                    if k > 0 {
                        out.push_str(", ");
                    }
                    push_class(&mut out, *rc);
                    out.push_str(": ");
                    push_int(&mut out, *amt);
                }
                out.push_str("}}");
            }
            out.push_str("]}");
        }
    }
    out.push_str("], \"provider_summaries\": {");
    for (i, s) in c.provider_summaries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_uuid(&mut out, s.provider);
        out.push_str(": {\"resources\": {");
        let mut first = true;
        for (rc, cap, used) in &s.resources {
            if minor >= 27 || c.requested.contains(rc) {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                push_class(&mut out, *rc);
                out.push_str(": {\"capacity\": ");
                push_int(&mut out, *cap);
                out.push_str(", \"used\": ");
                push_int(&mut out, *used);
                out.push('}');
            }
        }
        out.push('}');
        if minor >= 17 {
            out.push_str(", \"traits\": [");
            for (k, t) in s.traits.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                push_trait(&mut out, *t);
            }
            out.push(']');
        }
        if minor >= 29 {
            out.push_str(", \"parent_provider_uuid\": ");
            match s.parent {
                Some(p) => push_uuid(&mut out, p),
                None => out.push_str("null"),
            }
            out.push_str(", \"root_provider_uuid\": ");
            push_uuid(&mut out, s.root);
        }
        out.push('}');
    }
    out.push_str("}}");
    out
}
