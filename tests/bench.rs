//! `iamd bench`, the load tool, against a real sidecar: it sets its users up, checks every
//! answer against the decision the workload demands, and fails when an answer is wrong.

mod common;

use std::process::{Command, Output};

use common::{Sidecar, temp_dir, write_bundle};
use iamd::proto;
use serde_json::Value;

/// A bundle with the two policies the revision canary needs, `allowing` the canary request or
/// denying it, under `revision`.
fn canary_bundle(dir: &std::path::Path, revision: &str, allowing: bool) {
    let (allowed, denied) = if allowing { (0, 1) } else { (1, 0) };
    let policy = |effect: &str, n: u32| {
        format!(
            r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "{effect}", "Action": "iamd-bench:Canary", "Resource": "arn:aws:s3:::iamd-bench-canary/{n}"}}}}"#
        )
    };
    write_bundle(
        dir,
        &[
            ("manifest.json", format!(r#"{{"revision": "{revision}", "account": "111122223333"}}"#)),
            ("policies/BenchCanaryA.json", policy("Allow", allowed)),
            ("policies/BenchCanaryB.json", policy("Deny", denied)),
        ],
    );
}

fn bench(sidecar: &Sidecar, args: &[&str]) -> (Output, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_iamd"))
        .arg("bench")
        .args(["--json", "--warmup", "0", "--server-pid", &sidecar.child.id().to_string()])
        .args(args)
        .env("IAMD_ENDPOINT", format!("http://{}", sidecar.authorizer))
        .env("IAMD_ADMIN_ENDPOINT", format!("http://{}", sidecar.admin))
        .env("AWS_ACCESS_KEY_ID", &sidecar.root.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &sidecar.root.secret_access_key)
        .output()
        .expect("iamd bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("bench printed no JSON ({e}): {stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    (output, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_sets_up_its_users_measures_and_checks_every_answer() {
    let data = temp_dir();
    let bundle = temp_dir();
    canary_bundle(bundle.path(), "soak-2", true);
    let sidecar = Sidecar::start(data.path(), Some(bundle.path()), &["--no-audit"]);

    let (output, result) =
        bench(&sidecar, &["--users", "20", "--requests", "2000", "--concurrency", "8", "--connections", "2"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(result["requests"], 2000);
    assert_eq!(result["errors"], 0);
    assert_eq!(result["wrong_decisions"], 0);
    let decisions = &result["decisions"];
    let count = |name: &str| decisions[name].as_u64().unwrap();
    assert_eq!(count("allow") + count("implicit_deny") + count("explicit_deny"), 2000);
    // The mix: 60% allowed, 25% implicitly and 15% explicitly denied, give or take chance.
    assert!((1000..1400).contains(&count("allow")), "{decisions}");
    assert!((350..650).contains(&count("implicit_deny")), "{decisions}");
    assert!((150..450).contains(&count("explicit_deny")), "{decisions}");
    let latency = &result["latency_us"];
    assert!(latency["p50"].as_u64().unwrap() <= latency["p99"].as_u64().unwrap());
    assert!(latency["p99"].as_u64().unwrap() <= latency["max"].as_u64().unwrap());
    assert!(result["server_cpu_us_per_decision"].as_f64().unwrap() > 0.0);
    assert!(result["server_rss_mb"].as_f64().unwrap() > 1.0);

    // The users exist with the workload's policy, and a second run reuses them.
    let mut admin = sidecar.admin().await;
    let attached = admin
        .list_attached_user_policies(proto::EntityRequest {
            name: "iamd-bench-19".into(),
            account_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = attached.attached_policies.iter().map(|p| p.policy_name.as_str()).collect();
    assert_eq!(names, ["iamd-bench"]);

    // The revision canary and admin writes during a paced run.
    let (output, result) = bench(
        &sidecar,
        &[
            "--users",
            "20",
            "--revision-canary",
            "--rate",
            "400",
            "--duration",
            "2",
            "--interval",
            "1",
            "--admin-write-interval-ms",
            "100",
        ],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(result["wrong_decisions"], 0);
    let requests = result["requests"].as_u64().unwrap();
    assert!((400..=900).contains(&requests), "about 400/s for 2 s, not {requests}");
    assert_eq!(result["intervals"].as_array().unwrap().len(), 2, "{result}");
    let writes = result["admin_writes"]["writes"].as_u64().unwrap();
    assert!((5..=25).contains(&writes), "{writes} admin writes in 2 s");
    assert_eq!(result["admin_writes"]["failures"], 0);
    let tags = admin
        .list_user_tags(proto::EntityRequest { name: "iamd-bench-0".into(), account_id: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(tags.tags.iter().any(|t| t.key == "bench-write"), "{tags:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_fails_when_an_answer_contradicts_its_revision() {
    let data = temp_dir();
    let bundle = temp_dir();
    // An odd revision must deny the canary request; this bundle allows it.
    canary_bundle(bundle.path(), "soak-3", true);
    let sidecar = Sidecar::start(data.path(), Some(bundle.path()), &["--no-audit"]);
    let (output, result) = bench(&sidecar, &["--users", "5", "--revision-canary", "--requests", "500"]);
    assert_eq!(output.status.code(), Some(2), "a wrong answer fails the run");
    let wrong = result["wrong_decisions"].as_u64().unwrap();
    assert!(wrong > 0 && wrong < 500, "{result}");
    let first = result["first_wrong_decision"].as_str().unwrap();
    assert!(first.contains("ByRevision") && first.contains("soak-3"), "{first}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("were answered wrongly"), "{stderr}");
}
