//! GET /allocation_candidates (1.10), served from the in-memory model.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{cache_headers, query_pairs, Ctx};
use crate::error::{Error, Result};
use crate::Placement;

/// A shared rendered body as the bytes of a response (no copy).
struct ArcStr(Arc<String>);

impl AsRef<[u8]> for ArcStr {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// Turns an engine error (query validation) into the service's error.
pub fn engine_error(e: placement_engine::QueryError) -> Error {
    Error::new(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
        e.message,
    )
    .with_code(e.code)
}

pub async fn list(ctx: Ctx, State(p): State<Arc<Placement>>, uri: Uri) -> Result<Response> {
    if !ctx.at_least(10) {
        return Err(Error::not_found(""));
    }
    ctx.can("placement:allocation_candidates:list")?;
    let pairs = query_pairs(&uri);
    let mut request =
        placement_engine::parse_candidates_query(&pairs, ctx.v.0).map_err(engine_error)?;
    request.randomize = p.config.randomize_allocation_candidates;
    p.cache.refresh(&p.db).await?;
    // A random sample (randomize + limit) must differ between requests;
    // everything else is the same answer until the next write.
    let cacheable = !(request.randomize && request.limit.is_some());
    let key = format!("{}?{}", ctx.v.0, uri.query().unwrap_or_default());
    let revision = p.cache.revision();
    let cached = if cacheable {
        p.cache.rendered(revision, &key)
    } else {
        None
    };
    let body = match cached {
        Some(body) => body,
        None => {
            let body = {
                let model = p.cache.read();
                let found = model
                    .allocation_candidates(&request)
                    .map_err(engine_error)?;
                Arc::new(placement_engine::render_candidates_json(&found, ctx.v.0))
            };
            if cacheable {
                p.cache.keep_rendered(revision, key, body.clone());
            }
            body
        }
    };
    let body = bytes::Bytes::from_owner(ArcStr(body));
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    cache_headers(&mut res, ctx.v, None);
    Ok(res)
}
