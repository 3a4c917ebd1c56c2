//! The project's public test-vector format: one JSON object per line, each a request with the
//! policies that apply to it, decided by the engine. `iamd simulate` is a thin shell over
//! [`run`]; the test suite runs the vectors under `tests/vectors/` through it.
//!
//! A case:
//! `{"id": "c1", "principal": "arn:aws:iam::111122223333:user/alice", "action": "s3:GetObject",
//!   "resource": "arn:aws:s3:::bucket/key", "resource_account": "111122223333",
//!   "context": {"aws:SourceIp": "10.0.0.1", "aws:TagKeys": ["env", "team"]},
//!   "identity_policies": [policy, ...], "resource_policy": policy, "permission_boundary": policy,
//!   "scps": [[policy, ...], ...], "rcps": [[policy, ...], ...], "session_policy": policy}`

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use serde::Serialize;
use std::collections::BTreeMap;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::eval::{self, Context, Decision, Explanation, PolicySet, Principal, Request};
use crate::policy::{self, Policy, PolicyError, PolicyKind};

/// Fields a case may carry besides the request and policies: documentation for humans and the
/// expected decision, which `simulate` does not read but test harnesses do.
const NOTE_FIELDS: &[&str] = &["description", "source", "expect"];
const FIELDS: &[&str] = &[
    "id",
    "principal",
    "action",
    "resource",
    "resource_account",
    "context",
    "identity_policies",
    "resource_policy",
    "permission_boundary",
    "scps",
    "rcps",
    "session_policy",
];

/// The result of one case, written as one JSON line.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub id: Value,
    pub decision: Option<Decision>,
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// Counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub cases: usize,
    pub errors: usize,
}

/// Reads cases from `input` (blank lines skipped) and writes one outcome line per case, in order.
pub fn run(input: impl BufRead, mut output: impl Write, explain: bool) -> io::Result<Summary> {
    let mut summary = Summary::default();
    for (number, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut outcome = run_case(&line, explain);
        if let Some(error) = &mut outcome.error {
            *error = format!("line {}: {error}", number + 1);
            summary.errors += 1;
        }
        summary.cases += 1;
        serde_json::to_writer(&mut output, &outcome)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(summary)
}

/// Decides one case given as a line of JSON. Never fails: a bad case is an outcome with an
/// error and no decision.
pub fn run_case(line: &str, explain: bool) -> Outcome {
    // Fields are kept as raw text so that each policy is compiled from its own text: parsing it
    // into a `Value` first would silently merge duplicate keys, which AWS rejects.
    let case: Fields<'_> = match serde_json::from_str(line) {
        Ok(case) => case,
        Err(e) if e.is_data() => {
            return failed(Value::Null, format!("case must be a JSON object of fields: {e}"));
        }
        Err(e) => return failed(Value::Null, format!("case is not valid JSON: {e}")),
    };
    let id = case.get("id").and_then(|raw| serde_json::from_str(raw.get()).ok()).unwrap_or(Value::Null);
    match Case::read(&case) {
        Ok(case) => {
            let policies = case.policy_set();
            if explain {
                let explanation = eval::explain(&case.request, &policies);
                Outcome {
                    id,
                    decision: Some(explanation.decision),
                    error: None,
                    explanation: Some(explanation),
                }
            } else {
                Outcome {
                    id,
                    decision: Some(eval::authorize(&case.request, &policies)),
                    error: None,
                    explanation: None,
                }
            }
        }
        Err(error) => failed(id, error),
    }
}

fn failed(id: Value, error: String) -> Outcome {
    Outcome { id, decision: None, error: Some(error), explanation: None }
}

/// A case read and compiled.
pub struct Case {
    pub request: Request,
    pub identity: Vec<Arc<Policy>>,
    pub resource: Option<Policy>,
    pub permissions_boundary: Option<Policy>,
    pub session: Option<Vec<Arc<Policy>>>,
    pub scps: Option<Vec<Vec<Arc<Policy>>>>,
    pub rcps: Option<Vec<Vec<Arc<Policy>>>>,
}

impl Case {
    /// Reads a case object; the error names the field and what was expected.
    pub fn read(case: &Fields<'_>) -> Result<Case, String> {
        for key in case.keys() {
            if !FIELDS.contains(&key.as_str()) && !NOTE_FIELDS.contains(&key.as_str()) {
                return Err(format!("unknown field `{key}`: expected one of {}", FIELDS.join(", ")));
            }
        }
        let principal = required_string(case, "principal")?;
        let principal = Principal::parse(&principal).map_err(|e| format!("`principal`: {e}"))?;
        let action = required_string(case, "action")?;
        let resource = required_string(case, "resource")?;
        let mut request = Request::new(principal, &action, &resource).map_err(|e| e.to_string())?;
        match value(case, "resource_account")? {
            Value::Null => {}
            Value::String(account) => {
                request = request
                    .with_resource_account(&account)
                    .map_err(|e| format!("`resource_account`: {e}"))?;
            }
            _ => return Err("`resource_account` must be a 12-digit account id string or null".into()),
        }
        let context = value(case, "context")?;
        if !context.is_null() {
            request = request.with_context(read_context(&context)?);
        }
        let identity = match list(case, "identity_policies")? {
            None => Vec::new(),
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    compile(&format!("identity_policies[{i}]"), p, PolicyKind::Identity).map(Arc::new)
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Case {
            identity,
            resource: optional_policy(case, "resource_policy", request.resource_policy_kind())?,
            permissions_boundary: optional_policy(case, "permission_boundary", PolicyKind::Boundary)?,
            session: optional_policy(case, "session_policy", PolicyKind::Session)?.map(|p| vec![Arc::new(p)]),
            scps: levels(case, "scps", PolicyKind::Scp)?,
            rcps: levels(case, "rcps", PolicyKind::Rcp)?,
            request,
        })
    }

    pub fn policy_set(&self) -> PolicySet<'_> {
        PolicySet {
            identity: &self.identity,
            resource: self.resource.as_ref(),
            permissions_boundary: self.permissions_boundary.as_ref(),
            session: self.session.as_deref(),
            scps: self.scps.as_deref(),
            rcps: self.rcps.as_deref(),
        }
    }
}

/// A case's fields as raw JSON text. A field given twice is an error: the second copy of a
/// policy must not silently replace the first.
pub struct Fields<'a>(BTreeMap<String, &'a RawValue>);

impl<'a> std::ops::Deref for Fields<'a> {
    type Target = BTreeMap<String, &'a RawValue>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;

        impl<'de> serde::de::Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if fields.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!(
                            "field `{key}` appears more than once"
                        )));
                    }
                    fields.insert(key, value);
                }
                Ok(Fields(fields))
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// A field read as a JSON value; a missing field is `null`.
fn value(case: &Fields<'_>, field: &str) -> Result<Value, String> {
    match case.get(field) {
        Some(raw) => serde_json::from_str(raw.get()).map_err(|e| format!("`{field}`: {e}")),
        None => Ok(Value::Null),
    }
}

/// A field that is `null`, missing, or an array of raw values.
fn list<'a>(case: &Fields<'a>, field: &str) -> Result<Option<Vec<&'a RawValue>>, String> {
    match case.get(field) {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => {
            serde_json::from_str(raw.get()).map(Some).map_err(|_| format!("`{field}` must be an array"))
        }
    }
}

fn required_string(case: &Fields<'_>, field: &str) -> Result<String, String> {
    match value(case, field)? {
        Value::String(s) => Ok(s),
        Value::Null if !case.contains_key(field) => Err(format!("missing field `{field}`")),
        _ => Err(format!("`{field}` must be a string")),
    }
}

fn read_context(value: &Value) -> Result<Context, String> {
    let Value::Object(map) = value else {
        return Err("`context` must be an object of condition keys to a string or an array of strings".into());
    };
    let mut context = Context::default();
    for (key, value) in map {
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        let values = match value {
            Value::Array(items) => items.iter().map(scalar).collect::<Option<Vec<_>>>(),
            other => scalar(other).map(|s| vec![s]),
        };
        let values =
            values.ok_or_else(|| format!("`context.{key}` must be a string or an array of strings"))?;
        context.insert(key, values);
    }
    Ok(context)
}

fn compile(name: &str, raw: &RawValue, kind: PolicyKind) -> Result<Policy, String> {
    policy::parse(name, raw.get(), kind).map(|parsed| parsed.policy).map_err(|e| describe(name, &e))
}

/// A policy error in a case: the JSON path inside the policy rather than a line number, since
/// the policy is embedded in the case's line.
fn describe(name: &str, error: &PolicyError) -> String {
    let messages: Vec<String> = error
        .errors()
        .map(|d| {
            let at = if d.path.is_empty() { String::new() } else { format!(" (at `{}`)", d.path) };
            format!("{}{at}", d.message)
        })
        .collect();
    format!("`{name}` is not a valid policy: {}", messages.join("; "))
}

fn optional_policy(case: &Fields<'_>, field: &str, kind: PolicyKind) -> Result<Option<Policy>, String> {
    match case.get(field) {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => compile(field, raw, kind).map(Some),
    }
}

fn levels(case: &Fields<'_>, field: &str, kind: PolicyKind) -> Result<Option<Vec<Vec<Arc<Policy>>>>, String> {
    let shape =
        || format!("`{field}` must be null or an array of levels (root first), each an array of policies");
    let Some(levels) = list(case, field).map_err(|_| shape())? else {
        return Ok(None);
    };
    levels
        .iter()
        .enumerate()
        .map(|(level, raw)| {
            let policies: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| shape())?;
            policies
                .iter()
                .enumerate()
                .map(|(i, p)| compile(&format!("{field}[{level}][{i}]"), p, kind).map(Arc::new))
                .collect()
        })
        .collect::<Result<_, _>>()
        .map(Some)
}
