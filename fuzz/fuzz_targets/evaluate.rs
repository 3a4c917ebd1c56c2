//! Condition evaluation: a policy from the input decides a request whose action, resource and
//! context values also come from the input. Any policy that parses must evaluate without
//! panicking, and `explain` must agree with `authorize`.
//!
//! Input: `ACTION\nRESOURCE\nKEY=VALUE;KEY=VALUE...\nPOLICY`.
#![no_main]

use std::sync::Arc;

use iamd::eval::{self, Context, PolicySet, Principal, Request};
use iamd::policy::{self, PolicyKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(4, '\n');
    let (Some(action), Some(resource), Some(context_line), Some(policy_text)) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return;
    };
    let Ok(parsed) = policy::parse("fuzz.json", policy_text, PolicyKind::Identity) else { return };
    let mut context = Context::default();
    for pair in context_line.split(';') {
        if let Some((key, value)) = pair.split_once('=') {
            context.insert(key, value.split(',').map(str::to_string));
        }
    }
    let Ok(principal) = Principal::parse("arn:aws:iam::111122223333:user/fuzz") else { return };
    let Ok(request) = Request::new(principal, action, resource) else { return };
    let request = request.with_context(context);
    let identity = [Arc::new(parsed.policy)];
    let policies = PolicySet { identity: &identity, ..PolicySet::default() };
    let decision = eval::authorize(&request, &policies);
    assert_eq!(eval::explain(&request, &policies).decision, decision, "explain and authorize disagree");
});
