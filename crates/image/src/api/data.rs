//! Image data: upload, download, stage, import, removal from a store.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{Auth, State};
use crate::db::images::{self as db, DataDone};
use crate::db::tasks::{self as tasks, TaskRow};
use crate::error::{Error, Result};
use crate::inspect::{Inspector, Rules};
use crate::upload::{self, HashAlgo, Pump, Received};
use crate::ImageService;

/// Gives the image back to `queued` if the request ends (fails, or the
/// client goes away) while it holds the image.
struct Release {
    svc: Arc<ImageService>,
    id: String,
    writer: String,
    staged: bool,
    armed: bool,
}

impl Release {
    async fn now(mut self) {
        self.armed = false;
        release(&self.svc, &self.id, &self.writer, self.staged).await;
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (svc, id, writer, staged) = (
            self.svc.clone(),
            self.id.clone(),
            self.writer.clone(),
            self.staged,
        );
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move { release(&svc, &id, &writer, staged).await });
        }
    }
}

async fn release(svc: &ImageService, id: &str, writer: &str, staged: bool) {
    match db::writer_release(&svc.db, id, writer, "queued").await {
        Ok(true) => tracing::info!(image = %id, "upload did not complete; image back to queued"),
        Ok(false) => {}
        Err(e) => tracing::error!(image = %id, error = %e, "cannot give the image back to queued"),
    }
    if staged {
        if let Err(e) = svc.staging.delete_image(id).await {
            tracing::warn!(image = %id, error = %e, "cannot remove staged data");
        }
    }
}

fn transition(from: &str, to: &str) -> Error {
    Error::conflict(format!(
        "Image status transition from {from} to {to} is not allowed"
    ))
}

fn announced_size(headers: &HeaderMap) -> Result<Option<u64>> {
    for name in ["x-openstack-image-size", "content-length"] {
        if let Some(v) = headers.get(name) {
            let n = v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| Error::bad(format!("Invalid {name} header")))?;
            return Ok(Some(n));
        }
    }
    Ok(None)
}

fn require_octet_stream(headers: &HeaderMap) -> Result<()> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_lowercase());
    match ct.as_deref() {
        Some("application/octet-stream") => Ok(()),
        Some(other) => Err(Error::UnsupportedMediaType(format!(
            "Invalid content type {other}"
        ))),
        None => Err(Error::UnsupportedMediaType(
            "Content-Type must be application/octet-stream".into(),
        )),
    }
}

fn require_formats(r: &db::ImageRow) -> Result<()> {
    let missing: Vec<&str> = [
        ("disk_format", &r.disk_format),
        ("container_format", &r.container_format),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_none())
    .map(|(n, _)| n)
    .collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => Err(Error::bad(format!(
            "Property {one} must be set prior to saving data."
        ))),
        _ => Err(Error::bad(format!(
            "Properties {} must be set prior to saving data.",
            missing.join(", ")
        ))),
    }
}

impl ImageService {
    fn inspector_for(&self, r: &db::ImageRow) -> Option<Inspector> {
        // As upstream, only bare images are disk images whose content can
        // be checked; other containers (ovf, ova, docker...) are archives.
        if r.container_format.as_deref() != Some("bare") {
            return None;
        }
        Some(Inspector::new(Rules {
            declared: r.disk_format.clone().unwrap_or_default(),
            require_match: self.cfg.require_image_format_match,
            vmdk_allowed: self.cfg.vmdk_allowed_types.clone(),
        }))
    }

    fn hash_algo(&self) -> HashAlgo {
        HashAlgo::from_name(&self.cfg.hashing_algorithm).unwrap_or(HashAlgo::Sha512)
    }

    fn heartbeat(
        self: &Arc<Self>,
        id: &str,
        writer: &str,
    ) -> Box<dyn FnMut() -> futures_util::future::BoxFuture<'static, ()> + Send> {
        let (svc, id, writer) = (self.clone(), id.to_string(), writer.to_string());
        Box::new(move || {
            let (svc, id, writer) = (svc.clone(), id.clone(), writer.clone());
            Box::pin(async move {
                if let Err(e) = db::writer_heartbeat(&svc.db, &id, &writer).await {
                    tracing::warn!(image = %id, error = %e, "upload heartbeat failed");
                }
            })
        })
    }

    /// Records uploaded data on the image. The image must still be held by
    /// `writer`; otherwise (it was deleted meanwhile) the data is removed and
    /// 410 returned.
    async fn record_data(
        &self,
        id: &str,
        owner: Option<&str>,
        writer: &str,
        got: &Received,
    ) -> Result<()> {
        // Concurrent uploads each streamed under the quota left when they
        // started; make sure they do not add up past it.
        if let Some(o) = owner {
            if let Err(e) = self
                .upload_limits(Some(o), id, false)
                .await
                .and_then(|limits| {
                    limits
                        .iter()
                        .find(|l| got.size > l.max)
                        .map_or(Ok(()), |l| Err(l.error(got.size)))
                })
            {
                let _ = self.store.delete(&got.location).await;
                return Err(e);
            }
        }
        let done = DataDone {
            size: got.size as i64,
            virtual_size: got
                .outcome
                .as_ref()
                .and_then(|o| o.virtual_size)
                .map(|v| v as i64),
            checksum: got.checksum.clone(),
            os_hash_algo: got.hash_algo.name().to_string(),
            os_hash_value: got.hash_value.clone(),
            location: got.location.clone(),
            store: self.store.id().to_string(),
        };
        let mut tx = self.db.write().await?;
        let ok = db::writer_finish(&mut tx, id, writer, &done).await?;
        if ok {
            db::property_set(&mut tx, id, "os_glance_importing_to_stores", None).await?;
            db::property_set(&mut tx, id, "os_glance_failed_import", None).await?;
        }
        tx.commit().await?;
        if !ok {
            let _ = self.store.delete(&got.location).await;
            return Err(Error::Gone(format!(
                "Image {id} could not be found after upload. The image may have been deleted \
                 during the upload, cleaning up the chunks uploaded."
            )));
        }
        Ok(())
    }
}

pub async fn upload(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    require_octet_stream(&headers)?;
    let seen = state.seen(&caller, &id).await?;
    state.enforce(&caller, &seen, "upload_image")?;
    let r = &seen.image.row;
    if r.status != "queued" {
        return Err(transition(&r.status, "saving"));
    }
    require_formats(r)?;
    let expected = announced_size(&headers)?;
    let owner = r.owner.clone();
    let limits = state.upload_limits(owner.as_deref(), &id, false).await?;
    let writer_id = uuid::Uuid::new_v4().to_string();
    if !db::writer_claim(&state.db, &id, "queued", "saving", &writer_id).await? {
        let now = db::image_get(&state.db, &id)
            .await?
            .ok_or_else(|| Error::image_not_found(&id))?;
        return Err(transition(&now.row.status, "saving"));
    }
    let guard = Release {
        svc: state.0.clone(),
        id: id.clone(),
        writer: writer_id.clone(),
        staged: false,
        armed: true,
    };
    let result = async {
        if let Some(o) = &owner {
            state.check_uploading(o).await?;
        }
        let writer = state.store.create(&id).await?;
        let pump = Pump {
            limits,
            expected_size: expected,
            inspector: state.inspector_for(r),
            hash: state.hash_algo(),
            heartbeat: Some(state.heartbeat(&id, &writer_id)),
        };
        let got = upload::pump(body.into_data_stream(), pump, writer).await?;
        state
            .record_data(&id, owner.as_deref(), &writer_id, &got)
            .await
    }
    .await;
    match result {
        Ok(()) => {
            guard.disarm();
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            guard.now().await;
            Err(e)
        }
    }
}

/// A `Range: bytes=a-b` (or Glance's legacy `Content-Range: bytes a-b/*`)
/// request: the offset and length to send.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>> {
    let bad = || Error::RangeNotSatisfiable { size };
    if let Some(v) = headers.get(header::RANGE) {
        let s = v.to_str().map_err(|_| bad())?.trim();
        let spec = s.strip_prefix("bytes=").ok_or_else(bad)?;
        if spec.contains(',') {
            // One range only.
            return Err(bad());
        }
        let (a, b) = spec.split_once('-').ok_or_else(bad)?;
        let (a, b) = (a.trim(), b.trim());
        let (start, end) = if a.is_empty() {
            // Suffix: the last N bytes.
            let n: u64 = b.parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(bad());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        } else {
            let start: u64 = a.parse().map_err(|_| bad())?;
            let end: u64 = if b.is_empty() {
                size.saturating_sub(1)
            } else {
                b.parse::<u64>()
                    .map_err(|_| bad())?
                    .min(size.saturating_sub(1))
            };
            (start, end)
        };
        if size == 0 || start > end || start >= size {
            return Err(bad());
        }
        return Ok(Some((start, end - start + 1)));
    }
    if let Some(v) = headers.get(header::CONTENT_RANGE) {
        let s = v.to_str().map_err(|_| bad())?.trim();
        let spec = s.strip_prefix("bytes ").ok_or_else(bad)?;
        let range = spec.split('/').next().unwrap_or("");
        let (a, b) = range.split_once('-').ok_or_else(bad)?;
        let start: u64 = a.trim().parse().map_err(|_| bad())?;
        let end: u64 = b.trim().parse().map_err(|_| bad())?;
        if start > end || end >= size {
            return Err(bad());
        }
        return Ok(Some((start, end - start + 1)));
    }
    Ok(None)
}

pub async fn download(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response> {
    let seen = state.seen(&caller, &id).await?;
    let r = &seen.image.row;
    if r.status == "deactivated" && !caller.is_admin {
        return Err(Error::forbidden(
            "The requested image has been deactivated. Image data download is forbidden.",
        ));
    }
    state.enforce(&caller, &seen, "download_image")?;
    let Some(location) = r.location.clone() else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let size = r.size.unwrap_or(0).max(0) as u64;
    let range = requested_range(&headers, size)?;
    let (offset, len) = range.unwrap_or((0, size));
    let (stream, stored) = state.store.open(&location, offset, Some(len)).await?;
    if stored != size {
        return Err(Error::internal(format!(
            "image {id}: stored data is {stored} bytes, the image says {size}"
        )));
    }
    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some((start, n)) = range {
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + n - 1)) {
            res.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    } else if let Some(c) = &r.checksum {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().insert("content-md5", v);
        }
    }
    Ok(res)
}

pub async fn stage(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    require_octet_stream(&headers)?;
    if !state
        .cfg
        .enabled_import_methods
        .iter()
        .any(|m| m == "glance-direct")
    {
        return Err(Error::NotFound(
            "The glance-direct import method is not enabled, so images cannot be staged.".into(),
        ));
    }
    let seen = state.seen(&caller, &id).await?;
    state.enforce(&caller, &seen, "modify_image")?;
    let r = &seen.image.row;
    if r.status != "queued" {
        return Err(transition(&r.status, "uploading"));
    }
    let expected = announced_size(&headers)?;
    let owner = r.owner.clone();
    let limits = state.upload_limits(owner.as_deref(), &id, true).await?;
    let writer_id = uuid::Uuid::new_v4().to_string();
    if !db::writer_claim(&state.db, &id, "queued", "uploading", &writer_id).await? {
        let now = db::image_get(&state.db, &id)
            .await?
            .ok_or_else(|| Error::image_not_found(&id))?;
        return Err(transition(&now.row.status, "uploading"));
    }
    let guard = Release {
        svc: state.0.clone(),
        id: id.clone(),
        writer: writer_id.clone(),
        staged: true,
        armed: true,
    };
    let result = async {
        if let Some(o) = &owner {
            state.check_uploading(o).await?;
        }
        let writer = state.staging.create(&id).await?;
        let pump = Pump {
            limits,
            expected_size: expected,
            inspector: None,
            hash: state.hash_algo(),
            heartbeat: Some(state.heartbeat(&id, &writer_id)),
        };
        let got = upload::pump(body.into_data_stream(), pump, writer).await?;
        if !db::writer_staged(&state.db, &id, &writer_id, got.size as i64).await? {
            let _ = state.staging.delete(&got.location).await;
            return Err(Error::Gone(format!(
                "Image {id} could not be found after staging. It may have been deleted meanwhile."
            )));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            guard.disarm();
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            guard.now().await;
            Err(e)
        }
    }
}

/// Which URIs `web-download` may fetch.
fn uri_allowed(state: &ImageService, uri: &str) -> bool {
    let f = &state.cfg.web_download;
    let Ok(u) = reqwest::Url::parse(uri) else {
        return false;
    };
    if !f.allowed_schemes.iter().any(|s| s == u.scheme()) {
        return false;
    }
    let Some(host) = u.host_str() else {
        return false;
    };
    if !f.allowed_hosts.is_empty() && !f.allowed_hosts.iter().any(|h| h == host) {
        return false;
    }
    if f.disallowed_hosts.iter().any(|h| h == host) {
        return false;
    }
    match u.port_or_known_default() {
        Some(p) => f.allowed_ports.is_empty() || f.allowed_ports.contains(&p),
        None => false,
    }
}

pub async fn import(
    state: State,
    Auth(caller): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode> {
    if body.is_empty() {
        return Err(Error::bad("Body expected in request."));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| Error::bad(format!("Malformed JSON in request body: {e}")))?;
    let method = v
        .get("method")
        .filter(|m| m.is_object())
        .ok_or_else(|| Error::bad("Import request requires a 'method' field."))?;
    let name = method
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::bad("Import request requires a 'name' field."))?
        .to_string();
    if !state.cfg.enabled_import_methods.contains(&name) {
        return Err(Error::bad(format!("Unknown import method name '{name}'.")));
    }
    for key in ["all_stores_must_succeed", "all_stores"] {
        if let Some(x) = v.get(key) {
            if !x.is_boolean() {
                return Err(Error::bad(format!("'{key}' must be boolean value only")));
            }
        }
    }
    if let Some(stores) = v.get("stores") {
        let ok = stores
            .as_array()
            .is_some_and(|a| a.iter().all(|s| s.as_str() == Some(state.store.id())));
        if !ok {
            return Err(Error::conflict(format!(
                "Unknown store in {stores}; this deployment has the store '{}'.",
                state.store.id()
            )));
        }
    }
    let seen = state.seen(&caller, &id).await?;
    let r = seen.image.row.clone();
    if r.status == "active" {
        return Err(Error::conflict(
            "Image with status active cannot be target for import",
        ));
    }
    if name == "web-download" && r.status != "queued" {
        return Err(Error::conflict(
            "Image needs to be in 'queued' state to use 'web-download' method",
        ));
    }
    if name == "glance-direct" && r.status != "uploading" {
        return Err(Error::conflict(
            "Image needs to be staged before 'glance-direct' method can be used",
        ));
    }
    if r.container_format.is_none() {
        return Err(Error::conflict(
            "'container_format' needs to be set before import",
        ));
    }
    if r.disk_format.is_none() {
        return Err(Error::conflict(
            "'disk_format' needs to be set before import",
        ));
    }
    state.enforce(&caller, &seen, "modify_image")?;
    let uri = method
        .get("uri")
        .and_then(Value::as_str)
        .map(str::to_string);
    if name == "web-download" {
        match &uri {
            Some(u) if uri_allowed(&state, u) => {}
            Some(u) => {
                return Err(Error::bad(format!(
                    "URI for web-download does not pass filtering: {u}"
                )))
            }
            None => return Err(Error::bad("Import method web-download requires a 'uri'.")),
        }
    }
    let limits = state.upload_limits(r.owner.as_deref(), &id, false).await?;
    let from = if name == "web-download" {
        "queued"
    } else {
        "uploading"
    };
    let writer_id = uuid::Uuid::new_v4().to_string();
    if !db::writer_claim(&state.db, &id, from, "importing", &writer_id).await? {
        return Err(Error::conflict(format!(
            "New operation on image '{id}' is not permitted as prior operation is still in progress"
        )));
    }
    let now = store::now_micros();
    let task = TaskRow {
        id: uuid::Uuid::new_v4().to_string(),
        image_id: Some(id.clone()),
        kind: "api_image_import".into(),
        status: "processing".into(),
        owner: caller.project().map(str::to_string),
        user_id: Some(caller.ctx.user_id.clone()),
        request_id: super::request_id(&headers),
        input: json!({ "image_id": id, "import_req": v, "backend": [state.store.id()] })
            .to_string(),
        result: None,
        message: String::new(),
        created_at: now,
        updated_at: now,
        expires_at: None,
    };
    let mut tx = state.db.write().await?;
    tasks::task_create(&mut tx, &task).await?;
    db::property_set(
        &mut tx,
        &id,
        "os_glance_importing_to_stores",
        Some(state.store.id()),
    )
    .await?;
    db::property_set(&mut tx, &id, "os_glance_failed_import", None).await?;
    tx.commit().await?;
    let svc = state.0.clone();
    tokio::spawn(run_import(svc, r, writer_id, task.id, name, uri, limits));
    Ok(StatusCode::ACCEPTED)
}

/// The import itself, after the request has been answered.
async fn run_import(
    svc: Arc<ImageService>,
    r: db::ImageRow,
    writer_id: String,
    task_id: String,
    method: String,
    uri: Option<String>,
    limits: Vec<upload::Limits>,
) {
    let id = r.id.clone();
    let guard = Release {
        svc: svc.clone(),
        id: id.clone(),
        writer: writer_id.clone(),
        staged: method == "glance-direct",
        armed: true,
    };
    let result: Result<()> = async {
        let writer = svc.store.create(&id).await?;
        let pump = Pump {
            limits,
            expected_size: None,
            inspector: svc.inspector_for(&r),
            hash: svc.hash_algo(),
            heartbeat: Some(svc.heartbeat(&id, &writer_id)),
        };
        let got = if method == "glance-direct" {
            let (stream, _) = svc
                .staging
                .open(&svc.staging.location_of(&id), 0, None)
                .await?;
            upload::pump(stream, pump, writer).await?
        } else {
            let uri = uri.clone().unwrap_or_default();
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(svc.cfg.web_download.timeout))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| Error::internal(format!("http client: {e}")))?;
            let res = client
                .get(&uri)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| Error::bad(format!("Cannot download {uri}: {e}")))?;
            upload::pump(res.bytes_stream(), pump, writer).await?
        };
        svc.record_data(&id, r.owner.as_deref(), &writer_id, &got)
            .await?;
        if method == "glance-direct" {
            let _ = svc.staging.delete_image(&id).await;
        }
        Ok(())
    }
    .await;
    let expires = Some(store::now_micros() + 48 * 3600 * 1_000_000);
    match result {
        Ok(()) => {
            guard.disarm();
            let res = json!({ "image_id": id }).to_string();
            if let Err(e) =
                tasks::task_finish(&svc.db, &task_id, "success", "", Some(&res), expires).await
            {
                tracing::error!(task = %task_id, error = %e, "cannot record the import task");
            }
            tracing::info!(image = %id, method, "import finished");
        }
        Err(e) => {
            tracing::warn!(image = %id, method, error = %e, "import failed");
            // Record the failure first, so that whoever sees the image back
            // in queued also sees why.
            if let Ok(mut tx) = svc.db.write().await {
                let _ = db::property_set(&mut tx, &id, "os_glance_importing_to_stores", None).await;
                let _ = db::property_set(
                    &mut tx,
                    &id,
                    "os_glance_failed_import",
                    Some(svc.store.id()),
                )
                .await;
                let _ = tx.commit().await;
            }
            let _ = tasks::task_finish(&svc.db, &task_id, "failure", &e.to_string(), None, expires)
                .await;
            guard.now().await;
        }
    }
}

pub async fn delete_from_store(
    state: State,
    Auth(caller): Auth,
    Path((store, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    let seen = state.seen(&caller, &id).await?;
    state.enforce(&caller, &seen, "delete_image_location")?;
    if store != state.store.id() {
        return Err(Error::NotFound(format!("Store {store} is not known here.")));
    }
    if seen.image.row.location.is_none() {
        return Err(Error::NotFound(format!(
            "Image {id} has no data in store {store}."
        )));
    }
    if seen.image.row.status != "active" {
        return Err(Error::conflict(
            "It's not allowed to remove image data from store if image status is not 'active'",
        ));
    }
    Err(Error::conflict(format!(
        "Image {id} has its data only in store {store}; delete the image instead."
    )))
}
