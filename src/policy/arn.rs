//! ARNs and ARN patterns.
//!
//! An ARN is `arn:partition:service:region:account-id:resource`, where only the first five
//! colons separate segments: the resource part may hold colons and slashes of its own. IAM matches
//! a pattern segment by segment, so a wildcard in the region cannot swallow the account; within
//! the resource part `*` spans anything. Matching is case-sensitive.

use super::intern::Interner;
use super::pattern::{Pattern, PatternError, Syntax};
use crate::eval::Context;

/// The six segments of an ARN, borrowed from its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    /// Splits `text` into segments; `None` when it is not `arn:` followed by five segments.
    pub fn parse(text: &'a str) -> Option<Arn<'a>> {
        let rest = text.strip_prefix("arn:")?;
        let mut parts = rest.splitn(5, ':');
        let arn = Arn {
            partition: parts.next()?,
            service: parts.next()?,
            region: parts.next()?,
            account: parts.next()?,
            resource: parts.next()?,
        };
        (!arn.partition.is_empty() && !arn.service.is_empty()).then_some(arn)
    }
}

/// Splits a pattern into its five segments after `arn:`, ignoring colons inside `${...}` (a
/// variable such as `${aws:PrincipalAccount}` can stand for a whole segment).
fn split_segments(text: &str, variables: bool) -> Option<[&str; 5]> {
    let rest = text.strip_prefix("arn:")?;
    let mut segments = [""; 5];
    let mut start = 0;
    let mut found = 0;
    let mut in_variable = false;
    let bytes = rest.as_bytes();
    for (at, &byte) in bytes.iter().enumerate() {
        match byte {
            b'{' if variables && at > 0 && bytes[at - 1] == b'$' => in_variable = true,
            b'}' if in_variable => in_variable = false,
            b':' if !in_variable && found < 4 => {
                segments[found] = &rest[start..at];
                found += 1;
                start = at + 1;
            }
            _ => {}
        }
    }
    if found < 4 {
        return None;
    }
    segments[4] = &rest[start..];
    (!segments[0].is_empty() && !segments[1].is_empty()).then_some(segments)
}

/// A compiled `Resource` / `NotResource` / `ArnLike` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArnPattern {
    /// `*`: every resource.
    Any,
    /// An ARN pattern, matched segment by segment.
    Segments(Box<[Pattern; 5]>),
}

/// Why a resource pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArnPatternError {
    #[error("`{0}` is not an ARN: expected `*` or `arn:partition:service:region:account-id:resource`")]
    NotAnArn(String),
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

impl ArnPattern {
    /// Compiles a resource pattern; `variables` enables `${...}` (policy version 2012-10-17).
    pub fn parse(text: &str, variables: bool) -> Result<ArnPattern, ArnPatternError> {
        ArnPattern::parse_in(text, variables, &mut Interner::default())
    }

    /// Compiles a resource pattern, sharing its strings through `interner`.
    pub fn parse_in(
        text: &str,
        variables: bool,
        interner: &mut Interner,
    ) -> Result<ArnPattern, ArnPatternError> {
        if text == "*" {
            return Ok(ArnPattern::Any);
        }
        let segments =
            split_segments(text, variables).ok_or_else(|| ArnPatternError::NotAnArn(text.to_string()))?;
        let arn = Arn {
            partition: segments[0],
            service: segments[1],
            region: segments[2],
            account: segments[3],
            resource: segments[4],
        };
        let syntax = Syntax { wildcards: true, variables, lowercase: false };
        let mut segment = |s: &str| Pattern::parse_in(s, syntax, interner);
        Ok(ArnPattern::Segments(Box::new([
            segment(arn.partition)?,
            segment(arn.service)?,
            segment(arn.region)?,
            segment(arn.account)?,
            segment(arn.resource)?,
        ])))
    }

    pub fn is_any(&self) -> bool {
        matches!(self, ArnPattern::Any)
    }

    /// The service segment when it is a plain literal (used to spot patterns for another service).
    pub fn literal_service(&self) -> Option<&str> {
        match self {
            ArnPattern::Any => None,
            ArnPattern::Segments(segments) => {
                let service = &segments[1];
                (!service.has_wildcard() && !service.has_variable()).then(|| service.literal_prefix())
            }
        }
    }

    /// Matches a request's resource. A resource that is not an ARN (such as `*` for actions
    /// without resource-level permissions) is matched only by `*`.
    pub fn matches(&self, resource: &str, arn: Option<&Arn<'_>>, context: &Context) -> bool {
        match self {
            ArnPattern::Any => true,
            ArnPattern::Segments(segments) => {
                let Some(arn) = arn.copied().or_else(|| Arn::parse(resource)) else {
                    return false;
                };
                segments[0].matches(arn.partition, context)
                    && segments[1].matches(arn.service, context)
                    && segments[2].matches(arn.region, context)
                    && segments[3].matches(arn.account, context)
                    && segments[4].matches(arn.resource, context)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, resource: &str) -> bool {
        ArnPattern::parse(pattern, true).unwrap().matches(resource, None, &Context::default())
    }

    #[test]
    fn parses_segments() {
        let arn = Arn::parse("arn:aws:logs:us-east-1:123456789012:log-group:app:*").unwrap();
        assert_eq!(arn.service, "logs");
        assert_eq!(arn.account, "123456789012");
        assert_eq!(arn.resource, "log-group:app:*");
        assert!(Arn::parse("arn:aws:s3").is_none());
        assert!(Arn::parse("s3:::bucket").is_none());
    }

    #[test]
    fn wildcards_stay_within_segments() {
        assert!(matches("arn:aws:s3:::bucket/*", "arn:aws:s3:::bucket/a/b:c"));
        assert!(!matches("arn:aws:s3:::bucket/*", "arn:aws:s3:::Bucket/a"));
        assert!(matches("arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:eu-west-1:111122223333:instance/i-1"));
        assert!(!matches(
            "arn:aws:ec2:eu-*:111122223333:instance/*",
            "arn:aws:ec2:eu-west-1:444455556666:instance/i-1"
        ));
        assert!(!matches("arn:aws:s3:::a*", "arn:aws:s3:eu:1:a"), "segments are matched one by one");
        assert!(!matches("arn:aws:s3:::*", "*"));
        assert!(matches("*", "*"));
        assert!(matches("arn:aws:iam::*:role/app-??", "arn:aws:iam::111122223333:role/app-01"));
    }

    #[test]
    fn variables_can_fill_a_segment() {
        let pattern = ArnPattern::parse("arn:aws:ec2:*:${aws:PrincipalAccount}:instance/*", true).unwrap();
        let mut context = Context::default();
        context.insert("aws:PrincipalAccount", ["111122223333"]);
        assert!(pattern.matches("arn:aws:ec2:us-east-1:111122223333:instance/i-1", None, &context));
        assert!(!pattern.matches("arn:aws:ec2:us-east-1:444455556666:instance/i-1", None, &context));
    }

    #[test]
    fn rejects_non_arns() {
        assert!(ArnPattern::parse("bucket/*", true).is_err());
        assert!(ArnPattern::parse("arn:aws:s3", true).is_err());
    }
}
