//! Version discovery: `/compute` lists the versions (no token needed);
//! `/compute/v2.1` describes the current one.

use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::{base_url, Auth, State};
use crate::microversion::{MAX, MIN};

fn v21(base: &str) -> Value {
    json!({
        "id": "v2.1",
        "status": "CURRENT",
        "version": MAX.render(),
        "min_version": MIN.render(),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": format!("{base}/v2.1/")}],
    })
}

pub async fn index(state: State, headers: HeaderMap) -> Json<Value> {
    let base = base_url(&state, &headers);
    Json(json!({ "versions": [
        {
            "id": "v2.0",
            "status": "SUPPORTED",
            "version": "",
            "min_version": "",
            "updated": "2011-01-21T11:33:21Z",
            "links": [{"rel": "self", "href": format!("{base}/v2/")}],
        },
        v21(&base),
    ]}))
}

pub async fn show_v21(state: State, headers: HeaderMap, _auth: Auth) -> Json<Value> {
    let base = base_url(&state, &headers);
    let mut v = v21(&base);
    v["links"] = json!([
        {"rel": "self", "href": format!("{base}/v2.1/")},
        {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"},
    ]);
    v["media-types"] = json!([{
        "base": "application/json",
        "type": "application/vnd.openstack.compute+json;version=2.1",
    }]);
    Json(json!({ "version": v }))
}
