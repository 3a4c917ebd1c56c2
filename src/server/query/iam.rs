//! IAM actions (`Version=2010-05-08`): each decoded into the admin service's message, run by
//! that service, and its answer written as AWS's XML.

use std::sync::Arc;

use base64::Engine as _;
use tonic::Request;

use super::params::Params;
use super::xml::Xml;
use super::{Answer, QueryError};
use crate::credentials::session::SessionIdentity;
use crate::credentials::{Authenticated, Caller};
use crate::proto::{self, admin_server::Admin as _};
use crate::server::Core;
use crate::server::admin::AdminService;

/// A message for the admin service, from `caller`.
fn request<M>(caller: &Arc<Authenticated>, message: M) -> Request<M> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(caller.clone());
    request
}

/// The user a call without `UserName` is about: the calling user, as in AWS.
fn caller_user_name(caller: &Authenticated) -> Option<String> {
    match &caller.caller {
        Caller::User { name, .. } => Some(name.clone()),
        Caller::Session(session) => match &session.identity {
            SessionIdentity::User { name, .. } => Some(name.clone()),
            _ => None,
        },
        Caller::Root { .. } => None,
    }
}

/// AWS's default and largest page sizes.
const DEFAULT_MAX_ITEMS: i64 = 100;
const LARGEST_MAX_ITEMS: i64 = 1000;

/// One page of a listing, as `Marker` and `MaxItems` ask: items are ordered by `key`, and the
/// marker of the next page is the key it starts at (opaque to clients), so that a page stays
/// right when items before it are deleted between calls.
struct Page<T> {
    items: Vec<T>,
    next: Option<String>,
}

/// A listing request's `MaxItems` and `Marker`: the page size and the key the page starts at.
fn paging(p: &Params) -> Result<(usize, Option<String>), QueryError> {
    let max = p.int("MaxItems")?.unwrap_or(DEFAULT_MAX_ITEMS);
    if !(1..=LARGEST_MAX_ITEMS).contains(&max) {
        return Err(QueryError::validation(format!(
            "1 validation error detected: Value '{max}' at 'maxItems' failed to satisfy constraint: Member must \
             have value between 1 and {LARGEST_MAX_ITEMS}"
        )));
    }
    let start = p
        .get("Marker")
        .map(|marker| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(marker)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    QueryError::validation("Invalid Marker: give the Marker of the previous page".into())
                })
        })
        .transpose()?;
    Ok((max as usize, start))
}

fn page<T>(p: &Params, mut items: Vec<T>, key: impl Fn(&T) -> String) -> Result<Page<T>, QueryError> {
    let (max, start) = paging(p)?;
    items.sort_by_key(&key);
    if let Some(start) = start {
        items.retain(|item| key(item) >= start);
    }
    let next = (items.len() > max).then(|| encode_marker(&key(&items[max])));
    items.truncate(max);
    Ok(Page { items, next })
}

/// A listing that the admin API pages itself (users, groups, roles: the store can hold many).
fn paged_listing(p: &Params) -> Result<proto::ListRequest, QueryError> {
    let (max, start) = paging(p)?;
    Ok(proto::ListRequest {
        path_prefix: p.text("PathPrefix"),
        account_id: String::new(),
        marker: start.unwrap_or_default(),
        max_items: max as u32,
    })
}

impl<T> Page<T> {
    /// The page the admin API returned, with the `marker` it gave for the next.
    fn listed(items: Vec<T>, marker: &str) -> Self {
        Page { items, next: (!marker.is_empty()).then(|| encode_marker(marker)) }
    }
}

fn encode_marker(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

impl<T> Page<T> {
    fn write_marker(&self, xml: &mut Xml) {
        xml.display("IsTruncated", self.next.is_some());
        if let Some(next) = &self.next {
            xml.text("Marker", next);
        }
    }
}

fn tags(xml: &mut Xml, tags: &[proto::Tag]) {
    if !tags.is_empty() {
        xml.members("Tags", tags, |xml, tag| {
            xml.text("Key", &tag.key).text("Value", &tag.value);
        });
    }
}

fn boundary(xml: &mut Xml, arn: &str) {
    if !arn.is_empty() {
        xml.element("PermissionsBoundary", |xml| {
            xml.text("PermissionsBoundaryType", "Policy").text("PermissionsBoundaryArn", arn);
        });
    }
}

fn user(xml: &mut Xml, u: &proto::User) {
    xml.text("Path", &u.path)
        .text("UserName", &u.user_name)
        .text("UserId", &u.user_id)
        .text("Arn", &u.arn)
        .text("CreateDate", &u.create_date);
    boundary(xml, &u.permissions_boundary);
    tags(xml, &u.tags);
}

fn group(xml: &mut Xml, g: &proto::Group) {
    xml.text("Path", &g.path)
        .text("GroupName", &g.group_name)
        .text("GroupId", &g.group_id)
        .text("Arn", &g.arn)
        .text("CreateDate", &g.create_date);
}

fn role(xml: &mut Xml, r: &proto::Role) {
    xml.text("Path", &r.path)
        .text("RoleName", &r.role_name)
        .text("RoleId", &r.role_id)
        .text("Arn", &r.arn)
        .text("CreateDate", &r.create_date)
        .document("AssumeRolePolicyDocument", &r.assume_role_policy_document)
        .optional("Description", &r.description)
        .display("MaxSessionDuration", r.max_session_duration);
    boundary(xml, &r.permissions_boundary);
    tags(xml, &r.tags);
}

fn policy(xml: &mut Xml, p: &proto::ManagedPolicy) {
    xml.text("PolicyName", &p.policy_name)
        .text("PolicyId", &p.policy_id)
        .text("Arn", &p.arn)
        .text("Path", &p.path)
        .text("DefaultVersionId", &p.default_version_id)
        .display("AttachmentCount", p.attachment_count)
        .display("PermissionsBoundaryUsageCount", p.permissions_boundary_usage_count)
        .display("IsAttachable", p.is_attachable)
        .optional("Description", &p.description)
        .text("CreateDate", &p.create_date)
        .text("UpdateDate", &p.update_date);
    tags(xml, &p.tags);
}

fn policy_version(xml: &mut Xml, v: &proto::PolicyVersion) {
    xml.document("Document", &v.document)
        .text("VersionId", &v.version_id)
        .display("IsDefaultVersion", v.is_default_version)
        .text("CreateDate", &v.create_date);
}

fn access_key_metadata(xml: &mut Xml, k: &proto::AccessKey) {
    xml.optional("UserName", &k.user_name)
        .text("AccessKeyId", &k.access_key_id)
        .text("Status", &k.status)
        .text("CreateDate", &k.create_date);
}

fn password_policy(xml: &mut Xml, p: &proto::PasswordPolicy) {
    xml.display("MinimumPasswordLength", p.minimum_password_length)
        .display("RequireSymbols", p.require_symbols)
        .display("RequireNumbers", p.require_numbers)
        .display("RequireUppercaseCharacters", p.require_uppercase_characters)
        .display("RequireLowercaseCharacters", p.require_lowercase_characters)
        .display("AllowUsersToChangePassword", p.allow_users_to_change_password)
        .display("ExpirePasswords", p.expire_passwords);
    if p.max_password_age > 0 {
        xml.display("MaxPasswordAge", p.max_password_age);
    }
    if p.password_reuse_prevention > 0 {
        xml.display("PasswordReusePrevention", p.password_reuse_prevention);
    }
    xml.display("HardExpiry", p.hard_expiry);
}

/// Which entity an inline policy, attachment or tag action is about, by its parameter.
#[derive(Clone, Copy)]
enum Kind {
    User,
    Group,
    Role,
}

impl Kind {
    fn name_param(self) -> &'static str {
        match self {
            Kind::User => "UserName",
            Kind::Group => "GroupName",
            Kind::Role => "RoleName",
        }
    }
}

/// Runs IAM action `action`; `None` for an action iamd does not implement.
pub(super) async fn call(
    core: &Arc<Core>,
    caller: &Arc<Authenticated>,
    action: &str,
    p: &Params,
) -> Result<Option<Answer>, QueryError> {
    let admin = AdminService::new(core.clone());
    let c = caller;
    let mut xml = Xml::new();
    match action {
        "CreateUser" => {
            let created = admin
                .create_user(request(
                    c,
                    proto::CreateUserRequest {
                        user_name: p.required("UserName")?,
                        path: p.text("Path"),
                        tags: p.tags("Tags"),
                        permissions_boundary: p.text("PermissionsBoundary"),
                        account_id: String::new(),
                    },
                ))
                .await?
                .into_inner();
            xml.element("User", |x| user(x, &created));
        }
        "GetUser" => match p.get("UserName").map(str::to_string).or_else(|| caller_user_name(c)) {
            Some(name) => {
                let found = admin.get_user(request(c, entity(name))).await?.into_inner();
                xml.element("User", |x| user(x, &found));
            }
            None if !c.is_root() => {
                return Err(QueryError::validation(
                    "Must specify userName when calling with non-User credentials".into(),
                ));
            }
            // The root asking about itself, as AWS answers it.
            None => {
                let account = c.account().to_string();
                xml.element("User", |x| {
                    x.text("UserId", &account).text("Arn", &format!("arn:aws:iam::{account}:root"));
                });
            }
        },
        "ListUsers" => {
            let listed = admin.list_users(request(c, paged_listing(p)?)).await?.into_inner();
            let page = Page::listed(listed.users, &listed.marker);
            xml.members("Users", &page.items, user);
            page.write_marker(&mut xml);
        }
        "DeleteUser" => {
            admin.delete_user(request(c, entity(p.required("UserName")?))).await?;
        }
        "CreateGroup" => {
            let created = admin
                .create_group(request(
                    c,
                    proto::CreateGroupRequest {
                        group_name: p.required("GroupName")?,
                        path: p.text("Path"),
                        account_id: String::new(),
                    },
                ))
                .await?
                .into_inner();
            xml.element("Group", |x| group(x, &created));
        }
        "GetGroup" => {
            let found = admin.get_group(request(c, entity(p.required("GroupName")?))).await?.into_inner();
            // The members, described as GetUser would (the call was authorized as GetGroup,
            // which in AWS returns them).
            let members: Vec<proto::User> = found
                .user_names
                .iter()
                .filter_map(|name| core.iam.get_user(c.account(), name).ok())
                .map(|u| crate::server::admin::user(&u))
                .collect();
            let page = page(p, members, |u| u.user_name.to_ascii_lowercase())?;
            xml.element("Group", |x| group(x, &found));
            xml.members("Users", &page.items, user);
            page.write_marker(&mut xml);
        }
        "ListGroups" => {
            let listed = admin.list_groups(request(c, paged_listing(p)?)).await?.into_inner();
            let page = Page::listed(listed.groups, &listed.marker);
            xml.members("Groups", &page.items, group);
            page.write_marker(&mut xml);
        }
        "DeleteGroup" => {
            admin.delete_group(request(c, entity(p.required("GroupName")?))).await?;
        }
        "AddUserToGroup" | "RemoveUserFromGroup" => {
            let membership = proto::GroupMembershipRequest {
                group_name: p.required("GroupName")?,
                user_name: p.required("UserName")?,
                account_id: String::new(),
            };
            if action == "AddUserToGroup" {
                admin.add_user_to_group(request(c, membership)).await?;
            } else {
                admin.remove_user_from_group(request(c, membership)).await?;
            }
        }
        "ListGroupsForUser" => {
            let listed =
                admin.list_groups_for_user(request(c, entity(p.required("UserName")?))).await?.into_inner();
            let page = page(p, listed.groups, |g| g.group_name.to_ascii_lowercase())?;
            xml.members("Groups", &page.items, group);
            page.write_marker(&mut xml);
        }
        "CreateRole" => {
            let created = admin
                .create_role(request(
                    c,
                    proto::CreateRoleRequest {
                        role_name: p.required("RoleName")?,
                        path: p.text("Path"),
                        assume_role_policy_document: p.required("AssumeRolePolicyDocument")?,
                        max_session_duration: p.int32("MaxSessionDuration")?,
                        description: p.text("Description"),
                        tags: p.tags("Tags"),
                        permissions_boundary: p.text("PermissionsBoundary"),
                        account_id: String::new(),
                    },
                ))
                .await?
                .into_inner();
            xml.element("Role", |x| role(x, &created));
        }
        "GetRole" => {
            let found = admin.get_role(request(c, entity(p.required("RoleName")?))).await?.into_inner();
            xml.element("Role", |x| role(x, &found));
        }
        "ListRoles" => {
            let listed = admin.list_roles(request(c, paged_listing(p)?)).await?.into_inner();
            let page = Page::listed(listed.roles, &listed.marker);
            xml.members("Roles", &page.items, role);
            page.write_marker(&mut xml);
        }
        "DeleteRole" => {
            admin.delete_role(request(c, entity(p.required("RoleName")?))).await?;
        }
        "UpdateAssumeRolePolicy" => {
            admin
                .update_assume_role_policy(request(
                    c,
                    proto::UpdateAssumeRolePolicyRequest {
                        role_name: p.required("RoleName")?,
                        policy_document: p.required("PolicyDocument")?,
                        account_id: String::new(),
                    },
                ))
                .await?;
        }
        "PutUserPolicy" | "PutGroupPolicy" | "PutRolePolicy" => {
            let kind = kind_of(action);
            let message = proto::PutPolicyRequest {
                name: p.required(kind.name_param())?,
                policy_name: p.required("PolicyName")?,
                policy_document: p.required("PolicyDocument")?,
                account_id: String::new(),
            };
            match kind {
                Kind::User => admin.put_user_policy(request(c, message)).await?,
                Kind::Group => admin.put_group_policy(request(c, message)).await?,
                Kind::Role => admin.put_role_policy(request(c, message)).await?,
            };
        }
        "GetUserPolicy" | "GetGroupPolicy" | "GetRolePolicy" => {
            let kind = kind_of(action);
            let message = proto::PolicyRequest {
                name: p.required(kind.name_param())?,
                policy_name: p.required("PolicyName")?,
                account_id: String::new(),
            };
            let found = match kind {
                Kind::User => admin.get_user_policy(request(c, message)).await?,
                Kind::Group => admin.get_group_policy(request(c, message)).await?,
                Kind::Role => admin.get_role_policy(request(c, message)).await?,
            }
            .into_inner();
            xml.text(kind.name_param(), &found.name)
                .text("PolicyName", &found.policy_name)
                .document("PolicyDocument", &found.policy_document);
        }
        "ListUserPolicies" | "ListGroupPolicies" | "ListRolePolicies" => {
            let kind = kind_of(action);
            let message = entity(p.required(kind.name_param())?);
            let found = match kind {
                Kind::User => admin.list_user_policies(request(c, message)).await?,
                Kind::Group => admin.list_group_policies(request(c, message)).await?,
                Kind::Role => admin.list_role_policies(request(c, message)).await?,
            }
            .into_inner();
            let page = page(p, found.policy_names, Clone::clone)?;
            xml.string_members("PolicyNames", &page.items);
            page.write_marker(&mut xml);
        }
        "DeleteUserPolicy" | "DeleteGroupPolicy" | "DeleteRolePolicy" => {
            let kind = kind_of(action);
            let message = proto::PolicyRequest {
                name: p.required(kind.name_param())?,
                policy_name: p.required("PolicyName")?,
                account_id: String::new(),
            };
            match kind {
                Kind::User => admin.delete_user_policy(request(c, message)).await?,
                Kind::Group => admin.delete_group_policy(request(c, message)).await?,
                Kind::Role => admin.delete_role_policy(request(c, message)).await?,
            };
        }
        "AttachUserPolicy" | "AttachGroupPolicy" | "AttachRolePolicy" | "DetachUserPolicy"
        | "DetachGroupPolicy" | "DetachRolePolicy" => {
            let kind = kind_of(action);
            let message = proto::AttachmentRequest {
                name: p.required(kind.name_param())?,
                policy_arn: p.required("PolicyArn")?,
                account_id: String::new(),
            };
            match (action.starts_with("Attach"), kind) {
                (true, Kind::User) => admin.attach_user_policy(request(c, message)).await?,
                (true, Kind::Group) => admin.attach_group_policy(request(c, message)).await?,
                (true, Kind::Role) => admin.attach_role_policy(request(c, message)).await?,
                (false, Kind::User) => admin.detach_user_policy(request(c, message)).await?,
                (false, Kind::Group) => admin.detach_group_policy(request(c, message)).await?,
                (false, Kind::Role) => admin.detach_role_policy(request(c, message)).await?,
            };
        }
        "ListAttachedUserPolicies" | "ListAttachedGroupPolicies" | "ListAttachedRolePolicies" => {
            let kind = kind_of(action);
            let message = entity(p.required(kind.name_param())?);
            let found = match kind {
                Kind::User => admin.list_attached_user_policies(request(c, message)).await?,
                Kind::Group => admin.list_attached_group_policies(request(c, message)).await?,
                Kind::Role => admin.list_attached_role_policies(request(c, message)).await?,
            }
            .into_inner();
            let prefix = p.text("PathPrefix");
            let attached: Vec<proto::AttachedPolicy> = found
                .attached_policies
                .into_iter()
                .filter(|a| policy_path(&a.policy_arn).starts_with(prefix.as_str()))
                .collect();
            let page = page(p, attached, |a| a.policy_arn.clone())?;
            xml.members("AttachedPolicies", &page.items, |x, a| {
                x.text("PolicyName", &a.policy_name).text("PolicyArn", &a.policy_arn);
            });
            page.write_marker(&mut xml);
        }
        "PutUserPermissionsBoundary" | "PutRolePermissionsBoundary" => {
            let kind = kind_of(action);
            let message = proto::AttachmentRequest {
                name: p.required(kind.name_param())?,
                policy_arn: p.required("PermissionsBoundary")?,
                account_id: String::new(),
            };
            match kind {
                Kind::Role => admin.put_role_permissions_boundary(request(c, message)).await?,
                _ => admin.put_user_permissions_boundary(request(c, message)).await?,
            };
        }
        "DeleteUserPermissionsBoundary" | "DeleteRolePermissionsBoundary" => {
            let kind = kind_of(action);
            let message = entity(p.required(kind.name_param())?);
            match kind {
                Kind::Role => admin.delete_role_permissions_boundary(request(c, message)).await?,
                _ => admin.delete_user_permissions_boundary(request(c, message)).await?,
            };
        }
        "TagUser" | "TagRole" => {
            let kind = kind_of(action);
            let message = proto::TagRequest {
                name: p.required(kind.name_param())?,
                tags: p.tags("Tags"),
                account_id: String::new(),
            };
            match kind {
                Kind::Role => admin.tag_role(request(c, message)).await?,
                _ => admin.tag_user(request(c, message)).await?,
            };
        }
        "UntagUser" | "UntagRole" => {
            let kind = kind_of(action);
            let message = proto::UntagRequest {
                name: p.required(kind.name_param())?,
                tag_keys: p.list("TagKeys"),
                account_id: String::new(),
            };
            match kind {
                Kind::Role => admin.untag_role(request(c, message)).await?,
                _ => admin.untag_user(request(c, message)).await?,
            };
        }
        "ListUserTags" | "ListRoleTags" => {
            let kind = kind_of(action);
            let message = entity(p.required(kind.name_param())?);
            let found = match kind {
                Kind::Role => admin.list_role_tags(request(c, message)).await?,
                _ => admin.list_user_tags(request(c, message)).await?,
            }
            .into_inner();
            let page = page(p, found.tags, |t| t.key.clone())?;
            xml.members("Tags", &page.items, |x, t| {
                x.text("Key", &t.key).text("Value", &t.value);
            });
            page.write_marker(&mut xml);
        }
        "CreateAccessKey" => {
            let key = admin
                .create_access_key(request(
                    c,
                    proto::AccessKeyOwner { user_name: p.text("UserName"), account_id: String::new() },
                ))
                .await?
                .into_inner();
            xml.element("AccessKey", |x| {
                x.optional("UserName", &key.user_name)
                    .text("AccessKeyId", &key.access_key_id)
                    .text("Status", &key.status)
                    .text("SecretAccessKey", &key.secret_access_key)
                    .text("CreateDate", &key.create_date);
            });
        }
        "ListAccessKeys" => {
            let user_name = p.text("UserName");
            let listed = admin
                .list_access_keys(request(
                    c,
                    proto::AccessKeyOwner { user_name: user_name.clone(), account_id: String::new() },
                ))
                .await?
                .into_inner();
            let page = page(p, listed.access_key_metadata, |k| k.access_key_id.clone())?;
            xml.members("AccessKeyMetadata", &page.items, access_key_metadata);
            page.write_marker(&mut xml);
        }
        "UpdateAccessKey" => {
            admin
                .update_access_key(request(
                    c,
                    proto::UpdateAccessKeyRequest {
                        user_name: p.text("UserName"),
                        access_key_id: p.required("AccessKeyId")?,
                        status: p.required("Status")?,
                        account_id: String::new(),
                    },
                ))
                .await?;
        }
        "DeleteAccessKey" => {
            admin.delete_access_key(request(c, access_key(p)?)).await?;
        }
        "GetAccessKeyLastUsed" => {
            let found = admin.get_access_key_last_used(request(c, access_key(p)?)).await?.into_inner();
            let used = found.access_key_last_used.unwrap_or_default();
            xml.optional("UserName", &found.user_name).element("AccessKeyLastUsed", |x| {
                x.optional("LastUsedDate", &used.last_used_date)
                    .text(
                        "ServiceName",
                        if used.service_name.is_empty() { "N/A" } else { &used.service_name },
                    )
                    .text("Region", if used.region.is_empty() { "N/A" } else { &used.region });
            });
        }
        "CreateVirtualMFADevice" => {
            let device = admin
                .create_virtual_mfa_device(request(
                    c,
                    proto::CreateVirtualMfaDeviceRequest {
                        virtual_mfa_device_name: p.required("VirtualMFADeviceName")?,
                        path: p.text("Path"),
                        account_id: String::new(),
                    },
                ))
                .await?
                .into_inner();
            // The seed is a blob in AWS's model: the base32 text, base64-encoded on the wire.
            let seed = base64::engine::general_purpose::STANDARD.encode(device.base32_string_seed.as_bytes());
            xml.element("VirtualMFADevice", |x| {
                x.text("SerialNumber", &device.serial_number).text("Base32StringSeed", &seed);
            });
        }
        "EnableMFADevice" | "ResyncMFADevice" => {
            let message = proto::MfaCodesRequest {
                user_name: p.required("UserName")?,
                serial_number: p.required("SerialNumber")?,
                authentication_code1: p.required("AuthenticationCode1")?,
                authentication_code2: p.required("AuthenticationCode2")?,
                account_id: String::new(),
            };
            if action == "EnableMFADevice" {
                admin.enable_mfa_device(request(c, message)).await?;
            } else {
                admin.resync_mfa_device(request(c, message)).await?;
            }
        }
        "DeactivateMFADevice" => {
            admin
                .deactivate_mfa_device(request(
                    c,
                    proto::MfaDeviceRequest {
                        user_name: p.text("UserName"),
                        serial_number: p.required("SerialNumber")?,
                        account_id: String::new(),
                    },
                ))
                .await?;
        }
        "DeleteVirtualMFADevice" => {
            admin
                .delete_virtual_mfa_device(request(
                    c,
                    proto::MfaDeviceRequest {
                        user_name: String::new(),
                        serial_number: p.required("SerialNumber")?,
                        account_id: String::new(),
                    },
                ))
                .await?;
        }
        "ListMFADevices" => {
            let user_name =
                p.get("UserName").map(str::to_string).or_else(|| caller_user_name(c)).unwrap_or_default();
            let listed = admin
                .list_mfa_devices(request(c, proto::AccessKeyOwner { user_name, account_id: String::new() }))
                .await?
                .into_inner();
            let page = page(p, listed.mfa_devices, |d| d.serial_number.clone())?;
            xml.members("MFADevices", &page.items, |x, d| {
                x.text("UserName", &d.user_name)
                    .text("SerialNumber", &d.serial_number)
                    .text("EnableDate", &d.enable_date);
            });
            page.write_marker(&mut xml);
        }
        "CreateLoginProfile" | "UpdateLoginProfile" => {
            let message = proto::LoginProfileRequest {
                user_name: p.required("UserName")?,
                password: if action == "CreateLoginProfile" {
                    p.required("Password")?
                } else {
                    p.text("Password")
                },
                password_reset_required: p.bool("PasswordResetRequired")?,
                account_id: String::new(),
            };
            if action == "CreateLoginProfile" {
                let profile = admin.create_login_profile(request(c, message)).await?.into_inner();
                xml.element("LoginProfile", |x| login_profile(x, &profile));
            } else {
                admin.update_login_profile(request(c, message)).await?;
            }
        }
        "GetLoginProfile" => {
            let profile =
                admin.get_login_profile(request(c, entity(p.required("UserName")?))).await?.into_inner();
            xml.element("LoginProfile", |x| login_profile(x, &profile));
        }
        "DeleteLoginProfile" => {
            admin.delete_login_profile(request(c, entity(p.required("UserName")?))).await?;
        }
        "ChangePassword" => {
            admin
                .change_password(request(
                    c,
                    proto::ChangePasswordRequest {
                        old_password: p.required("OldPassword")?,
                        new_password: p.required("NewPassword")?,
                    },
                ))
                .await?;
        }
        "UpdateAccountPasswordPolicy" => {
            let max_password_age = p.uint32("MaxPasswordAge")?;
            admin
                .update_account_password_policy(request(
                    c,
                    proto::PasswordPolicy {
                        minimum_password_length: p.uint32("MinimumPasswordLength")?,
                        require_symbols: p.bool("RequireSymbols")?.unwrap_or(false),
                        require_numbers: p.bool("RequireNumbers")?.unwrap_or(false),
                        require_uppercase_characters: p.bool("RequireUppercaseCharacters")?.unwrap_or(false),
                        require_lowercase_characters: p.bool("RequireLowercaseCharacters")?.unwrap_or(false),
                        allow_users_to_change_password: p
                            .bool("AllowUsersToChangePassword")?
                            .unwrap_or(false),
                        max_password_age,
                        password_reuse_prevention: p.uint32("PasswordReusePrevention")?,
                        hard_expiry: p.bool("HardExpiry")?.unwrap_or(false),
                        expire_passwords: max_password_age > 0,
                        account_id: String::new(),
                    },
                ))
                .await?;
        }
        "GetAccountPasswordPolicy" => {
            let found = admin
                .get_account_password_policy(request(c, proto::AccountRequest { account_id: String::new() }))
                .await?
                .into_inner();
            xml.element("PasswordPolicy", |x| password_policy(x, &found));
        }
        "DeleteAccountPasswordPolicy" => {
            admin
                .delete_account_password_policy(request(
                    c,
                    proto::AccountRequest { account_id: String::new() },
                ))
                .await?;
        }
        "CreatePolicy" => {
            let created = admin
                .create_policy(request(
                    c,
                    proto::CreatePolicyRequest {
                        policy_name: p.required("PolicyName")?,
                        path: p.text("Path"),
                        policy_document: p.required("PolicyDocument")?,
                        description: p.text("Description"),
                        tags: p.tags("Tags"),
                        account_id: String::new(),
                    },
                ))
                .await?
                .into_inner();
            xml.element("Policy", |x| policy(x, &created));
        }
        "GetPolicy" => {
            let found = admin.get_policy(request(c, policy_arn(p)?)).await?.into_inner();
            xml.element("Policy", |x| policy(x, &found));
        }
        "ListPolicies" => {
            let listed = admin
                .list_policies(request(
                    c,
                    proto::ListPoliciesRequest {
                        scope: p.text("Scope"),
                        only_attached: p.bool("OnlyAttached")?.unwrap_or(false),
                        path_prefix: p.text("PathPrefix"),
                        account_id: String::new(),
                    },
                ))
                .await?
                .into_inner();
            let page = page(p, listed.policies, |p| p.arn.clone())?;
            xml.members("Policies", &page.items, policy);
            page.write_marker(&mut xml);
        }
        "DeletePolicy" => {
            admin.delete_policy(request(c, policy_arn(p)?)).await?;
        }
        "CreatePolicyVersion" => {
            let created = admin
                .create_policy_version(request(
                    c,
                    proto::CreatePolicyVersionRequest {
                        policy_arn: p.required("PolicyArn")?,
                        policy_document: p.required("PolicyDocument")?,
                        set_as_default: p.bool("SetAsDefault")?.unwrap_or(false),
                    },
                ))
                .await?
                .into_inner();
            // AWS does not echo the document of a new version.
            xml.element("PolicyVersion", |x| {
                x.text("VersionId", &created.version_id)
                    .display("IsDefaultVersion", created.is_default_version)
                    .text("CreateDate", &created.create_date);
            });
        }
        "GetPolicyVersion" => {
            let found = admin.get_policy_version(request(c, policy_version_request(p)?)).await?.into_inner();
            xml.element("PolicyVersion", |x| policy_version(x, &found));
        }
        "ListPolicyVersions" => {
            let listed = admin.list_policy_versions(request(c, policy_arn(p)?)).await?.into_inner();
            // Newest first, as AWS lists them; the versions' numbers order them.
            let newest_first = |v: &proto::PolicyVersion| {
                format!("{:010}", u32::MAX - v.version_id.trim_start_matches('v').parse::<u32>().unwrap_or(0))
            };
            let page = page(p, listed.versions, newest_first)?;
            xml.members("Versions", &page.items, |x, v| {
                x.text("VersionId", &v.version_id)
                    .display("IsDefaultVersion", v.is_default_version)
                    .text("CreateDate", &v.create_date);
            });
            page.write_marker(&mut xml);
        }
        "DeletePolicyVersion" => {
            admin.delete_policy_version(request(c, policy_version_request(p)?)).await?;
        }
        "SetDefaultPolicyVersion" => {
            admin.set_default_policy_version(request(c, policy_version_request(p)?)).await?;
        }
        "TagPolicy" => {
            admin
                .tag_policy(request(
                    c,
                    proto::PolicyTagRequest { policy_arn: p.required("PolicyArn")?, tags: p.tags("Tags") },
                ))
                .await?;
        }
        "UntagPolicy" => {
            admin
                .untag_policy(request(
                    c,
                    proto::PolicyUntagRequest {
                        policy_arn: p.required("PolicyArn")?,
                        tag_keys: p.list("TagKeys"),
                    },
                ))
                .await?;
        }
        "ListPolicyTags" => {
            let found = admin.list_policy_tags(request(c, policy_arn(p)?)).await?.into_inner();
            let page = page(p, found.tags, |t| t.key.clone())?;
            xml.members("Tags", &page.items, |x, t| {
                x.text("Key", &t.key).text("Value", &t.value);
            });
            page.write_marker(&mut xml);
        }
        "GetAccountAuthorizationDetails" => {
            let details = admin
                .get_account_authorization_details(request(
                    c,
                    proto::AccountRequest { account_id: String::new() },
                ))
                .await?
                .into_inner();
            authorization_details(&mut xml, p, details)?;
        }
        "SimulatePrincipalPolicy" => {
            refuse_unsupported(
                p,
                &["PolicyInputList", "PermissionsBoundaryPolicyInputList", "ResourcePolicy"],
            )?;
            let simulated = admin
                .simulate_principal_policy(request(
                    c,
                    proto::SimulatePrincipalPolicyRequest {
                        policy_source_arn: p.required("PolicySourceArn")?,
                        action_names: p.list("ActionNames"),
                        resource_arns: p.list("ResourceArns"),
                        context: context_entries(p)?,
                        resource_account: p.text("ResourceOwner"),
                    },
                ))
                .await?
                .into_inner();
            evaluation_results(&mut xml, p, simulated.results)?;
        }
        "SimulateCustomPolicy" => {
            refuse_unsupported(p, &["ResourcePolicy"])?;
            let simulated = admin
                .simulate_custom_policy(request(
                    c,
                    proto::SimulateCustomPolicyRequest {
                        policy_input_list: p.list("PolicyInputList"),
                        permissions_boundary_policy_input_list: p.list("PermissionsBoundaryPolicyInputList"),
                        action_names: p.list("ActionNames"),
                        resource_arns: p.list("ResourceArns"),
                        context: context_entries(p)?,
                        caller_arn: p.text("CallerArn"),
                    },
                ))
                .await?
                .into_inner();
            evaluation_results(&mut xml, p, simulated.results)?;
        }
        _ => return Ok(None),
    }
    Ok(Some(Answer::new(action, xml)))
}

/// A simulation parameter iamd does not implement is refused rather than ignored: ignoring it
/// would answer a different question than the one asked.
fn refuse_unsupported(p: &Params, names: &[&str]) -> Result<(), QueryError> {
    match names.iter().find(|name| p.get(name).is_some() || p.get(&format!("{name}.member.1")).is_some()) {
        Some(name) => Err(QueryError::validation(format!(
            "iamd does not support the parameter {name} of this action yet"
        ))),
        None => Ok(()),
    }
}

/// `ContextEntries.member.N` with `ContextKeyName`, `ContextKeyValues.member.M` and
/// `ContextKeyType`: typed values become the text AWS puts in the request context; addresses
/// are checked as such.
fn context_entries(
    p: &Params,
) -> Result<std::collections::HashMap<String, proto::ContextValues>, QueryError> {
    use proto::context_value::Kind as ValueKind;
    let mut context = std::collections::HashMap::new();
    for n in 1.. {
        let prefix = format!("ContextEntries.member.{n}");
        let Some(name) = p.get(&format!("{prefix}.ContextKeyName")) else { break };
        let kind = p.text(&format!("{prefix}.ContextKeyType"));
        let values = p
            .list(&format!("{prefix}.ContextKeyValues"))
            .into_iter()
            .map(|value| proto::ContextValue {
                kind: Some(if kind.starts_with("ip") {
                    ValueKind::Ip(value)
                } else {
                    ValueKind::String(value)
                }),
            })
            .collect();
        context.insert(name.to_string(), proto::ContextValues { values });
    }
    Ok(context)
}

fn evaluation_results(
    xml: &mut Xml,
    p: &Params,
    results: Vec<proto::SimulationResult>,
) -> Result<(), QueryError> {
    let numbered: Vec<(usize, proto::SimulationResult)> = results.into_iter().enumerate().collect();
    let page = page(p, numbered, |(i, _)| format!("{i:010}"))?;
    xml.members("EvaluationResults", &page.items, |x, (_, result)| {
        let decision = match proto::Decision::try_from(result.decision) {
            Ok(proto::Decision::Allow) => "allowed",
            Ok(proto::Decision::ExplicitDeny) => "explicitDeny",
            _ => "implicitDeny",
        };
        x.text("EvalActionName", &result.action_name)
            .text("EvalResourceName", &result.resource_arn)
            .text("EvalDecision", decision);
        let matched =
            result.explanation.as_ref().map(|e| e.matched_statements.as_slice()).unwrap_or_default();
        x.members("MatchedStatements", matched, |x, m| {
            let source_type = if m.layer == "resource" {
                "resource"
            } else if m.policy.starts_with("arn:aws:iam::aws:policy/") {
                "aws-managed"
            } else if m.policy.contains(":policy/") {
                "user-managed"
            } else {
                "none"
            };
            x.text("SourcePolicyId", &m.policy).text("SourcePolicyType", source_type);
        });
        x.element("MissingContextValues", |_| {});
    });
    page.write_marker(xml);
    Ok(())
}

fn kind_of(action: &str) -> Kind {
    if action.contains("Group") {
        Kind::Group
    } else if action.contains("Role") {
        Kind::Role
    } else {
        Kind::User
    }
}

fn entity(name: String) -> proto::EntityRequest {
    proto::EntityRequest { name, account_id: String::new() }
}

fn access_key(p: &Params) -> Result<proto::AccessKeyRequest, QueryError> {
    Ok(proto::AccessKeyRequest {
        user_name: p.text("UserName"),
        access_key_id: p.required("AccessKeyId")?,
        account_id: String::new(),
    })
}

fn policy_arn(p: &Params) -> Result<proto::PolicyArnRequest, QueryError> {
    Ok(proto::PolicyArnRequest { policy_arn: p.required("PolicyArn")? })
}

fn policy_version_request(p: &Params) -> Result<proto::PolicyVersionRequest, QueryError> {
    Ok(proto::PolicyVersionRequest {
        policy_arn: p.required("PolicyArn")?,
        version_id: p.required("VersionId")?,
    })
}

fn login_profile(xml: &mut Xml, profile: &proto::LoginProfile) {
    xml.text("UserName", &profile.user_name)
        .text("CreateDate", &profile.create_date)
        .display("PasswordResetRequired", profile.password_reset_required);
}

/// The path of a managed policy ARN (`/` for `arn:aws:iam::aws:policy/Name`).
fn policy_path(arn: &str) -> &str {
    let resource = arn.split_once(":policy").map(|(_, rest)| rest).unwrap_or("/");
    match resource.rfind('/') {
        Some(end) => &resource[..=end],
        None => "/",
    }
}

/// One entry of GetAccountAuthorizationDetails: the four lists page together, as in AWS.
enum Detail {
    User(proto::UserDetail),
    Group(proto::GroupDetail),
    Role(proto::RoleDetail),
    Policy(proto::PolicyDetail),
}

impl Detail {
    /// Orders the entries list by list, then by name, for the marker.
    fn key(&self) -> String {
        match self {
            Detail::User(u) => {
                format!("1{}", u.user.as_ref().map(|u| u.user_name.to_ascii_lowercase()).unwrap_or_default())
            }
            Detail::Group(g) => format!(
                "2{}",
                g.group.as_ref().map(|g| g.group_name.to_ascii_lowercase()).unwrap_or_default()
            ),
            Detail::Role(r) => {
                format!("3{}", r.role.as_ref().map(|r| r.role_name.to_ascii_lowercase()).unwrap_or_default())
            }
            Detail::Policy(p) => format!("4{}", p.policy.as_ref().map(|p| p.arn.clone()).unwrap_or_default()),
        }
    }
}

fn inline(xml: &mut Xml, tag: &str, policies: &[proto::InlinePolicy]) {
    xml.members(tag, policies, |x, policy| {
        x.text("PolicyName", &policy.policy_name).document("PolicyDocument", &policy.policy_document);
    });
}

fn attached_policies(xml: &mut Xml, policies: &[proto::AttachedPolicy]) {
    xml.members("AttachedManagedPolicies", policies, |x, a| {
        x.text("PolicyName", &a.policy_name).text("PolicyArn", &a.policy_arn);
    });
}

fn authorization_details(
    xml: &mut Xml,
    p: &Params,
    details: proto::AccountAuthorizationDetails,
) -> Result<(), QueryError> {
    let filter = p.list("Filter");
    if let Some(unknown) = filter
        .iter()
        .find(|f| !["User", "Role", "Group", "LocalManagedPolicy", "AWSManagedPolicy"].contains(&f.as_str()))
    {
        return Err(QueryError::validation(format!(
            "Filter `{unknown}` is not one of User, Role, Group, LocalManagedPolicy and AWSManagedPolicy"
        )));
    }
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| f == name);
    let mut entries: Vec<Detail> = Vec::new();
    if wanted("User") {
        entries.extend(details.users.into_iter().map(Detail::User));
    }
    if wanted("Group") {
        entries.extend(details.groups.into_iter().map(Detail::Group));
    }
    if wanted("Role") {
        entries.extend(details.roles.into_iter().map(Detail::Role));
    }
    entries.extend(details.policies.into_iter().filter_map(|detail| {
        let aws = detail.policy.as_ref().is_some_and(|p| p.arn.starts_with("arn:aws:iam::aws:"));
        wanted(if aws { "AWSManagedPolicy" } else { "LocalManagedPolicy" }).then_some(Detail::Policy(detail))
    }));
    let page = page(p, entries, Detail::key)?;
    let of = |want: fn(&Detail) -> bool| page.items.iter().filter(|d| want(d)).collect::<Vec<_>>();
    xml.members("UserDetailList", &of(|d| matches!(d, Detail::User(_))), |x, d| {
        if let Detail::User(detail) = d
            && let Some(u) = &detail.user
        {
            x.text("Path", &u.path)
                .text("UserName", &u.user_name)
                .text("UserId", &u.user_id)
                .text("Arn", &u.arn)
                .text("CreateDate", &u.create_date);
            inline(x, "UserPolicyList", &detail.inline_policies);
            x.string_members("GroupList", &detail.group_names);
            attached_policies(x, &detail.attached_managed_policies);
            boundary(x, &u.permissions_boundary);
            tags(x, &u.tags);
        }
    });
    xml.members("GroupDetailList", &of(|d| matches!(d, Detail::Group(_))), |x, d| {
        if let Detail::Group(detail) = d
            && let Some(g) = &detail.group
        {
            group(x, g);
            inline(x, "GroupPolicyList", &detail.inline_policies);
            attached_policies(x, &detail.attached_managed_policies);
        }
    });
    xml.members("RoleDetailList", &of(|d| matches!(d, Detail::Role(_))), |x, d| {
        if let Detail::Role(detail) = d
            && let Some(r) = &detail.role
        {
            role(x, r);
            x.element("InstanceProfileList", |_| {});
            inline(x, "RolePolicyList", &detail.inline_policies);
            attached_policies(x, &detail.attached_managed_policies);
        }
    });
    xml.members("Policies", &of(|d| matches!(d, Detail::Policy(_))), |x, d| {
        if let Detail::Policy(detail) = d
            && let Some(managed) = &detail.policy
        {
            policy(x, managed);
            x.members("PolicyVersionList", &detail.versions, policy_version);
        }
    });
    page.write_marker(xml);
    Ok(())
}
