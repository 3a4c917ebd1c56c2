//! Route maps: how an HTTP request in front of a service becomes an IAM request.
//!
//! A bundle's `routes/NAME.json` files each cover some hosts:
//!
//! ```json
//! {"hosts": ["api.example.com"], "public": ["/healthz"],
//!  "identities": [{"spiffe": "spiffe://cluster.local/ns/*/sa/reports", "principal": "arn:aws:iam::111122223333:role/reports"}],
//!  "web_identities": [{"issuer": "https://token.example.com", "role": "arn:aws:iam::111122223333:role/partners"}],
//!  "rules": [{"method": "GET", "path": "/buckets/{bucket}/objects/{key+}",
//!             "action": "s3:GetObject", "resource": "arn:aws:s3:::{bucket}/{key}",
//!             "headers": {"x-api-version": "2"},
//!             "context": {"s3:prefix": "query:prefix", "app:tenant": "header:x-tenant"}}]}
//! ```
//!
//! `{name}` captures one path segment, `{name+}` the rest of the path; captures fill the
//! resource template. The first rule of the first file covering the host that matches wins; a
//! request no rule maps is denied, unless its path is one of the host's public paths.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{BundleError, error};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFileText {
    hosts: Vec<String>,
    #[serde(default)]
    public: Vec<String>,
    #[serde(default)]
    identities: Vec<IdentityText>,
    #[serde(default)]
    web_identities: Vec<WebIdentityText>,
    #[serde(default)]
    rules: Vec<RuleText>,
}

/// Bearer tokens of `issuer` act as sessions of `role`, as AssumeRoleWithWebIdentity would
/// give them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebIdentityText {
    issuer: String,
    role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityText {
    spiffe: String,
    principal: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleText {
    #[serde(default = "any_method")]
    method: String,
    path: String,
    action: String,
    resource: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    context: BTreeMap<String, String>,
}

fn any_method() -> String {
    "*".to_string()
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One(String),
    Rest(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Source {
    Header(String),
    Query(String),
}

#[derive(Clone, Debug)]
struct Rule {
    method: Option<String>,
    path: Vec<Segment>,
    action: String,
    resource: String,
    headers: Vec<(String, String)>,
    context: Vec<(String, Source)>,
}

#[derive(Clone, Debug)]
struct RouteFile {
    hosts: Vec<String>,
    public: Vec<String>,
    identities: Vec<(String, String)>,
    /// (issuer, role ARN)
    web_identities: Vec<(String, String)>,
    rules: Vec<Rule>,
}

/// The compiled route maps of a bundle.
#[derive(Clone, Debug, Default)]
pub struct RouteMap {
    files: Vec<RouteFile>,
}

/// What a request maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mapped {
    /// A public path of the host: allowed without a decision.
    Public,
    /// An IAM request.
    Request { action: String, resource: String, context: Vec<(String, String)> },
    /// No rule maps it: denied.
    Unmapped,
}

/// An HTTP request as the proxy saw it.
#[derive(Clone, Copy, Debug)]
pub struct HttpView<'a> {
    pub host: &'a str,
    pub method: &'a str,
    /// The path without the query, still percent-encoded.
    pub path: &'a str,
    pub query: &'a str,
    /// Lower-case header names.
    pub headers: &'a std::collections::HashMap<String, String>,
}

fn host_matches(pattern: &str, host: &str) -> bool {
    pattern == "*"
        || pattern.eq_ignore_ascii_case(host)
        || pattern.strip_prefix("*.").is_some_and(|suffix| {
            host.len() > suffix.len()
                && host.to_ascii_lowercase().ends_with(&format!(".{}", suffix.to_ascii_lowercase()))
        })
}

/// `*` in a SPIFFE pattern spans one path segment, which SPIFFE requires to be non-empty.
fn spiffe_matches(pattern: &str, id: &str) -> bool {
    let (pattern, id): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), id.split('/').collect());
    pattern.len() == id.len() && pattern.iter().zip(&id).all(|(p, s)| (*p == "*" && !s.is_empty()) || p == s)
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

impl Rule {
    fn captures(&self, method: &str, path: &str) -> Option<Vec<(String, String)>> {
        if self.method.as_deref().is_some_and(|m| !m.eq_ignore_ascii_case(method)) {
            return None;
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut captures = Vec::new();
        let mut at = 0;
        for segment in &self.path {
            match segment {
                Segment::Literal(text) => {
                    if segments.get(at) != Some(&text.as_str()) {
                        return None;
                    }
                    at += 1;
                }
                Segment::One(name) => {
                    let value = segments.get(at).filter(|s| !s.is_empty())?;
                    captures.push((name.clone(), decode(value)));
                    at += 1;
                }
                Segment::Rest(name) => {
                    let rest = &segments[at.min(segments.len())..];
                    if rest.is_empty() || rest.iter().all(|s| s.is_empty()) {
                        return None;
                    }
                    captures.push((name.clone(), decode(&rest.join("/"))));
                    at = segments.len();
                }
            }
        }
        (at == segments.len()).then_some(captures)
    }
}

/// Fills `{name}` placeholders from `captures`.
fn fill(template: &str, captures: &[(String, String)]) -> String {
    let mut out = template.to_string();
    for (name, value) in captures {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key) == name).then(|| decode(&value.replace('+', " ")))
    })
}

impl RouteMap {
    /// Maps `request`. `hints` are the per-route `context_extensions` of the proxy:
    /// `iamd.action` and `iamd.resource` override (or, without a rule, complete) the mapping.
    pub fn map(&self, request: &HttpView<'_>, hints: &std::collections::HashMap<String, String>) -> Mapped {
        let hinted = (hints.get("iamd.action"), hints.get("iamd.resource"));
        for file in self.files_for(request.host) {
            if file.public.iter().any(|p| p == request.path) {
                return Mapped::Public;
            }
            for rule in &file.rules {
                let Some(captures) = rule.captures(request.method, request.path) else { continue };
                let headers_match = rule
                    .headers
                    .iter()
                    .all(|(name, value)| request.headers.get(name).is_some_and(|v| v == value));
                if !headers_match {
                    continue;
                }
                let context = rule
                    .context
                    .iter()
                    .filter_map(|(key, source)| {
                        let value = match source {
                            Source::Header(name) => request.headers.get(name).cloned(),
                            Source::Query(name) => query_value(request.query, name),
                        };
                        value.map(|v| (key.clone(), v))
                    })
                    .collect();
                return Mapped::Request {
                    action: hinted.0.cloned().unwrap_or_else(|| rule.action.clone()),
                    resource: fill(hinted.1.unwrap_or(&rule.resource), &captures),
                    context,
                };
            }
        }
        match hinted {
            (Some(action), Some(resource)) => {
                Mapped::Request { action: action.clone(), resource: resource.clone(), context: Vec::new() }
            }
            _ => Mapped::Unmapped,
        }
    }

    /// The files covering `host` (a `Host` header: a port is ignored), in order.
    fn files_for<'a, 'h>(&'a self, host: &'h str) -> impl Iterator<Item = &'a RouteFile> + 'h
    where
        'a: 'h,
    {
        let host = host
            .rsplit_once(':')
            .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host });
        self.files.iter().filter(move |f| f.hosts.iter().any(|p| host_matches(p, host)))
    }

    /// The principal an mTLS peer's SPIFFE ID maps to, by the first matching rule.
    pub fn spiffe_principal(&self, host: &str, spiffe_id: &str) -> Option<&str> {
        self.files_for(host)
            .flat_map(|f| &f.identities)
            .find(|(pattern, _)| spiffe_matches(pattern, spiffe_id))
            .map(|(_, principal)| principal.as_str())
    }

    /// The role a bearer token of `issuer` acts as on `host`, by the first matching entry; none
    /// means the token's provider is the (federated) principal.
    pub fn web_identity_role(&self, host: &str, issuer: &str) -> Option<&str> {
        self.files_for(host)
            .flat_map(|f| &f.web_identities)
            .find(|(trusted, _)| trusted.trim_end_matches('/') == issuer.trim_end_matches('/'))
            .map(|(_, role)| role.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Reads and validates one `routes/NAME.json`.
    pub(super) fn add(&mut self, file: &str, text: &str, errors: &mut Vec<BundleError>) {
        let parsed: RouteFileText = match serde_json::from_str(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                errors.push(super::json_error(file, &e));
                return;
            }
        };
        let before = errors.len();
        if parsed.hosts.is_empty() {
            errors.push(error(file, "`hosts` is empty: list the hosts this file covers, or \"*\""));
        }
        for path in &parsed.public {
            if !path.starts_with('/') || path.contains('?') {
                errors
                    .push(error(file, format!("public path `{path}` must start with `/` and have no query")));
            }
        }
        let mut identities = Vec::new();
        for (i, identity) in parsed.identities.iter().enumerate() {
            match identity.spiffe.strip_prefix("spiffe://").map(|rest| rest.split('/').next()) {
                None => errors
                    .push(error(file, format!("identities[{i}]: `spiffe` must be a spiffe:// ID pattern"))),
                // A wildcard trust domain would map peers of every trust domain Envoy's CAs
                // vouch for, which is never what a rule about one workload means.
                Some(Some(domain)) if domain.is_empty() || domain.contains('*') => errors.push(error(
                    file,
                    format!("identities[{i}]: `spiffe` must name its trust domain, without `*`: `{domain}`"),
                )),
                Some(_) => {}
            }
            if let Err(e) = crate::eval::Principal::parse(&identity.principal) {
                errors.push(error(file, format!("identities[{i}]: `principal`: {e}")));
            }
            identities.push((identity.spiffe.clone(), identity.principal.clone()));
        }
        let mut web_identities = Vec::new();
        for (i, web) in parsed.web_identities.iter().enumerate() {
            if !web.issuer.starts_with("https://") {
                errors.push(error(
                    file,
                    format!(
                        "web_identities[{i}]: `issuer` must be the https:// URL of a configured OIDC provider"
                    ),
                ));
            }
            let is_role =
                matches!(crate::eval::Principal::parse(&web.role), Ok(crate::eval::Principal::Role { .. }));
            if !is_role {
                errors.push(error(
                    file,
                    format!(
                        "web_identities[{i}]: `role` must be a role ARN such as arn:aws:iam::111122223333:role/NAME, not `{}`",
                        web.role
                    ),
                ));
            }
            web_identities.push((web.issuer.clone(), web.role.clone()));
        }
        let mut rules = Vec::new();
        for (i, rule) in parsed.rules.iter().enumerate() {
            let at = |field: &str, message: String| {
                error(file, format!("rules[{i}] ({} {}): `{field}`: {message}", rule.method, rule.path))
            };
            let mut segments = Vec::new();
            let parts: Vec<&str> = rule.path.trim_start_matches('/').split('/').collect();
            if !rule.path.starts_with('/') {
                errors.push(at("path", "must start with `/`".into()));
            }
            for (n, part) in parts.iter().enumerate() {
                let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) => match name.strip_suffix('+') {
                        Some(rest) if n + 1 == parts.len() => Segment::Rest(rest.to_string()),
                        Some(_) => {
                            errors.push(at(
                                "path",
                                format!("`{part}` captures the rest of the path: it must be last"),
                            ));
                            continue;
                        }
                        None => Segment::One(name.to_string()),
                    },
                    None if part.contains(['{', '}']) => {
                        errors
                            .push(at("path", format!("`{part}`: a capture is a whole segment, `{{name}}`")));
                        continue;
                    }
                    None => Segment::Literal(part.to_string()),
                };
                if let Segment::One(name) | Segment::Rest(name) = &segment
                    && (name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                {
                    errors.push(at("path", format!("`{part}`: capture names are letters, digits and `_`")));
                }
                segments.push(segment);
            }
            let captured: Vec<&str> = segments
                .iter()
                .filter_map(|s| match s {
                    Segment::One(n) | Segment::Rest(n) => Some(n.as_str()),
                    Segment::Literal(_) => None,
                })
                .collect();
            let mut rest = rule.resource.as_str();
            while let Some(start) = rest.find('{') {
                let Some(end) = rest[start..].find('}') else {
                    errors.push(at("resource", "a `{` is not closed".into()));
                    break;
                };
                let name = &rest[start + 1..start + end];
                if !captured.contains(&name) {
                    errors.push(at("resource", format!("`{{{name}}}` is not captured by the path")));
                }
                rest = &rest[start + end + 1..];
            }
            if rule.resource != "*" && crate::policy::arn::Arn::parse(&rule.resource).is_none() {
                errors.push(at("resource", format!("`{}` is not an ARN template or `*`", rule.resource)));
            }
            let valid_action = rule.action.split_once(':').is_some_and(|(s, a)| {
                !s.is_empty() && !a.is_empty() && !rule.action.contains(['*', '?', '{'])
            });
            if !valid_action {
                errors.push(at("action", format!("`{}` must be one `service:Action`", rule.action)));
            }
            let mut context = Vec::new();
            for (key, source) in &rule.context {
                let source = match source.split_once(':') {
                    Some(("header", name)) if !name.is_empty() => Source::Header(name.to_ascii_lowercase()),
                    Some(("query", name)) if !name.is_empty() => Source::Query(name.to_string()),
                    _ => {
                        errors.push(at(
                            &format!("context.{key}"),
                            format!("`{source}` must be `header:NAME` or `query:NAME`"),
                        ));
                        continue;
                    }
                };
                context.push((key.clone(), source));
            }
            rules.push(Rule {
                method: (rule.method != "*").then(|| rule.method.to_ascii_uppercase()),
                path: segments,
                action: rule.action.clone(),
                resource: rule.resource.clone(),
                headers: rule.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect(),
                context,
            });
        }
        if errors.len() == before {
            self.files.push(RouteFile {
                hosts: parsed.hosts,
                public: parsed.public,
                identities,
                web_identities,
                rules,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn map() -> RouteMap {
        let mut routes = RouteMap::default();
        let mut errors = Vec::new();
        routes.add(
            "routes/api.json",
            r#"{"hosts": ["api.example.com"], "public": ["/healthz"], "rules": [
                {"method": "GET", "path": "/buckets/{bucket}/objects/{key+}", "action": "s3:GetObject",
                 "resource": "arn:aws:s3:::{bucket}/{key}", "context": {"s3:prefix": "query:prefix", "app:tenant": "header:x-tenant"}},
                {"method": "GET", "path": "/buckets/{bucket}", "action": "s3:ListBucket", "resource": "arn:aws:s3:::{bucket}"}]}"#,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        routes
    }

    fn view<'a>(
        method: &'a str,
        path: &'a str,
        query: &'a str,
        headers: &'a HashMap<String, String>,
    ) -> HttpView<'a> {
        HttpView { host: "api.example.com:8443", method, path, query, headers }
    }

    #[test]
    fn rules_capture_segments_and_fill_resources_and_context() {
        let headers = HashMap::from([("x-tenant".to_string(), "acme".to_string())]);
        let mapped = map().map(
            &view("GET", "/buckets/reports/objects/2026/q1%20final.csv", "prefix=2026%2F", &headers),
            &HashMap::new(),
        );
        assert_eq!(
            mapped,
            Mapped::Request {
                action: "s3:GetObject".into(),
                resource: "arn:aws:s3:::reports/2026/q1 final.csv".into(),
                context: vec![("app:tenant".into(), "acme".into()), ("s3:prefix".into(), "2026/".into())],
            }
        );
        let none = HashMap::new();
        assert!(matches!(
            map().map(&view("GET", "/buckets/reports", "", &none), &none),
            Mapped::Request { .. }
        ));
        assert_eq!(map().map(&view("DELETE", "/buckets/reports", "", &none), &none), Mapped::Unmapped);
        assert_eq!(map().map(&view("GET", "/buckets/reports/objects", "", &none), &none), Mapped::Unmapped);
        assert_eq!(map().map(&view("GET", "/healthz", "", &none), &none), Mapped::Public);
        let hints = HashMap::from([("iamd.action".to_string(), "s3:GetObjectVersion".to_string())]);
        let hinted = map().map(&view("GET", "/buckets/b/objects/k", "", &none), &hints);
        assert!(matches!(hinted, Mapped::Request { action, .. } if action == "s3:GetObjectVersion"));
    }

    #[test]
    fn bad_rules_are_reported_with_file_rule_and_field() {
        let mut errors = Vec::new();
        RouteMap::default().add(
            "routes/bad.json",
            r#"{"hosts": ["*"], "rules": [{"method": "GET", "path": "/a/{rest+}/b", "action": "s3:*", "resource": "arn:aws:s3:::{bucket}"}]}"#,
            &mut errors,
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|e| e.contains("routes/bad.json: rules[0] (GET /a/{rest+}/b): `path`")),
            "{text:?}"
        );
        assert!(text.iter().any(|e| e.contains("`resource`: `{bucket}` is not captured")), "{text:?}");
        assert!(text.iter().any(|e| e.contains("`action`")), "{text:?}");
    }

    #[test]
    fn spiffe_ids_map_by_segment_patterns() {
        let mut routes = RouteMap::default();
        let mut errors = Vec::new();
        routes.add(
            "routes/mesh.json",
            r#"{"hosts": ["*"], "identities": [{"spiffe": "spiffe://cluster.local/ns/*/sa/reports", "principal": "arn:aws:iam::111122223333:role/reports"}]}"#,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            routes.spiffe_principal("h", "spiffe://cluster.local/ns/prod/sa/reports"),
            Some("arn:aws:iam::111122223333:role/reports")
        );
        assert_eq!(routes.spiffe_principal("h", "spiffe://cluster.local/ns/prod/sa/other"), None);
        assert_eq!(routes.spiffe_principal("h", "spiffe://cluster.local/ns//sa/reports"), None);

        routes.add(
            "routes/any.json",
            r#"{"hosts": ["*"], "identities": [{"spiffe": "spiffe://*/ns/prod/sa/reports", "principal": "arn:aws:iam::111122223333:role/reports"}]}"#,
            &mut errors,
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|e| e.contains("routes/any.json") && e.contains("trust domain")), "{text:?}");
    }

    #[test]
    fn web_identities_map_issuers_to_roles_per_host() {
        let mut routes = RouteMap::default();
        let mut errors = Vec::new();
        routes.add(
            "routes/partners.json",
            r#"{"hosts": ["api.example.com"], "web_identities": [{"issuer": "https://token.example.com/", "role": "arn:aws:iam::111122223333:role/partners"}]}"#,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            routes.web_identity_role("api.example.com", "https://token.example.com"),
            Some("arn:aws:iam::111122223333:role/partners")
        );
        assert_eq!(
            routes.web_identity_role("api.example.com:8443", "https://token.example.com"),
            Some("arn:aws:iam::111122223333:role/partners"),
            "a port in the Host header does not change the mapping"
        );
        assert_eq!(routes.web_identity_role("other.example.com", "https://token.example.com"), None);
        assert_eq!(routes.web_identity_role("api.example.com", "https://other.example.com"), None);

        routes.add(
            "routes/bad.json",
            r#"{"hosts": ["*"], "web_identities": [{"issuer": "token.example.com", "role": "arn:aws:iam::111122223333:user/alice"}]}"#,
            &mut errors,
        );
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].contains("routes/bad.json") && messages[0].contains("web_identities[0]: `issuer`")
        );
        assert!(messages[1].contains("`role` must be a role ARN") && messages[1].contains("user/alice"));
    }
}
