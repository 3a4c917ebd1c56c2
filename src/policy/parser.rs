//! JSON text to a compiled [`Policy`], collecting every error with its position.
//!
//! The JSON is read with `jsonc-parser` in strict mode because it keeps the byte range of every
//! node and shows duplicate keys, which serde would silently merge: AWS rejects them, and a
//! duplicated `Effect` must never be resolved by picking one.

use std::sync::Arc;

use jsonc_parser::ast::{Array, Object, ObjectProp, Value};
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, ParseOptions};

use super::arn::{ArnPattern, ArnPatternError};
use super::ast::{
    ActionMatch, ActionPattern, Effect, Policy, PolicyKind, PrincipalMatch, ResourceMatch, ServiceIndex,
    Statement, Version,
};
use super::condition::{
    Condition, Operator, Test, Values, decode_base64, edit_distance, parse_bool, parse_date, parse_network,
    parse_number,
};
use super::diagnostic::{Diagnostic, LineIndex, PolicyError, Severity};
use super::intern::Interner;
use super::pattern::{Pattern, Syntax};
use super::validate;
use crate::eval::principal::{PrincipalId, is_account_id};
use crate::policy::arn::Arn;

/// Largest policy text accepted, whatever its kind (AWS's own limits are far smaller).
pub const MAX_POLICY_BYTES: usize = 1 << 20;
/// Deepest JSON nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Diagnostics kept for one policy.
const MAX_DIAGNOSTICS: usize = 100;

const POLICY_ELEMENTS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_ELEMENTS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

/// A policy that passed validation, with the warnings found on the way.
#[derive(Debug)]
pub struct Parsed {
    pub policy: Policy,
    pub warnings: Vec<Diagnostic>,
}

/// Parses, validates and compiles `text` as a policy of `kind`. `name` identifies the policy in
/// diagnostics and explanations (a file name, a policy ARN).
pub fn parse(name: &str, text: &str, kind: PolicyKind) -> Result<Parsed, PolicyError> {
    parse_in(name, text, kind, &mut Interner::default())
}

/// Like [`parse`], sharing the policy's strings with every policy compiled with `interner`
/// (a bundle compiles all its policies with one).
pub fn parse_in(
    name: &str,
    text: &str,
    kind: PolicyKind,
    interner: &mut Interner,
) -> Result<Parsed, PolicyError> {
    let mut parser = Parser {
        interner: std::mem::take(interner),
        name,
        kind,
        lines: LineIndex::new(text),
        diagnostics: Vec::new(),
        statement: None,
        version: Version::V2008_10_17,
    };
    let policy = parser.policy(text);
    let Parser { diagnostics, interner: used, .. } = parser;
    *interner = used;
    match policy {
        Some(policy) if !diagnostics.iter().any(|d| d.severity == Severity::Error) => {
            Ok(Parsed { policy, warnings: diagnostics })
        }
        _ => Err(PolicyError { diagnostics }),
    }
}

/// Parses a policy that has already been read as a `serde_json::Value` (embedded in a larger
/// document, such as a test vector). Positions then refer to the re-serialised policy.
pub fn parse_value(name: &str, value: &serde_json::Value, kind: PolicyKind) -> Result<Parsed, PolicyError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| PolicyError {
        diagnostics: vec![Diagnostic {
            severity: Severity::Error,
            code: "invalid-json",
            policy: name.to_string(),
            statement: None,
            path: String::new(),
            line: 1,
            column: 1,
            message: format!("policy cannot be serialised: {e}"),
        }],
    })?;
    parse(name, &text, kind)
}

pub(crate) struct Parser<'a> {
    pub(crate) name: &'a str,
    pub(crate) kind: PolicyKind,
    lines: LineIndex<'a>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// The label of the statement being read, for diagnostics.
    statement: Option<String>,
    version: Version,
    interner: Interner,
}

impl<'a> Parser<'a> {
    pub(crate) fn report(
        &mut self,
        severity: Severity,
        code: &'static str,
        node: &impl Ranged,
        path: &str,
        message: impl Into<String>,
    ) {
        // A hostile policy can hold thousands of errors; the first ones are enough to act on.
        if self.diagnostics.len() >= MAX_DIAGNOSTICS {
            return;
        }
        let (line, column) = self.lines.position(node.range().start);
        self.diagnostics.push(Diagnostic {
            severity,
            code,
            policy: self.name.to_string(),
            statement: self.statement.clone(),
            path: path.to_string(),
            line,
            column,
            message: message.into(),
        });
    }

    pub(crate) fn statement_label(&mut self) -> &mut Option<String> {
        &mut self.statement
    }

    fn error(&mut self, code: &'static str, node: &impl Ranged, path: &str, message: impl Into<String>) {
        self.report(Severity::Error, code, node, path, message);
    }

    fn policy(&mut self, text: &str) -> Option<Policy> {
        let whole = jsonc_parser::common::Range::new(0, 0);
        if text.len() > MAX_POLICY_BYTES {
            self.error(
                "too-large",
                &whole,
                "",
                format!("policy is {} bytes, over the {MAX_POLICY_BYTES}-byte input limit", text.len()),
            );
            return None;
        }
        let options = ParseOptions {
            allow_comments: false,
            allow_loose_object_property_names: false,
            allow_trailing_commas: false,
            allow_missing_commas: false,
            allow_single_quoted_strings: false,
            allow_hexadecimal_numbers: false,
            allow_unary_plus_numbers: false,
            allow_bare_decimal_point_numbers: false,
            allow_non_finite_numbers: false,
            allow_extended_string_escapes: false,
        };
        let root = match jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &options) {
            Ok(result) => result.value,
            Err(e) => {
                let range = e.range();
                self.error("invalid-json", &range, "", format!("malformed JSON: {}", e.kind()));
                return None;
            }
        };
        let Some(root) = root else {
            self.error("invalid-json", &whole, "", "policy is empty: expected a JSON object");
            return None;
        };
        if let Some(deep) = too_deep(&root, 1) {
            self.error("too-deep", &deep, "", format!("JSON nesting is deeper than {MAX_DEPTH} levels"));
            return None;
        }
        let Some(object) = root.as_object() else {
            self.error("expected-object", &root, "", "a policy must be a JSON object with a `Statement`");
            return None;
        };
        self.check_size(text, object);
        self.check_keys(object, "", POLICY_ELEMENTS, "policy");

        self.version = match object.get("Version") {
            None => {
                self.report(
                    Severity::Warning,
                    "missing-version",
                    object,
                    "",
                    "policy has no `Version`: \
                    AWS reads it as `2008-10-17`, where policy variables are plain text; add \
                    `\"Version\": \"2012-10-17\"`",
                );
                Version::V2008_10_17
            }
            Some(prop) => match prop.value.as_string_lit().map(|s| s.value.as_ref()) {
                Some("2012-10-17") => Version::V2012_10_17,
                Some("2008-10-17") => Version::V2008_10_17,
                _ => {
                    self.error(
                        "invalid-version",
                        &prop.value,
                        "Version",
                        "`Version` must be \"2012-10-17\" or \"2008-10-17\"",
                    );
                    Version::V2012_10_17
                }
            },
        };
        if self.version == Version::V2008_10_17 && text.contains("${") {
            self.report(
                Severity::Warning,
                "variables-in-2008",
                object,
                "",
                "policy uses `${...}` but its version is 2008-10-17, so it is matched as literal text: \
                 set `\"Version\": \"2012-10-17\"`",
            );
        }
        let id = match object.get("Id") {
            Some(prop) => match prop.value.as_string_lit() {
                Some(s) => Some(s.value.as_ref().into()),
                None => {
                    self.error("expected-string", &prop.value, "Id", "`Id` must be a string");
                    None
                }
            },
            None => None,
        };
        let statements = match object.get("Statement") {
            None => {
                self.error("missing-statement", object, "", "policy has no `Statement`");
                Vec::new()
            }
            Some(prop) => self.statements(&prop.value),
        };
        self.check_unique_sids(&statements, object);
        self.statement = None;
        let index = ServiceIndex::build(&statements);
        let policy = Policy {
            name: self.name.into(),
            kind: self.kind,
            version: self.version,
            id,
            statements: statements.into_boxed_slice(),
            index,
        };
        validate::lint(self, &policy, object);
        Some(policy)
    }

    fn check_size(&mut self, text: &str, object: &Object<'_>) {
        let size = text.chars().filter(|c| !c.is_whitespace()).count();
        let limit = self.kind.size_limit();
        if size > limit {
            self.error(
                "too-large",
                object,
                "",
                format!(
                    "policy has {size} characters (not counting white space), over AWS's limit of \
                 {limit} for {}",
                    self.kind.described()
                ),
            );
        }
    }

    /// Reports unknown and duplicated keys of `object`.
    fn check_keys(&mut self, object: &Object<'_>, path: &str, known: &[&str], what: &str) {
        let mut seen: Vec<&str> = Vec::new();
        for prop in &object.properties {
            let key = prop.name.as_str();
            let at = join(path, key);
            if seen.contains(&key) {
                self.error("duplicate-key", prop, &at, format!("`{key}` appears more than once"));
            }
            seen.push(key);
            if !known.contains(&key) {
                let hint = known
                    .iter()
                    .find(|k| k.eq_ignore_ascii_case(key) || edit_distance(k, key) <= 2)
                    .map(|k| format!(": did you mean `{k}`?"))
                    .unwrap_or_else(|| format!(": expected one of {}", list(known)));
                self.error("unknown-element", prop, &at, format!("unknown {what} element `{key}`{hint}"));
            }
        }
    }

    fn statements(&mut self, value: &Value<'_>) -> Vec<Statement> {
        match value {
            Value::Object(object) => self.statement(object, 0, "Statement").into_iter().collect(),
            Value::Array(array) if array.elements.is_empty() => {
                self.error(
                    "empty",
                    array,
                    "Statement",
                    "`Statement` is empty: expected at least one statement",
                );
                Vec::new()
            }
            Value::Array(array) => {
                let mut statements = Vec::new();
                for (index, element) in array.elements.iter().enumerate() {
                    let path = format!("Statement[{index}]");
                    match element.as_object() {
                        Some(object) => statements.extend(self.statement(object, index, &path)),
                        None => {
                            self.statement = Some(format!("#{index}"));
                            self.error(
                                "expected-object",
                                element,
                                &path,
                                "a statement must be a JSON object",
                            );
                        }
                    }
                }
                statements
            }
            other => {
                self.error(
                    "expected-object",
                    other,
                    "Statement",
                    "`Statement` must be an object or an array of objects",
                );
                Vec::new()
            }
        }
    }

    fn statement(&mut self, object: &Object<'_>, index: usize, path: &str) -> Option<Statement> {
        let sid: Option<Arc<str>> = object.get("Sid").and_then(|prop| match prop.value.as_string_lit() {
            Some(s) => Some(s.value.as_ref().into()),
            None => {
                self.statement = Some(format!("#{index}"));
                self.error("expected-string", &prop.value, &join(path, "Sid"), "`Sid` must be a string");
                None
            }
        });
        let label: Arc<str> = match &sid {
            Some(sid) if !sid.is_empty() => sid.clone(),
            _ => format!("#{index}").into(),
        };
        self.statement = Some(label.to_string());
        self.check_keys(object, path, STATEMENT_ELEMENTS, "statement");
        if let (Some(sid), Some(prop)) = (&sid, object.get("Sid")) {
            self.check_sid(sid, prop, path);
        }

        let effect = match object.get("Effect") {
            None => {
                self.error(
                    "missing-effect",
                    object,
                    path,
                    "statement has no `Effect`: expected \"Allow\" or \"Deny\"",
                );
                None
            }
            Some(prop) => match prop.value.as_string_lit().map(|s| s.value.as_ref()) {
                Some("Allow") => Some(Effect::Allow),
                Some("Deny") => Some(Effect::Deny),
                Some(other) => {
                    let hint = if other.eq_ignore_ascii_case("allow") || other.eq_ignore_ascii_case("deny") {
                        " (it is case-sensitive)"
                    } else {
                        ""
                    };
                    self.error(
                        "invalid-effect",
                        &prop.value,
                        &join(path, "Effect"),
                        format!("`Effect` is \"{other}\": expected \"Allow\" or \"Deny\"{hint}"),
                    );
                    None
                }
                None => {
                    self.error(
                        "invalid-effect",
                        &prop.value,
                        &join(path, "Effect"),
                        "`Effect` must be the string \"Allow\" or \"Deny\"",
                    );
                    None
                }
            },
        };

        let principal = self.principal_element(object, path);
        if principal.as_ref().is_some_and(|p| p.negated) {
            let node = object.get("NotPrincipal").map_or(object.range(), |p| p.range());
            if self.kind == PolicyKind::Trust {
                self.error("not-principal-not-allowed", &node, &join(path, "NotPrincipal"),
                    "`NotPrincipal` cannot be used in a role trust policy: name the trusted principals with `Principal`");
            } else if effect == Some(Effect::Allow) {
                self.error("not-principal-with-allow", &node, &join(path, "NotPrincipal"),
                    "`NotPrincipal` can only be used with \"Effect\": \"Deny\": an `Allow` with it would grant \
                     everyone else, anonymous callers included; name the principals with `Principal` instead");
            }
        }
        let action = self.action_element(object, path);
        let resource = self.resource_element(object, path);
        let mut conditions = match object.get("Condition") {
            Some(prop) => self.conditions(&prop.value, &join(path, "Condition")),
            None => Vec::new(),
        };
        conditions.sort_by_key(Condition::cost);
        if self.kind == PolicyKind::Rcp {
            self.check_rcp_statement(object, path, effect, action.as_ref(), resource.as_ref(), &conditions);
        }
        Some(Statement {
            sid,
            label,
            index,
            effect: effect?,
            principal,
            action: action?,
            resource,
            conditions: conditions.into_boxed_slice(),
        })
    }

    /// Resource control policies restrict, they do not grant: AWS accepts no `NotAction`, and an
    /// `Allow` only as the statement of `RCPFullAWSAccess` (everyone, every action, every
    /// resource, no condition).
    fn check_rcp_statement(
        &mut self,
        object: &Object<'_>,
        path: &str,
        effect: Option<Effect>,
        action: Option<&ActionMatch>,
        resource: Option<&ResourceMatch>,
        conditions: &[Condition],
    ) {
        if let Some(not_action) = object.get("NotAction") {
            self.error("not-action-not-allowed", not_action, &join(path, "NotAction"),
                "`NotAction` cannot be used in a resource control policy: list the denied actions in `Action`");
        }
        let allows_everything = action
            .is_some_and(|a| !a.negated && a.patterns.iter().any(|p| p.pattern.is_any()))
            && resource.is_some_and(|r| !r.negated && r.patterns.iter().any(ArnPattern::is_any))
            && conditions.is_empty();
        if effect == Some(Effect::Allow) && !allows_everything {
            let node = object.get("Effect").map_or(object.range(), |p| p.range());
            self.error(
                "rcp-allow",
                &node,
                &join(path, "Effect"),
                "a resource control policy can only `Deny`: its one `Allow` is RCPFullAWSAccess's \
                 (\"Principal\": \"*\", \"Action\": \"*\", \"Resource\": \"*\", no `Condition`)",
            );
        }
    }

    fn check_sid(&mut self, sid: &str, prop: &ObjectProp<'_>, path: &str) {
        // Policies stored by IAM itself take only alphanumeric statement ids; resource-based
        // policies of other services are more lenient.
        let iam_stored = !matches!(self.kind, PolicyKind::Resource | PolicyKind::Rcp | PolicyKind::Scp);
        if iam_stored && !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            self.error(
                "invalid-sid",
                &prop.value,
                &join(path, "Sid"),
                format!("`Sid` \"{sid}\" must contain only letters and digits (A-Z, a-z, 0-9)"),
            );
        }
    }

    fn check_unique_sids(&mut self, statements: &[Statement], object: &Object<'_>) {
        let mut seen: Vec<&str> = Vec::new();
        for statement in statements {
            if let Some(sid) = statement.sid.as_deref().filter(|s| !s.is_empty()) {
                if seen.contains(&sid) {
                    self.statement = Some(sid.to_string());
                    let path = format!("Statement[{}].Sid", statement.index);
                    self.error(
                        "duplicate-sid",
                        object,
                        &path,
                        format!(
                            "`Sid` \"{sid}\" is used by more than one statement: statement ids must be unique"
                        ),
                    );
                }
                seen.push(sid);
            }
        }
    }

    /// Reads an element that is a string or a non-empty array of strings.
    fn strings<'v>(&mut self, value: &'v Value<'_>, path: &str, element: &str) -> Vec<(String, &'v Value<'v>)>
    where
        'v: 'v,
    {
        match value {
            Value::StringLit(s) => vec![(s.value.to_string(), value)],
            Value::Array(array) => {
                if array.elements.is_empty() {
                    self.error(
                        "empty",
                        array,
                        path,
                        format!("`{element}` is an empty array: expected at least one value"),
                    );
                }
                let mut out = Vec::new();
                for (i, element_value) in array.elements.iter().enumerate() {
                    match element_value.as_string_lit() {
                        Some(s) => out.push((s.value.to_string(), element_value)),
                        None => self.error(
                            "expected-string",
                            element_value,
                            &format!("{path}[{i}]"),
                            format!("`{element}` values must be strings"),
                        ),
                    }
                }
                out
            }
            other => {
                self.error(
                    "expected-string",
                    other,
                    path,
                    format!("`{element}` must be a string or an array of strings"),
                );
                Vec::new()
            }
        }
    }

    fn principal_element(&mut self, object: &Object<'_>, path: &str) -> Option<PrincipalMatch> {
        let positive = object.get("Principal");
        let negative = object.get("NotPrincipal");
        let prop = match (positive, negative) {
            (Some(_), Some(not)) => {
                self.error(
                    "conflicting-elements",
                    not,
                    &join(path, "NotPrincipal"),
                    "a statement cannot have both `Principal` and `NotPrincipal`",
                );
                return None;
            }
            (Some(p), None) | (None, Some(p)) => p,
            (None, None) => {
                if self.kind.needs_principal() {
                    self.error(
                        "missing-principal",
                        object,
                        path,
                        format!(
                            "statement has no `Principal`: {} must name who it applies to",
                            self.kind.described()
                        ),
                    );
                }
                return None;
            }
        };
        let negated = negative.is_some();
        let element = if negated { "NotPrincipal" } else { "Principal" };
        let path = join(path, element);
        if !self.kind.needs_principal() {
            self.error(
                "principal-not-allowed",
                prop,
                &path,
                format!(
                    "`{element}` is not allowed in {}: it applies to the principal it is attached to",
                    self.kind.described()
                ),
            );
            return None;
        }
        let ids = match &prop.value {
            Value::StringLit(s) if s.value == "*" => vec![PrincipalId::Everyone],
            Value::Object(map) => self.principal_map(map, &path),
            other => {
                self.error("invalid-principal", other, &path, format!(
                    "`{element}` must be \"*\" or an object such as {{\"AWS\": \"arn:aws:iam::111122223333:root\"}}"));
                return None;
            }
        };
        if self.kind == PolicyKind::Rcp && (negated || ids != [PrincipalId::Everyone]) {
            self.error(
                "invalid-principal",
                prop,
                &path,
                "a resource control policy's `Principal` must be \"*\"",
            );
        }
        Some(PrincipalMatch { negated, ids })
    }

    fn principal_map(&mut self, map: &Object<'_>, path: &str) -> Vec<PrincipalId> {
        self.check_keys(map, path, &["AWS", "Service", "Federated", "CanonicalUser"], "principal type");
        if map.properties.is_empty() {
            self.error(
                "empty",
                map,
                path,
                "principal object is empty: expected `AWS`, `Service`, `Federated` or `CanonicalUser`",
            );
        }
        let mut ids = Vec::new();
        for prop in &map.properties {
            let kind = prop.name.as_str();
            let kind_path = join(path, kind);
            for (value, node) in self.strings(&prop.value, &kind_path, kind) {
                let id = match kind {
                    "AWS" => aws_principal(&value),
                    "Service" => (!value.is_empty() && !value.contains('*'))
                        .then(|| PrincipalId::Service(value.clone())),
                    "Federated" => (!value.is_empty() && !value.contains('*'))
                        .then(|| PrincipalId::Federated(value.clone())),
                    "CanonicalUser" => (!value.is_empty() && !value.contains('*'))
                        .then(|| PrincipalId::CanonicalUser(value.clone())),
                    _ => continue,
                };
                match id {
                    Some(id) => ids.push(id),
                    None => self.error("invalid-principal", node, &kind_path, format!(
                        "`{value}` is not a valid `{kind}` principal: expected {}",
                        match kind {
                            "AWS" => "\"*\", a 12-digit account id, or a root, user, role or assumed-role ARN (no partial wildcards)",
                            "Service" => "a service name such as \"ec2.amazonaws.com\"",
                            "Federated" => "an identity provider such as \"cognito-identity.amazonaws.com\" or a SAML/OIDC provider ARN",
                            _ => "a canonical user id",
                        }
                    )),
                }
            }
        }
        ids
    }

    fn action_element(&mut self, object: &Object<'_>, path: &str) -> Option<ActionMatch> {
        let (prop, negated) = match (object.get("Action"), object.get("NotAction")) {
            (Some(_), Some(not)) => {
                self.error(
                    "conflicting-elements",
                    not,
                    &join(path, "NotAction"),
                    "a statement cannot have both `Action` and `NotAction`",
                );
                return None;
            }
            (Some(p), None) => (p, false),
            (None, Some(p)) => (p, true),
            (None, None) => {
                self.error("missing-action", object, path, "statement has no `Action` or `NotAction`");
                return None;
            }
        };
        let element = if negated { "NotAction" } else { "Action" };
        let path = join(path, element);
        let mut patterns = Vec::new();
        for (text, node) in self.strings(&prop.value, &path, element) {
            match action_pattern(&text, &mut self.interner) {
                Some(pattern) => {
                    if self.kind == PolicyKind::Trust && !negated && !trust_action(&text) {
                        self.error(
                            "invalid-action",
                            node,
                            &path,
                            format!(
                                "`{text}` cannot be used in a trust policy: expected `sts:AssumeRole`, \
                             `sts:AssumeRoleWithSAML`, `sts:AssumeRoleWithWebIdentity`, `sts:TagSession`, \
                             `sts:SetSourceIdentity` or another `sts:` action"
                            ),
                        );
                    }
                    patterns.push(pattern);
                }
                None => self.error(
                    "invalid-action",
                    node,
                    &path,
                    format!(
                        "`{text}` is not an action: expected `*` or `service:action` such as `s3:GetObject` \
                     (wildcards `*` and `?` allowed)"
                    ),
                ),
            }
        }
        (!patterns.is_empty()).then_some(ActionMatch { negated, patterns })
    }

    fn resource_element(&mut self, object: &Object<'_>, path: &str) -> Option<ResourceMatch> {
        let (prop, negated) = match (object.get("Resource"), object.get("NotResource")) {
            (Some(_), Some(not)) => {
                self.error(
                    "conflicting-elements",
                    not,
                    &join(path, "NotResource"),
                    "a statement cannot have both `Resource` and `NotResource`",
                );
                return None;
            }
            (Some(p), None) => (p, false),
            (None, Some(p)) => (p, true),
            (None, None) => {
                if self.kind != PolicyKind::Trust {
                    self.error(
                        "missing-resource",
                        object,
                        path,
                        "statement has no `Resource` or `NotResource`: \
                        use \"Resource\": \"*\" for every resource",
                    );
                }
                return None;
            }
        };
        let element = if negated { "NotResource" } else { "Resource" };
        let path = join(path, element);
        if self.kind == PolicyKind::Trust {
            self.error(
                "resource-not-allowed",
                prop,
                &path,
                format!("`{element}` is not allowed in a trust policy: it always protects its own role"),
            );
            return None;
        }
        let variables = self.version == Version::V2012_10_17;
        let mut patterns = Vec::new();
        for (text, node) in self.strings(&prop.value, &path, element) {
            match ArnPattern::parse_in(&text, variables, &mut self.interner) {
                Ok(pattern) => patterns.push(pattern),
                Err(ArnPatternError::NotAnArn(_)) => self.error(
                    "invalid-resource",
                    node,
                    &path,
                    format!(
                        "`{text}` is not a resource: expected `*` or an ARN \
                     `arn:partition:service:region:account-id:resource` such as `arn:aws:s3:::bucket/*`"
                    ),
                ),
                Err(e) => self.error("invalid-variable", node, &path, e.to_string()),
            }
        }
        (!patterns.is_empty()).then_some(ResourceMatch { negated, patterns })
    }

    fn conditions(&mut self, value: &Value<'_>, path: &str) -> Vec<Condition> {
        let Some(block) = value.as_object() else {
            self.error(
                "expected-object",
                value,
                path,
                "`Condition` must be an object such as {\"StringEquals\": {\"aws:username\": \"alice\"}}",
            );
            return Vec::new();
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut conditions = Vec::new();
        for operator_prop in &block.properties {
            let operator_name = operator_prop.name.as_str();
            let operator_path = join(path, operator_name);
            if seen.contains(&operator_name) {
                self.error(
                    "duplicate-key",
                    operator_prop,
                    &operator_path,
                    format!("`{operator_name}` appears more than once"),
                );
            }
            seen.push(operator_name);
            let operator = match Operator::parse(operator_name) {
                Ok(operator) => operator,
                Err(e) => {
                    self.error("unknown-operator", operator_prop, &operator_path, e.to_string());
                    continue;
                }
            };
            let Some(keys) = operator_prop.value.as_object() else {
                self.error("expected-object", &operator_prop.value, &operator_path, format!(
                    "`{operator_name}` must map condition keys to values, such as {{\"aws:SourceIp\": \"203.0.113.0/24\"}}"));
                continue;
            };
            if keys.properties.is_empty() {
                self.error("empty", keys, &operator_path, format!("`{operator_name}` has no condition keys"));
            }
            let mut seen_keys: Vec<&str> = Vec::new();
            for key_prop in &keys.properties {
                let key = key_prop.name.as_str();
                let key_path = join(&operator_path, key);
                if seen_keys.contains(&key) {
                    self.error(
                        "duplicate-key",
                        key_prop,
                        &key_path,
                        format!("`{key}` appears more than once"),
                    );
                }
                seen_keys.push(key);
                if !valid_condition_key(key) {
                    self.error("invalid-condition-key", key_prop, &key_path, format!(
                        "`{key}` is not a condition key: expected `service:name` such as `aws:SourceIp` or `s3:prefix`"));
                    continue;
                }
                if let Some(values) =
                    self.condition_values(operator, &key_prop.value, &key_path, operator_name)
                {
                    conditions.push(Condition {
                        operator,
                        operator_name: self.interner.intern(operator_name),
                        key_name: self.interner.intern(key),
                        key: self.interner.intern(&key.to_ascii_lowercase()),
                        values,
                    });
                }
            }
        }
        conditions
    }

    fn condition_values(
        &mut self,
        operator: Operator,
        value: &Value<'_>,
        path: &str,
        operator_name: &str,
    ) -> Option<Values> {
        let mut raw: Vec<(String, &Value<'_>)> = Vec::new();
        let scalar = |v: &Value<'_>| -> Option<String> {
            match v {
                Value::StringLit(s) => Some(s.value.to_string()),
                Value::NumberLit(n) => Some(n.value.to_string()),
                Value::BooleanLit(b) => Some(b.value.to_string()),
                _ => None,
            }
        };
        match value {
            Value::Array(array) => {
                if array.elements.is_empty() {
                    self.error(
                        "empty",
                        array,
                        path,
                        "condition has an empty list of values: expected at least one",
                    );
                    return None;
                }
                for (i, element) in array.elements.iter().enumerate() {
                    match scalar(element) {
                        Some(text) => raw.push((text, element)),
                        None => {
                            self.error(
                                "expected-string",
                                element,
                                &format!("{path}[{i}]"),
                                "condition values must be strings, numbers or booleans",
                            );
                            return None;
                        }
                    }
                }
            }
            other => match scalar(other) {
                Some(text) => raw.push((text, other)),
                None => {
                    self.error(
                        "expected-string",
                        other,
                        path,
                        "condition value must be a string, number or boolean, or an array of them",
                    );
                    return None;
                }
            },
        }
        let variables = self.version == Version::V2012_10_17;
        let mut failed = false;
        let mut convert =
            |parser: &mut Parser<'_>, ok: bool, node: &Value<'_>, expected: &str, text: &str| {
                if !ok {
                    failed = true;
                    parser.error(
                        "invalid-condition-value",
                        node,
                        path,
                        format!("`{text}` is not valid for `{operator_name}`: expected {expected}"),
                    );
                }
            };
        let values = match operator.test {
            Test::StringEquals | Test::StringEqualsIgnoreCase | Test::StringLike => {
                let syntax =
                    Syntax { wildcards: operator.test == Test::StringLike, variables, lowercase: false };
                let mut patterns = Vec::new();
                for (text, node) in &raw {
                    match Pattern::parse_in(text, syntax, &mut self.interner) {
                        Ok(p) => patterns.push(p),
                        Err(e) => convert(self, false, node, &e.to_string(), text),
                    }
                }
                Values::Strings(patterns)
            }
            Test::Numeric(_) => {
                Values::Numbers(self.typed(&raw, parse_number, &mut convert, "a number such as 10 or 2.5"))
            }
            Test::Date(_) => Values::Dates(self.typed(
                &raw,
                parse_date,
                &mut convert,
                "an ISO 8601 date such as 2024-01-31T12:00:00Z, or epoch seconds",
            )),
            Test::Bool => Values::Bool(self.typed(&raw, parse_bool, &mut convert, "\"true\" or \"false\"")),
            Test::Null => Values::Null(self.typed(
                &raw,
                parse_bool,
                &mut convert,
                "\"true\" (key absent) or \"false\" (key present)",
            )),
            Test::Binary => {
                Values::Binary(self.typed(&raw, decode_base64, &mut convert, "base64-encoded bytes"))
            }
            Test::IpAddress => Values::Networks(self.typed(
                &raw,
                parse_network,
                &mut convert,
                "an IPv4 or IPv6 address or CIDR block such as 203.0.113.0/24 or 2001:db8::/32",
            )),
            Test::Arn => {
                let mut patterns = Vec::new();
                for (text, node) in &raw {
                    match ArnPattern::parse_in(text, variables, &mut self.interner) {
                        Ok(p) => patterns.push(p),
                        Err(_) => convert(
                            self,
                            false,
                            node,
                            "an ARN such as arn:aws:iam::111122223333:role/*",
                            text,
                        ),
                    }
                }
                Values::Arns(patterns)
            }
        };
        (!failed).then_some(values)
    }

    fn typed<T>(
        &mut self,
        raw: &[(String, &Value<'_>)],
        read: impl Fn(&str) -> Option<T>,
        convert: &mut impl FnMut(&mut Parser<'_>, bool, &Value<'_>, &str, &str),
        expected: &str,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (text, node) in raw {
            match read(text) {
                Some(v) => out.push(v),
                None => convert(self, false, node, expected, text),
            }
        }
        out
    }
}

/// Returns the first node nested deeper than [`MAX_DEPTH`].
fn too_deep<'a, 'b>(value: &'b Value<'a>, depth: usize) -> Option<jsonc_parser::common::Range> {
    if depth > MAX_DEPTH {
        return Some(value.range());
    }
    match value {
        Value::Object(Object { properties, .. }) => {
            properties.iter().find_map(|p| too_deep(&p.value, depth + 1))
        }
        Value::Array(Array { elements, .. }) => elements.iter().find_map(|v| too_deep(v, depth + 1)),
        _ => None,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn list(items: &[&str]) -> String {
    items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
}

/// `service:name`, where web identity providers' keys name the provider by its host and path
/// (`accounts.google.com:aud`, `oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE:sub`).
fn valid_condition_key(key: &str) -> bool {
    match key.split_once(':') {
        Some((service, name)) => {
            !service.is_empty()
                && !name.is_empty()
                && service.chars().all(|c| c.is_ascii_alphanumeric() || "-./_".contains(c))
                && !key.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

/// Compiles an action pattern: `*`, or `service:action` with wildcards, case-insensitive.
fn action_pattern(text: &str, interner: &mut Interner) -> Option<ActionPattern> {
    let syntax = Syntax { wildcards: true, variables: false, lowercase: true };
    if text == "*" {
        return Some(ActionPattern {
            pattern: Pattern::parse_in("*", syntax, interner).ok()?,
            service: None,
        });
    }
    let (service, action) = text.split_once(':')?;
    let service_ok = !service.is_empty()
        && service.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '*' | '?'));
    let action_ok = !action.is_empty() && !action.chars().any(|c| c.is_whitespace() || c == ':');
    if !service_ok || !action_ok {
        return None;
    }
    let pattern = Pattern::parse_in(text, syntax, interner).ok()?;
    let literal_service = !service.contains(['*', '?']);
    Some(ActionPattern {
        pattern,
        service: literal_service.then(|| interner.intern(&service.to_ascii_lowercase())),
    })
}

fn trust_action(text: &str) -> bool {
    text == "*" || text.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("sts:"))
}

/// Reads an `AWS` principal value.
fn aws_principal(value: &str) -> Option<PrincipalId> {
    if value == "*" {
        return Some(PrincipalId::Everyone);
    }
    if is_account_id(value) {
        return Some(PrincipalId::Account(value.to_string()));
    }
    if value.contains(['*', '?']) {
        return None;
    }
    let arn = Arn::parse(value)?;
    if !is_account_id(arn.account) || !arn.region.is_empty() {
        return None;
    }
    let (kind, rest) = arn.resource.split_once('/').unwrap_or((arn.resource, ""));
    match (arn.service, kind) {
        ("iam", "root") if rest.is_empty() => Some(PrincipalId::Account(arn.account.to_string())),
        ("iam", "user") if !rest.is_empty() => Some(PrincipalId::Exact(value.to_string())),
        ("iam", "role") if !rest.is_empty() => Some(PrincipalId::Role {
            account: arn.account.to_string(),
            name: rest.rsplit('/').next().unwrap_or(rest).to_string(),
            arn: value.to_string(),
        }),
        ("sts", "assumed-role") if rest.contains('/') => Some(PrincipalId::Exact(value.to_string())),
        ("sts", "federated-user") if !rest.is_empty() => Some(PrincipalId::Exact(value.to_string())),
        _ => None,
    }
}
