//! Policy bundles: the policies an operator ships to iamd as files.
//!
//! A bundle is a directory or a `.tar.gz` laid out as
//!
//! ```text
//! manifest.json                  {"revision": "2026-11-25.1", "account": "111122223333"}
//! policies/NAME.json             customer managed policies: arn:aws:iam::ACCOUNT:policy/NAME
//! resource-policies/NAME.json    {"resources": ["arn:aws:s3:::reports", "arn:aws:s3:::reports/*"],
//!                                 "policy": {...}}
//! organization.json              {"accounts": {"111122223333": ["r-root", "ou-prod"]},
//!                                 "scps": {"r-root": ["FullAWSAccess"], ...}, "rcps": {...}}
//! scps/NAME.json, rcps/NAME.json the organisation's SCPs and RCPs
//! routes/NAME.json               route maps from HTTP requests to IAM requests (see [`routes`])
//! ```
//!
//! Loading reads every file, validates and compiles everything, and either returns a whole
//! [`Bundle`] or every error found, each naming its file and position: a bundle is never used in
//! part.

mod builtin;
pub mod routes;
mod source;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

pub use source::{BundleSource, MAX_BUNDLE_BYTES, digest as source_digest};

use crate::eval::principal::is_account_id;
use crate::policy::{self, LineIndex, Policy, PolicyKind};

/// Policies of the organisation, one list per level of an account's path (root first, the
/// account itself last).
pub type Levels = Arc<Vec<Vec<Arc<Policy>>>>;

/// A compiled, immutable bundle.
#[derive(Debug)]
pub struct Bundle {
    pub revision: String,
    /// The account customer managed policies belong to.
    pub account: String,
    /// Where the bundle came from, for status and logs.
    pub source: String,
    /// A digest of the bundle's files, to skip reloads that change nothing.
    pub digest: u64,
    /// Managed policies by ARN, with their documents as written, for `GetPolicyVersion`.
    managed: HashMap<String, (Arc<Policy>, Arc<str>)>,
    /// When the bundle was compiled: the creation date the API shows for its policies.
    pub compiled_at: String,
    exact_resources: HashMap<String, Arc<Policy>>,
    /// `(prefix, policy)` for patterns ending in `*`, longest first.
    prefix_resources: Vec<(String, Arc<Policy>)>,
    scps: HashMap<String, Levels>,
    rcps: HashMap<String, Levels>,
    /// How requests behind a proxy (Envoy's ext_authz) become IAM requests.
    pub routes: routes::RouteMap,
    pub warnings: Vec<String>,
}

/// A problem in a bundle, with the file and position it is at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
        } else {
            write!(f, "{}: {}", self.file, self.message)
        }
    }
}

impl std::error::Error for BundleError {}

fn error(file: &str, message: impl Into<String>) -> BundleError {
    BundleError { file: file.to_string(), line: 0, column: 0, message: message.into() }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    revision: String,
    account: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcePolicyFile<'a> {
    resources: Vec<String>,
    #[serde(borrow)]
    policy: &'a serde_json::value::RawValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganizationFile {
    /// Account id to its path of organisation nodes, root first.
    accounts: BTreeMap<String, Vec<String>>,
    scps: Option<BTreeMap<String, Vec<String>>>,
    rcps: Option<BTreeMap<String, Vec<String>>>,
}

impl Bundle {
    /// Compiles a bundle from its files (relative path to contents).
    pub fn compile(source: &str, files: &BTreeMap<String, String>) -> Result<Bundle, Vec<BundleError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let digest = source::digest(files);

        let manifest = match files.get("manifest.json") {
            None => {
                errors.push(error(
                    "manifest.json",
                    "the bundle has no manifest.json: expected \
                    {\"revision\": \"...\", \"account\": \"111122223333\"}",
                ));
                None
            }
            Some(text) => match serde_json::from_str::<Manifest>(text) {
                Ok(m) if !is_account_id(&m.account) => {
                    errors.push(error(
                        "manifest.json",
                        format!("`account` `{}` is not a 12-digit account id", m.account),
                    ));
                    None
                }
                Ok(m) if m.revision.trim().is_empty() => {
                    errors.push(error("manifest.json", "`revision` is empty"));
                    None
                }
                Ok(m) => Some(m),
                Err(e) => {
                    errors.push(json_error("manifest.json", &e));
                    None
                }
            },
        };
        let account = manifest.as_ref().map_or_else(|| "000000000000".to_string(), |m| m.account.clone());

        let mut managed = builtin::aws_managed();
        let mut scp_documents: HashMap<String, Arc<Policy>> = builtin::scps();
        let mut rcp_documents: HashMap<String, Arc<Policy>> = builtin::rcps();
        let mut exact_resources: HashMap<String, (String, Arc<Policy>)> = HashMap::new();
        let mut prefix_resources: Vec<(String, String, Arc<Policy>)> = Vec::new();
        let mut organization = None;
        let mut route_map = routes::RouteMap::default();

        // First the files are sorted into policies to compile; then the policies are compiled
        // on every core; then the results are put in place, in file order.
        let mut jobs: Vec<Job<'_>> = Vec::new();
        for (file, text) in files {
            let (dir, stem) = match file.rsplit_once('/') {
                Some((dir, name)) => (dir, name.strip_suffix(".json")),
                None => ("", file.strip_suffix(".json")),
            };
            let job = |name: String, text, start, kind, target| Job { file, name, text, start, kind, target };
            match (dir, stem) {
                ("", Some("manifest")) => {}
                ("", Some("organization")) => match serde_json::from_str::<OrganizationFile>(text) {
                    Ok(org) => organization = Some(org),
                    Err(e) => errors.push(json_error(file, &e)),
                },
                ("policies", Some(name)) if valid_policy_name(name) => {
                    let arn = format!("arn:aws:iam::{account}:policy/{name}");
                    jobs.push(job(arn, text, (1, 1), PolicyKind::Identity, Target::Managed));
                }
                ("routes", Some(name)) if valid_policy_name(name) => route_map.add(file, text, &mut errors),
                ("scps", Some(name)) if valid_policy_name(name) => {
                    jobs.push(job(name.to_string(), text, (1, 1), PolicyKind::Scp, Target::Scp));
                }
                ("rcps", Some(name)) if valid_policy_name(name) => {
                    jobs.push(job(name.to_string(), text, (1, 1), PolicyKind::Rcp, Target::Rcp));
                }
                ("resource-policies", Some(name)) if valid_policy_name(name) => {
                    let parsed = match serde_json::from_str::<ResourcePolicyFile>(text) {
                        Ok(parsed) => parsed,
                        Err(e) => {
                            errors.push(json_error(file, &e));
                            continue;
                        }
                    };
                    if parsed.resources.is_empty() {
                        errors.push(error(file, "`resources` is empty: list the ARNs this policy protects"));
                    }
                    // The policy is compiled from its own text, so that duplicate keys are seen
                    // and positions point into the file.
                    let policy_text = parsed.policy.get();
                    let start =
                        LineIndex::new(text).position(policy_text.as_ptr() as usize - text.as_ptr() as usize);
                    let target = Target::Resource(parsed.resources);
                    jobs.push(job(name.to_string(), policy_text, start, PolicyKind::Resource, target));
                }
                _ => errors.push(error(
                    file,
                    "unexpected file: a bundle holds manifest.json, organization.json, \
                    and JSON files named by policy under policies/, resource-policies/, scps/, rcps/ \
                    and routes/",
                )),
            }
        }

        for (job, result) in compile_jobs(&jobs) {
            let file = job.file;
            // `start` is where the policy's text begins in its file, for embedded policies.
            let position = |line: usize, column: usize| {
                (job.start.0 + line - 1, if line == 1 { job.start.1 + column - 1 } else { column })
            };
            let policy = match result {
                Ok(parsed) => {
                    warnings.extend(parsed.warnings.iter().map(|w| {
                        let (line, column) = position(w.line, w.column);
                        format!("{file}:{line}:{column}: warning: {}", w.message)
                    }));
                    Arc::new(parsed.policy)
                }
                Err(e) => {
                    errors.extend(e.errors().map(|d| {
                        let (line, column) = position(d.line, d.column);
                        let at = d.statement.as_ref().map(|s| format!(" (statement {s}, at `{}`)", d.path));
                        BundleError {
                            file: file.to_string(),
                            line,
                            column,
                            message: format!("{}{}", d.message, at.unwrap_or_default()),
                        }
                    }));
                    continue;
                }
            };
            match &job.target {
                Target::Managed => {
                    managed.insert(job.name.clone(), (policy, job.text.into()));
                }
                Target::Scp => {
                    scp_documents.insert(job.name.clone(), policy);
                }
                Target::Rcp => {
                    rcp_documents.insert(job.name.clone(), policy);
                }
                Target::Resource(resources) => {
                    for resource in resources {
                        let valid = crate::policy::arn::Arn::parse(resource).is_some()
                            && !resource.trim_end_matches('*').contains(['*', '?']);
                        if !valid {
                            errors.push(error(
                                file,
                                format!(
                                    "resource `{resource}` must be an ARN, optionally ending in `*` to cover \
                                 everything under it (such as `arn:aws:s3:::reports/*`)"
                                ),
                            ));
                        } else if let Some(prefix) = resource.strip_suffix('*') {
                            prefix_resources.push((prefix.to_string(), file.clone(), policy.clone()));
                        } else if let Some((other, _)) =
                            exact_resources.insert(resource.clone(), (file.clone(), policy.clone()))
                        {
                            errors.push(error(
                                file,
                                format!(
                                    "resource `{resource}` is also protected by `{other}`: \
                                a resource has one resource-based policy; merge their statements"
                                ),
                            ));
                        }
                    }
                }
            }
        }

        // Each resource has at most one resource-based policy, as in AWS.
        prefix_resources.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        for (i, (prefix, file, _)) in prefix_resources.iter().enumerate() {
            for (other, other_file, _) in &prefix_resources[i + 1..] {
                if prefix.starts_with(other.as_str()) && file != other_file {
                    errors.push(error(
                        file,
                        format!(
                            "resources `{prefix}*` overlap `{other}*` of `{other_file}`: a resource has one \
                         resource-based policy; narrow the patterns or merge the policies"
                        ),
                    ));
                }
            }
            for exact in
                exact_resources.iter().filter(|(arn, (f, _))| arn.starts_with(prefix.as_str()) && f != file)
            {
                errors.push(error(file, format!(
                    "resources `{prefix}*` include `{}` of `{}`: a resource has one resource-based policy",
                    exact.0, exact.1.0)));
            }
        }

        let mut scps = HashMap::new();
        let mut rcps = HashMap::new();
        if let Some(org) = organization {
            let resolve = |attachments: &BTreeMap<String, Vec<String>>,
                           documents: &HashMap<String, Arc<Policy>>,
                           kind: &str,
                           implicit: Option<&str>,
                           errors: &mut Vec<BundleError>|
             -> HashMap<String, Levels> {
                let mut by_account = HashMap::new();
                for (account, path) in &org.accounts {
                    let mut levels = Vec::new();
                    for node in path.iter().chain(std::iter::once(account)) {
                        let names: Vec<&str> = match attachments.get(node) {
                            Some(names) => names.iter().map(String::as_str).collect(),
                            None => match implicit {
                                Some(full) => vec![full],
                                None => {
                                    errors.push(error("organization.json", format!(
                                        "no {kind} is attached to `{node}`: every root, OU and account needs at \
                                         least one (attach `FullAWSAccess` to allow everything)")));
                                    continue;
                                }
                            },
                        };
                        let mut level = Vec::new();
                        for name in names {
                            match documents.get(name) {
                                Some(p) => level.push(p.clone()),
                                None => errors.push(error("organization.json", format!(
                                    "`{node}` attaches {kind} `{name}`, which the bundle does not define: add \
                                     {}s/{name}.json", kind.to_ascii_lowercase()))),
                            }
                        }
                        levels.push(level);
                    }
                    by_account.insert(account.clone(), Arc::new(levels));
                }
                by_account
            };
            for account in org.accounts.keys() {
                if !is_account_id(account) {
                    errors.push(error(
                        "organization.json",
                        format!("`{account}` is not a 12-digit account id"),
                    ));
                }
            }
            if let Some(attachments) = &org.scps {
                scps = resolve(attachments, &scp_documents, "SCP", None, &mut errors);
            }
            if let Some(attachments) = &org.rcps {
                rcps = resolve(attachments, &rcp_documents, "RCP", Some("RCPFullAWSAccess"), &mut errors);
            }
        }

        match manifest {
            Some(manifest) if errors.is_empty() => Ok(Bundle {
                revision: manifest.revision,
                account,
                source: source.to_string(),
                digest,
                managed,
                compiled_at: jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                exact_resources: exact_resources.into_iter().map(|(arn, (_, p))| (arn, p)).collect(),
                prefix_resources: prefix_resources.into_iter().map(|(prefix, _, p)| (prefix, p)).collect(),
                scps,
                rcps,
                routes: route_map,
                warnings,
            }),
            _ => Err(errors),
        }
    }

    /// A managed policy by ARN: the bundle's customer managed policies and AWS managed ones.
    pub fn managed_policy(&self, arn: &str) -> Option<&Arc<Policy>> {
        self.managed.get(arn).map(|(policy, _)| policy)
    }

    /// The document of a managed policy, as its file (or AWS) wrote it.
    pub fn managed_policy_document(&self, arn: &str) -> Option<&Arc<str>> {
        self.managed.get(arn).map(|(_, document)| document)
    }

    /// The ARNs of every managed policy, customer and AWS managed.
    pub fn managed_policy_arns(&self) -> impl Iterator<Item = &str> {
        self.managed.keys().map(String::as_str)
    }

    pub fn managed_policy_count(&self) -> usize {
        self.managed.len()
    }

    /// The resource-based policy protecting `resource`, if any.
    pub fn resource_policy(&self, resource: &str) -> Option<&Arc<Policy>> {
        self.exact_resources.get(resource).or_else(|| {
            self.prefix_resources
                .iter()
                .find(|(prefix, _)| resource.starts_with(prefix.as_str()))
                .map(|(_, p)| p)
        })
    }

    /// The SCP levels governing principals of `account`, if it is in the organisation.
    pub fn scps(&self, account: &str) -> Option<&Levels> {
        self.scps.get(account)
    }

    /// The RCP levels governing resources of `account`.
    pub fn rcps(&self, account: &str) -> Option<&Levels> {
        self.rcps.get(account)
    }
}

/// A policy of the bundle to compile, and where it goes.
struct Job<'a> {
    file: &'a String,
    /// The policy's name in explanations: its ARN for managed policies.
    name: String,
    text: &'a str,
    /// Line and column of the policy's first character in its file.
    start: (usize, usize),
    kind: PolicyKind,
    target: Target,
}

enum Target {
    Managed,
    Scp,
    Rcp,
    /// A resource-based policy and the resources it protects.
    Resource(Vec<String>),
}

/// Compiles every job, spreading them over the available cores (each thread with its own
/// interner), and returns the results in job order.
fn compile_jobs<'j, 'a>(
    jobs: &'j [Job<'a>],
) -> Vec<(&'j Job<'a>, Result<policy::Parsed, policy::PolicyError>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let chunk = jobs.len().div_ceil(threads).max(64);
    let compile = |jobs: &'j [Job<'a>]| {
        let mut interner = policy::Interner::default();
        jobs.iter()
            .map(|job| (job, policy::parse_in(&job.name, job.text, job.kind, &mut interner)))
            .collect::<Vec<_>>()
    };
    if jobs.len() <= chunk {
        return compile(jobs);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs.chunks(chunk).map(|part| scope.spawn(move || compile(part))).collect();
        // A panic in a compile thread is passed on: the reload fails and the last good snapshot
        // keeps serving.
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

fn valid_policy_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

fn json_error(file: &str, e: &serde_json::Error) -> BundleError {
    BundleError { file: file.to_string(), line: e.line(), column: e.column(), message: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const MANIFEST: &str = r#"{"revision": "r1", "account": "111122223333"}"#;
    const ALLOW_S3: &str =
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}"#;

    #[test]
    fn compiles_a_bundle() {
        let bundle = Bundle::compile("test", &files(&[
            ("manifest.json", MANIFEST),
            ("policies/S3.json", ALLOW_S3),
            ("resource-policies/reports.json", r#"{"resources": ["arn:aws:s3:::reports", "arn:aws:s3:::reports/*"],
                "policy": {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "s3:*", "Resource": "*"}}}"#),
            ("organization.json", r#"{"accounts": {"111122223333": ["r-root", "ou-prod"]},
                "scps": {"r-root": ["FullAWSAccess"], "ou-prod": ["FullAWSAccess"], "111122223333": ["FullAWSAccess", "NoIam"]}}"#),
            ("scps/NoIam.json", r#"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}}"#),
        ])).unwrap();
        assert_eq!(bundle.revision, "r1");
        assert!(bundle.managed_policy("arn:aws:iam::111122223333:policy/S3").is_some());
        assert!(bundle.managed_policy("arn:aws:iam::aws:policy/AdministratorAccess").is_some());
        assert!(bundle.resource_policy("arn:aws:s3:::reports/q1.csv").is_some());
        assert!(bundle.resource_policy("arn:aws:s3:::reports").is_some());
        assert!(bundle.resource_policy("arn:aws:s3:::other").is_none());
        assert_eq!(bundle.scps("111122223333").unwrap().len(), 3);
        assert_eq!(bundle.scps("111122223333").unwrap()[2].len(), 2);
        assert!(bundle.rcps("111122223333").is_none());
    }

    #[test]
    fn embedded_resource_policies_keep_duplicate_keys_and_positions() {
        let errors = Bundle::compile("test", &files(&[
            ("manifest.json", MANIFEST),
            ("resource-policies/r.json", "{\"resources\": [\"arn:aws:s3:::r/*\"],\n \"policy\": {\"Statement\": {\"Effect\": \"Deny\", \"Effect\": \"Allow\",\n   \"Principal\": \"*\", \"Action\": \"s3:*\", \"Resource\": \"*\"}}}"),
        ]))
        .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|e| e.starts_with("resource-policies/r.json:2:45: `Effect` appears more than once")),
            "{text:#?}"
        );
    }

    #[test]
    fn reports_every_error_with_its_file() {
        let errors = Bundle::compile("test", &files(&[
            ("policies/Bad.json", "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": {\"Effect\": \"Alow\", \"Action\": \"s3:*\", \"Resource\": \"*\"}\n}"),
            ("resource-policies/a.json", r#"{"resources": ["arn:aws:s3:::a/*"], "policy": {"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}}}"#),
            ("resource-policies/b.json", r#"{"resources": ["arn:aws:s3:::a/b/*"], "policy": {"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}}}"#),
            ("organization.json", r#"{"accounts": {"111122223333": ["r-root"]}, "scps": {"r-root": ["Missing"]}}"#),
            ("notes.txt", "hello"),
        ])).unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let has = |fragment: &str| text.iter().any(|e| e.contains(fragment));
        assert!(has("manifest.json: the bundle has no manifest.json"), "{text:#?}");
        assert!(has("policies/Bad.json:3:27: `Effect` is \"Alow\""), "{text:#?}");
        assert!(has("add scps/Missing.json"), "{text:#?}");
        assert!(has("overlap `arn:aws:s3:::a/*`"), "{text:#?}");
        assert!(has("attaches SCP `Missing`"), "{text:#?}");
        assert!(has("no SCP is attached to `111122223333`"), "{text:#?}");
        assert!(has("notes.txt: unexpected file"), "{text:#?}");
    }
}
