//! Any bytes, read as a policy of every kind: the parser must return a policy or errors, never
//! panic, and a policy it accepts must evaluate without panicking.
#![no_main]

use iamd::eval::{self, Context, PolicySet, Principal, Request};
use iamd::policy::{self, PolicyKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for kind in PolicyKind::ALL {
        if let Ok(parsed) = policy::parse("fuzz", text, kind) {
            let principal = Principal::parse("arn:aws:sts::111122223333:assumed-role/R/s").unwrap();
            let mut context = Context::default();
            context.insert("aws:username", ["alice"]);
            context.insert("aws:SourceIp", ["10.0.0.1"]);
            context.insert("aws:CurrentTime", ["2026-01-01T00:00:00Z"]);
            let request =
                Request::new(principal, "s3:GetObject", "arn:aws:s3:::b/k").unwrap().with_context(context);
            let identity = [std::sync::Arc::new(parsed.policy.clone())];
            let set =
                PolicySet { identity: &identity, resource: Some(&parsed.policy), ..PolicySet::default() };
            let _ = eval::authorize(&request, &set);
            let _ = eval::explain(&request, &set);
        }
    }
});
