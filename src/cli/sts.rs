//! `iamd sts` and `iamd console`: temporary credentials from a running iamd, printed like the
//! aws CLI prints them.

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use iamd::client::SigningChannel;
use iamd::proto::{self, console_client::ConsoleClient, sts_client::StsClient};

#[derive(Args)]
pub struct StsArgs {
    /// The admin API address, which also serves STS
    #[arg(long, env = "IAMD_ADMIN_ENDPOINT", default_value = "http://127.0.0.1:50052")]
    endpoint: String,
    #[command(subcommand)]
    command: StsCommand,
}

#[derive(Subcommand)]
enum StsCommand {
    AssumeRole {
        #[arg(long)]
        role_arn: String,
        #[arg(long)]
        role_session_name: String,
        #[arg(long, default_value_t = 0)]
        duration_seconds: i32,
        #[arg(long, default_value = "")]
        external_id: String,
        #[arg(long, default_value = "")]
        serial_number: String,
        #[arg(long, default_value = "")]
        token_code: String,
        /// An inline session policy, or file://PATH
        #[arg(long, default_value = "")]
        policy: String,
        #[arg(long, num_args = 1..)]
        policy_arns: Vec<String>,
        #[arg(long, num_args = 1.., value_parser = super::admin::parse_tag)]
        tags: Vec<proto::Tag>,
        #[arg(long, num_args = 1..)]
        transitive_tag_keys: Vec<String>,
        #[arg(long, default_value = "")]
        source_identity: String,
    },
    GetSessionToken {
        #[arg(long, default_value_t = 0)]
        duration_seconds: i32,
        #[arg(long, default_value = "")]
        serial_number: String,
        #[arg(long, default_value = "")]
        token_code: String,
    },
    GetCallerIdentity,
}

fn credentials_json(c: Option<proto::Credentials>) -> Value {
    let c = c.unwrap_or_default();
    json!({"AccessKeyId": c.access_key_id, "SecretAccessKey": c.secret_access_key,
        "SessionToken": c.session_token, "Expiration": c.expiration})
}

pub async fn run(args: StsArgs) -> Result<Value> {
    let channel = SigningChannel::connect(&args.endpoint, super::admin::credentials()?, "sts")
        .await
        .with_context(|| format!("cannot connect to iamd at {}", args.endpoint))?;
    let mut client = StsClient::new(channel);
    Ok(match args.command {
        StsCommand::AssumeRole {
            role_arn,
            role_session_name,
            duration_seconds,
            external_id,
            serial_number,
            token_code,
            policy,
            policy_arns,
            tags,
            transitive_tag_keys,
            source_identity,
        } => {
            let policy = if policy.is_empty() { policy } else { super::admin::document(&policy)? };
            let r = client
                .assume_role(proto::AssumeRoleRequest {
                    role_arn,
                    role_session_name,
                    duration_seconds,
                    policy,
                    policy_arns,
                    tags,
                    transitive_tag_keys,
                    external_id,
                    serial_number,
                    token_code,
                    source_identity,
                })
                .await?
                .into_inner();
            let user = r.assumed_role_user.unwrap_or_default();
            let mut out = json!({"Credentials": credentials_json(r.credentials),
                "AssumedRoleUser": {"AssumedRoleId": user.assumed_role_id, "Arn": user.arn},
                "PackedPolicySize": r.packed_policy_size});
            if !r.source_identity.is_empty() {
                out["SourceIdentity"] = json!(r.source_identity);
            }
            out
        }
        StsCommand::GetSessionToken { duration_seconds, serial_number, token_code } => {
            let r = client
                .get_session_token(proto::GetSessionTokenRequest {
                    duration_seconds,
                    serial_number,
                    token_code,
                })
                .await?
                .into_inner();
            json!({"Credentials": credentials_json(r.credentials)})
        }
        StsCommand::GetCallerIdentity => {
            let r = client.get_caller_identity(proto::Empty {}).await?.into_inner();
            json!({"UserId": r.user_id, "Account": r.account, "Arn": r.arn})
        }
    })
}

#[derive(Args)]
pub struct ConsoleArgs {
    #[arg(long, env = "IAMD_ADMIN_ENDPOINT", default_value = "http://127.0.0.1:50052")]
    endpoint: String,
    #[command(subcommand)]
    command: ConsoleCommand,
}

#[derive(Subcommand)]
enum ConsoleCommand {
    /// Sign in with a password (IAMD_PASSWORD or standard input) for temporary credentials
    SignIn {
        #[arg(long)]
        user_name: String,
        #[arg(long, default_value = "")]
        account_id: String,
        #[arg(long, default_value = "")]
        mfa_code: String,
        #[arg(long, default_value = "")]
        mfa_serial_number: String,
        /// Set a new password (read after the current one) when the old one must be changed
        #[arg(long)]
        new_password: bool,
        #[arg(long, default_value_t = 0)]
        duration_seconds: i32,
    },
}

pub async fn console(args: ConsoleArgs) -> Result<Value> {
    let ConsoleCommand::SignIn {
        user_name,
        account_id,
        mfa_code,
        mfa_serial_number,
        new_password,
        duration_seconds,
    } = args.command;
    let password = match std::env::var("IAMD_PASSWORD") {
        Ok(password) => password,
        Err(_) => super::admin::read_line("the password")?,
    };
    let new_password =
        if new_password { super::admin::read_line("the new password")? } else { String::new() };
    let mut client = ConsoleClient::new(super::connect(&args.endpoint).await?);
    let r = client
        .sign_in(proto::SignInRequest {
            account_id,
            user_name,
            password,
            mfa_serial_number,
            mfa_code,
            new_password,
            duration_seconds,
        })
        .await?
        .into_inner();
    Ok(json!({"Credentials": credentials_json(r.credentials), "Arn": r.user_arn}))
}
