//! `OpenStack-API-Version: placement X.Y` negotiation, as upstream's
//! microversion-parse middleware does it.

/// Highest supported minor version (1.39).
pub const MAX_MINOR: u16 = 39;
pub const MIN_MINOR: u16 = 0;

/// The negotiated version of a request (major is always 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u16);

impl Version {
    pub fn at_least(self, minor: u16) -> bool {
        self.0 >= minor
    }
}

/// Why the header was refused: `Type` -> 400, `Value` -> 406.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    Type(String),
    Value(String),
}

/// Finds the placement entry in the (possibly folded, comma-separated)
/// header values; the last one for our service wins.
pub fn requested<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let folded: Vec<&str> = values.collect();
    let joined = folded.join(",");
    for part in joined.split(',').rev() {
        let mut it = part.trim().splitn(2, char::is_whitespace);
        let (Some(service), Some(version)) = (it.next(), it.next()) else {
            continue;
        };
        if service.eq_ignore_ascii_case("placement") {
            return Some(version.trim().to_string());
        }
    }
    None
}

/// Parses the requested version string (None: no header -> 1.0).
pub fn negotiate(requested: Option<&str>) -> Result<Version, VersionError> {
    let s = match requested {
        None => "1.0",
        Some("latest") => return Ok(Version(MAX_MINOR)),
        Some(s) => s,
    };
    let mut parts = s.splitn(2, '.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next();
    let parse = |x: &str| x.trim().parse::<i64>();
    let (major, minor) = match (parse(major), minor.map(parse)) {
        (Ok(a), Some(Ok(b))) => (a, b),
        (Err(e), _) | (_, Some(Err(e))) => {
            return Err(VersionError::Type(format!(
                "invalid version string: {s}; invalid literal for int() with base 10: {e}"
            )))
        }
        (Ok(_), None) => {
            return Err(VersionError::Type(format!(
                "invalid version string: {s}; Version.__new__() missing 1 required positional argument: 'minor'"
            )))
        }
    };
    if major == 1 && (MIN_MINOR as i64..=MAX_MINOR as i64).contains(&minor) {
        Ok(Version(minor as u16))
    } else {
        Err(VersionError::Value(format!(
            "Unacceptable version header: {s}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(None), Ok(Version(0)));
        assert_eq!(negotiate(Some("latest")), Ok(Version(MAX_MINOR)));
        assert_eq!(negotiate(Some("1.05")), Ok(Version(5)));
        assert!(matches!(
            negotiate(Some("0.5")),
            Err(VersionError::Value(_))
        ));
        assert!(matches!(
            negotiate(Some("1.40")),
            Err(VersionError::Value(_))
        ));
        assert!(matches!(negotiate(Some("cow")), Err(VersionError::Type(_))));
        assert_eq!(
            requested(["compute 2.1, placement 1.9"].into_iter()).as_deref(),
            Some("1.9")
        );
        assert_eq!(requested(["compute 2.1"].into_iter()), None);
    }
}
