//! Compute microversions, negotiated as Nova does: `OpenStack-API-Version:
//! compute X.Y` first, then the legacy `X-OpenStack-Nova-API-Version`;
//! no header means the minimum, `latest` the maximum.

use axum::http::{HeaderMap, HeaderValue};

use crate::error::{Error, Result};

/// The lowest microversion served (2.1).
pub const MIN: Version = Version(1);
/// The highest microversion honoured.
pub const MAX: Version = Version(79);

/// A compute microversion `2.N` (the major version is always 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u16);

impl Version {
    /// True from `2.minor` on.
    pub fn at_least(self, minor: u16) -> bool {
        self.0 >= minor
    }

    pub fn render(self) -> String {
        format!("2.{}", self.0)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "2.{}", self.0)
    }
}

pub const HEADER: &str = "openstack-api-version";
pub const LEGACY_HEADER: &str = "x-openstack-nova-api-version";

/// The version a request asks for, as microversion-parse finds it: the
/// `compute` entry of every `OpenStack-API-Version` header, else the legacy
/// header.
fn requested(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(HEADER) {
        let Ok(v) = value.to_str() else { continue };
        for item in v.split(',') {
            let mut parts = item.split_whitespace();
            if let (Some(service), Some(ver)) = (parts.next(), parts.next()) {
                if service.eq_ignore_ascii_case("compute") {
                    return Some(ver.to_string());
                }
            }
        }
    }
    let legacy: Vec<&str> = headers
        .get_all(LEGACY_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if legacy.is_empty() {
        None
    } else {
        Some(legacy.join(",").trim().to_string())
    }
}

/// Negotiates the request's version: 400 for a malformed one, 406 outside
/// [MIN, MAX].
pub fn negotiate(headers: &HeaderMap) -> Result<Version> {
    let Some(raw) = requested(headers) else {
        return Ok(MIN);
    };
    if raw.eq_ignore_ascii_case("latest") {
        return Ok(MAX);
    }
    let parsed = parse(&raw).ok_or_else(|| {
        Error::bad(format!(
            "API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum."
        ))
    })?;
    match parsed {
        (2, minor) if minor >= MIN.0 as u32 && minor <= MAX.0 as u32 => Ok(Version(minor as u16)),
        _ => Err(Error::NotAcceptable(format!(
            "Version {raw} is not supported by the API. Minimum is {MIN} and maximum is {MAX}."
        ))),
    }
}

/// `^([1-9]\d*)\.([1-9]\d*|0)$`, as Nova's APIVersionRequest.
fn parse(s: &str) -> Option<(u32, u32)> {
    let (major, minor) = s.split_once('.')?;
    let ok = |p: &str, zero_ok: bool| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" && zero_ok || !p.starts_with('0'))
    };
    if !ok(major, false) || !ok(minor, true) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Adds the version headers Nova returns on every versioned response.
pub fn stamp(headers: &mut HeaderMap, v: Version) {
    if let Ok(h) = HeaderValue::from_str(&format!("compute {v}")) {
        headers.insert(HEADER, h);
    }
    if let Ok(h) = HeaderValue::from_str(&v.render()) {
        headers.insert(LEGACY_HEADER, h);
    }
    headers.append(
        axum::http::header::VARY,
        HeaderValue::from_static("OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn negotiation_follows_nova() {
        assert_eq!(negotiate(&h(&[])).ok(), Some(MIN));
        assert_eq!(
            negotiate(&h(&[(HEADER, "compute 2.47")])).ok(),
            Some(Version(47))
        );
        assert_eq!(negotiate(&h(&[(HEADER, "compute latest")])).ok(), Some(MAX));
        assert_eq!(
            negotiate(&h(&[(HEADER, "placement 1.3, compute 2.10")])).ok(),
            Some(Version(10))
        );
        // Another service's version alone: the minimum.
        assert_eq!(negotiate(&h(&[(HEADER, "placement 1.3")])).ok(), Some(MIN));
        assert_eq!(
            negotiate(&h(&[(LEGACY_HEADER, "2.26")])).ok(),
            Some(Version(26))
        );
        // The new header wins over the legacy one.
        assert_eq!(
            negotiate(&h(&[(HEADER, "compute 2.3"), (LEGACY_HEADER, "2.26")])).ok(),
            Some(Version(3))
        );
        assert!(matches!(
            negotiate(&h(&[(HEADER, "compute 2.x")])),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            negotiate(&h(&[(HEADER, "compute 2.01")])),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            negotiate(&h(&[(HEADER, "compute 2.0")])),
            Err(Error::NotAcceptable(_))
        ));
        assert!(matches!(
            negotiate(&h(&[(HEADER, "compute 3.0")])),
            Err(Error::NotAcceptable(_))
        ));
        assert!(matches!(
            negotiate(&h(&[(HEADER, "compute 2.999")])),
            Err(Error::NotAcceptable(_))
        ));
    }
}
