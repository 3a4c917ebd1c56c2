//! Property tests: the wildcard matcher against an independent implementation, the invariants of
//! the evaluation logic, and a parser that never panics.

use iamd::eval::{Context, Decision};
use iamd::policy::pattern::{Pattern, Syntax};
use iamd::policy::{self, PolicyKind};
use iamd::simulate::run_case;
use proptest::prelude::*;
use serde_json::{Value, json};

fn decide(case: &Value) -> Decision {
    let outcome = run_case(&case.to_string(), false);
    outcome.decision.unwrap_or_else(|| panic!("case failed: {:?}", outcome.error))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn wildcards_match_like_wildmatch(pattern in "[ab*?/]{0,8}", text in "[ab/]{0,10}") {
        let syntax = Syntax { wildcards: true, variables: false, lowercase: false };
        let ours = Pattern::parse(&pattern, syntax).unwrap().matches(&text, &Context::default());
        prop_assert_eq!(ours, wildmatch::WildMatch::new(&pattern).matches(&text));
    }

    #[test]
    fn case_insensitive_actions_match_like_wildmatch(pattern in "[aB*?:]{0,8}", text in "[Ab:]{0,10}") {
        let syntax = Syntax { wildcards: true, variables: false, lowercase: true };
        let ours = Pattern::parse(&pattern, syntax).unwrap().matches(&text.to_lowercase(), &Context::default());
        prop_assert_eq!(ours, wildmatch::WildMatchPattern::<'*', '?'>::new_case_insensitive(&pattern).matches(&text));
    }
}

fn statement() -> impl Strategy<Value = Value> {
    let effect = prop_oneof![Just("Allow"), Just("Deny")];
    let action = prop_oneof![
        Just("s3:GetObject"),
        Just("s3:*"),
        Just("s3:Get*"),
        Just("ec2:*"),
        Just("*"),
        Just("s3:PutObject")
    ];
    let resource = prop_oneof![
        Just("*"),
        Just("arn:aws:s3:::b/*"),
        Just("arn:aws:s3:::b/k"),
        Just("arn:aws:s3:::other/*")
    ];
    let condition = prop_oneof![
        Just(None),
        Just(Some(json!({"StringEquals": {"aws:username": "alice"}}))),
        Just(Some(json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}))),
        Just(Some(json!({"StringNotEquals": {"aws:PrincipalTag/team": "red"}}))),
        Just(Some(json!({"ForAnyValue:StringLike": {"aws:TagKeys": "env*"}}))),
    ];
    (effect, any::<bool>(), action, any::<bool>(), resource, condition).prop_map(
        |(effect, not_action, action, not_resource, resource, condition)| {
            let mut s = json!({"Effect": effect});
            s[if not_action { "NotAction" } else { "Action" }] = json!(action);
            s[if not_resource { "NotResource" } else { "Resource" }] = json!(resource);
            if let Some(c) = condition {
                s["Condition"] = c;
            }
            s
        },
    )
}

fn policy_statements() -> impl Strategy<Value = Vec<Value>> {
    prop::collection::vec(statement(), 1..4)
}

fn with_principal(statements: &[Value], principal: &Value) -> Vec<Value> {
    statements
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s["Principal"] = principal.clone();
            s
        })
        .collect()
}

fn doc(statements: &[Value]) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

#[derive(Clone, Debug)]
struct Scenario {
    principal: &'static str,
    action: &'static str,
    resource: &'static str,
    account: &'static str,
    context: Value,
    identity: Vec<Vec<Value>>,
    boundary: Option<Vec<Value>>,
    resource_policy: Option<(Value, Vec<Value>)>,
}

impl Scenario {
    fn case(&self) -> Value {
        let mut case = json!({
            "id": "p", "principal": self.principal, "action": self.action, "resource": self.resource,
            "resource_account": self.account, "context": self.context,
            "identity_policies": self.identity.iter().map(|s| doc(s)).collect::<Vec<_>>(),
        });
        if let Some(boundary) = &self.boundary {
            case["permission_boundary"] = doc(boundary);
        }
        if let Some((principal, statements)) = &self.resource_policy {
            case["resource_policy"] = doc(&with_principal(statements, principal));
        }
        case
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let principal = prop_oneof![
        Just("arn:aws:iam::111122223333:user/alice"),
        Just("arn:aws:sts::111122223333:assumed-role/App/s1"),
        Just("anonymous"),
    ];
    let action = prop_oneof![Just("s3:GetObject"), Just("s3:PutObject"), Just("ec2:RunInstances")];
    let resource = prop_oneof![Just("arn:aws:s3:::b/k"), Just("arn:aws:s3:::other/x")];
    let account = prop_oneof![Just("111122223333"), Just("444455556666")];
    let context = prop_oneof![
        Just(json!({})),
        Just(json!({"aws:username": "alice", "aws:SourceIp": "10.1.2.3", "aws:TagKeys": ["env", "team"]})),
        Just(json!({"aws:PrincipalTag/team": "red", "aws:SourceIp": "192.0.2.1"})),
    ];
    let resource_principal = prop_oneof![
        Just(json!("*")),
        Just(json!({"AWS": "111122223333"})),
        Just(json!({"AWS": "arn:aws:iam::111122223333:role/App"})),
        Just(json!({"AWS": "arn:aws:iam::111122223333:user/alice"})),
    ];
    (
        principal,
        action,
        resource,
        account,
        context,
        prop::collection::vec(policy_statements(), 0..3),
        prop::option::of(policy_statements()),
        prop::option::of((resource_principal, policy_statements())),
    )
        .prop_map(
            |(principal, action, resource, account, context, identity, boundary, resource_policy)| Scenario {
                principal,
                action,
                resource,
                account,
                context,
                identity,
                boundary,
                resource_policy,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn adding_a_deny_never_allows(scenario in scenario(), extra in statement()) {
        let before = decide(&scenario.case());
        let mut deny = extra;
        deny["Effect"] = json!("Deny");
        let mut after = scenario.clone();
        after.identity.push(vec![deny.clone()]);
        let decided = decide(&after.case());
        if before != Decision::Allow {
            prop_assert_ne!(decided, Decision::Allow);
        }
        if before == Decision::ExplicitDeny {
            prop_assert_eq!(decided, Decision::ExplicitDeny);
        }
        if let Some((principal, statements)) = &scenario.resource_policy {
            let mut after = scenario.clone();
            let mut statements = statements.clone();
            statements.push(deny);
            after.resource_policy = Some((principal.clone(), statements));
            if before != Decision::Allow {
                prop_assert_ne!(decide(&after.case()), Decision::Allow);
            }
        }
    }

    #[test]
    fn removing_an_allow_never_allows(scenario in scenario(), which in any::<prop::sample::Index>()) {
        let before = decide(&scenario.case());
        let allows: Vec<(usize, usize)> = scenario.identity.iter().enumerate()
            .flat_map(|(p, s)| s.iter().enumerate().filter(|(_, s)| s["Effect"] == "Allow").map(move |(i, _)| (p, i)))
            .collect();
        prop_assume!(!allows.is_empty());
        let (p, i) = allows[which.index(allows.len())];
        let mut after = scenario.clone();
        after.identity[p].remove(i);
        after.identity.retain(|s| !s.is_empty());
        if before != Decision::Allow {
            prop_assert_ne!(decide(&after.case()), Decision::Allow);
        }
    }

    #[test]
    fn order_of_statements_and_policies_never_matters(scenario in scenario()) {
        let before = decide(&scenario.case());
        let mut reversed = scenario.clone();
        reversed.identity.reverse();
        for statements in &mut reversed.identity {
            statements.reverse();
        }
        if let Some(boundary) = &mut reversed.boundary {
            boundary.reverse();
        }
        if let Some((_, statements)) = &mut reversed.resource_policy {
            statements.reverse();
        }
        prop_assert_eq!(decide(&reversed.case()), before);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("Statement"),
            Just("Effect"),
            Just("Allow"),
            Just("Deny"),
            Just("Action"),
            Just("*"),
            Just("Resource"),
            Just("Condition"),
            Just("StringLike"),
            Just("Principal"),
            Just("AWS"),
            Just("NotPrincipal"),
            Just("${aws:username}"),
            Just("arn:aws:s3:::b/*"),
            Just("Version"),
            Just("2012-10-17"),
            Just("IpAddress"),
            Just("aws:SourceIp"),
            Just("s3:Get*"),
            Just("${"),
        ]
        .prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("Statement".to_string()),
                        Just("Effect".to_string()),
                        Just("Action".to_string()),
                        Just("Resource".to_string()),
                        Just("Condition".to_string()),
                        Just("Principal".to_string()),
                        Just("Version".to_string()),
                        ".{0,8}".prop_map(String::from)
                    ],
                    inner,
                ),
                0..6
            )
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        for kind in PolicyKind::ALL {
            let _ = policy::parse("fuzz", &text, kind);
        }
    }

    #[test]
    fn parser_never_panics_on_json(value in arbitrary_json()) {
        for kind in PolicyKind::ALL {
            let _ = policy::parse_value("fuzz", &value, kind);
        }
    }
}

#[test]
fn deep_nesting_and_huge_inputs_are_errors() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let error = policy::parse("deep", &deep, PolicyKind::Identity).unwrap_err();
    assert!(error.to_string().contains("deeper than 64"), "{error}");
    let huge = format!("{{\"Version\": \"2012-10-17\", \"Id\": \"{}\"}}", "x".repeat(1 << 20));
    let error = policy::parse("huge", &huge, PolicyKind::Identity).unwrap_err();
    assert!(error.to_string().contains("input limit"), "{error}");
}
