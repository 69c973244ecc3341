//! Query-string parsing for `GET /allocation_candidates` and
//! `GET /resource_providers`, with upstream's validation order and wording.
//!
//! Upstream first validates `dict(req.GET)` (the last value of every key)
//! against a per-microversion JSON schema, then parses the values. The
//! schema messages are reproduced from what `jsonschema` prints (headline,
//! "Failed validating ..." block, instance), with a one-line schema repr.

use crate::pyrepr::{py_list, py_str};

pub const CODE_DEFAULT: &str = "placement.undefined_code";
pub const CODE_DUPLICATE_KEY: &str = "placement.query.duplicate_key";
pub const CODE_BAD_VALUE: &str = "placement.query.bad_value";
pub const CODE_MISSING_VALUE: &str = "placement.query.missing_value";

/// A 4xx answer: HTTP status, the message (upstream's `detail` without
/// webob's "The server could not comply..." preamble) and the error code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryError {
    pub status: u16,
    pub message: String,
    pub code: &'static str,
}

impl QueryError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        QueryError {
            status: 400,
            message: message.into(),
            code: CODE_DEFAULT,
        }
    }
    pub fn with_code(message: impl Into<String>, code: &'static str) -> Self {
        QueryError {
            status: 400,
            message: message.into(),
            code,
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for QueryError {}

/// One request group (`resources`, `required`, `member_of`, `in_tree` with
/// the same suffix).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestGroup {
    /// "" for the unsuffixed group.
    pub suffix: String,
    /// Requested amounts by class name, in query order (a repeated class
    /// keeps its first position and its last amount).
    pub resources: Vec<(String, i64)>,
    /// AND of ORs: every inner list needs one of its traits.
    pub required_traits: Vec<Vec<String>>,
    pub forbidden_traits: Vec<String>,
    /// AND of ORs of aggregate uuids.
    pub member_of: Vec<Vec<String>>,
    pub forbidden_aggs: Vec<String>,
    pub in_tree: Option<String>,
}

impl RequestGroup {
    /// Granular (suffixed) groups must be satisfied by a single provider.
    pub fn use_same_provider(&self) -> bool {
        !self.suffix.is_empty()
    }
}

/// A parsed `GET /allocation_candidates`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CandidatesRequest {
    /// Microversion minor number the request was parsed at.
    pub minor: u16,
    /// Groups in order of first appearance of their suffix.
    pub groups: Vec<RequestGroup>,
    pub limit: Option<usize>,
    /// First `group_policy` value ("none" or "isolate").
    pub group_policy: Option<String>,
    /// root_required (1.35): traits the root of every candidate's tree must
    /// have / must not have.
    pub root_required: Vec<String>,
    pub root_forbidden: Vec<String>,
    /// same_subtree (1.36): each a list of suffixes.
    pub same_subtrees: Vec<Vec<String>>,
    /// Upstream's `[placement] randomize_allocation_candidates`: shuffle the
    /// allocation requests (before `limit`) instead of the search order.
    pub randomize: bool,
}

impl CandidatesRequest {
    pub fn isolate(&self) -> bool {
        self.group_policy.as_deref() == Some("isolate")
    }
    /// Nested providers are visible from 1.29 on.
    pub fn nested_aware(&self) -> bool {
        self.minor >= 29
    }
}

/// The filters of `GET /resource_providers`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProvidersFilter {
    pub name: Option<String>,
    pub uuid: Option<String>,
    pub member_of: Vec<Vec<String>>,
    pub forbidden_aggs: Vec<String>,
    pub required_traits: Vec<Vec<String>>,
    pub forbidden_traits: Vec<String>,
    pub resources: Vec<(String, i64)>,
    pub in_tree: Option<String>,
}

// ---------------------------------------------------------------------------
// JSON-schema emulation

#[derive(Clone, Copy, PartialEq)]
enum Prop {
    Str,
    StrList, // {"type": ["string"]}
    Limit,
    GroupPolicy,
    Uuid,
}

#[derive(Clone, Copy, PartialEq)]
enum SuffixPat {
    Numbered,
    Named,
}

struct Schema {
    props: Vec<(&'static str, Prop)>,
    requires_resources: bool,
    patterns: Vec<&'static str>,
    suffix: SuffixPat,
}

fn prop_repr(p: Prop) -> String {
    match p {
        Prop::Str => "{'type': 'string'}".into(),
        Prop::StrList => "{'type': ['string']}".into(),
        Prop::Limit => "{'type': ['integer', 'string'], 'pattern': '^[1-9][0-9]*$', 'minimum': 1, 'minLength': 1}".into(),
        Prop::GroupPolicy => "{'type': 'string', 'enum': ['none', 'isolate']}".into(),
        Prop::Uuid => "{'type': 'string', 'format': 'uuid'}".into(),
    }
}

impl Schema {
    fn pattern_string(&self, prefix: &str) -> String {
        match self.suffix {
            SuffixPat::Numbered => format!("^{prefix}([1-9][0-9]*)?$"),
            SuffixPat::Named => format!("^{prefix}([a-zA-Z0-9_-]{{1,64}})?$"),
        }
    }

    fn repr(&self) -> String {
        let mut s = String::from("{'type': 'object', 'properties': {");
        let props: Vec<String> = self
            .props
            .iter()
            .map(|(k, p)| format!("{}: {}", py_str(k), prop_repr(*p)))
            .collect();
        s.push_str(&props.join(", "));
        s.push('}');
        if self.requires_resources {
            s.push_str(", 'required': ['resources']");
        }
        s.push_str(", 'additionalProperties': False");
        if !self.patterns.is_empty() {
            let pats: Vec<String> = self
                .patterns
                .iter()
                .map(|p| format!("{}: {{'type': 'string'}}", py_str(&self.pattern_string(p))))
                .collect();
            s.push_str(", 'patternProperties': {");
            s.push_str(&pats.join(", "));
            s.push('}');
        }
        s.push('}');
        s
    }

    fn matches_pattern(&self, key: &str) -> bool {
        self.patterns.iter().any(|p| match key.strip_prefix(p) {
            Some(rest) => suffix_ok(rest, self.suffix, true),
            None => false,
        })
    }
}

/// Whether `rest` is a valid group suffix (or empty when allowed).
fn suffix_ok(rest: &str, pat: SuffixPat, allow_empty: bool) -> bool {
    if rest.is_empty() {
        return allow_empty;
    }
    match pat {
        SuffixPat::Numbered => {
            let b = rest.as_bytes();
            b[0].is_ascii_digit() && b[0] != b'0' && b.iter().all(|c| c.is_ascii_digit())
        }
        SuffixPat::Named => {
            rest.len() <= 64
                && rest
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        }
    }
}

fn candidates_schema(minor: u16) -> Schema {
    let mut props: Vec<(&'static str, Prop)> = vec![("resources", Prop::Str)];
    if minor >= 16 {
        props.push(("limit", Prop::Limit));
    }
    if minor >= 17 {
        props.push(("required", Prop::StrList));
    }
    if minor >= 21 {
        props.push(("member_of", Prop::StrList));
    }
    if minor < 25 {
        return Schema {
            props,
            requires_resources: true,
            patterns: vec![],
            suffix: SuffixPat::Numbered,
        };
    }
    let mut props = vec![("limit", Prop::Limit), ("group_policy", Prop::GroupPolicy)];
    let mut patterns = vec!["resources", "required", "member_of"];
    if minor >= 31 {
        patterns.push("in_tree");
    }
    if minor >= 35 {
        props.push(("root_required", Prop::StrList));
    }
    if minor >= 36 {
        props.push(("same_subtree", Prop::StrList));
    }
    Schema {
        props,
        requires_resources: false,
        patterns,
        suffix: if minor >= 33 {
            SuffixPat::Named
        } else {
            SuffixPat::Numbered
        },
    }
}

fn providers_schema(minor: u16) -> Schema {
    let mut props = vec![("name", Prop::Str), ("uuid", Prop::Uuid)];
    if minor >= 3 {
        props.push(("member_of", Prop::Str));
    }
    if minor >= 4 {
        props.push(("resources", Prop::Str));
    }
    if minor >= 14 {
        props.push(("in_tree", Prop::Uuid));
    }
    if minor >= 18 {
        props.push(("required", Prop::Str));
    }
    Schema {
        props,
        requires_resources: false,
        patterns: vec![],
        suffix: SuffixPat::Numbered,
    }
}

/// `dict(req.GET)`: keys in first-occurrence order, last value wins.
fn last_values(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for (k, v) in pairs {
        match out.iter_mut().find(|(ok, _)| *ok == k.as_str()) {
            Some(e) => e.1 = v.as_str(),
            None => out.push((k.as_str(), v.as_str())),
        }
    }
    out
}

fn instance_repr(d: &[(&str, &str)]) -> String {
    let items: Vec<String> = d
        .iter()
        .map(|(k, v)| format!("{}: {}", py_str(k), py_str(v)))
        .collect();
    format!("{{{}}}", items.join(", "))
}

fn schema_error(
    head: String,
    validator: &str,
    schema_path: &str,
    schema: &str,
    inst_path: &str,
    inst: &str,
) -> QueryError {
    QueryError::bad_request(format!(
        "Invalid query string parameters: {head}\n\nFailed validating {} in schema{schema_path}:\n    {schema}\n\nOn instance{inst_path}:\n    {inst}",
        py_str(validator)
    ))
}

fn validate_schema(pairs: &[(String, String)], schema: &Schema) -> Result<(), QueryError> {
    let d = last_values(pairs);
    // Top-level errors first (they are the most relevant to jsonschema's
    // best_match): "required", then "additionalProperties".
    if schema.requires_resources && !d.iter().any(|(k, _)| *k == "resources") {
        return Err(schema_error(
            "'resources' is a required property".into(),
            "required",
            "",
            &schema.repr(),
            "",
            &instance_repr(&d),
        ));
    }
    let mut extras: Vec<&str> = d
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !schema.props.iter().any(|(p, _)| p == k) && !schema.matches_pattern(k))
        .collect();
    if !extras.is_empty() {
        extras.sort_unstable();
        let joined: Vec<String> = extras.iter().map(|e| py_str(e)).collect();
        let head = if schema.patterns.is_empty() {
            format!(
                "Additional properties are not allowed ({} {} unexpected)",
                joined.join(", "),
                if extras.len() == 1 { "was" } else { "were" }
            )
        } else {
            let mut pats: Vec<String> = schema
                .patterns
                .iter()
                .map(|p| schema.pattern_string(p))
                .collect();
            pats.sort();
            let pats: Vec<String> = pats.iter().map(|p| py_str(p)).collect();
            format!(
                "{} {} not match any of the regexes: {}",
                joined.join(", "),
                if extras.len() == 1 { "does" } else { "do" },
                pats.join(", ")
            )
        };
        return Err(schema_error(
            head,
            "additionalProperties",
            "",
            &schema.repr(),
            "",
            &instance_repr(&d),
        ));
    }
    // Property errors: the one with the greatest property name wins.
    let mut best: Option<(&str, String, &str, Prop, &str)> = None;
    for (k, v) in &d {
        let Some((_, p)) = schema.props.iter().find(|(pk, _)| pk == k) else {
            continue;
        };
        let err = match p {
            Prop::Limit => {
                let ok = !v.is_empty()
                    && v.as_bytes()[0] != b'0'
                    && v.bytes().all(|c| c.is_ascii_digit());
                (!ok).then(|| {
                    (
                        format!("{} does not match '^[1-9][0-9]*$'", py_str(v)),
                        "pattern",
                    )
                })
            }
            Prop::GroupPolicy => (*v != "none" && *v != "isolate").then(|| {
                (
                    format!("{} is not one of ['none', 'isolate']", py_str(v)),
                    "enum",
                )
            }),
            Prop::Uuid => {
                (!is_uuid_format(v)).then(|| (format!("{} is not a 'uuid'", py_str(v)), "format"))
            }
            Prop::Str | Prop::StrList => None,
        };
        if let Some((head, validator)) = err {
            if best.as_ref().map(|b| *k > b.0).unwrap_or(true) {
                best = Some((k, head, validator, *p, v));
            }
        }
    }
    if let Some((k, head, validator, p, v)) = best {
        let path = format!("[{}]", py_str(k));
        return Err(schema_error(
            head,
            validator,
            &format!("['properties']{path}"),
            &prop_repr(p),
            &path,
            &py_str(v),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Value parsers (upstream util.py)

/// `oslo_utils.uuidutils.is_uuid_like`.
pub fn is_uuid_like(v: &str) -> bool {
    let s = v.replace("urn:", "").replace("uuid:", "");
    let s = s.trim_matches(|c| c == '{' || c == '}').replace('-', "");
    s.len() == 32 && s.bytes().all(|c| c.is_ascii_hexdigit())
}

/// jsonschema's "uuid" format: parses as a UUID and has dashes at 8/13/18/23.
fn is_uuid_format(v: &str) -> bool {
    let b = v.as_bytes();
    is_uuid_like(v) && b.len() > 23 && [8, 13, 18, 23].iter().all(|i| b[*i] == b'-')
}

/// Python's `int()` on a string (ASCII digits, optional sign, surrounding
/// whitespace, single underscores between digits).
fn py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    if !clean.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: i64 = clean.parse().ok()?;
    Some(if neg { -n } else { n })
}

/// `normalize_resources_qs_param`.
pub fn parse_resources(qs: &str) -> Result<Vec<(String, i64)>, QueryError> {
    if qs.trim().is_empty() {
        return Err(QueryError::bad_request(
            "Badly formed resources parameter. Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: empty string.",
        ));
    }
    let mut out: Vec<(String, i64)> = Vec::new();
    for rt in qs.split(',') {
        let parts: Vec<&str> = rt.split(':').collect();
        if parts.len() != 2 {
            return Err(QueryError::bad_request(format!(
                "Badly formed resources parameter. Expected resources query string parameter in form: ?resources=VCPU:2,MEMORY_MB:1024. Got: {rt}."
            )));
        }
        let (name, amount) = (parts[0], parts[1]);
        let Some(n) = py_int(amount) else {
            return Err(QueryError::bad_request(format!(
                "Requested resource {name} expected positive integer amount. Got: {amount}."
            )));
        };
        if n < 1 {
            return Err(QueryError::bad_request(format!(
                "Requested resource {name} requires amount >= 1. Got: {n}."
            )));
        }
        match out.iter_mut().find(|(k, _)| k == name) {
            Some(e) => e.1 = n,
            None => out.push((name.to_string(), n)),
        }
    }
    Ok(out)
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// `normalize_traits_qs_param`: (AND-of-OR required, forbidden).
pub fn parse_traits_value(
    val: &str,
    allow_forbidden: bool,
    allow_any: bool,
) -> Result<(Vec<Vec<String>>, Vec<String>), QueryError> {
    if let Some(rest) = val.strip_prefix("in:") {
        if !allow_any {
            return Err(QueryError::bad_request(format!(
                "Invalid query string parameters: The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' only supported since microversion 1.39. Got: {val}"
            )));
        }
        let mut any: Vec<String> = Vec::new();
        for t in rest.split(',') {
            push_unique(&mut any, t.trim());
        }
        if any.iter().any(|t| t.is_empty()) {
            return Err(QueryError::bad_request(format!(
                "Invalid query string parameters: Expected 'required' parameter value of the form: in:HW_CPU_X86_VMX,CUSTOM_MAGIC. Got an empty trait in: {val}"
            )));
        }
        if any.iter().any(|t| t.starts_with('!')) {
            return Err(QueryError::bad_request(format!(
                "Invalid query string parameters: The format 'in:HW_CPU_X86_VMX,CUSTOM_MAGIC' does not support forbidden traits. Got: {val}"
            )));
        }
        return Ok((vec![any], Vec::new()));
    }
    let all: Vec<&str> = val.split(',').map(str::trim).collect();
    let mut forbidden: Vec<String> = Vec::new();
    for t in &all {
        if t.starts_with('!') {
            push_unique(&mut forbidden, t.trim_start_matches('!'));
        }
    }
    if all.iter().any(|t| t.is_empty()) || forbidden.iter().any(|t| t.is_empty()) {
        let form = if allow_forbidden {
            "HW_CPU_X86_VMX,!CUSTOM_MAGIC"
        } else {
            "HW_CPU_X86_VMX,CUSTOM_MAGIC"
        };
        return Err(QueryError::bad_request(format!(
            "Invalid query string parameters: Expected 'required' parameter value of the form: {form}. Got an empty trait in: {val}"
        )));
    }
    let required: Vec<Vec<String>> = all
        .iter()
        .filter(|t| !t.starts_with('!'))
        .map(|t| vec![t.to_string()])
        .collect();
    if !forbidden.is_empty() && !allow_forbidden {
        return Err(QueryError::bad_request(format!(
            "Invalid query string parameters: Expected 'required' parameter value of the form: HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: {val}"
        )));
    }
    Ok((required, forbidden))
}

fn values<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `normalize_traits_qs_params` for `required<suffix>`.
fn parse_required_params(
    pairs: &[(String, String)],
    suffix: &str,
    minor: u16,
) -> Result<(Vec<Vec<String>>, Vec<String>), QueryError> {
    let allow_forbidden = minor >= 22;
    let allow_any = minor >= 39;
    let mut vals = values(pairs, &format!("required{suffix}"));
    if !allow_any && vals.len() > 1 {
        vals.drain(..vals.len() - 1);
    }
    let mut required = Vec::new();
    let mut forbidden = Vec::new();
    for v in vals {
        let (r, f) = parse_traits_value(v, allow_forbidden, allow_any)?;
        required.extend(r);
        for t in f {
            push_unique(&mut forbidden, &t);
        }
    }
    Ok((required, forbidden))
}

/// `normalize_member_of_qs_param`: (required any-of, forbidden).
fn parse_member_of_value(value: &str) -> Result<(Vec<String>, Vec<String>), QueryError> {
    if value.contains(',') && !(value.starts_with("in:") || value.starts_with("!in:")) {
        return Err(QueryError::bad_request(format!(
            "Multiple values for 'member_of' must be prefixed with the 'in:' or '!in:' keyword using the valid microversion. Got: {value}"
        )));
    }
    let mut required = Vec::new();
    let mut forbidden = Vec::new();
    if let Some(r) = value.strip_prefix("!in:") {
        for a in r.split(',') {
            push_unique(&mut forbidden, a);
        }
    } else if let Some(r) = value.strip_prefix('!') {
        push_unique(&mut forbidden, r);
    } else if let Some(r) = value.strip_prefix("in:") {
        for a in r.split(',') {
            push_unique(&mut required, a);
        }
    } else {
        push_unique(&mut required, value);
    }
    for a in required.iter().chain(forbidden.iter()) {
        if !is_uuid_like(a) {
            return Err(QueryError::bad_request(format!(
                "Invalid query string parameters: Expected 'member_of' parameter to contain valid UUID(s). Got: {a}"
            )));
        }
    }
    Ok((required, forbidden))
}

/// `normalize_member_of_qs_params` for `member_of<suffix>`.
fn parse_member_of_params(
    pairs: &[(String, String)],
    suffix: &str,
    minor: u16,
) -> Result<(Vec<Vec<String>>, Vec<String>), QueryError> {
    let vals = values(pairs, &format!("member_of{suffix}"));
    if minor < 24 && vals.len() > 1 {
        return Err(QueryError::bad_request(format!(
            "Multiple member_of{suffix} parameters are not supported"
        )));
    }
    let mut required = Vec::new();
    let mut forbidden = Vec::new();
    for v in vals {
        let (r, f) = parse_member_of_value(v)?;
        if !r.is_empty() {
            required.push(r);
        }
        if !f.is_empty() {
            if minor < 32 {
                return Err(QueryError::bad_request(format!(
                    "Forbidden member_of{suffix} parameters are not supported in the specified microversion"
                )));
            }
            for a in f {
                push_unique(&mut forbidden, &a);
            }
        }
    }
    Ok((required, forbidden))
}

/// `normalize_in_tree_qs_params`.
fn parse_in_tree(value: &str) -> Result<String, QueryError> {
    let v = value.trim();
    if !is_uuid_like(v) {
        return Err(QueryError::bad_request(format!(
            "Invalid query string parameters: Expected 'in_tree' parameter to be a format of uuid. Got: {value}"
        )));
    }
    Ok(v.to_string())
}

// ---------------------------------------------------------------------------
// GET /allocation_candidates

const PREFIXES: [&str; 4] = ["resources", "required", "member_of", "in_tree"];

/// Parses and validates the query of `GET /allocation_candidates` at
/// microversion `1.<minor>` (the caller answers 404 below 1.10). Checks
/// that need the model (unknown resource classes and traits) happen in
/// [`crate::Model::allocation_candidates`], in upstream's order.
pub fn parse_candidates_query(
    pairs: &[(String, String)],
    minor: u16,
) -> Result<CandidatesRequest, QueryError> {
    validate_schema(pairs, &candidates_schema(minor))?;
    let mut req = CandidatesRequest {
        minor,
        ..Default::default()
    };

    // Request-wide parameters.
    if let Some(l) = values(pairs, "limit").first() {
        match py_int(l) {
            Some(n) if n > 0 => req.limit = Some(n as usize),
            _ => {
                return Err(QueryError::bad_request(format!(
                    "Invalid query string parameters: {} does not match '^[1-9][0-9]*$'",
                    py_str(l)
                )))
            }
        }
    }
    req.group_policy = values(pairs, "group_policy").first().map(|s| s.to_string());
    let rr = values(pairs, "root_required");
    if !rr.is_empty() {
        if rr.len() > 1 {
            return Err(QueryError::with_code(
                "Query parameter 'root_required' may be specified only once.",
                CODE_DUPLICATE_KEY,
            ));
        }
        let (required, forbidden) = parse_traits_value(rr[0], true, false)?;
        let mut req_names: Vec<String> = Vec::new();
        for r in required.into_iter().flatten() {
            push_unique(&mut req_names, &r);
        }
        let conflicts: Vec<&str> = forbidden
            .iter()
            .filter(|f| req_names.contains(f))
            .map(String::as_str)
            .collect();
        if !conflicts.is_empty() {
            return Err(QueryError::with_code(
                format!(
                    "Conflicting required and forbidden traits found in root_required: {}",
                    conflicts.join(", ")
                ),
                CODE_BAD_VALUE,
            ));
        }
        req.root_required = req_names;
        req.root_forbidden = forbidden;
    }
    for v in values(pairs, "same_subtree") {
        let mut set: Vec<String> = Vec::new();
        for s in v.split(',') {
            push_unique(&mut set, s.trim());
        }
        if set.iter().any(|s| s.is_empty()) {
            return Err(QueryError::with_code(
                "Empty string (unsuffixed group) can not be specified in `same_subtree` ",
                CODE_BAD_VALUE,
            ));
        }
        req.same_subtrees.push(set);
    }

    // Request groups.
    let pat = if minor >= 33 {
        SuffixPat::Named
    } else {
        SuffixPat::Numbered
    };
    let mut groups: Vec<RequestGroup> = Vec::new();
    for (key, val) in pairs {
        let Some((prefix, suffix)) = PREFIXES.iter().find_map(|p| {
            key.strip_prefix(p)
                .filter(|rest| suffix_ok(rest, pat, true))
                .map(|rest| (*p, rest))
        }) else {
            continue;
        };
        let gi = match groups.iter().position(|g| g.suffix == suffix) {
            Some(i) => i,
            None => {
                groups.push(RequestGroup {
                    suffix: suffix.to_string(),
                    ..Default::default()
                });
                groups.len() - 1
            }
        };
        let g = &mut groups[gi];
        match prefix {
            "resources" => g.resources = parse_resources(val)?,
            "required" => {
                let (r, f) = parse_required_params(pairs, suffix, minor)?;
                g.required_traits = r;
                g.forbidden_traits = f;
            }
            "member_of" => {
                let (r, f) = parse_member_of_params(pairs, suffix, minor)?;
                g.member_of = r;
                g.forbidden_aggs = f;
            }
            _ => g.in_tree = Some(parse_in_tree(val)?),
        }
    }

    if minor >= 36 {
        let resourceless: Vec<&str> = groups
            .iter()
            .filter(|g| g.resources.is_empty())
            .map(|g| g.suffix.as_str())
            .collect();
        let mut subtree: Vec<&str> = Vec::new();
        for s in req.same_subtrees.iter().flatten() {
            if !subtree.contains(&s.as_str()) {
                subtree.push(s);
            }
        }
        if resourceless.len() == groups.len() {
            return Err(QueryError::with_code(
                "There must be at least one resources or resources[$S] parameter.",
                CODE_MISSING_VALUE,
            ));
        }
        let bad: Vec<&str> = resourceless
            .iter()
            .copied()
            .filter(|s| !subtree.contains(s))
            .collect();
        if !bad.is_empty() {
            return Err(QueryError::with_code(
                format!(
                    "Resourceless suffixed group request should be specified in `same_subtree` query param: bad group(s) - {}.",
                    py_list(&bad)
                ),
                CODE_BAD_VALUE,
            ));
        }
        let bad: Vec<&str> = subtree
            .iter()
            .copied()
            .filter(|s| !groups.iter().any(|g| g.suffix == *s))
            .collect();
        if !bad.is_empty() {
            let all: Vec<&str> = groups.iter().map(|g| g.suffix.as_str()).collect();
            return Err(QueryError::with_code(
                format!(
                    "Real suffixes should be specified in `same_subtree`: {} not found in {}.",
                    py_list(&bad),
                    py_list(&all)
                ),
                CODE_BAD_VALUE,
            ));
        }
    } else {
        let orphans: Vec<String> = groups
            .iter()
            .filter(|g| !g.required_traits.is_empty() && g.resources.is_empty())
            .map(|g| format!("required{}", g.suffix))
            .collect();
        if !orphans.is_empty() {
            return Err(QueryError::bad_request(format!(
                "All traits parameters must be associated with resources.  Found the following orphaned traits keys: {}",
                orphans.join(", ")
            )));
        }
        let orphans: Vec<String> = groups
            .iter()
            .filter(|g| {
                g.resources.is_empty() && (!g.member_of.is_empty() || !g.forbidden_aggs.is_empty())
            })
            .map(|g| format!("member_of{}", g.suffix))
            .collect();
        if !orphans.is_empty() {
            return Err(QueryError::bad_request(format!(
                "All member_of parameters must be associated with resources. Found the following orphaned member_of keys: {}",
                orphans.join(", ")
            )));
        }
        if groups.iter().any(|g| g.resources.is_empty()) {
            return Err(QueryError::bad_request(
                "All request groups must specify resources.",
            ));
        }
        if groups.is_empty() {
            return Err(QueryError::bad_request(
                "At least one request group (`resources` or `resources{$S}`) is required.",
            ));
        }
    }

    if minor >= 22 {
        let mut conflicting: Vec<String> = Vec::new();
        for g in &groups {
            for any in &g.required_traits {
                if any.iter().all(|t| g.forbidden_traits.contains(t)) {
                    let mut names: Vec<&str> = any.iter().map(String::as_str).collect();
                    names.sort_unstable();
                    conflicting.push(format!("required{}: ({})", g.suffix, names.join(", ")));
                }
            }
        }
        if !conflicting.is_empty() {
            conflicting.sort();
            return Err(QueryError::bad_request(format!(
                "Conflicting required and forbidden traits found in the following traits keys: {}",
                conflicting.join(", ")
            )));
        }
    }

    if req.group_policy.is_none() && groups.iter().filter(|g| g.use_same_provider()).count() > 1 {
        return Err(QueryError::bad_request(
            "The \"group_policy\" parameter is required when specifying more than one \"resources{N}\" parameter.",
        ));
    }
    req.groups = groups;
    Ok(req)
}

// ---------------------------------------------------------------------------
// GET /resource_providers

/// Parses and validates the query of `GET /resource_providers` at
/// microversion `1.<minor>`. Unknown traits / classes are reported by
/// [`crate::Model::providers_matching`].
pub fn parse_providers_query(
    pairs: &[(String, String)],
    minor: u16,
) -> Result<ProvidersFilter, QueryError> {
    validate_schema(pairs, &providers_schema(minor))?;
    let mut f = ProvidersFilter::default();
    let last = |k: &str| {
        pairs
            .iter()
            .rev()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.clone())
    };
    if pairs.iter().any(|(k, _)| k == "member_of") {
        let (r, fb) = parse_member_of_params(pairs, "", minor)?;
        f.member_of = r;
        f.forbidden_aggs = fb;
    }
    if pairs.iter().any(|(k, _)| k == "required") {
        let (r, fb) = parse_required_params(pairs, "", minor)?;
        f.required_traits = r;
        f.forbidden_traits = fb;
    }
    f.uuid = last("uuid");
    f.name = last("name");
    f.in_tree = last("in_tree");
    if let Some(r) = last("resources") {
        f.resources = parse_resources(&r)?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        s.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect()
    }

    fn err(s: &str, minor: u16) -> QueryError {
        match parse_candidates_query(&q(s), minor) {
            Err(e) => e,
            Ok(r) => panic!("expected error for {s}, got {r:?}"),
        }
    }

    #[test]
    fn schema_messages() {
        let e = err("", 10);
        assert!(
            e.message.contains("'resources' is a required property"),
            "{}",
            e.message
        );
        assert!(e.message.starts_with("Invalid query string parameters"));
        let e = err("resources=VCPU:1&limit=5", 15);
        assert!(
            e.message.contains("'limit' was unexpected"),
            "{}",
            e.message
        );
        let e = err("resources=VCPU:1&limit=cow", 16);
        assert!(
            e.message.contains("Failed validating 'pattern'"),
            "{}",
            e.message
        );
        for bad in ["-99", "0"] {
            let e = err(&format!("resources=VCPU:1&limit={bad}"), 16);
            assert!(e.message.contains("Failed validating 'pattern'"));
        }
        let e = err("resources01=VCPU:1", 25);
        assert!(
            e.message
                .contains("'resources01' does not match any of the regexes"),
            "{}",
            e.message
        );
        let e = err("resources1@=VCPU:1", 33);
        assert!(e
            .message
            .contains("'resources1@' does not match any of the regexes"));
        let long = "resources_0123456701234567012345670123456701234567012345670123456701234567";
        let e = err(&format!("{long}=VCPU:1"), 33);
        assert!(e
            .message
            .contains(&format!("'{long}' does not match any of the regexes")));
        let e = err("resources=VCPU:1&group_policy=bogus", 25);
        assert!(
            e.message
                .contains("'bogus' is not one of ['none', 'isolate']"),
            "{}",
            e.message
        );
        let e = err("resources=VCPU:1&root_required=FOO", 34);
        assert!(e
            .message
            .contains("'root_required' does not match any of the regexes"));
        let e = err("resources=VCPU:1&required=HW_CPU_X86_SSE", 16);
        assert!(e.message.contains("'required' was unexpected"));
        let e = err("resources=VCPU:1&member_of3=x", 24);
        assert!(e.message.contains("'member_of3' was unexpected"));
        assert_eq!(e.code, CODE_DEFAULT);
    }

    #[test]
    fn value_messages() {
        let e = err("resources=", 10);
        assert!(e.message.contains("Got: empty string."));
        let e = err("resources=VCPU", 10);
        assert!(e.message.contains("Got: VCPU."));
        let e = err("resources=VCPU:fred", 10);
        assert!(e
            .message
            .contains("Requested resource VCPU expected positive integer amount. Got: fred."));
        let e = err("resources=VCPU:-2", 10);
        assert!(e
            .message
            .contains("Requested resource VCPU requires amount >= 1. Got: -2."));
        let e = err("resources=VCPU:1&required=", 17);
        assert!(e.message.contains(
            "Invalid query string parameters: Expected 'required' parameter value of the form: HW_CPU_X86_VMX,CUSTOM_MAGIC."
        ));
        let e = err("resources=VCPU:1&required=", 22);
        assert!(e.message.contains("HW_CPU_X86_VMX,!CUSTOM_MAGIC."));
        let e = err("resources=VCPU:1&required=!CUSTOM_MAGIC", 17);
        assert!(e
            .message
            .contains("HW_CPU_X86_VMX,CUSTOM_MAGIC. Got: !CUSTOM_MAGIC"));
        let e = err("resources=VCPU:1&required=in:A,B", 38);
        assert!(e.message.contains("only supported since microversion 1.39"));
        let e = err("resources=VCPU:1&in_tree=life-is-beautiful", 31);
        assert!(e
            .message
            .contains("Expected 'in_tree' parameter to be a format of uuid"));
        let e = err("resources=VCPU:1&member_of=a,b", 24);
        assert!(e
            .message
            .contains("must be prefixed with the 'in:' or '!in:' keyword"));
        let e = err("resources=VCPU:1&member_of=in:", 24);
        assert!(e
            .message
            .contains("Expected 'member_of' parameter to contain valid UUID(s)."));
        let e = err(
            "resources=VCPU:1&member_of=!5e08ea53-c4c6-448e-9334-ac4953de3cfa",
            31,
        );
        assert!(e
            .message
            .contains("Forbidden member_of parameters are not supported"));
        let e = err(
            "resources=VCPU:1&member_of=5e08ea53-c4c6-448e-9334-ac4953de3cfa&member_of=5e08ea53-c4c6-448e-9334-ac4953de3cfb",
            23,
        );
        assert!(e
            .message
            .contains("Multiple member_of parameters are not supported"));
    }

    #[test]
    fn group_checks() {
        let e = err("resources1=VCPU:1&resources2=VCPU:1", 25);
        assert!(e
            .message
            .contains("The \"group_policy\" parameter is required"));
        let e = err("required=FOO&required1=BAR", 25);
        assert!(e
            .message
            .contains("Found the following orphaned traits keys: required, required1"));
        let e = err(
            "member_of=5e08ea53-c4c6-448e-9334-ac4953de3cfa&member_of3=5e08ea53-c4c6-448e-9334-ac4953de3cfb",
            25,
        );
        assert!(e
            .message
            .contains("Found the following orphaned member_of keys: member_of, member_of3"));
        let e = err("group_policy=isolate", 25);
        assert!(e
            .message
            .contains("At least one request group (`resources` or `resources{$S}`) is required."));
        let e = err(
            "resources=VCPU:1&in_tree1=5e08ea53-c4c6-448e-9334-ac4953de3cfa",
            31,
        );
        assert_eq!(e.message, "All request groups must specify resources.");
        let e = err("group_policy=isolate", 36);
        assert_eq!(e.code, CODE_MISSING_VALUE);
        let e = err("resources=VCPU:1&required_X=FOO", 36);
        assert!(
            e.message.contains("bad group(s) - ['_X']."),
            "{}",
            e.message
        );
        assert_eq!(e.code, CODE_BAD_VALUE);
        let e = err("resources=VCPU:1&same_subtree=_A,_B", 36);
        assert!(e.message.contains(
            "Real suffixes should be specified in `same_subtree`: ['_A', '_B'] not found in ['']."
        ));
        let e = err("resources=VCPU:1&same_subtree=_A,", 36);
        assert!(e
            .message
            .contains("Empty string (unsuffixed group) can not be specified in `same_subtree`"));
        let e = err("resources=VCPU:1&root_required=A&root_required=B", 35);
        assert_eq!(e.code, CODE_DUPLICATE_KEY);
        let e = err(
            "resources=VCPU:1&root_required=HW_CPU_X86_AVX2,!HW_CPU_X86_AVX2",
            35,
        );
        assert!(e.message.contains(
            "Conflicting required and forbidden traits found in root_required: HW_CPU_X86_AVX2"
        ));
        let e = err("resources=VCPU:1&required=A,!A", 22);
        assert!(e.message.contains("following traits keys: required: (A)"));
    }

    #[test]
    fn parses_groups() {
        let r = parse_candidates_query(
            &q("resources=VCPU:1,MEMORY_MB:2,VCPU:3&required=A,!B&required=in:C,D&resources_X=FPGA:1&required_X=E&group_policy=none&group_policy=isolate&limit=10&limit=1&same_subtree=_X"),
            39,
        )
        .unwrap();
        assert_eq!(r.groups.len(), 2);
        assert_eq!(
            r.groups[0].resources,
            vec![("VCPU".to_string(), 3), ("MEMORY_MB".to_string(), 2)]
        );
        assert_eq!(
            r.groups[0].required_traits,
            vec![
                vec!["A".to_string()],
                vec!["C".to_string(), "D".to_string()]
            ]
        );
        assert_eq!(r.groups[0].forbidden_traits, vec!["B".to_string()]);
        assert_eq!(r.group_policy.as_deref(), Some("none"));
        assert_eq!(r.limit, Some(10));
        // Before 1.39 only the last `required` counts.
        let r = parse_candidates_query(&q("resources=VCPU:1&required=,,&required=A"), 38).unwrap();
        assert_eq!(r.groups[0].required_traits, vec![vec!["A".to_string()]]);
    }

    #[test]
    fn providers_query() {
        let e = parse_providers_query(&q("in_tree=x"), 14).unwrap_err();
        assert!(e.message.contains("Failed validating 'format'"));
        let e = parse_providers_query(&q("required=A"), 17).unwrap_err();
        assert!(e.message.contains("'required' was unexpected"));
        let f = parse_providers_query(&q("required=A&required=B&resources=VCPU:1"), 18).unwrap();
        assert_eq!(f.required_traits, vec![vec!["B".to_string()]]);
        assert_eq!(f.resources, vec![("VCPU".to_string(), 1)]);
        let e = parse_providers_query(&q("member_of=in:a"), 3).unwrap_err();
        assert!(e.message.contains("valid UUID(s)"));
    }
}
