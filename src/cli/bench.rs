//! `iamd bench`: a load tool for a running sidecar.
//!
//! It drives `Authorizer.Authorize` over gRPC with a realistic mix (many principals, a share of
//! implicit and explicit denies, conditions on the source address and on principal tags),
//! checks every answer against the decision the workload's policy must give, and reports
//! throughput, latency percentiles and, given the server's pid, its CPU time per decision and
//! its memory. The soak (`scripts/soak.sh`) and the performance report
//! (`scripts/perf-report.py`) are built on it.
//!
//! Latency is measured from when each request was sent. With `--rate`, requests are sent on a
//! fixed schedule and a second figure, `schedule_latency_us`, is measured from when each request
//! was due: a server stall then shows as latency instead of silently lowering the rate
//! (coordinated omission). It includes the client timer's granularity, about 1 ms.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tonic::transport::Channel;

use iamd::client::SigningChannel;
use iamd::proto::{self, admin_client::AdminClient, authorizer_client::AuthorizerClient};

#[derive(Args)]
pub struct BenchArgs {
    /// The Authorizer API address
    #[arg(long, env = "IAMD_ENDPOINT", default_value = "http://127.0.0.1:50051")]
    endpoint: String,
    /// The admin API address, used to create the workload's users and for --admin-write-interval-ms
    #[arg(long, env = "IAMD_ADMIN_ENDPOINT", default_value = "http://127.0.0.1:50052")]
    admin_endpoint: String,
    /// HTTP/2 connections the requests are spread over
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    connections: u32,
    /// Requests in flight at once
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=65536))]
    concurrency: u32,
    /// Seconds to measure for (after the warm-up)
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many measured requests instead of after --duration
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds of load before measuring starts
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send at this steady rate (requests per second) instead of as fast as possible
    #[arg(long)]
    rate: Option<f64>,
    /// Principals the requests are spread over: users iamd-bench-0 … iamd-bench-(N-1) with the
    /// policy `iamd-bench`, created when missing with the credentials of the environment
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: u32,
    /// Also print throughput, latency and server figures every SECONDS (how a soak shows they
    /// stay flat)
    #[arg(long, value_name = "SECONDS")]
    interval: Option<f64>,
    /// While measuring, write a tag on one of the users every MILLISECONDS through the admin API
    #[arg(long, value_name = "MILLISECONDS")]
    admin_write_interval_ms: Option<u64>,
    /// Add requests whose answer depends on the bundle's revision (bundles written by
    /// scripts/soak.sh) and check each against the revision that decided it
    #[arg(long)]
    revision_canary: bool,
    /// The server's process id: report its CPU time per decision and its memory (Linux)
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of text
    #[arg(long)]
    json: bool,
}

const POLICY_NAME: &str = "iamd-bench";
const TEAMS: u32 = 10;

/// The workload's policy: allows that depend on the resource, on the source address and on a
/// principal tag, and an explicit deny.
const POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "OwnPrefixFromTheOffice", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
     "Resource": "arn:aws:s3:::iamd-bench/${aws:username}/*",
     "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
    {"Sid": "OwnTeamTable", "Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"],
     "Resource": "arn:aws:dynamodb:*:*:table/${aws:PrincipalTag/team}"},
    {"Sid": "NeverDelete", "Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"}
  ]
}"#;

/// Bundle policies the revision canary needs (scripts/soak.sh writes them): in a bundle whose
/// revision ends in an even number they allow the canary request, in an odd one they deny it.
/// Each revision changes both files, so a snapshot mixing two bundles answers differently.
const CANARY_POLICIES: [&str; 2] = ["BenchCanaryA", "BenchCanaryB"];
const CANARY_ACTION: &str = "iamd-bench:Canary";
const CANARY_RESOURCE: &str = "arn:aws:s3:::iamd-bench-canary/0";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expected {
    Decision(proto::Decision),
    /// Allow in even revisions, an explicit deny in odd ones.
    ByRevision,
}

/// What one request asks and what the answer must be.
struct Case {
    request: proto::AuthorizeRequest,
    expected: Expected,
}

/// The request mix: 60% allowed, 25% implicitly denied (another user's data, the wrong network,
/// another team's table), 15% explicitly denied. With the revision canary, one request in ten
/// is the canary instead.
struct Workload {
    user_arn_prefix: String,
    users: u32,
    canary: bool,
}

impl Workload {
    fn case(&self, rng: &mut fastrand::Rng) -> Case {
        let user = rng.u32(..self.users);
        let principal = format!("{}iamd-bench-{user}", self.user_arn_prefix);
        let office_ip = format!("10.{}.{}.{}", rng.u8(..), rng.u8(..), rng.u8(1..255));
        let file = rng.u32(..);
        let object = |owner: u32| format!("arn:aws:s3:::iamd-bench/iamd-bench-{owner}/reports/{file}.csv");
        let roll = rng.u32(..100);
        if self.canary && roll < 10 {
            return Case {
                request: request(principal, CANARY_ACTION, CANARY_RESOURCE.to_string(), None),
                expected: Expected::ByRevision,
            };
        }
        use proto::Decision::{Allow, ExplicitDeny, ImplicitDeny};
        let (action, resource, ip, decision) = match roll {
            0..40 => ("s3:GetObject", object(user), office_ip, Allow),
            40..60 => (
                "dynamodb:Query",
                format!("arn:aws:dynamodb:us-east-1:111122223333:table/team-{}", user % TEAMS),
                office_ip,
                Allow,
            ),
            60..70 => ("s3:GetObject", object((user + 1) % self.users.max(2)), office_ip, ImplicitDeny),
            70..78 => ("s3:PutObject", object(user), format!("203.0.113.{}", rng.u8(1..255)), ImplicitDeny),
            78..85 => (
                "dynamodb:GetItem",
                format!("arn:aws:dynamodb:us-east-1:111122223333:table/team-{}", (user + 1) % TEAMS),
                office_ip,
                ImplicitDeny,
            ),
            _ => ("s3:DeleteObject", object(user), office_ip, ExplicitDeny),
        };
        Case {
            request: request(principal, action, resource, Some(ip)),
            expected: Expected::Decision(decision),
        }
    }
}

fn request(
    principal: String,
    action: &str,
    resource: String,
    source_ip: Option<String>,
) -> proto::AuthorizeRequest {
    let mut context = HashMap::new();
    if let Some(ip) = source_ip {
        context.insert(
            "aws:SourceIp".to_string(),
            proto::ContextValues {
                values: vec![proto::ContextValue { kind: Some(proto::context_value::Kind::Ip(ip)) }],
            },
        );
    }
    proto::AuthorizeRequest { principal, action: action.to_string(), resource, context, ..Default::default() }
}

/// Whether `answer` is what `expected` demands; a canary answer is judged by the bundle revision
/// (`soak-N+generation`) that decided it.
fn is_right(expected: Expected, answer: &proto::AuthorizeResponse) -> bool {
    let decision = proto::Decision::try_from(answer.decision).unwrap_or(proto::Decision::Unspecified);
    match expected {
        Expected::Decision(want) => decision == want,
        Expected::ByRevision => {
            let label = answer.revision.split('+').next().unwrap_or("");
            let number = label.rsplit('-').next().and_then(|n| n.parse::<u64>().ok());
            match number {
                Some(n) if n % 2 == 0 => decision == proto::Decision::Allow,
                Some(_) => decision == proto::Decision::ExplicitDeny,
                None => false,
            }
        }
    }
}

/// What workers measured since the last collection.
struct Tally {
    latency_us: Histogram<u64>,
    /// With --rate: from when each request was due to its answer.
    schedule_latency_us: Histogram<u64>,
    /// When the last answer counted here arrived.
    last_done: Option<Instant>,
    /// Answers by decision: allow, implicit deny, explicit deny.
    decisions: [u64; 3],
    errors: u64,
    wrong: u64,
    first_error: Option<String>,
    first_wrong: Option<String>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            latency_us: histogram(),
            schedule_latency_us: histogram(),
            last_done: None,
            decisions: [0; 3],
            errors: 0,
            wrong: 0,
            first_error: None,
            first_wrong: None,
        }
    }

    fn add(&mut self, other: &Tally) {
        self.latency_us.add(&other.latency_us).expect("histograms share their bounds");
        self.schedule_latency_us.add(&other.schedule_latency_us).expect("histograms share their bounds");
        self.last_done = self.last_done.max(other.last_done);
        for (mine, theirs) in self.decisions.iter_mut().zip(other.decisions) {
            *mine += theirs;
        }
        self.errors += other.errors;
        self.wrong += other.wrong;
        self.first_error = self.first_error.take().or_else(|| other.first_error.clone());
        self.first_wrong = self.first_wrong.take().or_else(|| other.first_wrong.clone());
    }

    fn requests(&self) -> u64 {
        self.latency_us.len() + self.errors
    }
}

/// 1 µs to 100 s at 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// CPU time (user + system) and resident memory of a process, from Linux's /proc.
#[derive(Clone, Copy)]
struct ProcessSample {
    cpu_seconds: f64,
    rss_bytes: u64,
}

fn sample_process(pid: u32) -> Result<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat: is --server-pid {pid} a running process?"))?;
    // Fields after the parenthesised command name: utime is field 14, stime 15 (1-based).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Linux reports CPU time in clock ticks of USER_HZ, which is 100 on every common platform.
    let cpu_seconds = (field(14) + field(15)) as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(ProcessSample { cpu_seconds, rss_bytes: rss_kb * 1024 })
}

/// Creates the workload's policy and users where missing; returns the ARN prefix of its users.
async fn prepare(args: &BenchArgs) -> Result<String> {
    let connect = |service| async move {
        SigningChannel::connect(&args.admin_endpoint, super::admin::credentials()?, service)
            .await
            .with_context(|| format!("cannot connect to the iamd admin API at {}", args.admin_endpoint))
    };
    let channel = connect("iam").await?;
    let account = proto::sts_client::StsClient::new(connect("sts").await?)
        .get_caller_identity(proto::Empty {})
        .await
        .context("cannot tell the account of the credentials in the environment")?
        .into_inner()
        .account;
    let mut admin = AdminClient::new(channel);
    let policy_arn = format!("arn:aws:iam::{account}:policy/{POLICY_NAME}");
    let created = admin
        .create_policy(proto::CreatePolicyRequest {
            policy_name: POLICY_NAME.into(),
            policy_document: POLICY.into(),
            description: "The policy of the users of `iamd bench`".into(),
            ..Default::default()
        })
        .await;
    match created {
        Ok(_) => {}
        Err(status) if error_code(&status) == Some("EntityAlreadyExists") => {}
        Err(status) => return Err(status).context("cannot create the workload's policy `iamd-bench`"),
    }
    let mut attach = vec![policy_arn];
    if args.revision_canary {
        attach.extend(CANARY_POLICIES.iter().map(|name| format!("arn:aws:iam::{account}:policy/{name}")));
    }
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (mut admin, next, attach, users) =
            (admin.clone(), next.clone(), attach.clone(), args.users as u64);
        tasks.push(tokio::spawn(async move {
            loop {
                let user = next.fetch_add(1, Ordering::Relaxed);
                if user >= users {
                    return Ok::<(), anyhow::Error>(());
                }
                let name = format!("iamd-bench-{user}");
                let created = admin
                    .create_user(proto::CreateUserRequest {
                        user_name: name.clone(),
                        tags: vec![proto::Tag {
                            key: "team".into(),
                            value: format!("team-{}", user % TEAMS as u64),
                        }],
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(_) => {}
                    Err(status) if error_code(&status) == Some("EntityAlreadyExists") => {}
                    Err(status) => return Err(status).with_context(|| format!("cannot create user {name}")),
                }
                // Attaching an attached policy changes nothing, so a rerun repairs a half setup.
                for policy_arn in &attach {
                    admin
                        .attach_user_policy(proto::AttachmentRequest {
                            name: name.clone(),
                            policy_arn: policy_arn.clone(),
                            account_id: String::new(),
                        })
                        .await
                        .with_context(|| format!("cannot attach {policy_arn} to {name}"))?;
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(format!("arn:aws:iam::{account}:user/"))
}

fn error_code(status: &tonic::Status) -> Option<&str> {
    status.metadata().get("iamd-error-code").and_then(|v| v.to_str().ok())
}

/// Until when workers send, and how they pace.
struct Plan {
    measure_from: Instant,
    until: Option<Instant>,
    budget: Option<AtomicU64>,
    /// The interval between two requests of one worker, with --rate.
    period: Option<Duration>,
    stop: AtomicBool,
}

async fn worker(
    mut client: AuthorizerClient<Channel>,
    workload: Arc<Workload>,
    plan: Arc<Plan>,
    tally: Arc<Mutex<Tally>>,
    seed: u64,
    offset: Duration,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let mut due = started + offset;
    loop {
        if plan.stop.load(Ordering::Relaxed) || plan.until.is_some_and(|until| Instant::now() >= until) {
            return;
        }
        if plan.period.is_some() {
            tokio::time::sleep_until(due.into()).await;
            if plan.until.is_some_and(|until| due >= until) {
                return;
            }
        }
        let case = workload.case(&mut rng);
        let sent = Instant::now();
        let scheduled = due;
        let answer = client.authorize(case.request).await;
        let done = Instant::now();
        if let Some(period) = plan.period {
            due += period;
        }
        if sent < plan.measure_from {
            continue;
        }
        if let Some(budget) = &plan.budget
            && budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1)).is_err()
        {
            plan.stop.store(true, Ordering::Relaxed);
            return;
        }
        let mut tally = tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                tally.latency_us.saturating_record(done.duration_since(sent).as_micros().max(1) as u64);
                if plan.period.is_some() {
                    let behind = done.duration_since(scheduled).as_micros().max(1) as u64;
                    tally.schedule_latency_us.saturating_record(behind);
                }
                tally.last_done = tally.last_done.max(Some(done));
                let decision = proto::Decision::try_from(answer.decision);
                match decision {
                    Ok(proto::Decision::Allow) => tally.decisions[0] += 1,
                    Ok(proto::Decision::ImplicitDeny) => tally.decisions[1] += 1,
                    Ok(proto::Decision::ExplicitDeny) => tally.decisions[2] += 1,
                    _ => {}
                }
                if !is_right(case.expected, &answer) {
                    tally.wrong += 1;
                    if tally.first_wrong.is_none() {
                        tally.first_wrong = Some(format!(
                            "expected {:?}, got {:?} from revision {} (request {})",
                            case.expected,
                            proto::Decision::try_from(answer.decision)
                                .unwrap_or(proto::Decision::Unspecified),
                            answer.revision,
                            answer.request_id
                        ));
                    }
                }
            }
            Err(status) => {
                tally.errors += 1;
                if tally.first_error.is_none() {
                    tally.first_error = Some(format!("{:?}: {}", status.code(), status.message()));
                }
            }
        }
    }
}

/// Changes a tag on one user after another until the plan stops; returns (writes, failures).
async fn admin_writer(
    endpoint: String,
    users: u32,
    plan: Arc<Plan>,
    every: Duration,
) -> Result<(u64, u64, Option<String>)> {
    let channel = SigningChannel::connect(&endpoint, super::admin::credentials()?, "iam").await?;
    let mut admin = AdminClient::new(channel);
    let (mut writes, mut failures, mut first_failure) = (0u64, 0u64, None);
    tokio::time::sleep_until(plan.measure_from.into()).await;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !plan.stop.load(Ordering::Relaxed) && plan.until.is_none_or(|until| Instant::now() < until) {
        ticks.tick().await;
        let user = writes % users as u64;
        let written = admin
            .tag_user(proto::TagRequest {
                name: format!("iamd-bench-{user}"),
                tags: vec![proto::Tag { key: "bench-write".into(), value: writes.to_string() }],
                account_id: String::new(),
            })
            .await;
        writes += 1;
        if let Err(status) = written {
            failures += 1;
            first_failure.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
        }
    }
    Ok((writes, failures, first_failure))
}

struct Summary {
    seconds: f64,
    tally: Tally,
    server_cpu_seconds: Option<f64>,
    server_rss_bytes: Option<u64>,
}

impl Summary {
    fn to_json(&self) -> Value {
        let h = &self.tally.latency_us;
        let answered = h.len();
        let percentiles = |h: &Histogram<u64>| {
            if h.is_empty() {
                return Value::Null;
            }
            json!({
                "p50": h.value_at_quantile(0.5),
                "p90": h.value_at_quantile(0.9),
                "p99": h.value_at_quantile(0.99),
                "p99_9": h.value_at_quantile(0.999),
                "max": h.max(),
                "mean": round(h.mean(), 1),
            })
        };
        json!({
            "seconds": round(self.seconds, 3),
            "requests": self.tally.requests(),
            "throughput_per_second": round(self.tally.requests() as f64 / self.seconds, 1),
            "decisions": {
                "allow": self.tally.decisions[0],
                "implicit_deny": self.tally.decisions[1],
                "explicit_deny": self.tally.decisions[2],
            },
            "errors": self.tally.errors,
            "wrong_decisions": self.tally.wrong,
            "latency_us": percentiles(h),
            "schedule_latency_us": percentiles(&self.tally.schedule_latency_us),
            "server_cpu_us_per_decision": self.server_cpu_seconds
                .filter(|_| answered > 0)
                .map(|cpu| round(cpu * 1e6 / answered as f64, 1)),
            "server_rss_mb": self.server_rss_bytes.map(|b| round(b as f64 / 1048576.0, 1)),
        })
    }

    fn to_line(&self) -> String {
        let h = &self.tally.latency_us;
        let ms = |q: f64| format!("{:.3}", h.value_at_quantile(q) as f64 / 1000.0);
        let mut line = format!(
            "{:>9} requests in {:.1} s ({:.0}/s), {} errors, {} wrong; latency ms p50 {} p90 {} p99 {} p99.9 {} max {}",
            self.tally.requests(),
            self.seconds,
            self.tally.requests() as f64 / self.seconds,
            self.tally.errors,
            self.tally.wrong,
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            format_args!("{:.3}", h.max() as f64 / 1000.0),
        );
        if let Some(cpu) = self.server_cpu_seconds.filter(|_| !h.is_empty()) {
            line.push_str(&format!("; server CPU {:.1} µs/decision", cpu * 1e6 / h.len() as f64));
        }
        if let Some(rss) = self.server_rss_bytes {
            line.push_str(&format!(", RSS {:.1} MB", rss as f64 / 1048576.0));
        }
        line
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

async fn wait_all(workers: &[tokio::task::JoinHandle<()>]) {
    while !workers.iter().all(|w| w.is_finished()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the benchmark and prints its result. Fails (a non-zero exit) when any request failed
/// or was answered wrongly, or an admin write failed, so a soak can gate on it.
pub async fn run(args: BenchArgs) -> Result<()> {
    if args.duration <= 0.0 && args.requests.is_none() {
        bail!("--duration must be positive");
    }
    if args.rate.is_some_and(|rate| rate <= 0.0 || !rate.is_finite()) {
        bail!("--rate must be a positive number of requests per second");
    }
    let user_arn_prefix = prepare(&args).await?;
    let workload = Arc::new(Workload { user_arn_prefix, users: args.users, canary: args.revision_canary });
    let connections = args.connections.min(args.concurrency);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(super::connect(&args.endpoint).await?);
    }

    let warmup = Duration::from_secs_f64(args.warmup.max(0.0));
    let measure_from = Instant::now() + warmup;
    let plan = Arc::new(Plan {
        measure_from,
        until: args.requests.is_none().then(|| measure_from + Duration::from_secs_f64(args.duration)),
        budget: args.requests.map(AtomicU64::new),
        period: args.rate.map(|rate| Duration::from_secs_f64(args.concurrency as f64 / rate)),
        stop: AtomicBool::new(false),
    });
    let tallies: Vec<Arc<Mutex<Tally>>> =
        (0..args.concurrency).map(|_| Arc::new(Mutex::new(Tally::new()))).collect();
    let mut workers = Vec::new();
    for (index, tally) in tallies.iter().enumerate() {
        let client = AuthorizerClient::new(channels[index % channels.len()].clone());
        // Workers start evenly spread over one period, so a paced load is steady, not bursty.
        let offset = plan.period.map_or(Duration::ZERO, |period| period * index as u32 / args.concurrency);
        let seed = 0x9e37_79b9_7f4a_7c15 ^ index as u64;
        workers.push(tokio::spawn(worker(
            client,
            workload.clone(),
            plan.clone(),
            tally.clone(),
            seed,
            offset,
        )));
    }
    let writer = args.admin_write_interval_ms.map(|ms| {
        let every = Duration::from_millis(ms.max(1));
        tokio::spawn(admin_writer(args.admin_endpoint.clone(), args.users, plan.clone(), every))
    });

    tokio::time::sleep_until(measure_from.into()).await;
    let collect = |into: &mut Tally| {
        for tally in &tallies {
            let mut tally = tally.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            into.add(&tally);
            *tally = Tally::new();
        }
    };
    let sample = || args.server_pid.map(sample_process).transpose();
    let first_sample = sample()?;
    let mut total = Tally::new();
    let mut intervals = Vec::new();
    if let Some(every) = args.interval.map(|s| Duration::from_secs_f64(s.max(0.1))) {
        let mut last = (Instant::now(), first_sample);
        let mut next = measure_from + every;
        while !workers.iter().all(|w| w.is_finished()) {
            tokio::select! {
                _ = tokio::time::sleep_until(next.into()) => {}
                _ = wait_all(&workers) => {}
            }
            let now = Instant::now();
            // The stragglers after the last full interval count in the total only.
            if now < next && now.duration_since(last.0) < every / 2 {
                break;
            }
            next += every;
            let mut tally = Tally::new();
            collect(&mut tally);
            let sampled = sample()?;
            let interval = Summary {
                seconds: now.duration_since(last.0).as_secs_f64(),
                server_cpu_seconds: sampled.zip(last.1).map(|(s, l)| s.cpu_seconds - l.cpu_seconds),
                server_rss_bytes: sampled.map(|s| s.rss_bytes),
                tally,
            };
            let at = now.duration_since(measure_from).as_secs_f64();
            let mut entry = interval.to_json();
            entry["at_seconds"] = json!(round(at, 1));
            if !args.json {
                println!("[{at:>6.1} s] {}", interval.to_line());
            }
            intervals.push(entry);
            total.add(&interval.tally);
            last = (now, sampled);
        }
    }
    wait_all(&workers).await;
    for worker in workers {
        worker.await.context("a load worker failed")?;
    }
    collect(&mut total);
    let last_sample = sample()?;
    let summary = Summary {
        // Up to the last answer, not to when the workers were seen to finish.
        seconds: total.last_done.unwrap_or_else(Instant::now).duration_since(measure_from).as_secs_f64(),
        server_cpu_seconds: last_sample.zip(first_sample).map(|(l, f)| l.cpu_seconds - f.cpu_seconds),
        server_rss_bytes: last_sample.map(|s| s.rss_bytes),
        tally: total,
    };

    let mut problems = Vec::new();
    let mut output = summary.to_json();
    output["connections"] = json!(connections);
    output["concurrency"] = json!(args.concurrency);
    output["users"] = json!(args.users);
    output["rate"] = json!(args.rate);
    if !intervals.is_empty() {
        output["intervals"] = Value::Array(intervals);
    }
    if let Some(writer) = writer {
        let (writes, failures, first_failure) = writer.await.context("the admin writer failed")??;
        output["admin_writes"] =
            json!({"writes": writes, "failures": failures, "first_failure": first_failure});
        if failures > 0 {
            problems.push(format!(
                "{failures} of {writes} admin writes failed, the first with {}",
                first_failure.unwrap_or_default()
            ));
        }
    }
    let tally = &summary.tally;
    if let Some(error) = &tally.first_error {
        output["first_error"] = json!(error);
        problems.push(format!("{} requests failed, the first with {error}", tally.errors));
    }
    if let Some(wrong) = &tally.first_wrong {
        output["first_wrong_decision"] = json!(wrong);
        problems.push(format!("{} requests were answered wrongly, the first: {wrong}", tally.wrong));
    }
    if args.json {
        println!("{output:#}");
    } else {
        println!("{}", summary.to_line());
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(())
}
