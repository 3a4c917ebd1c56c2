//! The `iamd` command line.

mod cli;

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use iamd::policy::{self, Diagnostic, PolicyKind, Severity};

/// Every request allocates and frees many small objects (HTTP/2 frames, the protobuf messages,
/// the context, the audit record, freed on the audit writer's thread); with mimalloc's
/// per-thread free lists the server's CPU per decision was about a quarter lower than with
/// glibc's allocator (README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns the calling thread's freed pages to the system (see [`iamd::memory`]).
fn release_freed_memory() {
    // SAFETY: `mi_collect` only walks mimalloc's own structures; it may be called at any time
    // from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[derive(Parser)]
#[command(name = "iamd", version, about = "AWS IAM for your own services")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar: the Authorizer and Admin gRPC APIs over the bundle and the store
    Serve(cli::ServeArgs),
    /// Ask a running iamd for a decision; prints the response as JSON
    Check(cli::CheckArgs),
    /// Manage identities through a running iamd, with the aws CLI's command names
    Admin(cli::admin::AdminArgs),
    /// Temporary credentials from a running iamd, with the aws CLI's command names
    Sts(cli::sts::StsArgs),
    /// Console-style password sign-in, answered with temporary credentials
    Console(cli::sts::ConsoleArgs),
    /// Load a running iamd's Authorize API and report throughput and latency percentiles
    Bench(cli::bench::BenchArgs),
    /// Decide JSON Lines test vectors, writing one JSON line per case
    Simulate {
        /// File of cases, one JSON object per line; `-` for standard input
        #[arg(long, value_name = "FILE")]
        cases: String,
        /// Add the explanation (deciding layer, reason, matched statements) to each result
        #[arg(long)]
        explain: bool,
    },
    /// Work with policy documents
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check policy files: errors and warnings as `file:line:col: severity: message`
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// How the policies are used, which decides the rules and size limits
        #[arg(long, value_enum, default_value_t = Kind::Identity)]
        kind: Kind,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Identity,
    Resource,
    Trust,
    Scp,
    Rcp,
    Boundary,
    Session,
}

impl From<Kind> for PolicyKind {
    fn from(kind: Kind) -> PolicyKind {
        match kind {
            Kind::Identity => PolicyKind::Identity,
            Kind::Resource => PolicyKind::Resource,
            Kind::Trust => PolicyKind::Trust,
            Kind::Scp => PolicyKind::Scp,
            Kind::Rcp => PolicyKind::Rcp,
            Kind::Boundary => PolicyKind::Boundary,
            Kind::Session => PolicyKind::Session,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    iamd::memory::install_release(release_freed_memory);
    let matches = Cli::command().get_matches();
    // The admin subcommand's name, for error messages worded like the aws CLI's.
    let operation = ["admin", "sts", "console"]
        .iter()
        .find_map(|group| matches.subcommand_matches(group))
        .and_then(|group| group.subcommand_name())
        .unwrap_or_default()
        .to_string();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    match run(cli, &operation) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("iamd: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// `list-users` is the aws CLI's name of the `ListUsers` operation.
fn aws_operation(command: &str) -> String {
    command
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn run(cli: Cli, operation: &str) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => cli::serve(args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => client(|| cli::check(args)).map(|output| {
            println!("{output:#}");
            ExitCode::SUCCESS
        }),
        Command::Admin(args) => {
            let operation = aws_operation(operation);
            match client(|| cli::admin::run(args)) {
                Ok(output) => {
                    if let Some(output) = output {
                        println!("{output:#}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("{}", cli::describe_error(&error, &operation));
                    Ok(ExitCode::from(254))
                }
            }
        }
        Command::Sts(args) => aws_call(client(|| cli::sts::run(args)), operation),
        Command::Console(args) => aws_call(client(|| cli::sts::console(args)), operation),
        Command::Bench(args) => client(|| cli::bench::run(args)).map(|()| ExitCode::SUCCESS),
        Command::Simulate { cases, explain } => simulate(&cases, explain),
        Command::Policy { command: PolicyCommand::Validate { files, kind, format } } => {
            validate(&files, kind.into(), format)
        }
    }
}

/// Prints a call's answer, or its error as the aws CLI does (exit status 254).
fn aws_call(result: Result<serde_json::Value>, operation: &str) -> Result<ExitCode> {
    match result {
        Ok(output) => {
            println!("{output:#}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{}", cli::describe_error(&error, &aws_operation(operation)));
            Ok(ExitCode::from(254))
        }
    }
}

/// Runs a client command on a small runtime.
fn client<T, F: std::future::Future<Output = Result<T>>>(command: impl FnOnce() -> F) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(command())
}

fn simulate(cases: &str, explain: bool) -> Result<ExitCode> {
    let input: Box<dyn BufRead> = if cases == "-" {
        Box::new(io::stdin().lock())
    } else {
        let file = fs::File::open(cases).with_context(|| format!("cannot open cases file `{cases}`"))?;
        Box::new(BufReader::new(file))
    };
    let stdout = io::stdout().lock();
    let summary = iamd::simulate::run(input, io::BufWriter::new(stdout), explain)
        .with_context(|| format!("cannot read cases from `{cases}`"))?;
    if summary.errors > 0 {
        eprintln!(
            "iamd: {} of {} cases could not be decided (see their `error`)",
            summary.errors, summary.cases
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(files: &[PathBuf], kind: PolicyKind, format: Format) -> Result<ExitCode> {
    let mut all: Vec<Diagnostic> = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = fs::read_to_string(file).with_context(|| format!("cannot read `{name}`"))?;
        match policy::parse(&name, &text, kind) {
            Ok(parsed) => all.extend(parsed.warnings),
            Err(error) => all.extend(error.diagnostics),
        }
    }
    let errors = all.iter().filter(|d| d.severity == Severity::Error).count();
    let mut out = io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &all)?;
            writeln!(out)?;
        }
        Format::Text => {
            for diagnostic in &all {
                writeln!(out, "{diagnostic}")?;
            }
            let warnings = all.len() - errors;
            eprintln!(
                "{} file{} checked as {kind} policies: {errors} error{}, {warnings} warning{}",
                files.len(),
                plural(files.len()),
                plural(errors),
                plural(warnings)
            );
        }
    }
    Ok(if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
