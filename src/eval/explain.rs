//! Why a decision was made.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use super::engine::Decision;
use super::request::Request;
use crate::policy::{Effect, Policy, PolicyKind, Statement};

/// A kind of policy in the evaluation, with the organisation level for SCPs and RCPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Identity,
    Resource,
    PermissionsBoundary,
    SessionPolicy,
    /// A service control policy level, 0 being the organisation root.
    Scp(usize),
    /// A resource control policy level, 0 being the organisation root.
    Rcp(usize),
}

impl Layer {
    /// The phrase AWS uses in its access denied messages.
    fn policy_phrase(self) -> &'static str {
        self.kind().described()
    }

    /// The policy kind of this layer.
    pub fn kind(self) -> PolicyKind {
        match self {
            Layer::Identity => PolicyKind::Identity,
            Layer::Resource => PolicyKind::Resource,
            Layer::PermissionsBoundary => PolicyKind::Boundary,
            Layer::SessionPolicy => PolicyKind::Session,
            Layer::Scp(_) => PolicyKind::Scp,
            Layer::Rcp(_) => PolicyKind::Rcp,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Identity => f.write_str("identity"),
            Layer::Resource => f.write_str("resource"),
            Layer::PermissionsBoundary => f.write_str("permissions_boundary"),
            Layer::SessionPolicy => f.write_str("session_policy"),
            Layer::Scp(level) => write!(f, "scp[{level}]"),
            Layer::Rcp(level) => write!(f, "rcp[{level}]"),
        }
    }
}

impl Serialize for Layer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A statement that applied to the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MatchedStatement {
    pub layer: Layer,
    pub policy: Arc<str>,
    /// The statement's `Sid`, or `#index`.
    pub statement: Arc<str>,
    #[serde(serialize_with = "serialize_display")]
    pub effect: Effect,
}

fn serialize_display<S: Serializer, T: fmt::Display>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

impl MatchedStatement {
    pub(crate) fn new(layer: Layer, policy: &Policy, statement: &Statement) -> Self {
        MatchedStatement {
            layer,
            policy: policy.name.clone(),
            statement: statement.label.clone(),
            effect: statement.effect,
        }
    }
}

impl fmt::Display for MatchedStatement {
    /// `layer:policy:statement:effect`, as the audit log records it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.layer, self.policy, self.statement, self.effect)
    }
}

/// A decision with its reasons.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    /// The layer that decided: where the deny was, which layer had no `Allow`, or which
    /// `Allow` was decisive.
    pub deciding_layer: Option<Layer>,
    /// One sentence in the words of AWS's access denied messages.
    pub reason: String,
    pub matched_statements: Vec<MatchedStatement>,
}

impl Explanation {
    pub(crate) fn new(
        request: &Request,
        decision: Decision,
        layer: Option<Layer>,
        matched_statements: Vec<MatchedStatement>,
    ) -> Self {
        let action = request.action();
        let principal = request.principal().display();
        let resource = request.resource();
        // AWS's access denied messages name every kind of principal as "User: ARN". Built with
        // `push_str` rather than `format!`: every audited decision pays for it.
        let verdict = if decision.is_allowed() { " is authorized to" } else { " is not authorized to" };
        let mut reason = String::with_capacity(160 + principal.len() + 2 * action.len() + resource.len());
        for part in ["User: ", principal, verdict, " perform: ", action, " on resource: ", resource] {
            reason.push_str(part);
        }
        let because: &[&str] = match (decision, layer) {
            (Decision::Allow, Some(layer)) => &[" because ", layer.policy_phrase(), " allows it"],
            (Decision::Allow, None) => &[],
            (Decision::ExplicitDeny, Some(layer)) => &[" with an explicit deny in ", layer.policy_phrase()],
            (Decision::ImplicitDeny, Some(layer)) => {
                let phrase = layer.policy_phrase();
                let noun = phrase.split_once(' ').map_or(phrase, |(_, noun)| noun);
                &[" because no ", noun, " allows the ", action, " action"]
            }
            (_, None) => &[" because no policy allows the ", action, " action"],
        };
        for part in because {
            reason.push_str(part);
        }
        Explanation { decision, deciding_layer: layer, reason, matched_statements }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Principal;

    #[test]
    fn reasons_read_like_aws_access_denied_messages() {
        let alice = Principal::parse("arn:aws:iam::111122223333:user/alice").unwrap();
        let request = Request::new(alice, "s3:GetObject", "arn:aws:s3:::b/k").unwrap();
        let reason = |decision, layer| Explanation::new(&request, decision, layer, Vec::new()).reason;
        let asked = "arn:aws:iam::111122223333:user/alice is authorized to perform: s3:GetObject on resource: arn:aws:s3:::b/k";
        let refused = "arn:aws:iam::111122223333:user/alice is not authorized to perform: s3:GetObject on resource: arn:aws:s3:::b/k";
        assert_eq!(
            reason(Decision::Allow, Some(Layer::Resource)),
            format!("User: {asked} because a resource-based policy allows it")
        );
        assert_eq!(reason(Decision::Allow, None), format!("User: {asked}"));
        assert_eq!(
            reason(Decision::ExplicitDeny, Some(Layer::Scp(2))),
            format!("User: {refused} with an explicit deny in a service control policy")
        );
        assert_eq!(
            reason(Decision::ImplicitDeny, Some(Layer::PermissionsBoundary)),
            format!("User: {refused} because no permissions boundary allows the s3:GetObject action")
        );
        assert_eq!(
            reason(Decision::ImplicitDeny, None),
            format!("User: {refused} because no policy allows the s3:GetObject action")
        );
    }
}
