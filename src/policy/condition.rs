//! Condition operators: how a `Condition` block is read and how it is evaluated.
//!
//! Semantics follow the IAM User Guide's "Condition operators" and "Multivalued context keys":
//! several operators in a block AND together, several keys under an operator AND together,
//! several values for one key OR together. A key missing from the request makes a positive
//! operator false and a negated one (`StringNotEquals`, `NotIpAddress`, ...) true; `...IfExists`
//! makes any operator true on a missing key; `ForAllValues:` is true on a missing or empty key
//! and `ForAnyValue:` false.

use std::net::IpAddr;

use ipnet::IpNet;

use super::arn::{Arn, ArnPattern};
use super::pattern::Pattern;
use crate::eval::Context;
use crate::eval::context::ContextValue;

/// The comparison family of an operator, without negation or qualifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    Numeric(Ordering),
    Date(Ordering),
    Bool,
    Binary,
    IpAddress,
    Arn,
    Null,
}

/// How numbers and dates compare to the policy's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ordering {
    Equals,
    LessThan,
    LessThanEquals,
    GreaterThan,
    GreaterThanEquals,
}

impl Ordering {
    fn holds<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Ordering::Equals => request == policy,
            Ordering::LessThan => request < policy,
            Ordering::LessThanEquals => request <= policy,
            Ordering::GreaterThan => request > policy,
            Ordering::GreaterThanEquals => request >= policy,
        }
    }
}

/// `ForAllValues:` / `ForAnyValue:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetQualifier {
    ForAllValues,
    ForAnyValue,
}

/// A parsed condition operator such as `ForAnyValue:StringNotLikeIfExists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operator {
    pub test: Test,
    pub negated: bool,
    pub if_exists: bool,
    pub qualifier: Option<SetQualifier>,
}

const OPERATORS: &[(&str, Test, bool)] = &[
    ("StringEquals", Test::StringEquals, false),
    ("StringNotEquals", Test::StringEquals, true),
    ("StringEqualsIgnoreCase", Test::StringEqualsIgnoreCase, false),
    ("StringNotEqualsIgnoreCase", Test::StringEqualsIgnoreCase, true),
    ("StringLike", Test::StringLike, false),
    ("StringNotLike", Test::StringLike, true),
    ("NumericEquals", Test::Numeric(Ordering::Equals), false),
    ("NumericNotEquals", Test::Numeric(Ordering::Equals), true),
    ("NumericLessThan", Test::Numeric(Ordering::LessThan), false),
    ("NumericLessThanEquals", Test::Numeric(Ordering::LessThanEquals), false),
    ("NumericGreaterThan", Test::Numeric(Ordering::GreaterThan), false),
    ("NumericGreaterThanEquals", Test::Numeric(Ordering::GreaterThanEquals), false),
    ("DateEquals", Test::Date(Ordering::Equals), false),
    ("DateNotEquals", Test::Date(Ordering::Equals), true),
    ("DateLessThan", Test::Date(Ordering::LessThan), false),
    ("DateLessThanEquals", Test::Date(Ordering::LessThanEquals), false),
    ("DateGreaterThan", Test::Date(Ordering::GreaterThan), false),
    ("DateGreaterThanEquals", Test::Date(Ordering::GreaterThanEquals), false),
    ("Bool", Test::Bool, false),
    ("BinaryEquals", Test::Binary, false),
    ("IpAddress", Test::IpAddress, false),
    ("NotIpAddress", Test::IpAddress, true),
    ("ArnEquals", Test::Arn, false),
    ("ArnLike", Test::Arn, false),
    ("ArnNotEquals", Test::Arn, true),
    ("ArnNotLike", Test::Arn, true),
    ("Null", Test::Null, false),
];

/// Why an operator name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    #[error("unknown condition operator `{name}`{hint}")]
    Unknown { name: String, hint: String },
    #[error("`Null` cannot take `IfExists` or a `ForAllValues:`/`ForAnyValue:` qualifier")]
    QualifiedNull,
}

impl Operator {
    /// Parses an operator name. Names are matched case-insensitively, as IAM does.
    pub fn parse(name: &str) -> Result<Operator, OperatorError> {
        let (qualifier, rest) = if let Some(rest) = strip_prefix_ignore_case(name, "ForAllValues:") {
            (Some(SetQualifier::ForAllValues), rest)
        } else if let Some(rest) = strip_prefix_ignore_case(name, "ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), rest)
        } else {
            (None, name)
        };
        let lookup = |base: &str| OPERATORS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(base));
        let (found, if_exists) = match lookup(rest) {
            Some(found) => (found, false),
            None => match strip_suffix_ignore_case(rest, "IfExists").and_then(lookup) {
                Some(found) => (found, true),
                None => {
                    return Err(OperatorError::Unknown { name: name.to_string(), hint: hint(rest) });
                }
            },
        };
        let &(_, test, negated) = found;
        if test == Test::Null && (if_exists || qualifier.is_some()) {
            return Err(OperatorError::QualifiedNull);
        }
        Ok(Operator { test, negated, if_exists, qualifier })
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let split = text.len().checked_sub(suffix.len())?;
    let tail = text.get(split..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &text[..split])
}

/// A "did you mean" for near misses such as `StringEqual` or `IPAddress`.
fn hint(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let best = OPERATORS
        .iter()
        .map(|(n, _, _)| (n, edit_distance(&lower, &n.to_ascii_lowercase())))
        .min_by_key(|(_, d)| *d);
    match best {
        Some((n, d)) if d <= 3 => format!(": did you mean `{n}`?"),
        _ => ": expected an operator such as `StringEquals`, `ArnLike`, `IpAddress` or `Null`".into(),
    }
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb { previous } else { 1 + previous.min(row[j]).min(row[j + 1]) };
            previous = current;
        }
    }
    row[b.len()]
}

/// The policy's values for one condition key, compiled for the operator's test.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    Strings(Vec<Pattern>),
    Numbers(Vec<f64>),
    Dates(Vec<i128>),
    Bool(Vec<bool>),
    Binary(Vec<Vec<u8>>),
    Networks(Vec<IpNet>),
    Arns(Vec<ArnPattern>),
    Null(Vec<bool>),
}

/// One key of one operator: `"StringEquals": {"aws:username": ["alice", "bob"]}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub operator: Operator,
    /// As written in the policy, for explanations.
    pub operator_name: std::sync::Arc<str>,
    pub key_name: std::sync::Arc<str>,
    /// Lower-cased, for lookups.
    pub key: std::sync::Arc<str>,
    pub values: Values,
}

impl Condition {
    /// A rough cost of evaluating this condition, so that the cheap tests of a statement run
    /// first (conditions AND together, so their order never changes a result).
    pub(crate) fn cost(&self) -> u8 {
        match self.operator.test {
            Test::Null | Test::Bool => 0,
            Test::StringEquals | Test::StringEqualsIgnoreCase | Test::Binary => 1,
            Test::Numeric(_) | Test::IpAddress => 2,
            Test::StringLike | Test::Arn => 3,
            Test::Date(_) => 4,
        }
    }

    /// Evaluates this condition against the request context.
    pub fn holds(&self, context: &Context) -> bool {
        let request_values = context.get(&self.key).filter(|values| !values.is_empty());
        let op = self.operator;
        if let Values::Null(expect_null) = &self.values {
            let is_null = request_values.is_none();
            return expect_null.contains(&is_null);
        }
        let Some(request_values) = request_values else {
            return match op.qualifier {
                _ if op.if_exists => true,
                Some(SetQualifier::ForAllValues) => true,
                Some(SetQualifier::ForAnyValue) => false,
                None => op.negated,
            };
        };
        // A single request value satisfies the operator when it matches any policy value
        // (or, for a negated operator, when it matches none of them).
        let satisfies = |value: &ContextValue| self.matches_any(value, context) != op.negated;
        match op.qualifier {
            Some(SetQualifier::ForAllValues) => request_values.iter().all(satisfies),
            Some(SetQualifier::ForAnyValue) => request_values.iter().any(satisfies),
            None => {
                let any = request_values.iter().any(|v| self.matches_any(v, context));
                any != op.negated
            }
        }
    }

    /// True when the request value `value` matches any of the policy's values under the
    /// operator's (positive) test. A request value that cannot be read for the test (a
    /// non-number for `NumericEquals`) matches nothing.
    fn matches_any(&self, request_value: &ContextValue, context: &Context) -> bool {
        let value = request_value.as_str();
        match (&self.values, self.operator.test) {
            (Values::Strings(patterns), Test::StringEqualsIgnoreCase) => {
                patterns.iter().any(|p| p.matches_ignore_case(value, context))
            }
            (Values::Strings(patterns), _) => patterns.iter().any(|p| p.matches(value, context)),
            (Values::Numbers(numbers), Test::Numeric(ordering)) => match request_value.number() {
                Some(n) => numbers.iter().any(|&p| ordering.holds(n, p)),
                None => false,
            },
            (Values::Dates(dates), Test::Date(ordering)) => match request_value.date() {
                Some(d) => dates.iter().any(|&p| ordering.holds(d, p)),
                None => false,
            },
            (Values::Bool(bools), _) => match parse_bool(value) {
                Some(b) => bools.contains(&b),
                None => false,
            },
            (Values::Binary(blobs), _) => match decode_base64(value) {
                Some(bytes) => blobs.contains(&bytes),
                None => false,
            },
            (Values::Networks(networks), _) => match request_value.ip() {
                Some(ip) => networks.iter().any(|n| n.contains(&ip)),
                None => false,
            },
            (Values::Arns(patterns), _) => match Arn::parse(value) {
                Some(arn) => patterns.iter().any(|p| p.matches(value, Some(&arn), context)),
                None => false,
            },
            _ => false,
        }
    }
}

/// Reads an IAM number: an integer or a decimal.
pub fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    let valid = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'));
    valid.then(|| text.parse::<f64>().ok()).flatten().filter(|n| n.is_finite())
}

/// Reads an IAM date: ISO 8601 (a date, or a date-time with `Z` or an offset) or epoch seconds.
/// Returns nanoseconds since the epoch.
pub fn parse_date(text: &str) -> Option<i128> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let seconds: i64 = text.parse().ok()?;
        return jiff::Timestamp::from_second(seconds).ok().map(|t| t.as_nanosecond());
    }
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Some(timestamp.as_nanosecond());
    }
    // jiff requires an offset; AWS also takes a bare date, meaning midnight UTC.
    let date: jiff::civil::Date = text.parse().ok()?;
    let midnight =
        jiff::tz::Offset::UTC.to_timestamp(date.to_datetime(jiff::civil::Time::midnight())).ok()?;
    Some(midnight.as_nanosecond())
}

pub fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Reads an address from the request; IPv4-mapped IPv6 addresses compare as IPv4.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Reads a policy's `IpAddress` value: a CIDR block, or a bare address meaning /32 or /128.
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::pattern::Syntax;

    fn condition(operator: &str, key: &str, values: Values) -> Condition {
        Condition {
            operator: Operator::parse(operator).unwrap(),
            operator_name: operator.into(),
            key_name: key.into(),
            key: key.to_ascii_lowercase().into(),
            values,
        }
    }

    fn strings(values: &[&str]) -> Values {
        let syntax = Syntax { wildcards: false, variables: true, lowercase: false };
        Values::Strings(values.iter().map(|v| Pattern::parse(v, syntax).unwrap()).collect())
    }

    fn context(key: &str, values: &[&str]) -> Context {
        let mut c = Context::default();
        c.insert(key, values.iter().copied());
        c
    }

    #[test]
    fn parses_operators() {
        let op = Operator::parse("ForAnyValue:StringNotLikeIfExists").unwrap();
        assert_eq!(op.test, Test::StringLike);
        assert!(op.negated && op.if_exists);
        assert_eq!(op.qualifier, Some(SetQualifier::ForAnyValue));
        let err = Operator::parse("StringEqual").unwrap_err().to_string();
        assert!(err.contains("did you mean `StringEquals`"), "{err}");
        assert!(Operator::parse("NullIfExists").is_err());
    }

    #[test]
    fn missing_keys() {
        let empty = Context::default();
        assert!(!condition("StringEquals", "aws:username", strings(&["a"])).holds(&empty));
        assert!(condition("StringNotEquals", "aws:username", strings(&["a"])).holds(&empty));
        assert!(condition("StringEqualsIfExists", "aws:username", strings(&["a"])).holds(&empty));
        assert!(condition("ForAllValues:StringEquals", "aws:TagKeys", strings(&["a"])).holds(&empty));
        assert!(!condition("ForAnyValue:StringEquals", "aws:TagKeys", strings(&["a"])).holds(&empty));
        let empty_list = context("aws:TagKeys", &[]);
        assert!(condition("ForAllValues:StringEquals", "aws:TagKeys", strings(&["a"])).holds(&empty_list));
        assert!(condition("Null", "aws:TagKeys", Values::Null(vec![true])).holds(&empty_list));
    }

    #[test]
    fn set_qualifiers() {
        let tags = context("aws:TagKeys", &["env", "team"]);
        let all = condition("ForAllValues:StringEquals", "aws:TagKeys", strings(&["env", "team", "cost"]));
        assert!(all.holds(&tags));
        let narrow = condition("ForAllValues:StringEquals", "aws:TagKeys", strings(&["env"]));
        assert!(!narrow.holds(&tags));
        let any = condition("ForAnyValue:StringEquals", "aws:TagKeys", strings(&["team"]));
        assert!(any.holds(&tags));
        let none = condition("ForAllValues:StringNotEquals", "aws:TagKeys", strings(&["secret"]));
        assert!(none.holds(&tags));
    }

    #[test]
    fn typed_operators() {
        let ip = condition(
            "IpAddress",
            "aws:SourceIp",
            Values::Networks(vec![parse_network("203.0.113.0/24").unwrap()]),
        );
        assert!(ip.holds(&context("aws:SourceIp", &["203.0.113.7"])));
        assert!(ip.holds(&context("aws:SourceIp", &["::ffff:203.0.113.7"])));
        assert!(!ip.holds(&context("aws:SourceIp", &["198.51.100.1"])));
        assert!(!ip.holds(&context("aws:SourceIp", &["not-an-ip"])));
        let date = condition(
            "DateLessThan",
            "aws:CurrentTime",
            Values::Dates(vec![parse_date("2020-01-01T00:00:00Z").unwrap()]),
        );
        assert!(date.holds(&context("aws:CurrentTime", &["2019-12-31T23:59:59Z"])));
        assert!(date.holds(&context("aws:CurrentTime", &["1577836799"])));
        assert!(!date.holds(&context("aws:CurrentTime", &["2020-01-01"])));
        let n = condition("NumericLessThanEquals", "s3:max-keys", Values::Numbers(vec![10.0]));
        assert!(n.holds(&context("s3:max-keys", &["10"])));
        assert!(!n.holds(&context("s3:max-keys", &["10.5"])));
        assert!(!n.holds(&context("s3:max-keys", &["ten"])));
        let b = condition("Bool", "aws:SecureTransport", Values::Bool(vec![true]));
        assert!(b.holds(&context("aws:SecureTransport", &["TRUE"])));
        assert!(!b.holds(&context("aws:SecureTransport", &["false"])));
    }
}
