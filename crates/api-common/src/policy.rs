//! A policy engine for oslo.policy-style rules.
//!
//! Rules are strings such as `role:admin or (role:reader and system_scope:all)`
//! or `user_id:%(target.user.id)s`, referring to each other with `rule:NAME`.
//! Every service registers its defaults (upstream's), and an operator can
//! override any rule with a YAML (or JSON) file mapping names to rule strings,
//! as with oslo.policy's `policy.yaml`.

use std::collections::HashMap;
use std::path::Path;

/// A parsed rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    True,
    False,
    Role(String),
    Rule(String),
    /// `kind:match`, where match is a literal or a `%(target.key)s` template.
    Generic {
        kind: String,
        template: String,
    },
    And(Vec<Check>),
    Or(Vec<Check>),
    Not(Box<Check>),
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {message}")]
    File { path: String, message: String },
    #[error("invalid rule {name:?}: {message}")]
    Parse { name: String, message: String },
}

/// The caller's credentials as policy checks see them.
#[derive(Clone, Debug, Default)]
pub struct Creds {
    pub user_id: String,
    pub user_domain_id: String,
    pub project_id: Option<String>,
    pub project_domain_id: Option<String>,
    pub domain_id: Option<String>,
    pub system_scope: Option<String>,
    /// Role names, lower-cased.
    pub roles: Vec<String>,
    pub is_admin_project: bool,
}

impl Creds {
    fn value(&self, key: &str) -> Option<CredValue<'_>> {
        fn s(v: &Option<String>) -> Option<CredValue<'_>> {
            v.as_deref().map(CredValue::Str)
        }
        match key {
            "user_id" => Some(CredValue::Str(&self.user_id)),
            "user_domain_id" => Some(CredValue::Str(&self.user_domain_id)),
            "project_id" | "tenant_id" | "tenant" => s(&self.project_id),
            "project_domain_id" => s(&self.project_domain_id),
            "domain_id" => s(&self.domain_id),
            "system_scope" => s(&self.system_scope),
            "roles" => Some(CredValue::List(&self.roles)),
            "is_admin_project" => Some(CredValue::Bool(self.is_admin_project)),
            "is_admin" => Some(CredValue::Bool(false)),
            _ => None,
        }
    }
}

enum CredValue<'a> {
    Str(&'a str),
    List(&'a [String]),
    Bool(bool),
}

/// What the rule is checked against: flat keys such as `target.project.domain_id`.
#[derive(Clone, Debug, Default)]
pub struct Target(HashMap<String, String>);

impl Target {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.insert(key.to_string(), value.into());
        self
    }

    pub fn with_opt(self, key: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.with(key, v),
            None => self,
        }
    }

    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.0.insert(key.to_string(), value.into());
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// True when the target has `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

/// A set of named rules: the defaults with the operator's overrides on top.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: HashMap<String, Check>,
}

impl Policy {
    /// Builds a policy from `(name, rule)` defaults.
    pub fn from_defaults(defaults: &[(&str, &str)]) -> Result<Self, PolicyError> {
        let mut rules = HashMap::new();
        for (name, rule) in defaults {
            rules.insert(name.to_string(), parse_named(name, rule)?);
        }
        Ok(Policy { rules })
    }

    /// Applies overrides from an oslo.policy-style YAML or JSON file.
    /// Rules the file does not name keep their defaults.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.apply_str(&text).map_err(|e| match e {
            PolicyError::File { message, .. } => PolicyError::File {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Applies overrides given as YAML text.
    pub fn apply_str(&mut self, text: &str) -> Result<(), PolicyError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        let map: HashMap<String, String> =
            serde_yaml_ng::from_str(text).map_err(|e| PolicyError::File {
                path: String::new(),
                message: e.to_string(),
            })?;
        for (name, rule) in map {
            let check = parse_named(&name, &rule)?;
            self.rules.insert(name, check);
        }
        Ok(())
    }

    /// True when `creds` may do `rule` on `target`. An unknown rule denies.
    pub fn enforce(&self, rule: &str, creds: &Creds, target: &Target) -> bool {
        match self.rules.get(rule) {
            Some(check) => self.eval(check, creds, target, 0),
            None => {
                tracing::warn!(rule, "policy rule is not registered; denying");
                false
            }
        }
    }

    fn eval(&self, check: &Check, creds: &Creds, target: &Target, depth: usize) -> bool {
        if depth > 32 {
            tracing::warn!("policy rules nest too deeply (a cycle?); denying");
            return false;
        }
        match check {
            Check::True => true,
            Check::False => false,
            Check::Role(role) => {
                let role = match expand(role, target) {
                    Some(r) => r.to_lowercase(),
                    None => return false,
                };
                creds.roles.contains(&role)
            }
            Check::Rule(name) => match self.rules.get(name) {
                Some(c) => self.eval(c, creds, target, depth + 1),
                None => false,
            },
            Check::Generic { kind, template } => generic(kind, template, creds, target),
            Check::And(checks) => checks.iter().all(|c| self.eval(c, creds, target, depth)),
            Check::Or(checks) => checks.iter().any(|c| self.eval(c, creds, target, depth)),
            Check::Not(c) => !self.eval(c, creds, target, depth),
        }
    }
}

fn generic(kind: &str, template: &str, creds: &Creds, target: &Target) -> bool {
    let Some(wanted) = expand(template, target) else {
        return false;
    };
    // A literal on the left: `'value':%(target.x)s` or `True:%(...)s`.
    if let Some(lit) = literal(kind) {
        return wanted == lit;
    }
    match creds.value(kind) {
        Some(CredValue::Str(v)) => v == wanted,
        Some(CredValue::List(v)) => v.contains(&wanted),
        Some(CredValue::Bool(b)) => wanted == if b { "True" } else { "False" },
        None => false,
    }
}

fn literal(s: &str) -> Option<String> {
    if s.len() >= 2
        && (s.starts_with('\'') && s.ends_with('\'') || s.starts_with('"') && s.ends_with('"'))
    {
        return Some(s[1..s.len() - 1].to_string());
    }
    match s {
        "True" | "False" => Some(s.to_string()),
        _ if s.parse::<i64>().is_ok() => Some(s.to_string()),
        _ => None,
    }
}

/// Expands `%(key)s` references from the target; None when a key is missing.
fn expand(template: &str, target: &Target) -> Option<String> {
    if !template.contains("%(") {
        return Some(literal(template).unwrap_or_else(|| template.to_string()));
    }
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("%(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find(")s")?;
        out.push_str(target.get(&after[..end])?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

fn parse_named(name: &str, rule: &str) -> Result<Check, PolicyError> {
    parse(rule).map_err(|message| PolicyError::Parse {
        name: name.to_string(),
        message,
    })
}

/// Parses one rule string.
pub fn parse(rule: &str) -> Result<Check, String> {
    let tokens = tokenize(rule);
    if tokens.is_empty() {
        return Ok(Check::True);
    }
    let mut p = Parser { tokens, pos: 0 };
    let check = p.or_expr()?;
    if p.pos != p.tokens.len() {
        return Err(format!("unexpected {:?}", p.tokens[p.pos]));
    }
    Ok(check)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    Check(String),
}

fn tokenize(rule: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    for word in rule.split_whitespace() {
        let mut w = word;
        while let Some(r) = w.strip_prefix('(') {
            out.push(Tok::Open);
            w = r;
        }
        let mut closes = 0;
        // A `%(key)s` template ends in `s`, so trailing `)` are always closers.
        while let Some(r) = w.strip_suffix(')') {
            closes += 1;
            w = r;
        }
        if !w.is_empty() {
            out.push(match w.to_lowercase().as_str() {
                "and" => Tok::And,
                "or" => Tok::Or,
                "not" => Tok::Not,
                _ => Tok::Check(w.to_string()),
            });
        }
        out.extend(std::iter::repeat_n(Tok::Close, closes));
    }
    out
}

struct Parser {
    tokens: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn or_expr(&mut self) -> Result<Check, String> {
        let mut items = vec![self.and_expr()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            items.push(self.and_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Check::Or(items)
        })
    }

    fn and_expr(&mut self) -> Result<Check, String> {
        let mut items = vec![self.not_expr()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            items.push(self.not_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Check::And(items)
        })
    }

    fn not_expr(&mut self) -> Result<Check, String> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Check::Not(Box::new(self.not_expr()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Check, String> {
        match self.tokens.get(self.pos).cloned() {
            Some(Tok::Open) => {
                self.pos += 1;
                let c = self.or_expr()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err("missing ')'".into());
                }
                self.pos += 1;
                Ok(c)
            }
            Some(Tok::Check(text)) => {
                self.pos += 1;
                check_from(&text)
            }
            Some(t) => Err(format!("unexpected {t:?}")),
            None => Err("rule ends too early".into()),
        }
    }
}

fn check_from(text: &str) -> Result<Check, String> {
    match text {
        "@" => return Ok(Check::True),
        "!" => return Ok(Check::False),
        _ => {}
    }
    let Some((kind, value)) = text.split_once(':') else {
        return Err(format!("{text:?} is not of the form kind:value"));
    };
    Ok(match kind {
        "role" => Check::Role(value.to_string()),
        "rule" => Check::Rule(value.to_string()),
        // Remote HTTP checks are not supported: they deny.
        "http" | "https" => Check::False,
        _ => Check::Generic {
            kind: kind.to_string(),
            template: value.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(roles: &[&str]) -> Creds {
        Creds {
            user_id: "u1".into(),
            user_domain_id: "default".into(),
            project_id: Some("p1".into()),
            project_domain_id: Some("default".into()),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    fn policy() -> Policy {
        Policy::from_defaults(&[
            ("admin_required", "role:admin"),
            ("owner", "user_id:%(target.user.id)s"),
            ("admin_or_owner", "rule:admin_required or rule:owner"),
            (
                "system_reader",
                "(role:reader and system_scope:all) or rule:admin_required",
            ),
            ("nobody", "!"),
            ("anybody", ""),
            ("not_admin", "not role:admin"),
            (
                "project_match",
                "project_id:%(target.project.id)s and role:member",
            ),
            ("literal", "'default':%(target.domain.id)s"),
            ("admin_project", "is_admin_project:True"),
        ])
        .unwrap()
    }

    #[test]
    fn roles_rules_and_templates() {
        let p = policy();
        let t = Target::new().with("target.user.id", "u1");
        assert!(p.enforce("admin_or_owner", &creds(&[]), &t));
        let other = Target::new().with("target.user.id", "u2");
        assert!(!p.enforce("admin_or_owner", &creds(&["member"]), &other));
        assert!(p.enforce("admin_or_owner", &creds(&["admin"]), &other));
        // A missing target key fails the check rather than matching.
        assert!(!p.enforce("owner", &creds(&[]), &Target::new()));
        assert!(!p.enforce("nobody", &creds(&["admin"]), &t));
        assert!(p.enforce("anybody", &creds(&[]), &t));
        assert!(p.enforce("not_admin", &creds(&["member"]), &t));
        assert!(!p.enforce("not_admin", &creds(&["admin"]), &t));
        assert!(!p.enforce("undefined", &creds(&["admin"]), &t));
    }

    #[test]
    fn scope_and_literals() {
        let p = policy();
        let mut sys = creds(&["reader"]);
        assert!(!p.enforce("system_reader", &sys, &Target::new()));
        sys.system_scope = Some("all".into());
        assert!(p.enforce("system_reader", &sys, &Target::new()));
        let t = Target::new().with("target.project.id", "p1");
        assert!(p.enforce("project_match", &creds(&["member"]), &t));
        assert!(!p.enforce("project_match", &creds(&["reader"]), &t));
        let d = Target::new().with("target.domain.id", "default");
        assert!(p.enforce("literal", &creds(&[]), &d));
        let mut c = creds(&[]);
        assert!(!p.enforce("admin_project", &c, &d));
        c.is_admin_project = true;
        assert!(p.enforce("admin_project", &c, &d));
    }

    #[test]
    fn precedence_and_parentheses() {
        assert_eq!(
            parse("role:a or role:b and role:c").unwrap(),
            Check::Or(vec![
                Check::Role("a".into()),
                Check::And(vec![Check::Role("b".into()), Check::Role("c".into())])
            ])
        );
        assert_eq!(
            parse("(role:a or role:b) and not role:c").unwrap(),
            Check::And(vec![
                Check::Or(vec![Check::Role("a".into()), Check::Role("b".into())]),
                Check::Not(Box::new(Check::Role("c".into())))
            ])
        );
        assert_eq!(
            parse("((user_id:%(target.user.id)s))").unwrap(),
            Check::Generic {
                kind: "user_id".into(),
                template: "%(target.user.id)s".into()
            }
        );
        assert!(parse("role:a or").is_err());
        assert!(parse("(role:a").is_err());
        assert!(parse("garbage").is_err());
    }

    #[test]
    fn overrides_replace_defaults() {
        let mut p = policy();
        p.apply_str("\"admin_required\": \"role:superuser\"\nnew_rule: \"@\"\n")
            .unwrap();
        assert!(!p.enforce("admin_required", &creds(&["admin"]), &Target::new()));
        assert!(p.enforce("admin_required", &creds(&["superuser"]), &Target::new()));
        assert!(p.enforce("new_rule", &creds(&[]), &Target::new()));
        assert!(p.apply_str("x: \"role:a or\"").is_err());
    }
}
