//! Encoded authorization messages: the full story of a denial (the request's context, the
//! statements that matched, the reason), sealed with the master key so that a caller sees only
//! an opaque string, and whoever may `sts:DecodeAuthorizationMessage` can read it. This is how
//! AWS lets an administrator debug a denial without telling the denied caller what the
//! policies say.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::credentials::KeyRing;
use crate::credentials::keyring::Purpose;
use crate::eval::{Context, Decision, Explanation};

/// What AWS's DecodeAuthorizationMessage returns, in its field names.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DecodedMessage {
    pub allowed: bool,
    pub explicit_deny: bool,
    pub matched_statements: Items<MatchedStatement>,
    pub failures: Items<String>,
    pub context: MessageContext,
    /// iamd's own addition: the sentence of the access denied message.
    pub reason: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchedStatement {
    pub statement_id: String,
    pub effect: String,
    pub policy: String,
    pub layer: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct MessageContext {
    pub principal: MessagePrincipal,
    pub action: String,
    pub resource: String,
    pub conditions: Items<Condition>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct MessagePrincipal {
    pub arn: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub key: String,
    pub values: Items<ConditionValue>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionValue {
    pub value: String,
}

/// The message cannot be opened: not one iamd sealed, altered, or sealed under a master key
/// no longer configured.
#[derive(Debug, thiserror::Error)]
#[error("the encoded authorization message is not valid: it was altered, or sealed by another iamd")]
pub struct InvalidMessage;

/// Seals the explanation of a denial of `action` on `resource` for `principal`.
pub fn encode(
    keyring: &KeyRing,
    principal: &str,
    action: &str,
    resource: &str,
    context: &Context,
    explanation: &Explanation,
) -> String {
    let message = DecodedMessage {
        allowed: explanation.decision == Decision::Allow,
        explicit_deny: explanation.decision == Decision::ExplicitDeny,
        matched_statements: Items {
            items: explanation
                .matched_statements
                .iter()
                .map(|m| MatchedStatement {
                    statement_id: m.statement.to_string(),
                    effect: m.effect.to_string(),
                    policy: m.policy.to_string(),
                    layer: m.layer.to_string(),
                })
                .collect(),
        },
        failures: Items { items: Vec::new() },
        context: MessageContext {
            principal: MessagePrincipal { arn: principal.to_string() },
            action: action.to_string(),
            resource: resource.to_string(),
            conditions: Items {
                items: context
                    .iter()
                    .map(|(key, values)| Condition {
                        key: key.to_string(),
                        values: Items {
                            items: values
                                .iter()
                                .map(|v| ConditionValue { value: v.as_str().to_string() })
                                .collect(),
                        },
                    })
                    .collect(),
            },
        },
        reason: explanation.reason.clone(),
    };
    // Serialising plain strings and booleans cannot fail.
    let json = serde_json::to_vec(&message).unwrap_or_default();
    let sealed = keyring.seal(Purpose::AuthorizationMessage, b"", &json);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
}

/// Opens an encoded message into the JSON document AWS returns.
pub fn decode(keyring: &KeyRing, encoded: &str) -> Result<String, InvalidMessage> {
    let sealed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim())
        .map_err(|_| InvalidMessage)?;
    let json = keyring.open(Purpose::AuthorizationMessage, b"", &sealed).map_err(|_| InvalidMessage)?;
    String::from_utf8(json).map_err(|_| InvalidMessage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Layer;

    fn explanation() -> Explanation {
        Explanation {
            decision: Decision::ExplicitDeny,
            deciding_layer: Some(Layer::Identity),
            reason: "User: arn:aws:iam::111122223333:user/bob is not authorized".into(),
            matched_statements: Vec::new(),
        }
    }

    #[test]
    fn opens_what_it_sealed_and_nothing_else() {
        let keyring = KeyRing::ephemeral();
        let mut context = Context::default();
        context.insert("aws:SourceIp", ["192.0.2.1"]);
        let user = "arn:aws:iam::111122223333:user/bob";
        let encoded = encode(&keyring, user, "s3:GetObject", "arn:aws:s3:::b/k", &context, &explanation());
        assert!(!encoded.contains("s3:GetObject") && !encoded.contains("bob"), "the message is opaque");
        let decoded: DecodedMessage = serde_json::from_str(&decode(&keyring, &encoded).unwrap()).unwrap();
        assert!(!decoded.allowed && decoded.explicit_deny);
        assert_eq!(decoded.context.action, "s3:GetObject");
        assert_eq!(decoded.context.conditions.items[0].key, "aws:sourceip");
        assert_eq!(decoded.context.conditions.items[0].values.items[0].value, "192.0.2.1");

        let mut altered = encoded.into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert!(decode(&keyring, &String::from_utf8(altered).unwrap()).is_err());
        let other = KeyRing::ephemeral();
        let foreign = encode(&other, user, "s3:GetObject", "*", &context, &explanation());
        assert!(decode(&keyring, &foreign).is_err(), "another master key's message does not open");
    }
}
