//! Request decoding on hostile bytes: what a caller controls before any policy is read.
//!
//! The first byte chooses the path:
//! - even: the rest is an `Authorize` message as it arrives in a gRPC frame. It is decoded with
//!   prost, its typed context is read as the Authorizer reads it, and the request is decided
//!   against the sample bundle for a stored user. Every input must end in a decision or an
//!   invalid-field error naming the field, never a panic, and a request whose principal is not
//!   stored must never be allowed.
//! - odd: the rest is an AWS Query request (`QUERY\nBODY`). Its parameters are read as the Query
//!   API reads them, and every field is then read as each kind of parameter (list, tags,
//!   integers, booleans).
#![no_main]

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;
use iamd::authorize::{self, Query};
use iamd::bundle::{Bundle, BundleSource};
use iamd::credentials::KeyRing;
use iamd::iam::Iam;
use iamd::iam::model::{StateDocument, User};
use iamd::proto;
use iamd::server::{decode_context, query::Params};
use iamd::snapshot::SharedSnapshot;
use iamd::store::Store;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

const USER: &str = "arn:aws:iam::111122223333:user/alice";

/// The sample bundle with one stored user, `alice`, who has its read-only policy.
fn snapshot() -> &'static (Iam, SharedSnapshot) {
    static SNAPSHOT: OnceLock<(Iam, SharedSnapshot)> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("iamd-fuzz-request-decoding-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let shared: SharedSnapshot = Arc::new(ArcSwapOption::empty());
        let store = Store::open(&dir).expect("a scratch sled directory");
        let iam = Iam::open(store, shared.clone(), "111122223333".into(), Arc::new(KeyRing::ephemeral()))
            .expect("an empty store opens");
        let files = BundleSource::Embedded.read().expect("the sample bundle reads");
        iam.publish_bundle(Arc::new(Bundle::compile("sample", &files).expect("the sample bundle compiles")));
        let alice = User {
            account: "111122223333".into(),
            name: "alice".into(),
            path: "/".into(),
            id: "AIDAFUZZFUZZFUZZFUZZ1".into(),
            created: "2026-01-01T00:00:00Z".into(),
            tags: Vec::new(),
            inline: Default::default(),
            attached: vec!["arn:aws:iam::111122223333:policy/ReportsReadOnly".into()],
            boundary: None,
            groups: Default::default(),
        };
        iam.import(StateDocument { schema_version: 1, users: vec![alice], ..StateDocument::default() })
            .expect("the user imports");
        (iam, shared)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    if selector % 2 == 0 {
        let Ok(mut request) = proto::AuthorizeRequest::decode(rest) else { return };
        let context = match decode_context(std::mem::take(&mut request.context)) {
            Ok(context) => context,
            Err(invalid) => {
                assert!(invalid.field == "context" && !invalid.message.is_empty(), "{invalid:?}");
                return;
            }
        };
        let (_, shared) = snapshot();
        let current = shared.load_full().expect("a snapshot is published");
        let query = Query {
            principal: &request.principal,
            action: &request.action,
            resource: &request.resource,
            resource_account: &request.resource_account,
            context,
            explain: request.explain,
            verified: None,
        };
        match authorize::decide(&current, query) {
            // IAM names are unique regardless of case, so the stored user answers to any case.
            Ok(answer) => assert!(
                request.principal.eq_ignore_ascii_case(USER) || !answer.decision.is_allowed(),
                "allowed a principal that is not stored: {:?}",
                request.principal
            ),
            Err(invalid) => assert!(!invalid.field.is_empty() && !invalid.message.is_empty(), "{invalid:?}"),
        }
    } else {
        let (query, body) = match rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        let params = Params::parse(&String::from_utf8_lossy(query), body);
        for name in params.names() {
            let _ = params.required(name);
            let _ = params.int(name);
            let _ = params.int32(name);
            let _ = params.uint32(name);
            let _ = params.bool(name);
            // Lists and tags are read by the name before `.member.N`.
            let prefix = name.split(".member.").next().unwrap_or(name);
            let _ = params.list(prefix);
            let _ = params.tags(prefix);
        }
    }
});
