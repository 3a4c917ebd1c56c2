//! Route maps: any route file either compiles into the bundle or is refused with errors, and a
//! compiled map maps any request (method, path, query and host from the input) without
//! panicking.
//!
//! Input: `METHOD PATH?QUERY HOST\nROUTE FILE`.
#![no_main]

use std::collections::{BTreeMap, HashMap};

use iamd::bundle::Bundle;
use iamd::bundle::routes::HttpView;
use libfuzzer_sys::fuzz_target;

const MANIFEST: &str = r#"{"revision": "fuzz", "account": "111122223333"}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((request_line, routes)) = text.split_once('\n') else { return };
    let files = BTreeMap::from([
        ("manifest.json".to_string(), MANIFEST.to_string()),
        ("routes/fuzz.json".to_string(), routes.to_string()),
    ]);
    let Ok(bundle) = Bundle::compile("fuzz", &files) else { return };
    let mut parts = request_line.splitn(3, ' ');
    let (method, target, host) =
        (parts.next().unwrap_or(""), parts.next().unwrap_or("/"), parts.next().unwrap_or("localhost"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = HashMap::new();
    let view = HttpView { host, method, path, query, headers: &headers };
    let _ = bundle.routes.map(&view, &HashMap::new());
});
