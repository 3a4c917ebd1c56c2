//! Faults a sidecar meets in production, on a real `iamd serve` with a real sled directory: a
//! full disk, a damaged store, a bundle that disappears or is swapped while it is read, SIGTERM
//! under load, a hung audit sink or OTLP collector, and clients that open too many connections
//! or streams.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Sidecar, create_user, decision, entity, request, temp_dir, write_bundle};
use iamd::proto::{self, Decision};
use tonic::Code;

const ACCOUNT: &str = "111122223333";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const READ_ANYTHING: &str = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}"#;

fn error_code(status: &tonic::Status) -> String {
    status.metadata().get("iamd-error-code").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
}

/// Creates `alice`, allowed `s3:GetObject` on everything by an inline policy.
async fn create_alice(sidecar: &Sidecar) {
    let mut admin = sidecar.admin().await;
    admin.create_user(create_user("alice")).await.unwrap();
    admin
        .put_user_policy(proto::PutPolicyRequest {
            name: "alice".into(),
            policy_name: "read".into(),
            policy_document: READ_ANYTHING.into(),
            account_id: String::new(),
        })
        .await
        .unwrap();
}

async fn user_names(sidecar: &Sidecar) -> BTreeSet<String> {
    let mut admin = sidecar.admin().await;
    let users = admin.list_users(proto::ListRequest::default()).await.unwrap().into_inner().users;
    users.into_iter().map(|u| u.user_name).collect()
}

/// Stops the sidecar with SIGTERM and returns how it exited.
fn terminate(sidecar: &mut Sidecar, within: Duration) -> std::process::ExitStatus {
    sidecar.signal("TERM");
    sidecar.wait_exit(within).unwrap_or_else(|| panic!("iamd did not stop within {within:?} of SIGTERM"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The largest file under `dir`.
fn largest_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                largest_file(&entry.path())
            } else {
                entry.metadata().unwrap().len()
            }
        })
        .max()
        .unwrap_or(0)
}

// A full disk.

/// The data disk fills up (a file size limit makes writes fail with EFBIG, as ENOSPC would):
/// admin writes are refused with an error that says what is wrong, decisions go on from memory
/// and admin reads from the store, and after a restart with room on the disk every acknowledged write is
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_admin_writes_and_decisions_go_on() {
    let data = temp_dir();
    {
        let mut sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
        create_alice(&sidecar).await;
        assert!(terminate(&mut sidecar, Duration::from_secs(10)).success());
    }
    // Room for a little more than what sled has written (it grows its log by 512 KiB
    // segments): the writes below need more than that.
    let limit = largest_file(&data.path().join("store")).max(512 << 10) + (96 << 10);
    let mut sidecar = Sidecar::try_start(data.path(), None, &["--no-audit"], Some(limit))
        .expect("iamd starts under a file size limit");
    let mut admin = sidecar.admin().await;
    let mut authorizer = sidecar.authorizer().await;
    let tags: Vec<proto::Tag> =
        (0..40).map(|i| proto::Tag { key: format!("k{i}"), value: "v".repeat(250) }).collect();
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..300 {
        let name = format!("user{i}");
        let create =
            proto::CreateUserRequest { user_name: name.clone(), tags: tags.clone(), ..Default::default() };
        match admin.create_user(create).await {
            Ok(_) => acknowledged.push(name),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("writes past the file size limit fail");
    assert!(!acknowledged.is_empty(), "writes were acknowledged before the disk filled up");
    assert_eq!(
        (refused.code(), error_code(&refused).as_str()),
        (Code::Unavailable, "ServiceFailure"),
        "{refused:?}"
    );
    assert!(
        refused.message().contains("check that") && refused.message().contains("not full"),
        "the error says what to check: {}",
        refused.message()
    );
    assert!(refused.message().contains("file too large"), "{}", refused.message());
    assert!(sidecar.child.try_wait().unwrap().is_none(), "SIGXFSZ did not stop iamd");

    // sled takes no more writes until it is reopened, and says so.
    let again = admin.create_user(create_user("again")).await.unwrap_err();
    assert_eq!(again.code(), Code::Unavailable);
    assert!(again.message().contains("restart iamd"), "{}", again.message());

    // Decisions are served from memory, admin reads from the store (sled still reads).
    for _ in 0..200 {
        let allowed = authorizer.authorize(request(ALICE, "s3:GetObject", "arn:aws:s3:::b/k")).await.unwrap();
        assert_eq!(decision(&allowed.into_inner()), Decision::Allow);
    }
    let first = format!("arn:aws:iam::{ACCOUNT}:user/{}", acknowledged[0]);
    let denied = authorizer.authorize(request(&first, "s3:GetObject", "*")).await.unwrap().into_inner();
    assert_eq!(decision(&denied), Decision::ImplicitDeny);
    admin.get_user(entity("alice")).await.unwrap();
    admin.status(proto::Empty {}).await.unwrap();

    // The final flush fails too: iamd says why it could not stop cleanly.
    let status = terminate(&mut sidecar, Duration::from_secs(10));
    assert!(!status.success());
    assert!(
        sidecar.log_contains("the data directory cannot be written"),
        "{:#?}",
        sidecar.log.lock().unwrap()
    );
    drop(sidecar);

    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let stored = user_names(&sidecar).await;
    let lost: Vec<&String> = acknowledged.iter().filter(|name| !stored.contains(*name)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(stored.contains("alice"));
    let mut admin = sidecar.admin().await;
    admin.create_user(create_user("after")).await.expect("with room on the disk, writes work again");
    let mut authorizer = sidecar.authorizer().await;
    let allowed = authorizer.authorize(request(ALICE, "s3:GetObject", "*")).await.unwrap().into_inner();
    assert_eq!(decision(&allowed), Decision::Allow);
}

// A damaged store.

/// Damage done to a stopped data directory.
type Damage = fn(&Path);

/// How much of sled's log holds data: it pads segments with zeros, and cutting or overwriting
/// padding would damage nothing.
fn written_length(log: &Path) -> u64 {
    let bytes = std::fs::read(log).unwrap();
    bytes.iter().rposition(|b| *b != 0).map_or(0, |last| last as u64 + 1)
}

fn truncate_to_half(store: &Path) {
    let log = store.join("db");
    let length = written_length(&log);
    std::fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(length / 2).unwrap();
}

fn overwrite_the_middle(store: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let log = store.join("db");
    let length = written_length(&log);
    let mut file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.seek(SeekFrom::Start(length / 2)).unwrap();
    file.write_all(&[0xA5; 512]).unwrap();
}

fn empty_the_log(store: &Path) {
    std::fs::write(store.join("db"), b"").unwrap();
}

/// A store whose files were truncated, overwritten or emptied is refused, with a message that
/// says what to do, rather than served with the changes sled could still read; deleting the
/// count of acknowledged changes, as the message offers, serves a consistent earlier state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_refused_with_what_to_do() {
    let original = temp_dir();
    let users: Vec<String> = (0..30).map(|i| format!("user{i:02}")).collect();
    {
        let mut sidecar = Sidecar::start(original.path(), None, &["--no-audit"]);
        let mut admin = sidecar.admin().await;
        for name in &users {
            admin.create_user(create_user(name)).await.unwrap();
        }
        assert!(terminate(&mut sidecar, Duration::from_secs(10)).success());
    }
    let damages: [(&str, Damage); 2] =
        [("truncated", truncate_to_half), ("overwritten", overwrite_the_middle)];
    for (what, damage) in damages {
        let data = temp_dir();
        copy_dir(original.path(), data.path());
        damage(&data.path().join("store"));
        let exited = match Sidecar::try_start(data.path(), None, &["--no-audit"], None) {
            Err(exited) => exited,
            Ok(sidecar) => {
                let served = user_names(&sidecar).await;
                panic!("a {what} store was served, with {} of {} users", served.len(), users.len());
            }
        };
        assert!(!exited.status.success(), "{what}: {exited:?}");
        let message = exited.log.join("\n");
        assert!(message.contains("has lost acknowledged changes"), "{what}: {message}");
        assert!(
            message.contains("Restore it from a backup") && message.contains("iamd admin import"),
            "{what}: the message says what to do: {message}"
        );

        // As the message says, deleting the count serves what the store still holds: the
        // users created first, each whole, as they were at some moment.
        std::fs::remove_file(data.path().join("store").join(iamd::store::ACKNOWLEDGED_FILE)).unwrap();
        let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
        let served: Vec<String> = user_names(&sidecar).await.into_iter().collect();
        assert!(served.len() < users.len(), "{what}: {served:?}");
        assert_eq!(served, users[..served.len()], "{what}: not a state the store was in");
    }
    // An emptied log: sled's snapshot of its page table (written when a store is opened again,
    // as iamd does at every start) points into it, so the store is damaged beyond serving an
    // earlier state.
    let data = temp_dir();
    copy_dir(original.path(), data.path());
    empty_the_log(&data.path().join("store"));
    let Err(exited) = Sidecar::try_start(data.path(), None, &["--no-audit"], None) else {
        panic!("an emptied store was served");
    };
    assert!(!exited.status.success(), "{exited:?}");
    let message = exited.log.join("\n");
    assert!(
        message.contains("is damaged")
            && message.contains("restore it from a backup")
            && message.contains("iamd admin import"),
        "the message says what to do: {message}"
    );
    // Undamaged, the same directory serves everything.
    let sidecar = Sidecar::start(original.path(), None, &["--no-audit"]);
    assert_eq!(user_names(&sidecar).await.len(), users.len());
}

// The bundle.

fn manifest(revision: &str) -> String {
    format!("{{\"revision\": \"{revision}\", \"account\": \"{ACCOUNT}\"}}")
}

/// Policies attached to alice: as many as a user may have, so that a read of the bundle that
/// mixes two versions likely gives her policies of both.
const APPS: usize = 10;

/// Version `n` of a bundle whose policies `App0`..`App9` allow `s3:GetObject` in even versions
/// and `s3:PutObject` in odd ones, in statements named after the version; `fillers` other
/// policies make it slower to read. The manifest is written last: rewritten in place, the
/// bundle takes its new revision once its policies are there.
fn write_version(dir: &Path, n: usize, fillers: usize) {
    let action = if n.is_multiple_of(2) { "s3:GetObject" } else { "s3:PutObject" };
    let mut files = Vec::new();
    for i in 0..APPS {
        let app = format!(
            r#"{{"Version": "2012-10-17", "Statement": {{"Sid": "v{n}", "Effect": "Allow", "Action": "{action}", "Resource": "*"}}}}"#
        );
        files.push((format!("policies/App{i}.json"), app));
    }
    for i in 0..fillers {
        let filler = format!(
            r#"{{"Version": "2012-10-17", "Statement": {{"Sid": "v{n}", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-1:{ACCOUNT}:q{i}"}}}}"#
        );
        files.push((format!("policies/Filler{i}.json"), filler));
    }
    files.push(("manifest.json".to_string(), manifest(&format!("v{n}"))));
    let files: Vec<(&str, String)> = files.iter().map(|(path, text)| (path.as_str(), text.clone())).collect();
    write_bundle(dir, &files);
}

/// Puts version `n` where the bundle was deleted, whole: written aside, then renamed.
fn put_back(bundle: &Path, n: usize) {
    let staged = bundle.with_extension("staged");
    write_version(&staged, n, 0);
    std::fs::rename(&staged, bundle).unwrap();
}

async fn status(sidecar: &Sidecar) -> proto::StatusResponse {
    sidecar.admin().await.status(proto::Empty {}).await.unwrap().into_inner()
}

/// Waits until `check` holds for the admin status.
async fn wait_for_status(
    sidecar: &Sidecar,
    what: &str,
    check: impl Fn(&proto::StatusResponse) -> bool,
) -> proto::StatusResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status(sidecar).await;
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Decides `s3:GetObject` for alice and checks the answer against the revision that gave it:
/// allowed in even versions, by the statements of the same version.
async fn check_decision(
    client: &mut proto::authorizer_client::AuthorizerClient<tonic::transport::Channel>,
) -> usize {
    let mut get = request(ALICE, "s3:GetObject", "arn:aws:s3:::b/k");
    get.explain = true;
    let response =
        client.authorize(get).await.expect("decisions never fail while the bundle changes").into_inner();
    let version: usize =
        response.revision.trim_start_matches('v').split('+').next().unwrap().parse().unwrap();
    let expected = if version.is_multiple_of(2) { Decision::Allow } else { Decision::ImplicitDeny };
    assert_eq!(decision(&response), expected, "revision {} decided from another version", response.revision);
    if expected == Decision::Allow {
        let statements: Vec<String> =
            response.explanation.unwrap().matched_statements.into_iter().map(|m| m.statement).collect();
        assert_eq!(
            statements,
            vec![format!("v{version}"); APPS],
            "revision {} mixes versions",
            response.revision
        );
    }
    version
}

/// The bundle directory is emptied, deleted, put back, and replaced over and over while it is
/// read: decisions never fail, come whole from one version, the last good version serves
/// while the bundle is broken, status shows why, and the final version is served in the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_deleted_emptied_or_replaced_keeps_the_last_good_snapshot() {
    let data = temp_dir();
    let root = temp_dir();
    let bundle = root.path().join("bundle");
    write_version(&bundle, 0, 0);
    let config = root.path().join("iamd.toml");
    std::fs::write(&config, "reload_debounce_ms = 50\n").unwrap();
    let sidecar =
        Sidecar::start(data.path(), Some(&bundle), &["--no-audit", "--config", config.to_str().unwrap()]);
    let mut admin = sidecar.admin().await;
    admin.create_user(create_user("alice")).await.unwrap();
    for i in 0..APPS {
        admin
            .attach_user_policy(proto::AttachmentRequest {
                name: "alice".into(),
                policy_arn: format!("arn:aws:iam::{ACCOUNT}:policy/App{i}"),
                account_id: String::new(),
            })
            .await
            .unwrap();
    }
    let mut client = sidecar.authorizer().await;
    assert_eq!(check_decision(&mut client).await, 0);

    // Emptied: the files are gone, the directory stays.
    for entry in std::fs::read_dir(&bundle).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap()
        } else {
            std::fs::remove_file(path).unwrap()
        }
    }
    let emptied = wait_for_status(&sidecar, "the emptied bundle to be rejected", |s| {
        s.last_reload_errors.iter().any(|e| e.contains("the bundle has no manifest.json"))
    })
    .await;
    assert!(emptied.revision.starts_with("v0+"), "{emptied:?}");
    assert_eq!(check_decision(&mut client).await, 0);

    // Deleted.
    std::fs::remove_dir_all(&bundle).unwrap();
    let deleted = wait_for_status(&sidecar, "the deleted bundle to be rejected", |s| {
        s.last_reload_errors.iter().any(|e| e.contains("cannot read the bundle directory"))
    })
    .await;
    assert!(deleted.revision.starts_with("v0+"), "{deleted:?}");
    assert!(deleted.reloads_failed >= 2, "{deleted:?}");
    assert_eq!(check_decision(&mut client).await, 0);

    // Put back as a new directory, then changed in place: the new directory is watched.
    put_back(&bundle, 1);
    wait_for_status(&sidecar, "version 1", |s| s.revision.starts_with("v1+")).await;
    write_version(&bundle, 2, 0);
    wait_for_status(&sidecar, "version 2, written into the new directory", |s| s.revision.starts_with("v2+"))
        .await;
    assert_eq!(check_decision(&mut client).await, 2);

    // Then swapped, atomically as Kubernetes swaps a ConfigMap's `..data` link, again and again
    // while four clients decide: a read of the bundle that straddles a swap sees part of one
    // version and part of the next, and must not be published.
    std::fs::remove_dir_all(&bundle).unwrap();
    let versions = root.path().join("versions");
    let fillers = 100;
    write_version(&versions.join("v3"), 3, fillers);
    common::swap_link(&bundle, &versions.join("v3"));
    wait_for_status(&sidecar, "version 3, through a link", |s| s.revision.starts_with("v3+")).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let mut client = sidecar.authorizer().await;
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let mut versions = BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                versions.insert(check_decision(&mut client).await);
            }
            versions
        }));
    }
    let last = 30;
    for n in 4..=last {
        write_version(&versions.join(format!("v{n}")), n, fillers);
    }
    let swapper = {
        let bundle = bundle.clone();
        tokio::task::spawn_blocking(move || {
            for n in 4..=last {
                common::swap_link(&bundle, &versions.join(format!("v{n}")));
                // Pauses just past the reload debounce (50 ms), by steps: reloads start, and the
                // next swap lands at different moments of their reads.
                std::thread::sleep(Duration::from_millis(50 + (n as u64 * 3) % 31));
            }
        })
    };
    swapper.await.unwrap();
    let settled =
        wait_for_status(&sidecar, "the last version", |s| s.revision.starts_with(&format!("v{last}+"))).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = BTreeSet::new();
    for worker in workers {
        seen.extend(worker.await.unwrap());
    }
    assert!(seen.len() > 2, "the clients saw the bundle change: {seen:?}");
    assert!(settled.last_reload_errors.is_empty(), "{settled:?}");
    assert_eq!(check_decision(&mut client).await, last);
}

// SIGTERM under load.

/// What a client saw of one request.
struct Outcome {
    started: Instant,
    ended: Instant,
    ok: bool,
}

/// SIGTERM while clients decide and create users: requests in flight are answered (correctly),
/// iamd exits cleanly, and every acknowledged user is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_what_is_in_flight_and_loses_nothing() {
    let data = temp_dir();
    let mut sidecar = Sidecar::start(data.path(), None, &[]);
    create_alice(&sidecar).await;
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut workers = Vec::new();
    for w in 0..6 {
        let mut client = sidecar.authorizer().await;
        let outcomes = outcomes.clone();
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let (action, expected) = if i % 2 == 0 {
                    ("s3:GetObject", Decision::Allow)
                } else {
                    ("s3:PutObject", Decision::ImplicitDeny)
                };
                let started = Instant::now();
                let answer =
                    client.authorize(request(ALICE, action, &format!("arn:aws:s3:::b/{w}/{i}"))).await;
                let ok = answer.is_ok();
                if let Ok(response) = answer {
                    assert_eq!(decision(response.get_ref()), expected, "a wrong answer during shutdown");
                }
                outcomes.lock().unwrap().push(Outcome { started, ended: Instant::now(), ok });
                if !ok || Instant::now() > deadline {
                    break;
                }
            }
        }));
    }
    // Batches take long enough that some are surely in flight when the signal lands.
    for w in 0..2 {
        let mut client = sidecar.authorizer().await;
        let outcomes = outcomes.clone();
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let batch = proto::BatchAuthorizeRequest {
                    requests: (0..1_000)
                        .map(|k| request(ALICE, "s3:GetObject", &format!("arn:aws:s3:::b/batch{w}/{i}/{k}")))
                        .collect(),
                };
                let started = Instant::now();
                let answer = client.batch_authorize(batch).await;
                let ok = answer.is_ok();
                if let Ok(response) = answer {
                    assert!(
                        response.get_ref().responses.iter().all(|r| decision(r) == Decision::Allow),
                        "a wrong answer during shutdown"
                    );
                }
                outcomes.lock().unwrap().push(Outcome { started, ended: Instant::now(), ok });
                if !ok || Instant::now() > deadline {
                    break;
                }
            }
        }));
    }
    for w in 0..3 {
        let mut admin = sidecar.admin().await;
        let (outcomes, acknowledged) = (outcomes.clone(), acknowledged.clone());
        workers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("writer{w}-{i}");
                let started = Instant::now();
                let ok = admin.create_user(create_user(&name)).await.is_ok();
                if ok {
                    acknowledged.lock().unwrap().push(name);
                }
                outcomes.lock().unwrap().push(Outcome { started, ended: Instant::now(), ok });
                if !ok || Instant::now() > deadline {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_signal = Instant::now();
    sidecar.signal("TERM");
    let after_signal = Instant::now();
    let status = sidecar.wait_exit(Duration::from_secs(10)).expect("iamd stops within 10 s of SIGTERM");
    assert!(status.success(), "{status:?}: {:#?}", sidecar.log.lock().unwrap());
    for worker in workers {
        worker.await.unwrap();
    }

    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    assert!(outcomes.len() > 100, "the load ran: {} requests", outcomes.len());
    let in_flight =
        outcomes.iter().filter(|o| o.ok && o.started < before_signal && o.ended > after_signal).count();
    assert!(in_flight > 0, "requests in flight at the signal were answered");
    // A request sent well before the signal reached iamd before it stopped accepting streams.
    let margin = Duration::from_millis(50);
    let cut = outcomes.iter().filter(|o| !o.ok && o.started + margin < before_signal).count();
    assert_eq!(cut, 0, "requests cut by the shutdown");

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 3, "writes were acknowledged: {}", acknowledged.len());
    let audit = std::fs::read_to_string(data.path().join("store/audit.jsonl")).unwrap();
    for line in audit.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    drop(sidecar);
    let sidecar = Sidecar::start(data.path(), None, &["--no-audit"]);
    let stored = user_names(&sidecar).await;
    let lost: Vec<&String> = acknowledged.iter().filter(|name| !stored.contains(*name)).collect();
    assert!(lost.is_empty(), "acknowledged users lost across SIGTERM: {lost:?}");
}

// Telemetry and audit sinks.

/// A collector that accepts connections and never answers.
fn hung_collector() -> (std::net::SocketAddr, Arc<Mutex<Vec<std::net::TcpStream>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            holder.lock().unwrap().push(stream);
        }
    });
    (address, held)
}

/// Decides `count` requests one after another; returns the slowest and the median time.
async fn timed_decisions(sidecar: &Sidecar, count: usize) -> (Duration, Duration) {
    let mut client = sidecar.authorizer().await;
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let response =
            client.authorize(request(ALICE, "s3:GetObject", &format!("arn:aws:s3:::b/{i}"))).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(decision(response.get_ref()), Decision::Allow);
    }
    times.sort();
    (times[count - 1], times[count / 2])
}

/// An OTLP collector that takes connections and never answers, with a span per decision and
/// metrics exported every 100 ms: decisions are as fast as ever, and SIGTERM stops iamd
/// promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_otlp_collector_does_not_slow_decisions() {
    let (collector, held) = hung_collector();
    let config_dir = temp_dir();
    let config = config_dir.path().join("iamd.toml");
    std::fs::write(&config, "[telemetry]\ntrace_decisions = true\nmetrics_interval_ms = 100\n").unwrap();
    let data = temp_dir();
    let endpoint = format!("http://{collector}");
    let mut sidecar = Sidecar::start(
        data.path(),
        None,
        &["--no-audit", "--config", config.to_str().unwrap(), "--otlp-endpoint", &endpoint],
    );
    create_alice(&sidecar).await;
    // More spans than the exporter's queue holds (2,048), so that it fills and drops.
    let (slowest, median) = timed_decisions(&sidecar, 3000).await;
    assert!(!held.lock().unwrap().is_empty(), "iamd connected to the collector");
    // Waiting on the collector would take its export timeout (seconds) at least once.
    assert!(slowest < Duration::from_millis(500), "slowest decision {slowest:?}");
    assert!(median < Duration::from_millis(20), "median decision {median:?}");

    // Nor does it hold up stopping: the last export gets two seconds, not the exporters' ten.
    let started = Instant::now();
    let status = terminate(&mut sidecar, Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "SIGTERM took {:?}", started.elapsed());
}

/// The audit log on a full disk (`/dev/full` refuses every write with ENOSPC): decisions go on,
/// and every record lost is counted in status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_log_on_a_full_disk_counts_drops_and_decisions_go_on() {
    let config_dir = temp_dir();
    let config = config_dir.path().join("iamd.toml");
    std::fs::write(&config, "[audit]\npath = \"/dev/full\"\n").unwrap();
    let data = temp_dir();
    let sidecar = Sidecar::start(data.path(), None, &["--config", config.to_str().unwrap()]);
    create_alice(&sidecar).await;
    let (slowest, _) = timed_decisions(&sidecar, 500).await;
    assert!(slowest < Duration::from_millis(500), "slowest decision {slowest:?}");
    let status = wait_for_status(&sidecar, "500 dropped records", |s| s.audit_records_dropped >= 500).await;
    assert!(status.audit_records_dropped >= 500, "{status:?}");
    assert!(sidecar.log_contains("cannot write the audit log"));
}

/// The audit log on a sink that stops taking data (a pipe nobody reads, as a hung network
/// disk): decisions go on, the records that do not fit in the queue are counted as dropped,
/// and SIGTERM still stops iamd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_audit_sink_counts_drops_and_does_not_block_shutdown() {
    let config_dir = temp_dir();
    let fifo = config_dir.path().join("audit.pipe");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let config = config_dir.path().join("iamd.toml");
    std::fs::write(&config, format!("[audit]\npath = \"{}\"\nbuffer = 100\n", fifo.display())).unwrap();
    // The reader opens the pipe (which lets iamd's open for writing return) and never reads.
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::File::open(fifo).unwrap())
    };
    let data = temp_dir();
    let mut sidecar = Sidecar::start(data.path(), None, &["--config", config.to_str().unwrap()]);
    let _unread = reader.join().unwrap();
    create_alice(&sidecar).await;
    let mut client = sidecar.authorizer().await;
    let batch = proto::BatchAuthorizeRequest {
        requests: (0..1000).map(|i| request(ALICE, "s3:GetObject", &format!("arn:aws:s3:::b/{i}"))).collect(),
    };
    for _ in 0..10 {
        let started = Instant::now();
        let answers = client.batch_authorize(batch.clone()).await.unwrap().into_inner();
        assert!(started.elapsed() < Duration::from_secs(3), "a batch took {:?}", started.elapsed());
        assert!(answers.responses.iter().all(|r| decision(r) == Decision::Allow));
    }
    // The writer holds at most a batch of 4,097 records and the pipe 64 KiB; the queue 100.
    let status = status(&sidecar).await;
    assert!(status.audit_records_dropped >= 5000, "{status:?}");
    let stopped = terminate(&mut sidecar, Duration::from_secs(10));
    assert!(stopped.success(), "{stopped:?}");
    assert!(sidecar.log_contains("the audit log could not be written out"));
}

// Connections and streams.

/// 800 idle TCP connections that never speak HTTP/2, and one HTTP/2 connection opening
/// 500 streams at once: the stream limit holds (the client waits for streams instead of being
/// refused), a new client is answered promptly, memory stays bounded, and SIGTERM is not held
/// up by the idle connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_and_streams_are_bounded() {
    let config_dir = temp_dir();
    let config = config_dir.path().join("iamd.toml");
    std::fs::write(&config, "[limits]\nrequest_timeout_ms = 1000\nconcurrency_per_connection = 16\n")
        .unwrap();
    let data = temp_dir();
    let mut sidecar =
        Sidecar::start(data.path(), None, &["--no-audit", "--config", config.to_str().unwrap()]);
    create_alice(&sidecar).await;
    timed_decisions(&sidecar, 100).await;
    let baseline = sidecar.rss_kib();

    // 800 stays within the 1,024 file descriptors a process may have by default on some systems.
    let idle: Vec<std::net::TcpStream> =
        (0..800).map(|_| std::net::TcpStream::connect(sidecar.authorizer).unwrap()).collect();
    let (slowest, _) = timed_decisions(&sidecar, 100).await;
    assert!(slowest < Duration::from_millis(500), "with 800 idle connections, slowest decision {slowest:?}");

    // One connection, 500 concurrent batches: beyond the 16 streams iamd allows it (its
    // concurrency per connection), the client waits for a stream rather than being refused.
    let mut shared = sidecar.authorizer().await;
    // A client may open up to 100 streams before the server's settings reach it: one round
    // trip first, as any connection that has been used.
    shared.authorize(request(ALICE, "s3:GetObject", "*")).await.unwrap();
    let batch = proto::BatchAuthorizeRequest {
        requests: (0..50).map(|i| request(ALICE, "s3:GetObject", &format!("arn:aws:s3:::b/{i}"))).collect(),
    };
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..500 {
        let (mut client, batch) = (shared.clone(), batch.clone());
        calls.spawn(async move { client.batch_authorize(batch).await });
    }
    let answers = calls.join_all().await;
    let refused: Vec<&tonic::Status> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(refused.is_empty(), "{} of 500 calls refused, first: {:?}", refused.len(), refused.first());
    let (slowest, _) = timed_decisions(&sidecar, 100).await;
    assert!(slowest < Duration::from_millis(500), "after the burst, slowest decision {slowest:?}");

    // An idle connection costs about 15 KiB (a task, the socket, HTTP/2 buffers): some 12 MiB
    // here. 64 MiB, 80 KiB a connection, leaves room for the allocator, and is exceeded if each
    // connection held a buffer of the size of an HTTP/2 window (64 KiB) or a request's worth
    // of streams; then the connections a process may open would cost gigabytes.
    let grown = sidecar.rss_kib().saturating_sub(baseline);
    assert!(grown < 64 << 10, "resident memory grew by {grown} KiB");

    let started = Instant::now();
    let status = terminate(&mut sidecar, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    // The request timeout (1 s) and a second's margin, and the time to flush.
    assert!(started.elapsed() < Duration::from_secs(4), "SIGTERM took {:?}", started.elapsed());
    drop(idle);
}
