//! Checks for what AWS accepts but is likely a mistake, in the spirit of IAM Access Analyzer's
//! policy checks. They produce warnings; errors are raised by the parser itself.

use jsonc_parser::ast::{Object, Value};
use jsonc_parser::common::Ranged;

use super::arn::ArnPattern;
use super::ast::{Effect, Policy, PolicyKind, Statement};
use super::diagnostic::Severity;
use super::parser::Parser;
use crate::eval::Context;
use crate::eval::principal::PrincipalId;

pub(crate) fn lint(parser: &mut Parser<'_>, policy: &Policy, root: &Object<'_>) {
    for statement in policy.statements() {
        let node = statement_node(root, statement.index);
        let path = format!("Statement[{}]", statement.index);
        let range = node.map_or(root.range(), Ranged::range);
        let warn = |parser: &mut Parser<'_>, code: &'static str, message: String| {
            *parser.statement_label() = Some(statement.label.to_string());
            parser.report(Severity::Warning, code, &range, &path, message);
        };
        if let Some(reason) = never_matches(statement) {
            warn(parser, "never-matches", format!("statement can never match: {reason}"));
        }
        let on_every_resource = statement
            .resource
            .as_ref()
            .is_some_and(|r| !r.negated && r.patterns.iter().any(ArnPattern::is_any));
        if statement.effect == Effect::Allow && on_every_resource {
            let empty = Context::default();
            let grants_pass_role = !statement.action.negated
                && statement.action.patterns.iter().any(|a| a.pattern.matches("iam:passrole", &empty));
            if grants_pass_role {
                warn(
                    parser,
                    "pass-role-wildcard",
                    "allows `iam:PassRole` on every resource: anyone with \
                    this policy can pass any role, including admin roles, to a service; list the role ARNs"
                        .into(),
                );
            }
            if statement.action.negated {
                warn(
                    parser,
                    "allow-not-action",
                    "allows every action except those in `NotAction` on \
                    every resource, including actions added to AWS later; prefer an explicit `Action` list"
                        .into(),
                );
            }
        }
        let public = statement.effect == Effect::Allow
            && policy.kind() == PolicyKind::Resource
            && statement.conditions.is_empty()
            && statement
                .principal
                .as_ref()
                .is_some_and(|p| !p.negated && p.ids.contains(&PrincipalId::Everyone));
        if public {
            warn(
                parser,
                "public-access",
                "grants access to everyone, anonymous callers included, with \
                no condition"
                    .into(),
            );
        }
    }
}

/// The statement's own JSON node, for positions.
fn statement_node<'a, 'b>(root: &'b Object<'a>, index: usize) -> Option<&'b Value<'a>> {
    match &root.get("Statement")?.value {
        value @ Value::Object(_) if index == 0 => Some(value),
        Value::Array(array) => array.elements.get(index),
        _ => None,
    }
}

/// Why a statement cannot apply to any request, if it cannot.
fn never_matches(statement: &Statement) -> Option<String> {
    let action = &statement.action;
    if action.negated && action.patterns.iter().any(|a| a.pattern.is_any()) {
        return Some("`NotAction` includes `*`, which excludes every action".into());
    }
    if let Some(resource) = &statement.resource
        && resource.negated
        && resource.patterns.iter().any(ArnPattern::is_any)
    {
        return Some("`NotResource` includes `*`, which excludes every resource".into());
    }
    if let Some(principal) = &statement.principal
        && principal.negated
        && principal.ids.contains(&PrincipalId::Everyone)
    {
        return Some("`NotPrincipal` includes `*`, which excludes everyone".into());
    }
    None
}
