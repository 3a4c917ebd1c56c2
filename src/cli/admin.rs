//! `iamd admin`: the admin API with the aws CLI's command and flag names, printing JSON shaped
//! like the aws CLI's output.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use iamd::client::SigningChannel;
use iamd::credentials::sigv4::SigningCredentials;
use iamd::proto::{self, admin_client::AdminClient};

/// The caller's credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and
/// `AWS_SESSION_TOKEN`) as for the aws CLI, or a file of those lines in `IAMD_CREDENTIALS_FILE`.
pub fn credentials() -> Result<SigningCredentials> {
    if let Some(credentials) = iamd::client::credentials_from_env() {
        return Ok(credentials);
    }
    if let Some(path) = std::env::var_os("IAMD_CREDENTIALS_FILE") {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read IAMD_CREDENTIALS_FILE `{}`", path.to_string_lossy()))?;
        return iamd::client::credentials_from_file(&text).with_context(|| {
            format!(
                "`{}` does not hold AWS_ACCESS_KEY_ID=... and AWS_SECRET_ACCESS_KEY=... lines",
                path.to_string_lossy()
            )
        });
    }
    bail!(
        "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for \
         temporary credentials), or IAMD_CREDENTIALS_FILE to a file of those lines; the root's are shown \
         once, when iamd first starts"
    )
}

#[derive(Args)]
pub struct AdminArgs {
    /// The admin API address
    #[arg(long, env = "IAMD_ADMIN_ENDPOINT", default_value = "http://127.0.0.1:50052")]
    endpoint: String,
    /// The account to act in (default: the server's account)
    #[arg(long, global = true, default_value = "")]
    account_id: String,
    #[command(subcommand)]
    command: AdminCommand,
}

/// `file://PATH` reads a file, as the aws CLI does; anything else is the value itself.
pub fn document(value: &str) -> Result<String> {
    match value.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read `{path}`")),
        None => Ok(value.to_string()),
    }
}

/// `Key=K,Value=V`, the aws CLI's shorthand for a tag.
pub fn parse_tag(text: &str) -> Result<proto::Tag, String> {
    let mut key = None;
    let mut value = String::new();
    for part in text.split(',') {
        match part.split_once('=') {
            Some(("Key", k)) => key = Some(k.to_string()),
            Some(("Value", v)) => value = v.to_string(),
            _ => return Err(format!("`{text}` is not a tag: expected Key=NAME,Value=VALUE")),
        }
    }
    key.map(|key| proto::Tag { key, value }).ok_or_else(|| format!("`{text}` has no Key=NAME"))
}

#[derive(Subcommand)]
enum AdminCommand {
    CreateUser {
        #[arg(long)]
        user_name: String,
        #[arg(long, default_value = "")]
        path: String,
        #[arg(long, num_args = 1.., value_parser = parse_tag)]
        tags: Vec<proto::Tag>,
        #[arg(long, default_value = "")]
        permissions_boundary: String,
    },
    GetUser {
        #[arg(long)]
        user_name: String,
    },
    ListUsers {
        #[arg(long, default_value = "")]
        path_prefix: String,
    },
    DeleteUser {
        #[arg(long)]
        user_name: String,
    },
    CreateGroup {
        #[arg(long)]
        group_name: String,
        #[arg(long, default_value = "")]
        path: String,
    },
    GetGroup {
        #[arg(long)]
        group_name: String,
    },
    ListGroups {
        #[arg(long, default_value = "")]
        path_prefix: String,
    },
    DeleteGroup {
        #[arg(long)]
        group_name: String,
    },
    AddUserToGroup {
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        user_name: String,
    },
    RemoveUserFromGroup {
        #[arg(long)]
        group_name: String,
        #[arg(long)]
        user_name: String,
    },
    ListGroupsForUser {
        #[arg(long)]
        user_name: String,
    },
    CreateRole {
        #[arg(long)]
        role_name: String,
        /// The trust policy, or file://PATH
        #[arg(long)]
        assume_role_policy_document: String,
        #[arg(long, default_value = "")]
        path: String,
        #[arg(long, default_value_t = 0)]
        max_session_duration: i32,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, num_args = 1.., value_parser = parse_tag)]
        tags: Vec<proto::Tag>,
        #[arg(long, default_value = "")]
        permissions_boundary: String,
    },
    GetRole {
        #[arg(long)]
        role_name: String,
    },
    ListRoles {
        #[arg(long, default_value = "")]
        path_prefix: String,
    },
    DeleteRole {
        #[arg(long)]
        role_name: String,
    },
    UpdateAssumeRolePolicy {
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        policy_document: String,
    },
    PutUserPolicy(PutPolicy<UserName>),
    GetUserPolicy(NamedPolicy<UserName>),
    ListUserPolicies(UserName),
    DeleteUserPolicy(NamedPolicy<UserName>),
    PutGroupPolicy(PutPolicy<GroupName>),
    GetGroupPolicy(NamedPolicy<GroupName>),
    ListGroupPolicies(GroupName),
    DeleteGroupPolicy(NamedPolicy<GroupName>),
    PutRolePolicy(PutPolicy<RoleName>),
    GetRolePolicy(NamedPolicy<RoleName>),
    ListRolePolicies(RoleName),
    DeleteRolePolicy(NamedPolicy<RoleName>),
    AttachUserPolicy(Attach<UserName>),
    DetachUserPolicy(Attach<UserName>),
    ListAttachedUserPolicies(UserName),
    AttachGroupPolicy(Attach<GroupName>),
    DetachGroupPolicy(Attach<GroupName>),
    ListAttachedGroupPolicies(GroupName),
    AttachRolePolicy(Attach<RoleName>),
    DetachRolePolicy(Attach<RoleName>),
    ListAttachedRolePolicies(RoleName),
    PutUserPermissionsBoundary(Boundary<UserName>),
    DeleteUserPermissionsBoundary(UserName),
    PutRolePermissionsBoundary(Boundary<RoleName>),
    DeleteRolePermissionsBoundary(RoleName),
    TagUser(TagArgs<UserName>),
    UntagUser(UntagArgs<UserName>),
    ListUserTags(UserName),
    TagRole(TagArgs<RoleName>),
    UntagRole(UntagArgs<RoleName>),
    ListRoleTags(RoleName),
    TagResource(TagArgs<ResourceArn>),
    UntagResource(UntagArgs<ResourceArn>),
    ListResourceTags(ResourceArn),
    /// Create an access key for a user (or for yourself); the secret is shown only now
    CreateAccessKey {
        #[arg(long, default_value = "")]
        user_name: String,
    },
    ListAccessKeys {
        #[arg(long, default_value = "")]
        user_name: String,
    },
    UpdateAccessKey {
        #[arg(long, default_value = "")]
        user_name: String,
        #[arg(long)]
        access_key_id: String,
        /// Active or Inactive
        #[arg(long)]
        status: String,
    },
    DeleteAccessKey {
        #[arg(long, default_value = "")]
        user_name: String,
        #[arg(long)]
        access_key_id: String,
    },
    GetAccessKeyLastUsed {
        #[arg(long)]
        access_key_id: String,
    },
    /// Create a virtual MFA device; its seed is shown only now
    CreateVirtualMfaDevice {
        #[arg(long)]
        virtual_mfa_device_name: String,
        #[arg(long, default_value = "")]
        path: String,
    },
    /// Assign a device to a user with two consecutive codes from it
    EnableMfaDevice(MfaCodes),
    ResyncMfaDevice(MfaCodes),
    DeactivateMfaDevice {
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        serial_number: String,
    },
    DeleteVirtualMfaDevice {
        #[arg(long)]
        serial_number: String,
    },
    ListMfaDevices {
        #[arg(long, default_value = "")]
        user_name: String,
    },
    /// Give a user a console password (read from IAMD_PASSWORD or standard input)
    CreateLoginProfile {
        #[arg(long)]
        user_name: String,
        #[arg(long)]
        password_reset_required: bool,
    },
    GetLoginProfile {
        #[arg(long)]
        user_name: String,
    },
    /// Set a new password (read from IAMD_PASSWORD or standard input) or the reset flag
    UpdateLoginProfile {
        #[arg(long)]
        user_name: String,
        /// Set a new password
        #[arg(long)]
        password: bool,
        #[arg(long)]
        password_reset_required: Option<bool>,
    },
    DeleteLoginProfile {
        #[arg(long)]
        user_name: String,
    },
    /// Change your own password: the old and the new one, one per line on standard input
    ChangePassword,
    UpdateAccountPasswordPolicy {
        #[arg(long, default_value_t = 8)]
        minimum_password_length: u32,
        #[arg(long)]
        require_symbols: bool,
        #[arg(long)]
        require_numbers: bool,
        #[arg(long)]
        require_uppercase_characters: bool,
        #[arg(long)]
        require_lowercase_characters: bool,
        #[arg(long)]
        allow_users_to_change_password: bool,
        /// Days; 0: passwords never expire
        #[arg(long, default_value_t = 0)]
        max_password_age: u32,
        #[arg(long, default_value_t = 0)]
        password_reuse_prevention: u32,
        #[arg(long)]
        hard_expiry: bool,
    },
    GetAccountPasswordPolicy,
    DeleteAccountPasswordPolicy,
    /// Re-read the policy bundle now
    Reload,
    /// Snapshot revision, counts, reload results
    Status,
    /// Print all stored identities as JSON
    Export,
    /// Replace all stored identities with an export
    Import {
        /// The export, or file://PATH
        #[arg(long)]
        state: String,
    },
}

#[derive(Args)]
pub struct MfaCodes {
    #[arg(long)]
    user_name: String,
    #[arg(long)]
    serial_number: String,
    #[arg(long)]
    authentication_code1: String,
    #[arg(long)]
    authentication_code2: String,
}

/// Secrets are never flags (they would show in the process list): a password comes from
/// `IAMD_PASSWORD` or standard input.
fn read_password() -> Result<String> {
    if let Ok(password) = std::env::var("IAMD_PASSWORD") {
        return Ok(password);
    }
    read_line("the password")
}

pub fn read_line(what: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .with_context(|| format!("cannot read {what} from standard input"))?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        bail!("{what} is empty: give it on standard input");
    }
    Ok(line)
}

/// How each entity kind is named on the command line.
pub trait EntityName: Args {
    fn name(&self) -> &str;
}

macro_rules! entity_name {
    ($type:ident, $field:ident) => {
        #[derive(Args, Clone)]
        pub struct $type {
            #[arg(long)]
            $field: String,
        }
        impl EntityName for $type {
            fn name(&self) -> &str {
                &self.$field
            }
        }
    };
}

entity_name!(UserName, user_name);
entity_name!(GroupName, group_name);
entity_name!(RoleName, role_name);
entity_name!(ResourceArn, resource_arn);

#[derive(Args)]
pub struct PutPolicy<E: EntityName> {
    #[command(flatten)]
    entity: E,
    #[arg(long)]
    policy_name: String,
    /// The policy, or file://PATH
    #[arg(long)]
    policy_document: String,
}

#[derive(Args)]
pub struct NamedPolicy<E: EntityName> {
    #[command(flatten)]
    entity: E,
    #[arg(long)]
    policy_name: String,
}

#[derive(Args)]
pub struct Attach<E: EntityName> {
    #[command(flatten)]
    entity: E,
    #[arg(long)]
    policy_arn: String,
}

#[derive(Args)]
pub struct Boundary<E: EntityName> {
    #[command(flatten)]
    entity: E,
    #[arg(long)]
    permissions_boundary: String,
}

#[derive(Args)]
pub struct TagArgs<E: EntityName> {
    #[command(flatten)]
    entity: E,
    #[arg(long, required = true, num_args = 1.., value_parser = parse_tag)]
    tags: Vec<proto::Tag>,
}

#[derive(Args)]
pub struct UntagArgs<E: EntityName> {
    #[command(flatten)]
    entity: E,
    #[arg(long, required = true, num_args = 1..)]
    tag_keys: Vec<String>,
}

fn user_json(u: &proto::User) -> Value {
    let mut user = json!({"Path": u.path, "UserName": u.user_name, "UserId": u.user_id, "Arn": u.arn, "CreateDate": u.create_date});
    if !u.tags.is_empty() {
        user["Tags"] = tags_json(&u.tags);
    }
    if !u.permissions_boundary.is_empty() {
        user["PermissionsBoundary"] =
            json!({"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": u.permissions_boundary});
    }
    user
}

fn group_json(g: &proto::Group) -> Value {
    json!({"Path": g.path, "GroupName": g.group_name, "GroupId": g.group_id, "Arn": g.arn, "CreateDate": g.create_date})
}

fn role_json(r: &proto::Role) -> Value {
    let trust: Value = serde_json::from_str(&r.assume_role_policy_document)
        .unwrap_or(Value::String(r.assume_role_policy_document.clone()));
    let mut role = json!({"Path": r.path, "RoleName": r.role_name, "RoleId": r.role_id, "Arn": r.arn, "CreateDate": r.create_date,
        "AssumeRolePolicyDocument": trust, "Description": r.description, "MaxSessionDuration": r.max_session_duration});
    if !r.tags.is_empty() {
        role["Tags"] = tags_json(&r.tags);
    }
    if !r.permissions_boundary.is_empty() {
        role["PermissionsBoundary"] =
            json!({"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": r.permissions_boundary});
    }
    role
}

fn tags_json(tags: &[proto::Tag]) -> Value {
    tags.iter().map(|t| json!({"Key": t.key, "Value": t.value})).collect()
}

fn policy_json(entity_field: &str, p: &proto::PolicyDocument) -> Value {
    let document: Value =
        serde_json::from_str(&p.policy_document).unwrap_or(Value::String(p.policy_document.clone()));
    json!({entity_field: p.name, "PolicyName": p.policy_name, "PolicyDocument": document})
}

fn mfa_codes(c: MfaCodes, account: &str) -> proto::MfaCodesRequest {
    proto::MfaCodesRequest {
        user_name: c.user_name,
        serial_number: c.serial_number,
        authentication_code1: c.authentication_code1,
        authentication_code2: c.authentication_code2,
        account_id: account.to_string(),
    }
}

fn login_profile_json(p: &proto::LoginProfile) -> Value {
    json!({"LoginProfile": {"UserName": p.user_name, "CreateDate": p.create_date,
        "PasswordResetRequired": p.password_reset_required}})
}

fn attached_json(a: proto::AttachedPolicies) -> Value {
    json!({"AttachedPolicies": a.attached_policies.iter().map(|p| json!({"PolicyName": p.policy_name, "PolicyArn": p.policy_arn})).collect::<Vec<_>>()})
}

/// Runs an admin command; `None` output means the call returns nothing (as the aws CLI prints
/// nothing).
pub async fn run(args: AdminArgs) -> Result<Option<Value>> {
    let channel = SigningChannel::connect(&args.endpoint, credentials()?, "iam")
        .await
        .with_context(|| format!("cannot connect to the iamd admin API at {}", args.endpoint))?;
    // An export, and so an import, holds every identity: far more than gRPC's 4 MiB default at
    // a few thousand users. The server takes imports up to the same size.
    let mut client = AdminClient::new(channel)
        .max_decoding_message_size(iamd::server::MAX_IMPORT_BODY)
        .max_encoding_message_size(iamd::server::MAX_IMPORT_BODY);
    let account = args.account_id;
    let entity = |name: &str| proto::EntityRequest { name: name.to_string(), account_id: account.clone() };
    let put = |name: &str, policy_name: String, document_arg: &str| -> Result<proto::PutPolicyRequest> {
        Ok(proto::PutPolicyRequest {
            name: name.to_string(),
            policy_name,
            policy_document: document(document_arg)?,
            account_id: account.clone(),
        })
    };
    let named = |name: &str, policy_name: String| proto::PolicyRequest {
        name: name.to_string(),
        policy_name,
        account_id: account.clone(),
    };
    let attachment = |name: &str, policy_arn: String| proto::AttachmentRequest {
        name: name.to_string(),
        policy_arn,
        account_id: account.clone(),
    };
    let tagging = |name: &str, tags: Vec<proto::Tag>| proto::TagRequest {
        name: name.to_string(),
        tags,
        account_id: account.clone(),
    };
    let untagging = |name: &str, tag_keys: Vec<String>| proto::UntagRequest {
        name: name.to_string(),
        tag_keys,
        account_id: account.clone(),
    };
    let policy_names = |p: proto::PolicyNames| json!({"PolicyNames": p.policy_names});
    let tag_list = |t: proto::Tags| json!({"Tags": tags_json(&t.tags)});
    let key_json = |k: &proto::AccessKey| {
        let mut value = json!({
            "UserName": k.user_name,
            "AccessKeyId": k.access_key_id,
            "Status": k.status,
            "CreateDate": k.create_date,
        });
        if !k.secret_access_key.is_empty() {
            value["SecretAccessKey"] = json!(k.secret_access_key);
        }
        value
    };
    use AdminCommand as C;
    let output = match args.command {
        C::CreateAccessKey { user_name } => {
            let key = client
                .create_access_key(proto::AccessKeyOwner { user_name, account_id: account.clone() })
                .await?
                .into_inner();
            Some(json!({"AccessKey": key_json(&key)}))
        }
        C::ListAccessKeys { user_name } => {
            let keys = client
                .list_access_keys(proto::AccessKeyOwner { user_name, account_id: account.clone() })
                .await?
                .into_inner();
            Some(
                json!({"AccessKeyMetadata": keys.access_key_metadata.iter().map(key_json).collect::<Vec<_>>()}),
            )
        }
        C::UpdateAccessKey { user_name, access_key_id, status } => client
            .update_access_key(proto::UpdateAccessKeyRequest {
                user_name,
                access_key_id,
                status,
                account_id: account.clone(),
            })
            .await
            .map(|_| None)?,
        C::DeleteAccessKey { user_name, access_key_id } => client
            .delete_access_key(proto::AccessKeyRequest {
                user_name,
                access_key_id,
                account_id: account.clone(),
            })
            .await
            .map(|_| None)?,
        C::GetAccessKeyLastUsed { access_key_id } => {
            let used = client
                .get_access_key_last_used(proto::AccessKeyRequest {
                    user_name: String::new(),
                    access_key_id,
                    account_id: account.clone(),
                })
                .await?
                .into_inner();
            let last = used.access_key_last_used.unwrap_or_default();
            let mut last_json = json!({"ServiceName": last.service_name, "Region": last.region});
            if !last.last_used_date.is_empty() {
                last_json["LastUsedDate"] = json!(last.last_used_date);
            }
            Some(json!({"UserName": used.user_name, "AccessKeyLastUsed": last_json}))
        }
        C::CreateUser { user_name, path, tags, permissions_boundary } => {
            let user = client
                .create_user(proto::CreateUserRequest {
                    user_name,
                    path,
                    tags,
                    permissions_boundary,
                    account_id: account.clone(),
                })
                .await?
                .into_inner();
            Some(json!({"User": user_json(&user)}))
        }
        C::GetUser { user_name } => {
            Some(json!({"User": user_json(&client.get_user(entity(&user_name)).await?.into_inner())}))
        }
        C::ListUsers { path_prefix } => {
            let users = client
                .list_users(proto::ListRequest {
                    path_prefix,
                    account_id: account.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Some(json!({"Users": users.users.iter().map(user_json).collect::<Vec<_>>()}))
        }
        C::DeleteUser { user_name } => client.delete_user(entity(&user_name)).await.map(|_| None)?,
        C::CreateGroup { group_name, path } => {
            let group = client
                .create_group(proto::CreateGroupRequest { group_name, path, account_id: account.clone() })
                .await?
                .into_inner();
            Some(json!({"Group": group_json(&group)}))
        }
        C::GetGroup { group_name } => {
            let group = client.get_group(entity(&group_name)).await?.into_inner();
            let users: Vec<Value> = group.user_names.iter().map(|u| json!({"UserName": u})).collect();
            Some(json!({"Group": group_json(&group), "Users": users}))
        }
        C::ListGroups { path_prefix } => {
            let groups = client
                .list_groups(proto::ListRequest {
                    path_prefix,
                    account_id: account.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Some(json!({"Groups": groups.groups.iter().map(group_json).collect::<Vec<_>>()}))
        }
        C::DeleteGroup { group_name } => client.delete_group(entity(&group_name)).await.map(|_| None)?,
        C::AddUserToGroup { group_name, user_name } => client
            .add_user_to_group(proto::GroupMembershipRequest {
                group_name,
                user_name,
                account_id: account.clone(),
            })
            .await
            .map(|_| None)?,
        C::RemoveUserFromGroup { group_name, user_name } => client
            .remove_user_from_group(proto::GroupMembershipRequest {
                group_name,
                user_name,
                account_id: account.clone(),
            })
            .await
            .map(|_| None)?,
        C::ListGroupsForUser { user_name } => {
            let groups = client.list_groups_for_user(entity(&user_name)).await?.into_inner();
            Some(json!({"Groups": groups.groups.iter().map(group_json).collect::<Vec<_>>()}))
        }
        C::CreateRole {
            role_name,
            assume_role_policy_document,
            path,
            max_session_duration,
            description,
            tags,
            permissions_boundary,
        } => {
            let role = client
                .create_role(proto::CreateRoleRequest {
                    role_name,
                    path,
                    assume_role_policy_document: document(&assume_role_policy_document)?,
                    max_session_duration,
                    description,
                    tags,
                    permissions_boundary,
                    account_id: account.clone(),
                })
                .await?
                .into_inner();
            Some(json!({"Role": role_json(&role)}))
        }
        C::GetRole { role_name } => {
            Some(json!({"Role": role_json(&client.get_role(entity(&role_name)).await?.into_inner())}))
        }
        C::ListRoles { path_prefix } => {
            let roles = client
                .list_roles(proto::ListRequest {
                    path_prefix,
                    account_id: account.clone(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Some(json!({"Roles": roles.roles.iter().map(role_json).collect::<Vec<_>>()}))
        }
        C::DeleteRole { role_name } => client.delete_role(entity(&role_name)).await.map(|_| None)?,
        C::UpdateAssumeRolePolicy { role_name, policy_document } => client
            .update_assume_role_policy(proto::UpdateAssumeRolePolicyRequest {
                role_name,
                policy_document: document(&policy_document)?,
                account_id: account.clone(),
            })
            .await
            .map(|_| None)?,
        C::PutUserPolicy(a) => client
            .put_user_policy(put(a.entity.name(), a.policy_name, &a.policy_document)?)
            .await
            .map(|_| None)?,
        C::GetUserPolicy(a) => Some(policy_json(
            "UserName",
            &client.get_user_policy(named(a.entity.name(), a.policy_name)).await?.into_inner(),
        )),
        C::ListUserPolicies(e) => {
            Some(policy_names(client.list_user_policies(entity(e.name())).await?.into_inner()))
        }
        C::DeleteUserPolicy(a) => {
            client.delete_user_policy(named(a.entity.name(), a.policy_name)).await.map(|_| None)?
        }
        C::PutGroupPolicy(a) => client
            .put_group_policy(put(a.entity.name(), a.policy_name, &a.policy_document)?)
            .await
            .map(|_| None)?,
        C::GetGroupPolicy(a) => Some(policy_json(
            "GroupName",
            &client.get_group_policy(named(a.entity.name(), a.policy_name)).await?.into_inner(),
        )),
        C::ListGroupPolicies(e) => {
            Some(policy_names(client.list_group_policies(entity(e.name())).await?.into_inner()))
        }
        C::DeleteGroupPolicy(a) => {
            client.delete_group_policy(named(a.entity.name(), a.policy_name)).await.map(|_| None)?
        }
        C::PutRolePolicy(a) => client
            .put_role_policy(put(a.entity.name(), a.policy_name, &a.policy_document)?)
            .await
            .map(|_| None)?,
        C::GetRolePolicy(a) => Some(policy_json(
            "RoleName",
            &client.get_role_policy(named(a.entity.name(), a.policy_name)).await?.into_inner(),
        )),
        C::ListRolePolicies(e) => {
            Some(policy_names(client.list_role_policies(entity(e.name())).await?.into_inner()))
        }
        C::DeleteRolePolicy(a) => {
            client.delete_role_policy(named(a.entity.name(), a.policy_name)).await.map(|_| None)?
        }
        C::AttachUserPolicy(a) => {
            client.attach_user_policy(attachment(a.entity.name(), a.policy_arn)).await.map(|_| None)?
        }
        C::DetachUserPolicy(a) => {
            client.detach_user_policy(attachment(a.entity.name(), a.policy_arn)).await.map(|_| None)?
        }
        C::ListAttachedUserPolicies(e) => {
            Some(attached_json(client.list_attached_user_policies(entity(e.name())).await?.into_inner()))
        }
        C::AttachGroupPolicy(a) => {
            client.attach_group_policy(attachment(a.entity.name(), a.policy_arn)).await.map(|_| None)?
        }
        C::DetachGroupPolicy(a) => {
            client.detach_group_policy(attachment(a.entity.name(), a.policy_arn)).await.map(|_| None)?
        }
        C::ListAttachedGroupPolicies(e) => {
            Some(attached_json(client.list_attached_group_policies(entity(e.name())).await?.into_inner()))
        }
        C::AttachRolePolicy(a) => {
            client.attach_role_policy(attachment(a.entity.name(), a.policy_arn)).await.map(|_| None)?
        }
        C::DetachRolePolicy(a) => {
            client.detach_role_policy(attachment(a.entity.name(), a.policy_arn)).await.map(|_| None)?
        }
        C::ListAttachedRolePolicies(e) => {
            Some(attached_json(client.list_attached_role_policies(entity(e.name())).await?.into_inner()))
        }
        C::PutUserPermissionsBoundary(a) => client
            .put_user_permissions_boundary(attachment(a.entity.name(), a.permissions_boundary))
            .await
            .map(|_| None)?,
        C::DeleteUserPermissionsBoundary(e) => {
            client.delete_user_permissions_boundary(entity(e.name())).await.map(|_| None)?
        }
        C::PutRolePermissionsBoundary(a) => client
            .put_role_permissions_boundary(attachment(a.entity.name(), a.permissions_boundary))
            .await
            .map(|_| None)?,
        C::DeleteRolePermissionsBoundary(e) => {
            client.delete_role_permissions_boundary(entity(e.name())).await.map(|_| None)?
        }
        C::TagUser(a) => client.tag_user(tagging(a.entity.name(), a.tags)).await.map(|_| None)?,
        C::UntagUser(a) => client.untag_user(untagging(a.entity.name(), a.tag_keys)).await.map(|_| None)?,
        C::ListUserTags(e) => Some(tag_list(client.list_user_tags(entity(e.name())).await?.into_inner())),
        C::TagRole(a) => client.tag_role(tagging(a.entity.name(), a.tags)).await.map(|_| None)?,
        C::UntagRole(a) => client.untag_role(untagging(a.entity.name(), a.tag_keys)).await.map(|_| None)?,
        C::ListRoleTags(e) => Some(tag_list(client.list_role_tags(entity(e.name())).await?.into_inner())),
        C::TagResource(a) => client.tag_resource(tagging(a.entity.name(), a.tags)).await.map(|_| None)?,
        C::UntagResource(a) => {
            client.untag_resource(untagging(a.entity.name(), a.tag_keys)).await.map(|_| None)?
        }
        C::ListResourceTags(e) => {
            Some(tag_list(client.list_resource_tags(entity(e.name())).await?.into_inner()))
        }
        C::CreateVirtualMfaDevice { virtual_mfa_device_name, path } => {
            let d = client
                .create_virtual_mfa_device(proto::CreateVirtualMfaDeviceRequest {
                    virtual_mfa_device_name,
                    path,
                    account_id: account.clone(),
                })
                .await?
                .into_inner();
            Some(
                json!({"VirtualMFADevice": {"SerialNumber": d.serial_number, "Base32StringSeed": d.base32_string_seed,
                "OtpauthUri": d.otpauth_uri}}),
            )
        }
        C::EnableMfaDevice(c) => client.enable_mfa_device(mfa_codes(c, &account)).await.map(|_| None)?,
        C::ResyncMfaDevice(c) => client.resync_mfa_device(mfa_codes(c, &account)).await.map(|_| None)?,
        C::DeactivateMfaDevice { user_name, serial_number } => client
            .deactivate_mfa_device(proto::MfaDeviceRequest {
                user_name,
                serial_number,
                account_id: account.clone(),
            })
            .await
            .map(|_| None)?,
        C::DeleteVirtualMfaDevice { serial_number } => client
            .delete_virtual_mfa_device(proto::MfaDeviceRequest {
                user_name: String::new(),
                serial_number,
                account_id: account.clone(),
            })
            .await
            .map(|_| None)?,
        C::ListMfaDevices { user_name } => {
            let devices = client
                .list_mfa_devices(proto::AccessKeyOwner { user_name, account_id: account.clone() })
                .await?
                .into_inner()
                .mfa_devices;
            Some(json!({"MFADevices": devices.iter().map(|d| json!({"UserName": d.user_name,
                "SerialNumber": d.serial_number, "EnableDate": d.enable_date})).collect::<Vec<_>>()}))
        }
        C::CreateLoginProfile { user_name, password_reset_required } => {
            let p = client
                .create_login_profile(proto::LoginProfileRequest {
                    user_name,
                    password: read_password()?,
                    password_reset_required: Some(password_reset_required),
                    account_id: account.clone(),
                })
                .await?
                .into_inner();
            Some(login_profile_json(&p))
        }
        C::GetLoginProfile { user_name } => {
            Some(login_profile_json(&client.get_login_profile(entity(&user_name)).await?.into_inner()))
        }
        C::UpdateLoginProfile { user_name, password, password_reset_required } => client
            .update_login_profile(proto::LoginProfileRequest {
                user_name,
                password: if password { read_password()? } else { String::new() },
                password_reset_required,
                account_id: account.clone(),
            })
            .await
            .map(|_| None)?,
        C::DeleteLoginProfile { user_name } => {
            client.delete_login_profile(entity(&user_name)).await.map(|_| None)?
        }
        C::ChangePassword => {
            let old_password = read_line("the old password")?;
            let new_password = read_line("the new password")?;
            client
                .change_password(proto::ChangePasswordRequest { old_password, new_password })
                .await
                .map(|_| None)?
        }
        C::UpdateAccountPasswordPolicy {
            minimum_password_length,
            require_symbols,
            require_numbers,
            require_uppercase_characters,
            require_lowercase_characters,
            allow_users_to_change_password,
            max_password_age,
            password_reuse_prevention,
            hard_expiry,
        } => client
            .update_account_password_policy(proto::PasswordPolicy {
                minimum_password_length,
                require_symbols,
                require_numbers,
                require_uppercase_characters,
                require_lowercase_characters,
                allow_users_to_change_password,
                max_password_age,
                password_reuse_prevention,
                hard_expiry,
                expire_passwords: false,
                account_id: account.clone(),
            })
            .await
            .map(|_| None)?,
        C::GetAccountPasswordPolicy => {
            let p = client
                .get_account_password_policy(proto::AccountRequest { account_id: account.clone() })
                .await?
                .into_inner();
            Some(json!({"PasswordPolicy": {"MinimumPasswordLength": p.minimum_password_length,
                "RequireSymbols": p.require_symbols, "RequireNumbers": p.require_numbers,
                "RequireUppercaseCharacters": p.require_uppercase_characters,
                "RequireLowercaseCharacters": p.require_lowercase_characters,
                "AllowUsersToChangePassword": p.allow_users_to_change_password,
                "ExpirePasswords": p.expire_passwords, "MaxPasswordAge": p.max_password_age,
                "PasswordReusePrevention": p.password_reuse_prevention, "HardExpiry": p.hard_expiry}}))
        }
        C::DeleteAccountPasswordPolicy => client
            .delete_account_password_policy(proto::AccountRequest { account_id: account.clone() })
            .await
            .map(|_| None)?,
        C::Reload => {
            let r = client.reload(proto::Empty {}).await?.into_inner();
            if !r.published {
                bail!(
                    "the bundle was rejected; the last good snapshot keeps serving:\n{}",
                    r.errors.join("\n")
                );
            }
            Some(json!({"Published": r.published, "Revision": r.revision}))
        }
        C::Status => {
            let s = client.status(proto::Empty {}).await?.into_inner();
            Some(
                json!({"Revision": s.revision, "BundleRevision": s.bundle_revision, "BundleSource": s.bundle_source,
                "StoreGeneration": s.store_generation, "Principals": s.principals, "ManagedPolicies": s.managed_policies,
                "ReloadsSucceeded": s.reloads_succeeded, "ReloadsFailed": s.reloads_failed,
                "LastReloadErrors": s.last_reload_errors, "AuditRecordsDropped": s.audit_records_dropped}),
            )
        }
        C::Export => Some(serde_json::from_str(&client.export(proto::Empty {}).await?.into_inner().json)?),
        C::Import { state } => {
            let r = client.import(proto::StateDocument { json: document(&state)? }).await?.into_inner();
            Some(
                json!({"Users": r.users, "Groups": r.groups, "Roles": r.roles, "ResourceTags": r.resource_tags}),
            )
        }
    };
    Ok(output)
}
