//! Policies that exist without a bundle: common AWS managed policies, and the organisation's
//! `FullAWSAccess` and `RCPFullAWSAccess`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::{self, Policy, PolicyKind};

/// AWS managed policies iamd always knows, with AWS's documents (AWS's `ReadOnlyAccess` lists
/// thousands of actions and is left out rather than approximated: a broader rendering would
/// grant what AWS does not).
const AWS_MANAGED: &[(&str, &str)] = &[
    (
        "AdministratorAccess",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}"#,
    ),
    (
        "PowerUserAccess",
        r#"{"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "account:*"], "Resource": "*"},
        {"Effect": "Allow", "Action": ["iam:CreateServiceLinkedRole", "iam:DeleteServiceLinkedRole", "iam:ListRoles", "organizations:DescribeOrganization", "account:ListRegions", "account:GetAccountInformation"], "Resource": "*"}]}"#,
    ),
    (
        "IAMFullAccess",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iam:*", "organizations:DescribeAccount", "organizations:DescribeOrganization", "organizations:DescribeOrganizationalUnit", "organizations:DescribePolicy", "organizations:ListChildren", "organizations:ListParents", "organizations:ListPoliciesForTarget", "organizations:ListRoots", "organizations:ListPolicies", "organizations:ListTargetsForPolicy"], "Resource": "*"}]}"#,
    ),
    (
        "IAMReadOnlyAccess",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["iam:GenerateCredentialReport", "iam:GenerateServiceLastAccessedDetails", "iam:Get*", "iam:List*", "iam:SimulateCustomPolicy", "iam:SimulatePrincipalPolicy"], "Resource": "*"}]}"#,
    ),
    (
        "AmazonS3FullAccess",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*", "s3-object-lambda:*"], "Resource": "*"}]}"#,
    ),
    (
        "AmazonS3ReadOnlyAccess",
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:Describe*", "s3-object-lambda:Get*", "s3-object-lambda:List*"], "Resource": "*"}]}"#,
    ),
];

fn compile(name: &str, text: &str, kind: PolicyKind) -> Option<(String, Arc<Policy>)> {
    // These documents are fixed and valid; a failure would be caught by the tests below.
    policy::parse(name, text, kind).ok().map(|parsed| (name.to_string(), Arc::new(parsed.policy)))
}

/// AWS managed policies by ARN, with their documents.
pub fn aws_managed() -> HashMap<String, (Arc<Policy>, Arc<str>)> {
    AWS_MANAGED
        .iter()
        .filter_map(|(name, text)| {
            let (arn, policy) =
                compile(&format!("arn:aws:iam::aws:policy/{name}"), text, PolicyKind::Identity)?;
            Some((arn, (policy, Arc::from(*text))))
        })
        .collect()
}

pub fn scps() -> HashMap<String, Arc<Policy>> {
    let full =
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}"#;
    compile("FullAWSAccess", full, PolicyKind::Scp).into_iter().collect()
}

pub fn rcps() -> HashMap<String, Arc<Policy>> {
    let full = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}"#;
    compile("RCPFullAWSAccess", full, PolicyKind::Rcp).into_iter().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_builtin_compiles() {
        assert_eq!(super::aws_managed().len(), super::AWS_MANAGED.len());
        assert_eq!(super::scps().len(), 1);
        assert_eq!(super::rcps().len(), 1);
    }
}
