//! Why a decision was made.

use std::fmt;

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
    pub policy: String,
    /// The statement's `Sid`, or `#index`.
    pub statement: String,
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
            policy: policy.name().to_string(),
            statement: statement.label(),
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
        // AWS's access denied messages name every kind of principal as "User: ARN".
        let who = format!(
            "User: {} {} perform: {action} on resource: {}",
            request.principal().display(),
            if decision.is_allowed() { "is authorized to" } else { "is not authorized to" },
            request.resource()
        );
        let reason = match (decision, layer) {
            (Decision::Allow, Some(layer)) => format!("{who} because {} allows it", layer.policy_phrase()),
            (Decision::Allow, None) => who,
            (Decision::ExplicitDeny, Some(layer)) => {
                format!("{who} with an explicit deny in {}", layer.policy_phrase())
            }
            (Decision::ImplicitDeny, Some(layer)) => {
                let phrase = layer.policy_phrase();
                let noun = phrase.split_once(' ').map_or(phrase, |(_, noun)| noun);
                format!("{who} because no {noun} allows the {action} action")
            }
            (_, None) => format!("{who} because no policy allows the {action} action"),
        };
        Explanation { decision, deciding_layer: layer, reason, matched_statements }
    }
}
