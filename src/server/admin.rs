//! The `iamd.v1.Admin` service: a thin layer over [`Iam`], which holds the rules. Every call is
//! authorized first, by iamd's own engine, as the IAM action of the same name on its target's
//! ARN, with the caller the authentication layer established.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Core;
use super::convert::{self, iam_status, proto_tags, tags};
use crate::audit::AuditRecord;
use crate::authorize::{Query, Verified};
use crate::credentials::session::SessionIdentity;
use crate::credentials::sigv4::{AuthError, ErrorCode};
use crate::credentials::{Authenticated, Caller};
use crate::eval::{Context, Decision};
use crate::iam::model::{
    AccessKey, Group, KeyStatus, LoginProfile, PasswordPolicy, PolicyVersion, Role, StateDocument, User,
};
use crate::iam::{Entity, Iam, IamError, Paging, PolicyInfo, PolicySource, Scope};
use crate::proto::{self, admin_server::Admin};

pub struct AdminService {
    core: Arc<Core>,
}

impl AdminService {
    pub fn new(core: Arc<Core>) -> Self {
        AdminService { core }
    }

    /// Authorizes `call` for `caller`, then runs it off the async workers (writes wait for the
    /// disk), and audits it if it changes anything, was refused, or was made by a root.
    async fn run<T, F>(&self, caller: Option<Arc<Authenticated>>, call: Call, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Iam) -> Result<T, IamError> + Send + 'static,
    {
        let core = self.core.clone();
        let operation = call.operation;
        let span = tracing::info_span!("admin", operation);
        tokio::task::spawn_blocking(move || span.in_scope(|| core.admin_call(caller.as_deref(), call, f)))
            .await
            .map_err(|_| Status::internal(format!("{operation} failed unexpectedly; nothing was changed")))?
    }
}

/// Who calls, taken from the request (the authentication layer put it there) before its
/// message is.
fn split<T: AccountScoped>(request: Request<T>) -> (Option<Arc<Authenticated>>, T) {
    let caller = request.extensions().get::<Arc<Authenticated>>().cloned();
    let mut message = request.into_inner();
    // As in AWS, a call acts in the caller's own account unless it names another.
    if let Some(account) = message.account_id()
        && account.is_empty()
        && let Some(caller) = &caller
    {
        *account = caller.account().to_string();
    }
    (caller, message)
}

/// Admin messages that name the account they act in.
trait AccountScoped {
    fn account_id(&mut self) -> Option<&mut String>;
}

macro_rules! account_scoped {
    ($($message:ty),* $(,)?) => {
        $(impl AccountScoped for $message {
            fn account_id(&mut self) -> Option<&mut String> {
                Some(&mut self.account_id)
            }
        })*
    };
}

account_scoped!(
    proto::EntityRequest,
    proto::ListRequest,
    proto::CreateUserRequest,
    proto::CreateGroupRequest,
    proto::GroupMembershipRequest,
    proto::CreateRoleRequest,
    proto::UpdateAssumeRolePolicyRequest,
    proto::PutPolicyRequest,
    proto::PolicyRequest,
    proto::AttachmentRequest,
    proto::TagRequest,
    proto::UntagRequest,
    proto::AccessKeyOwner,
    proto::AccessKeyRequest,
    proto::UpdateAccessKeyRequest,
    proto::CreateVirtualMfaDeviceRequest,
    proto::MfaCodesRequest,
    proto::MfaDeviceRequest,
    proto::LoginProfileRequest,
    proto::AccountRequest,
    proto::PasswordPolicy,
    proto::CreatePolicyRequest,
    proto::ListPoliciesRequest,
);

/// Messages that name no account: policies are named by ARN, which names it; the rest act on
/// the caller itself or on the sidecar.
macro_rules! not_account_scoped {
    ($($message:ty),* $(,)?) => {
        $(impl AccountScoped for $message {
            fn account_id(&mut self) -> Option<&mut String> {
                None
            }
        })*
    };
}

not_account_scoped!(
    proto::ChangePasswordRequest,
    proto::Empty,
    proto::StateDocument,
    proto::SimulatePrincipalPolicyRequest,
    proto::SimulateCustomPolicyRequest,
    proto::PolicyArnRequest,
    proto::CreatePolicyVersionRequest,
    proto::PolicyVersionRequest,
    proto::PolicyTagRequest,
    proto::PolicyUntagRequest,
);

/// What an admin call acts on; it becomes the resource ARN the call is authorized on.
pub(super) enum Target {
    /// A user, group or role by name (in `account`, empty for the default).
    Entity(Entity, String, String),
    /// A user, group or role about to be created with this path.
    New(Entity, String, String, String),
    /// The users, groups or roles under a path prefix.
    Listing(Entity, String, String),
    /// The owner of access keys: a user, or the root when the name is `None`.
    KeyOwner(String, Option<String>),
    /// The owner of one access key.
    AccessKey(String),
    /// Any resource, by ARN (resource tags).
    Arn(String),
    /// An account's own settings (the password policy): `*`, as in AWS.
    Account,
    /// The sidecar itself (reload, status, export, import).
    Sidecar,
}

impl Target {
    fn arn(&self, iam: &Iam) -> String {
        let or_default = |account: &str| {
            if account.is_empty() { iam.default_account().to_string() } else { account.to_string() }
        };
        match self {
            Target::Entity(kind, account, name) => iam.entity_arn(*kind, account, name),
            Target::New(kind, account, path, name) => {
                let path = if path.is_empty() { "/" } else { path };
                format!("arn:aws:iam::{}:{}{path}{name}", or_default(account), kind.label())
            }
            Target::Listing(kind, account, prefix) => {
                let prefix = if prefix.is_empty() { "/" } else { prefix };
                format!("arn:aws:iam::{}:{}{prefix}*", or_default(account), kind.label())
            }
            Target::KeyOwner(account, Some(user)) => iam.entity_arn(Entity::User, account, user),
            Target::KeyOwner(account, None) => format!("arn:aws:iam::{}:root", or_default(account)),
            Target::AccessKey(id) => iam.access_key_owner_arn(id).unwrap_or_else(|| "*".to_string()),
            Target::Arn(arn) => arn.clone(),
            Target::Account | Target::Sidecar => "*".to_string(),
        }
    }
}

/// An admin call: the action it is authorized as, its target and the request's condition keys
/// (`iam:PolicyARN`, `iam:PermissionsBoundary`, `aws:RequestTag/*`, `aws:TagKeys`).
pub(super) struct Call {
    operation: &'static str,
    action: String,
    target: Target,
    context: Context,
}

impl Call {
    /// An IAM operation, authorized as `iam:OPERATION`.
    fn iam(operation: &'static str, target: Target) -> Call {
        Call { operation, action: format!("iam:{operation}"), target, context: Context::default() }
    }

    /// An operation of iamd's own, authorized as `iamd:OPERATION`.
    fn iamd(operation: &'static str, target: Target) -> Call {
        Call { operation, action: format!("iamd:{operation}"), target, context: Context::default() }
    }

    fn with(mut self, key: &str, value: &str) -> Call {
        if !value.is_empty() {
            self.context.insert(key, [value]);
        }
        self
    }

    fn with_tags(mut self, tags: &[proto::Tag]) -> Call {
        for tag in tags {
            self.context.insert(&format!("aws:RequestTag/{}", tag.key), [tag.value.as_str()]);
        }
        if !tags.is_empty() {
            self.context.insert("aws:TagKeys", tags.iter().map(|t| t.key.as_str()));
        }
        self
    }

    fn with_tag_keys(mut self, keys: &[String]) -> Call {
        if !keys.is_empty() {
            self.context.insert("aws:TagKeys", keys.iter().map(String::as_str));
        }
        self
    }

    /// Reads change nothing: they are audited only when refused or made by a root.
    fn is_read(&self) -> bool {
        ["Get", "List"].iter().any(|prefix| self.operation.starts_with(prefix))
    }
}

impl Core {
    fn admin_call<T>(
        &self,
        caller: Option<&Authenticated>,
        call: Call,
        f: impl FnOnce(&Iam) -> Result<T, IamError>,
    ) -> Result<T, Status> {
        let resource = call.target.arn(&self.iam);
        let Some(caller) = caller else {
            return Err(convert::auth_status(&AuthError::new(
                ErrorCode::MissingAuthenticationToken,
                "Request is missing Authentication Token",
            )));
        };
        let refused = self.authorize_call(caller, &call, &resource).err();
        let result = match refused {
            Some(status) => Err(status),
            None => f(&self.iam).map_err(|e| {
                tracing::info!(operation = call.operation, code = e.code(), error = %e, "admin call refused");
                convert::iam_status(e)
            }),
        };
        if !call.is_read() || caller.is_root() || result.is_err() {
            self.audit_call(caller, &call, &resource, result.as_ref().err());
        }
        result
    }

    /// Decides the call with iamd's own policies, as AWS IAM decides its API calls.
    fn authorize_call(&self, caller: &Authenticated, call: &Call, resource: &str) -> Result<(), Status> {
        let denied = |reason: String| convert::access_denied("iam.amazonaws.com", reason);
        if let Some(session) = caller.session()
            && matches!(session.identity, SessionIdentity::User { .. } | SessionIdentity::Root)
            && !session.console
            && session.mfa_authenticated.is_none()
        {
            return Err(denied(format!(
                "User: {} is not authorized to perform: {} on resource: {resource} because IAM calls made with \
                 credentials from GetSessionToken must include MFA authentication",
                caller.principal_arn(),
                call.action
            )));
        }
        // The root of the account iamd is configured with is its operator: it administers
        // every account this iamd hosts (the others' roots only their own).
        if let Caller::Root { account } = &caller.caller
            && account == self.iam.default_account()
        {
            return Ok(());
        }
        // The password policy may let every user change their own password.
        if call.operation == "ChangePassword" && self.iam.users_may_change_password(caller.account()) {
            return Ok(());
        }
        let snapshot = self.snapshot.load_full().ok_or_else(|| {
            Status::unavailable("no policy bundle is loaded yet: calls cannot be authorized")
        })?;
        let query = Query {
            principal: "",
            action: &call.action,
            resource,
            resource_account: "",
            context: call.context.clone(),
            explain: true,
            verified: Some(Verified {
                caller,
                source_ip: None,
                secure_transport: false,
                now: jiff::Timestamp::now(),
                mfa_at: None,
            }),
        };
        let answer = crate::authorize::decide(&snapshot, query).map_err(convert::invalid_argument)?;
        if answer.decision.is_allowed() {
            return Ok(());
        }
        let reason = answer.explanation.map(|e| e.reason).unwrap_or_else(|| {
            format!(
                "User: {} is not authorized to perform: {} on resource: {resource}",
                caller.principal_arn(),
                call.action
            )
        });
        tracing::info!(operation = call.operation, principal = %caller.principal_arn(), "admin call denied");
        Err(denied(reason))
    }

    fn audit_call(&self, caller: &Authenticated, call: &Call, resource: &str, error: Option<&Status>) {
        if !self.audit.enabled() {
            return;
        }
        let error_code = error.map(|status| {
            status
                .metadata()
                .get("iamd-error-code")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("InternalFailure")
                .to_string()
        });
        self.audit.record(AuditRecord {
            event_time: jiff::Timestamp::now(),
            event_name: call.operation,
            principal: caller.principal_arn(),
            action: call.action.clone(),
            resource: resource.to_string(),
            decision: if error_code.as_deref() == Some("AccessDenied") {
                Decision::ImplicitDeny
            } else {
                Decision::Allow
            },
            reason: error.map(|status| status.message().to_string()),
            snapshot_revision: self.snapshot.load().as_ref().map(|s| s.revision.clone()).unwrap_or_default(),
            access_key_id: Some(caller.access_key_id.clone()),
            error_code,
            ..AuditRecord::default()
        });
    }
}

pub(super) fn user(u: &User) -> proto::User {
    proto::User {
        user_name: u.name.clone(),
        user_id: u.id.clone(),
        arn: u.arn(),
        path: u.path.clone(),
        create_date: u.created.clone(),
        tags: proto_tags(&u.tags),
        permissions_boundary: u.boundary.clone().unwrap_or_default(),
    }
}

fn group(g: &Group, members: Vec<String>) -> proto::Group {
    proto::Group {
        group_name: g.name.clone(),
        group_id: g.id.clone(),
        arn: g.arn(),
        path: g.path.clone(),
        create_date: g.created.clone(),
        user_names: members,
    }
}

fn role(r: &Role) -> proto::Role {
    proto::Role {
        role_name: r.name.clone(),
        role_id: r.id.clone(),
        arn: r.arn(),
        path: r.path.clone(),
        create_date: r.created.clone(),
        assume_role_policy_document: r.trust_policy.clone(),
        max_session_duration: r.max_session_duration as i32,
        description: r.description.clone(),
        tags: proto_tags(&r.tags),
        permissions_boundary: r.boundary.clone().unwrap_or_default(),
    }
}

fn access_key(k: &AccessKey) -> proto::AccessKey {
    proto::AccessKey {
        user_name: k.user.clone().unwrap_or_default(),
        access_key_id: k.id.clone(),
        status: k.status.as_str().to_string(),
        secret_access_key: String::new(),
        create_date: k.created.clone(),
    }
}

/// Whose access keys a call means: the named user, or without a name the caller itself (the
/// root's keys when the caller is the root), as AWS does.
fn key_owner(caller: Option<&Authenticated>, user_name: &str) -> Result<Option<String>, Status> {
    if !user_name.is_empty() {
        return Ok(Some(user_name.to_string()));
    }
    match caller.map(|c| &c.caller) {
        Some(Caller::User { name, .. }) => Ok(Some(name.clone())),
        Some(Caller::Root { .. }) => Ok(None),
        Some(Caller::Session(session)) => match &session.identity {
            SessionIdentity::User { name, .. } => Ok(Some(name.clone())),
            SessionIdentity::Root => Ok(None),
            SessionIdentity::Role { .. } => Err(iam_status(IamError::InvalidInput(
                "a role session has no access keys of its own: name the user (user_name)".into(),
            ))),
        },
        None => Ok(None),
    }
}

fn managed_policy(p: &PolicyInfo) -> proto::ManagedPolicy {
    proto::ManagedPolicy {
        policy_name: p.name.clone(),
        policy_id: p.id.clone(),
        arn: p.arn.clone(),
        path: p.path.clone(),
        default_version_id: p.default_version.clone(),
        attachment_count: p.attachment_count as u32,
        permissions_boundary_usage_count: p.boundary_usage_count as u32,
        is_attachable: true,
        description: p.description.clone(),
        create_date: p.created.clone(),
        update_date: p.updated.clone(),
        tags: proto_tags(&p.tags),
    }
}

fn policy_version(v: &PolicyVersion, is_default: bool) -> proto::PolicyVersion {
    proto::PolicyVersion {
        document: v.document.clone(),
        version_id: v.id.clone(),
        is_default_version: is_default,
        create_date: v.created.clone(),
    }
}

fn inline_policies(inline: &std::collections::BTreeMap<String, String>) -> Vec<proto::InlinePolicy> {
    inline
        .iter()
        .map(|(name, document)| proto::InlinePolicy {
            policy_name: name.clone(),
            policy_document: document.clone(),
        })
        .collect()
}

fn paging(r: &proto::ListRequest) -> Paging<'_> {
    Paging { from: &r.marker, max_items: r.max_items as usize }
}

/// An account's whole authorization state, read from the same records as the other calls.
fn authorization_details(iam: &Iam, account: &str) -> Result<proto::AccountAuthorizationDetails, IamError> {
    let mut users = Vec::new();
    for u in iam.list_users(account, "/", Paging::default())?.items {
        let groups = iam.list_groups_for_user(account, &u.name)?;
        users.push(proto::UserDetail {
            user: Some(user(&u)),
            inline_policies: inline_policies(&u.inline),
            attached_managed_policies: attached(u.attached.clone()).attached_policies,
            group_names: groups.into_iter().map(|g| g.name).collect(),
        });
    }
    let groups = iam
        .list_groups(account, "/", Paging::default())?
        .items
        .iter()
        .map(|g| proto::GroupDetail {
            group: Some(group(g, Vec::new())),
            inline_policies: inline_policies(&g.inline),
            attached_managed_policies: attached(g.attached.clone()).attached_policies,
        })
        .collect();
    let roles = iam
        .list_roles(account, "/", Paging::default())?
        .items
        .iter()
        .map(|r| proto::RoleDetail {
            role: Some(role(r)),
            inline_policies: inline_policies(&r.inline),
            attached_managed_policies: attached(r.attached.clone()).attached_policies,
        })
        .collect();
    let mut policies = Vec::new();
    for p in iam.list_policies(account, Scope::All, false, "/")? {
        if p.source == PolicySource::Aws && p.attachment_count == 0 {
            continue;
        }
        let versions = iam.list_policy_versions(&p.arn)?;
        policies.push(proto::PolicyDetail {
            policy: Some(managed_policy(&p)),
            versions: versions.iter().map(|(v, is_default)| policy_version(v, *is_default)).collect(),
        });
    }
    Ok(proto::AccountAuthorizationDetails { users, groups, roles, policies })
}

fn login_profile(profile: &LoginProfile) -> proto::LoginProfile {
    proto::LoginProfile {
        user_name: profile.user.clone(),
        create_date: profile.created.clone(),
        password_reset_required: profile.password_reset_required,
    }
}

fn attached(arns: Vec<String>) -> proto::AttachedPolicies {
    proto::AttachedPolicies {
        attached_policies: arns
            .into_iter()
            .map(|arn| proto::AttachedPolicy {
                policy_name: arn.rsplit('/').next().unwrap_or_default().to_string(),
                policy_arn: arn,
            })
            .collect(),
    }
}

/// The shape `async_trait` gives trait methods, for the methods generated by the macros below
/// (attribute macros expand before the macros inside them, so those cannot be `async fn`).
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn empty() -> Response<proto::Empty> {
    Response::new(proto::Empty {})
}

/// The three families of inline policy, attachment and tag calls differ only in the entity.
macro_rules! entity_calls {
    ($entity:expr, $put:ident = $put_op:literal, $get:ident = $get_op:literal, $list:ident = $list_op:literal,
     $delete:ident = $delete_op:literal, $attach:ident = $attach_op:literal, $detach:ident = $detach_op:literal,
     $list_attached:ident = $list_attached_op:literal) => {
        fn $put<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::PutPolicyRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::Empty>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                self.run(
                    caller,
                    Call::iam($put_op, Target::Entity($entity, r.account_id.clone(), r.name.clone())),
                    move |iam| {
                        iam.put_inline_policy(
                            $entity,
                            &r.account_id,
                            &r.name,
                            &r.policy_name,
                            &r.policy_document,
                        )
                    },
                )
                .await?;
                Ok(empty())
            })
        }

        fn $get<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::PolicyRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::PolicyDocument>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                let (name, policy_name) = (r.name.clone(), r.policy_name.clone());
                let document = self
                    .run(
                        caller,
                        Call::iam($get_op, Target::Entity($entity, r.account_id.clone(), r.name.clone())),
                        move |iam| iam.get_inline_policy($entity, &r.account_id, &r.name, &r.policy_name),
                    )
                    .await?;
                Ok(Response::new(proto::PolicyDocument { name, policy_name, policy_document: document }))
            })
        }

        fn $list<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::EntityRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::PolicyNames>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                let names = self
                    .run(
                        caller,
                        Call::iam($list_op, Target::Entity($entity, r.account_id.clone(), r.name.clone())),
                        move |iam| iam.list_inline_policies($entity, &r.account_id, &r.name),
                    )
                    .await?;
                Ok(Response::new(proto::PolicyNames { policy_names: names }))
            })
        }

        fn $delete<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::PolicyRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::Empty>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                self.run(
                    caller,
                    Call::iam($delete_op, Target::Entity($entity, r.account_id.clone(), r.name.clone())),
                    move |iam| iam.delete_inline_policy($entity, &r.account_id, &r.name, &r.policy_name),
                )
                .await?;
                Ok(empty())
            })
        }

        fn $attach<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::AttachmentRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::Empty>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                self.run(
                    caller,
                    Call::iam($attach_op, Target::Entity($entity, r.account_id.clone(), r.name.clone()))
                        .with("iam:PolicyARN", &r.policy_arn),
                    move |iam| iam.attach_policy($entity, &r.account_id, &r.name, &r.policy_arn),
                )
                .await?;
                Ok(empty())
            })
        }

        fn $detach<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::AttachmentRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::Empty>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                self.run(
                    caller,
                    Call::iam($detach_op, Target::Entity($entity, r.account_id.clone(), r.name.clone()))
                        .with("iam:PolicyARN", &r.policy_arn),
                    move |iam| iam.detach_policy($entity, &r.account_id, &r.name, &r.policy_arn),
                )
                .await?;
                Ok(empty())
            })
        }

        fn $list_attached<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::EntityRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::AttachedPolicies>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                let arns = self
                    .run(
                        caller,
                        Call::iam(
                            $list_attached_op,
                            Target::Entity($entity, r.account_id.clone(), r.name.clone()),
                        ),
                        move |iam| iam.list_attached_policies($entity, &r.account_id, &r.name),
                    )
                    .await?;
                Ok(Response::new(attached(arns)))
            })
        }
    };
}

macro_rules! tag_calls {
    ($entity:expr, $tag:ident = $tag_op:literal, $untag:ident = $untag_op:literal, $list:ident = $list_op:literal) => {
        fn $tag<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::TagRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::Empty>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                self.run(
                    caller,
                    Call::iam($tag_op, Target::Entity($entity, r.account_id.clone(), r.name.clone()))
                        .with_tags(&r.tags),
                    move |iam| iam.tag($entity, &r.account_id, &r.name, &tags(&r.tags)),
                )
                .await?;
                Ok(empty())
            })
        }

        fn $untag<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::UntagRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::Empty>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                self.run(
                    caller,
                    Call::iam($untag_op, Target::Entity($entity, r.account_id.clone(), r.name.clone()))
                        .with_tag_keys(&r.tag_keys),
                    move |iam| iam.untag($entity, &r.account_id, &r.name, &r.tag_keys),
                )
                .await?;
                Ok(empty())
            })
        }

        fn $list<'life0, 'async_trait>(
            &'life0 self,
            r: Request<proto::EntityRequest>,
        ) -> BoxFuture<'async_trait, Result<Response<proto::Tags>, Status>>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                let (caller, r) = split(r);
                let found = self
                    .run(
                        caller,
                        Call::iam($list_op, Target::Entity($entity, r.account_id.clone(), r.name.clone())),
                        move |iam| iam.list_tags($entity, &r.account_id, &r.name),
                    )
                    .await?;
                Ok(Response::new(proto::Tags { tags: proto_tags(&found) }))
            })
        }
    };
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_user(
        &self,
        r: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::User>, Status> {
        let (caller, r) = split(r);
        let created = self
            .run(
                caller,
                Call::iam(
                    "CreateUser",
                    Target::New(Entity::User, r.account_id.clone(), r.path.clone(), r.user_name.clone()),
                )
                .with_tags(&r.tags)
                .with("iam:PermissionsBoundary", &r.permissions_boundary),
                move |iam| {
                    iam.create_user(
                        &r.account_id,
                        &r.user_name,
                        &r.path,
                        &tags(&r.tags),
                        &r.permissions_boundary,
                    )
                },
            )
            .await?;
        Ok(Response::new(user(&created)))
    }

    async fn get_user(&self, r: Request<proto::EntityRequest>) -> Result<Response<proto::User>, Status> {
        let (caller, r) = split(r);
        let found = self
            .run(
                caller,
                Call::iam("GetUser", Target::Entity(Entity::User, r.account_id.clone(), r.name.clone())),
                move |iam| iam.get_user(&r.account_id, &r.name),
            )
            .await?;
        Ok(Response::new(user(&found)))
    }

    async fn list_users(
        &self,
        r: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListUsersResponse>, Status> {
        let (caller, r) = split(r);
        let users = self
            .run(
                caller,
                Call::iam(
                    "ListUsers",
                    Target::Listing(Entity::User, r.account_id.clone(), r.path_prefix.clone()),
                ),
                move |iam| iam.list_users(&r.account_id, &r.path_prefix, paging(&r)),
            )
            .await?;
        Ok(Response::new(proto::ListUsersResponse {
            users: users.items.iter().map(user).collect(),
            marker: users.next.unwrap_or_default(),
        }))
    }

    async fn delete_user(&self, r: Request<proto::EntityRequest>) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam("DeleteUser", Target::Entity(Entity::User, r.account_id.clone(), r.name.clone())),
            move |iam| iam.delete_user(&r.account_id, &r.name),
        )
        .await?;
        Ok(empty())
    }

    async fn create_group(
        &self,
        r: Request<proto::CreateGroupRequest>,
    ) -> Result<Response<proto::Group>, Status> {
        let (caller, r) = split(r);
        let created = self
            .run(
                caller,
                Call::iam(
                    "CreateGroup",
                    Target::New(Entity::Group, r.account_id.clone(), r.path.clone(), r.group_name.clone()),
                ),
                move |iam| iam.create_group(&r.account_id, &r.group_name, &r.path),
            )
            .await?;
        Ok(Response::new(group(&created, Vec::new())))
    }

    async fn get_group(&self, r: Request<proto::EntityRequest>) -> Result<Response<proto::Group>, Status> {
        let (caller, r) = split(r);
        let (found, members) = self
            .run(
                caller,
                Call::iam("GetGroup", Target::Entity(Entity::Group, r.account_id.clone(), r.name.clone())),
                move |iam| iam.get_group(&r.account_id, &r.name),
            )
            .await?;
        Ok(Response::new(group(&found, members)))
    }

    async fn list_groups(
        &self,
        r: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        let (caller, r) = split(r);
        let groups = self
            .run(
                caller,
                Call::iam(
                    "ListGroups",
                    Target::Listing(Entity::Group, r.account_id.clone(), r.path_prefix.clone()),
                ),
                move |iam| iam.list_groups(&r.account_id, &r.path_prefix, paging(&r)),
            )
            .await?;
        Ok(Response::new(proto::ListGroupsResponse {
            groups: groups.items.iter().map(|g| group(g, Vec::new())).collect(),
            marker: groups.next.unwrap_or_default(),
        }))
    }

    async fn delete_group(&self, r: Request<proto::EntityRequest>) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam("DeleteGroup", Target::Entity(Entity::Group, r.account_id.clone(), r.name.clone())),
            move |iam| iam.delete_group(&r.account_id, &r.name),
        )
        .await?;
        Ok(empty())
    }

    async fn add_user_to_group(
        &self,
        r: Request<proto::GroupMembershipRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam(
                "AddUserToGroup",
                Target::Entity(Entity::Group, r.account_id.clone(), r.group_name.clone()),
            ),
            move |iam| iam.add_user_to_group(&r.account_id, &r.group_name, &r.user_name),
        )
        .await?;
        Ok(empty())
    }

    async fn remove_user_from_group(
        &self,
        r: Request<proto::GroupMembershipRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam(
                "RemoveUserFromGroup",
                Target::Entity(Entity::Group, r.account_id.clone(), r.group_name.clone()),
            ),
            move |iam| iam.remove_user_from_group(&r.account_id, &r.group_name, &r.user_name),
        )
        .await?;
        Ok(empty())
    }

    async fn list_groups_for_user(
        &self,
        r: Request<proto::EntityRequest>,
    ) -> Result<Response<proto::ListGroupsResponse>, Status> {
        let (caller, r) = split(r);
        let groups = self
            .run(
                caller,
                Call::iam(
                    "ListGroupsForUser",
                    Target::Entity(Entity::User, r.account_id.clone(), r.name.clone()),
                ),
                move |iam| iam.list_groups_for_user(&r.account_id, &r.name),
            )
            .await?;
        Ok(Response::new(proto::ListGroupsResponse {
            groups: groups.iter().map(|g| group(g, Vec::new())).collect(),
            marker: String::new(),
        }))
    }

    async fn create_role(
        &self,
        r: Request<proto::CreateRoleRequest>,
    ) -> Result<Response<proto::Role>, Status> {
        let (caller, r) = split(r);
        let duration = u32::try_from(r.max_session_duration).map_err(|_| {
            iam_status(IamError::InvalidInput("max_session_duration must not be negative".into()))
        })?;
        let created = self
            .run(
                caller,
                Call::iam(
                    "CreateRole",
                    Target::New(Entity::Role, r.account_id.clone(), r.path.clone(), r.role_name.clone()),
                )
                .with_tags(&r.tags)
                .with("iam:PermissionsBoundary", &r.permissions_boundary),
                move |iam| {
                    iam.create_role(
                        &r.account_id,
                        &r.role_name,
                        &r.path,
                        &r.assume_role_policy_document,
                        duration,
                        &r.description,
                        &tags(&r.tags),
                        &r.permissions_boundary,
                    )
                },
            )
            .await?;
        Ok(Response::new(role(&created)))
    }

    async fn get_role(&self, r: Request<proto::EntityRequest>) -> Result<Response<proto::Role>, Status> {
        let (caller, r) = split(r);
        let found = self
            .run(
                caller,
                Call::iam("GetRole", Target::Entity(Entity::Role, r.account_id.clone(), r.name.clone())),
                move |iam| iam.get_role(&r.account_id, &r.name),
            )
            .await?;
        Ok(Response::new(role(&found)))
    }

    async fn list_roles(
        &self,
        r: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListRolesResponse>, Status> {
        let (caller, r) = split(r);
        let roles = self
            .run(
                caller,
                Call::iam(
                    "ListRoles",
                    Target::Listing(Entity::Role, r.account_id.clone(), r.path_prefix.clone()),
                ),
                move |iam| iam.list_roles(&r.account_id, &r.path_prefix, paging(&r)),
            )
            .await?;
        Ok(Response::new(proto::ListRolesResponse {
            roles: roles.items.iter().map(role).collect(),
            marker: roles.next.unwrap_or_default(),
        }))
    }

    async fn delete_role(&self, r: Request<proto::EntityRequest>) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam("DeleteRole", Target::Entity(Entity::Role, r.account_id.clone(), r.name.clone())),
            move |iam| iam.delete_role(&r.account_id, &r.name),
        )
        .await?;
        Ok(empty())
    }

    async fn update_assume_role_policy(
        &self,
        r: Request<proto::UpdateAssumeRolePolicyRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam(
                "UpdateAssumeRolePolicy",
                Target::Entity(Entity::Role, r.account_id.clone(), r.role_name.clone()),
            ),
            move |iam| iam.update_assume_role_policy(&r.account_id, &r.role_name, &r.policy_document),
        )
        .await?;
        Ok(empty())
    }

    entity_calls!(
        Entity::User,
        put_user_policy = "PutUserPolicy",
        get_user_policy = "GetUserPolicy",
        list_user_policies = "ListUserPolicies",
        delete_user_policy = "DeleteUserPolicy",
        attach_user_policy = "AttachUserPolicy",
        detach_user_policy = "DetachUserPolicy",
        list_attached_user_policies = "ListAttachedUserPolicies"
    );
    entity_calls!(
        Entity::Group,
        put_group_policy = "PutGroupPolicy",
        get_group_policy = "GetGroupPolicy",
        list_group_policies = "ListGroupPolicies",
        delete_group_policy = "DeleteGroupPolicy",
        attach_group_policy = "AttachGroupPolicy",
        detach_group_policy = "DetachGroupPolicy",
        list_attached_group_policies = "ListAttachedGroupPolicies"
    );
    entity_calls!(
        Entity::Role,
        put_role_policy = "PutRolePolicy",
        get_role_policy = "GetRolePolicy",
        list_role_policies = "ListRolePolicies",
        delete_role_policy = "DeleteRolePolicy",
        attach_role_policy = "AttachRolePolicy",
        detach_role_policy = "DetachRolePolicy",
        list_attached_role_policies = "ListAttachedRolePolicies"
    );

    async fn put_user_permissions_boundary(
        &self,
        r: Request<proto::AttachmentRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam(
                "PutUserPermissionsBoundary",
                Target::Entity(Entity::User, r.account_id.clone(), r.name.clone()),
            )
            .with("iam:PermissionsBoundary", &r.policy_arn),
            move |iam| iam.set_boundary(Entity::User, &r.account_id, &r.name, Some(&r.policy_arn)),
        )
        .await?;
        Ok(empty())
    }

    async fn delete_user_permissions_boundary(
        &self,
        r: Request<proto::EntityRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam(
                "DeleteUserPermissionsBoundary",
                Target::Entity(Entity::User, r.account_id.clone(), r.name.clone()),
            ),
            move |iam| iam.set_boundary(Entity::User, &r.account_id, &r.name, None),
        )
        .await?;
        Ok(empty())
    }

    async fn put_role_permissions_boundary(
        &self,
        r: Request<proto::AttachmentRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam(
                "PutRolePermissionsBoundary",
                Target::Entity(Entity::Role, r.account_id.clone(), r.name.clone()),
            )
            .with("iam:PermissionsBoundary", &r.policy_arn),
            move |iam| iam.set_boundary(Entity::Role, &r.account_id, &r.name, Some(&r.policy_arn)),
        )
        .await?;
        Ok(empty())
    }

    async fn delete_role_permissions_boundary(
        &self,
        r: Request<proto::EntityRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam(
                "DeleteRolePermissionsBoundary",
                Target::Entity(Entity::Role, r.account_id.clone(), r.name.clone()),
            ),
            move |iam| iam.set_boundary(Entity::Role, &r.account_id, &r.name, None),
        )
        .await?;
        Ok(empty())
    }

    tag_calls!(Entity::User, tag_user = "TagUser", untag_user = "UntagUser", list_user_tags = "ListUserTags");
    tag_calls!(Entity::Role, tag_role = "TagRole", untag_role = "UntagRole", list_role_tags = "ListRoleTags");

    async fn tag_resource(&self, r: Request<proto::TagRequest>) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iamd("TagResource", Target::Arn(r.name.clone())).with_tags(&r.tags),
            move |iam| iam.tag_resource(&r.name, &tags(&r.tags)),
        )
        .await?;
        Ok(empty())
    }

    async fn untag_resource(
        &self,
        r: Request<proto::UntagRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iamd("UntagResource", Target::Arn(r.name.clone())).with_tag_keys(&r.tag_keys),
            move |iam| iam.untag_resource(&r.name, &r.tag_keys),
        )
        .await?;
        Ok(empty())
    }

    async fn list_resource_tags(
        &self,
        r: Request<proto::EntityRequest>,
    ) -> Result<Response<proto::Tags>, Status> {
        let (caller, r) = split(r);
        let found = self
            .run(caller, Call::iamd("ListResourceTags", Target::Arn(r.name.clone())), move |iam| {
                iam.list_resource_tags(&r.name)
            })
            .await?;
        Ok(Response::new(proto::Tags { tags: proto_tags(&found) }))
    }

    async fn create_access_key(
        &self,
        r: Request<proto::AccessKeyOwner>,
    ) -> Result<Response<proto::AccessKey>, Status> {
        let (caller, r) = split(r);
        let owner = key_owner(caller.as_deref(), &r.user_name)?;
        let target = Target::KeyOwner(r.account_id.clone(), owner.clone());
        let (key, secret) = self
            .run(caller, Call::iam("CreateAccessKey", target), move |iam| {
                iam.create_access_key(&r.account_id, owner.as_deref())
            })
            .await?;
        let mut reply = access_key(&key);
        reply.secret_access_key = secret.expose().to_string();
        Ok(Response::new(reply))
    }

    async fn list_access_keys(
        &self,
        r: Request<proto::AccessKeyOwner>,
    ) -> Result<Response<proto::ListAccessKeysResponse>, Status> {
        let (caller, r) = split(r);
        let owner = key_owner(caller.as_deref(), &r.user_name)?;
        let target = Target::KeyOwner(r.account_id.clone(), owner.clone());
        let keys = self
            .run(caller, Call::iam("ListAccessKeys", target), move |iam| {
                iam.list_access_keys(&r.account_id, owner.as_deref())
            })
            .await?;
        Ok(Response::new(proto::ListAccessKeysResponse {
            access_key_metadata: keys.iter().map(access_key).collect(),
        }))
    }

    async fn update_access_key(
        &self,
        r: Request<proto::UpdateAccessKeyRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let owner = key_owner(caller.as_deref(), &r.user_name)?;
        let status = match r.status.as_str() {
            "Active" => KeyStatus::Active,
            "Inactive" => KeyStatus::Inactive,
            other => {
                return Err(iam_status(IamError::InvalidInput(format!(
                    "status `{other}` is not valid: expected Active or Inactive"
                ))));
            }
        };
        let target = Target::KeyOwner(r.account_id.clone(), owner.clone());
        self.run(caller, Call::iam("UpdateAccessKey", target), move |iam| {
            iam.update_access_key(&r.account_id, owner.as_deref(), &r.access_key_id, status)
        })
        .await?;
        Ok(empty())
    }

    async fn delete_access_key(
        &self,
        r: Request<proto::AccessKeyRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let owner = key_owner(caller.as_deref(), &r.user_name)?;
        let target = Target::KeyOwner(r.account_id.clone(), owner.clone());
        self.run(caller, Call::iam("DeleteAccessKey", target), move |iam| {
            iam.delete_access_key(&r.account_id, owner.as_deref(), &r.access_key_id)
        })
        .await?;
        Ok(empty())
    }

    async fn get_access_key_last_used(
        &self,
        r: Request<proto::AccessKeyRequest>,
    ) -> Result<Response<proto::GetAccessKeyLastUsedResponse>, Status> {
        let (caller, r) = split(r);
        let target = Target::AccessKey(r.access_key_id.clone());
        let pending = self.core.authenticator.pending_last_used(&r.access_key_id);
        let (key, used) = self
            .run(caller, Call::iam("GetAccessKeyLastUsed", target), move |iam| {
                iam.access_key_last_used(&r.access_key_id, pending)
            })
            .await?;
        let access_key_last_used = Some(match used {
            Some(used) => proto::AccessKeyLastUsed {
                last_used_date: used.date,
                service_name: used.service,
                region: used.region,
            },
            None => proto::AccessKeyLastUsed {
                last_used_date: String::new(),
                service_name: "N/A".into(),
                region: "N/A".into(),
            },
        });
        Ok(Response::new(proto::GetAccessKeyLastUsedResponse {
            user_name: key.user.unwrap_or_default(),
            access_key_last_used,
        }))
    }

    async fn create_virtual_mfa_device(
        &self,
        r: Request<proto::CreateVirtualMfaDeviceRequest>,
    ) -> Result<Response<proto::VirtualMfaDevice>, Status> {
        let (caller, r) = split(r);
        let account = if r.account_id.is_empty() { self.core.iam.default_account() } else { &r.account_id };
        let path = if r.path.is_empty() { "/" } else { &r.path };
        let serial = format!("arn:aws:iam::{account}:mfa{path}{}", r.virtual_mfa_device_name);
        let created = self
            .run(caller, Call::iam("CreateVirtualMFADevice", Target::Arn(serial)), move |iam| {
                iam.create_virtual_mfa_device(&r.account_id, &r.virtual_mfa_device_name, &r.path)
            })
            .await?;
        Ok(Response::new(proto::VirtualMfaDevice {
            serial_number: created.device.serial.clone(),
            base32_string_seed: created.base32_seed.clone(),
            otpauth_uri: created.otpauth_uri.clone(),
            user_name: String::new(),
            enable_date: String::new(),
        }))
    }

    async fn enable_mfa_device(
        &self,
        r: Request<proto::MfaCodesRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let target = Target::Entity(Entity::User, r.account_id.clone(), r.user_name.clone());
        self.run(caller, Call::iam("EnableMFADevice", target), move |iam| {
            iam.enable_mfa_device(
                &r.account_id,
                &r.user_name,
                &r.serial_number,
                &r.authentication_code1,
                &r.authentication_code2,
            )
        })
        .await?;
        Ok(empty())
    }

    async fn resync_mfa_device(
        &self,
        r: Request<proto::MfaCodesRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let target = Target::Entity(Entity::User, r.account_id.clone(), r.user_name.clone());
        self.run(caller, Call::iam("ResyncMFADevice", target), move |iam| {
            iam.resync_mfa_device(
                &r.account_id,
                &r.user_name,
                &r.serial_number,
                &r.authentication_code1,
                &r.authentication_code2,
            )
        })
        .await?;
        Ok(empty())
    }

    async fn deactivate_mfa_device(
        &self,
        r: Request<proto::MfaDeviceRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let target = Target::Entity(Entity::User, r.account_id.clone(), r.user_name.clone());
        self.run(caller, Call::iam("DeactivateMFADevice", target), move |iam| {
            iam.deactivate_mfa_device(&r.account_id, &r.user_name, &r.serial_number)
        })
        .await?;
        Ok(empty())
    }

    async fn delete_virtual_mfa_device(
        &self,
        r: Request<proto::MfaDeviceRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let target = Target::Arn(r.serial_number.clone());
        self.run(caller, Call::iam("DeleteVirtualMFADevice", target), move |iam| {
            iam.delete_virtual_mfa_device(&r.serial_number)
        })
        .await?;
        Ok(empty())
    }

    async fn list_mfa_devices(
        &self,
        r: Request<proto::AccessKeyOwner>,
    ) -> Result<Response<proto::ListMfaDevicesResponse>, Status> {
        let (caller, r) = split(r);
        let owner = key_owner(caller.as_deref(), &r.user_name)?
            .ok_or_else(|| iam_status(IamError::InvalidInput("name the user (user_name)".into())))?;
        let target = Target::Entity(Entity::User, r.account_id.clone(), owner.clone());
        let devices = self
            .run(caller, Call::iam("ListMFADevices", target), move |iam| {
                iam.list_mfa_devices(&r.account_id, &owner)
            })
            .await?;
        Ok(Response::new(proto::ListMfaDevicesResponse {
            mfa_devices: devices
                .into_iter()
                .map(|d| proto::VirtualMfaDevice {
                    serial_number: d.serial,
                    user_name: d.user.unwrap_or_default(),
                    enable_date: d.enabled.unwrap_or_default(),
                    ..Default::default()
                })
                .collect(),
        }))
    }

    async fn create_login_profile(
        &self,
        r: Request<proto::LoginProfileRequest>,
    ) -> Result<Response<proto::LoginProfile>, Status> {
        let (caller, r) = split(r);
        let target = Target::Entity(Entity::User, r.account_id.clone(), r.user_name.clone());
        let profile = self
            .run(caller, Call::iam("CreateLoginProfile", target), move |iam| {
                iam.create_login_profile(
                    &r.account_id,
                    &r.user_name,
                    &r.password,
                    r.password_reset_required.unwrap_or(false),
                )
            })
            .await?;
        Ok(Response::new(login_profile(&profile)))
    }

    async fn get_login_profile(
        &self,
        r: Request<proto::EntityRequest>,
    ) -> Result<Response<proto::LoginProfile>, Status> {
        let (caller, r) = split(r);
        let target = Target::Entity(Entity::User, r.account_id.clone(), r.name.clone());
        let profile = self
            .run(caller, Call::iam("GetLoginProfile", target), move |iam| {
                iam.get_login_profile(&r.account_id, &r.name)
            })
            .await?;
        Ok(Response::new(login_profile(&profile)))
    }

    async fn update_login_profile(
        &self,
        r: Request<proto::LoginProfileRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let target = Target::Entity(Entity::User, r.account_id.clone(), r.user_name.clone());
        self.run(caller, Call::iam("UpdateLoginProfile", target), move |iam| {
            let password = Some(r.password.as_str()).filter(|p| !p.is_empty());
            iam.update_login_profile(&r.account_id, &r.user_name, password, r.password_reset_required)
        })
        .await?;
        Ok(empty())
    }

    async fn delete_login_profile(
        &self,
        r: Request<proto::EntityRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let target = Target::Entity(Entity::User, r.account_id.clone(), r.name.clone());
        self.run(caller, Call::iam("DeleteLoginProfile", target), move |iam| {
            iam.delete_login_profile(&r.account_id, &r.name)
        })
        .await?;
        Ok(empty())
    }

    async fn change_password(
        &self,
        r: Request<proto::ChangePasswordRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let user = match caller.as_deref().map(|c| &c.caller) {
            Some(Caller::User { account, name, .. }) => Some((account.clone(), name.clone())),
            Some(Caller::Session(session)) => match &session.identity {
                SessionIdentity::User { name, .. } => Some((session.account.clone(), name.clone())),
                _ => None,
            },
            _ => None,
        };
        let Some((account, name)) = user else {
            return Err(convert::coded(
                tonic::Code::InvalidArgument,
                "InvalidUserType",
                "iam.amazonaws.com",
                "Only IAM users can change their own password.".into(),
            ));
        };
        let target = Target::Entity(Entity::User, account.clone(), name.clone());
        self.run(caller, Call::iam("ChangePassword", target), move |iam| {
            iam.change_password(&account, &name, &r.old_password, &r.new_password)
        })
        .await?;
        Ok(empty())
    }

    async fn update_account_password_policy(
        &self,
        r: Request<proto::PasswordPolicy>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let target = Target::Account;
        self.run(caller, Call::iam("UpdateAccountPasswordPolicy", target), move |iam| {
            iam.update_account_password_policy(PasswordPolicy {
                account: r.account_id,
                minimum_password_length: if r.minimum_password_length == 0 {
                    8
                } else {
                    r.minimum_password_length
                },
                require_symbols: r.require_symbols,
                require_numbers: r.require_numbers,
                require_uppercase_characters: r.require_uppercase_characters,
                require_lowercase_characters: r.require_lowercase_characters,
                allow_users_to_change_password: r.allow_users_to_change_password,
                max_password_age: Some(r.max_password_age).filter(|d| *d > 0),
                password_reuse_prevention: Some(r.password_reuse_prevention).filter(|n| *n > 0),
                hard_expiry: r.hard_expiry,
            })
        })
        .await?;
        Ok(empty())
    }

    async fn get_account_password_policy(
        &self,
        r: Request<proto::AccountRequest>,
    ) -> Result<Response<proto::PasswordPolicy>, Status> {
        let (caller, r) = split(r);
        let target = Target::Account;
        let policy = self
            .run(caller, Call::iam("GetAccountPasswordPolicy", target), move |iam| {
                iam.get_account_password_policy(&r.account_id)
            })
            .await?;
        Ok(Response::new(proto::PasswordPolicy {
            minimum_password_length: policy.minimum_password_length,
            require_symbols: policy.require_symbols,
            require_numbers: policy.require_numbers,
            require_uppercase_characters: policy.require_uppercase_characters,
            require_lowercase_characters: policy.require_lowercase_characters,
            allow_users_to_change_password: policy.allow_users_to_change_password,
            max_password_age: policy.max_password_age.unwrap_or(0),
            password_reuse_prevention: policy.password_reuse_prevention.unwrap_or(0),
            hard_expiry: policy.hard_expiry,
            expire_passwords: policy.max_password_age.is_some(),
            account_id: policy.account,
        }))
    }

    async fn delete_account_password_policy(
        &self,
        r: Request<proto::AccountRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        let target = Target::Account;
        self.run(caller, Call::iam("DeleteAccountPasswordPolicy", target), move |iam| {
            iam.delete_account_password_policy(&r.account_id)
        })
        .await?;
        Ok(empty())
    }

    async fn create_policy(
        &self,
        r: Request<proto::CreatePolicyRequest>,
    ) -> Result<Response<proto::ManagedPolicy>, Status> {
        let (caller, r) = split(r);
        let account = if r.account_id.is_empty() { self.core.iam.default_account() } else { &r.account_id };
        let path = if r.path.is_empty() { "/" } else { &r.path };
        let arn = format!("arn:aws:iam::{account}:policy{path}{}", r.policy_name);
        let created = self
            .run(caller, Call::iam("CreatePolicy", Target::Arn(arn)).with_tags(&r.tags), move |iam| {
                iam.create_policy(
                    &r.account_id,
                    &r.policy_name,
                    &r.path,
                    &r.policy_document,
                    &r.description,
                    &tags(&r.tags),
                )
            })
            .await?;
        Ok(Response::new(managed_policy(&created)))
    }

    async fn get_policy(
        &self,
        r: Request<proto::PolicyArnRequest>,
    ) -> Result<Response<proto::ManagedPolicy>, Status> {
        let (caller, r) = split(r);
        let found = self
            .run(caller, Call::iam("GetPolicy", Target::Arn(r.policy_arn.clone())), move |iam| {
                iam.get_policy(&r.policy_arn)
            })
            .await?;
        Ok(Response::new(managed_policy(&found)))
    }

    async fn list_policies(
        &self,
        r: Request<proto::ListPoliciesRequest>,
    ) -> Result<Response<proto::ListPoliciesResponse>, Status> {
        let (caller, r) = split(r);
        let scope = match r.scope.as_str() {
            "" | "All" => Scope::All,
            "AWS" => Scope::Aws,
            "Local" => Scope::Local,
            other => {
                return Err(iam_status(IamError::InvalidInput(format!(
                    "scope `{other}` is not one of All, AWS and Local"
                ))));
            }
        };
        let found = self
            .run(caller, Call::iam("ListPolicies", Target::Account), move |iam| {
                iam.list_policies(&r.account_id, scope, r.only_attached, &r.path_prefix)
            })
            .await?;
        Ok(Response::new(proto::ListPoliciesResponse {
            policies: found.iter().map(managed_policy).collect(),
        }))
    }

    async fn delete_policy(
        &self,
        r: Request<proto::PolicyArnRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(caller, Call::iam("DeletePolicy", Target::Arn(r.policy_arn.clone())), move |iam| {
            iam.delete_policy(&r.policy_arn)
        })
        .await?;
        Ok(empty())
    }

    async fn create_policy_version(
        &self,
        r: Request<proto::CreatePolicyVersionRequest>,
    ) -> Result<Response<proto::PolicyVersion>, Status> {
        let (caller, r) = split(r);
        let set_as_default = r.set_as_default;
        let created = self
            .run(caller, Call::iam("CreatePolicyVersion", Target::Arn(r.policy_arn.clone())), move |iam| {
                iam.create_policy_version(&r.policy_arn, &r.policy_document, r.set_as_default)
            })
            .await?;
        Ok(Response::new(policy_version(&created, set_as_default)))
    }

    async fn get_policy_version(
        &self,
        r: Request<proto::PolicyVersionRequest>,
    ) -> Result<Response<proto::PolicyVersion>, Status> {
        let (caller, r) = split(r);
        let (version, is_default) = self
            .run(caller, Call::iam("GetPolicyVersion", Target::Arn(r.policy_arn.clone())), move |iam| {
                iam.get_policy_version(&r.policy_arn, &r.version_id)
            })
            .await?;
        Ok(Response::new(policy_version(&version, is_default)))
    }

    async fn list_policy_versions(
        &self,
        r: Request<proto::PolicyArnRequest>,
    ) -> Result<Response<proto::ListPolicyVersionsResponse>, Status> {
        let (caller, r) = split(r);
        let versions = self
            .run(caller, Call::iam("ListPolicyVersions", Target::Arn(r.policy_arn.clone())), move |iam| {
                iam.list_policy_versions(&r.policy_arn)
            })
            .await?;
        Ok(Response::new(proto::ListPolicyVersionsResponse {
            versions: versions.iter().map(|(v, is_default)| policy_version(v, *is_default)).collect(),
        }))
    }

    async fn delete_policy_version(
        &self,
        r: Request<proto::PolicyVersionRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(caller, Call::iam("DeletePolicyVersion", Target::Arn(r.policy_arn.clone())), move |iam| {
            iam.delete_policy_version(&r.policy_arn, &r.version_id)
        })
        .await?;
        Ok(empty())
    }

    async fn set_default_policy_version(
        &self,
        r: Request<proto::PolicyVersionRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam("SetDefaultPolicyVersion", Target::Arn(r.policy_arn.clone())),
            move |iam| iam.set_default_policy_version(&r.policy_arn, &r.version_id),
        )
        .await?;
        Ok(empty())
    }

    async fn tag_policy(
        &self,
        r: Request<proto::PolicyTagRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam("TagPolicy", Target::Arn(r.policy_arn.clone())).with_tags(&r.tags),
            move |iam| iam.tag_policy(&r.policy_arn, &tags(&r.tags)),
        )
        .await?;
        Ok(empty())
    }

    async fn untag_policy(
        &self,
        r: Request<proto::PolicyUntagRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        let (caller, r) = split(r);
        self.run(
            caller,
            Call::iam("UntagPolicy", Target::Arn(r.policy_arn.clone())).with_tag_keys(&r.tag_keys),
            move |iam| iam.untag_policy(&r.policy_arn, &r.tag_keys),
        )
        .await?;
        Ok(empty())
    }

    async fn list_policy_tags(
        &self,
        r: Request<proto::PolicyArnRequest>,
    ) -> Result<Response<proto::Tags>, Status> {
        let (caller, r) = split(r);
        let found = self
            .run(caller, Call::iam("ListPolicyTags", Target::Arn(r.policy_arn.clone())), move |iam| {
                iam.get_policy(&r.policy_arn)
            })
            .await?;
        Ok(Response::new(proto::Tags { tags: proto_tags(&found.tags) }))
    }

    async fn simulate_principal_policy(
        &self,
        r: Request<proto::SimulatePrincipalPolicyRequest>,
    ) -> Result<Response<proto::SimulatePrincipalPolicyResponse>, Status> {
        let (caller, r) = split(r);
        let target = Target::Arn(r.policy_source_arn.clone());
        self.run(caller, Call::iam("SimulatePrincipalPolicy", target), |_| Ok(())).await?;
        self.core.simulate_principal(r).map(Response::new)
    }

    async fn simulate_custom_policy(
        &self,
        r: Request<proto::SimulateCustomPolicyRequest>,
    ) -> Result<Response<proto::SimulatePrincipalPolicyResponse>, Status> {
        let (caller, mut r) = split(r);
        // Only the given policies decide, as in AWS: without a caller ARN the simulated caller
        // is an IAM user of the caller's account (never the caller, whose own identity, a root
        // say, would decide instead of the policies).
        if r.caller_arn.is_empty()
            && let Some(caller) = &caller
        {
            r.caller_arn = format!("arn:aws:iam::{}:user/SimulatedCaller", caller.account());
        }
        self.run(caller, Call::iam("SimulateCustomPolicy", Target::Account), |_| Ok(())).await?;
        self.core.simulate_custom(r).map(Response::new)
    }

    async fn get_account_authorization_details(
        &self,
        r: Request<proto::AccountRequest>,
    ) -> Result<Response<proto::AccountAuthorizationDetails>, Status> {
        let (caller, r) = split(r);
        let target = Target::Account;
        let details = self
            .run(caller, Call::iam("GetAccountAuthorizationDetails", target), move |iam| {
                authorization_details(iam, &r.account_id)
            })
            .await?;
        Ok(Response::new(details))
    }

    async fn reload(&self, r: Request<proto::Empty>) -> Result<Response<proto::ReloadResponse>, Status> {
        let (caller, _) = split(r);
        self.run(caller, Call::iamd("Reload", Target::Sidecar), |_| Ok(())).await?;
        let outcome = self.core.reload().await;
        Ok(Response::new(proto::ReloadResponse {
            published: outcome.is_ok(),
            revision: self.core.snapshot.load().as_ref().map(|s| s.revision.clone()).unwrap_or_default(),
            errors: outcome.err().unwrap_or_default(),
        }))
    }

    async fn status(&self, r: Request<proto::Empty>) -> Result<Response<proto::StatusResponse>, Status> {
        let (caller, _) = split(r);
        self.run(caller, Call::iamd("GetStatus", Target::Sidecar), |_| Ok(())).await?;
        Ok(Response::new(self.core.status()))
    }

    async fn export(&self, r: Request<proto::Empty>) -> Result<Response<proto::StateDocument>, Status> {
        let (caller, _) = split(r);
        let document = self.run(caller, Call::iamd("Export", Target::Sidecar), |iam| iam.export()).await?;
        let json = serde_json::to_string_pretty(&document).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(proto::StateDocument { json }))
    }

    async fn import(
        &self,
        r: Request<proto::StateDocument>,
    ) -> Result<Response<proto::ImportResponse>, Status> {
        let (caller, r) = split(r);
        let document: StateDocument = serde_json::from_str(&r.json).map_err(|e| {
            convert::invalid_argument(crate::authorize::InvalidField {
                field: "json",
                message: format!("not an iamd export: {e}"),
            })
        })?;
        let counts =
            self.run(caller, Call::iamd("Import", Target::Sidecar), move |iam| iam.import(document)).await?;
        Ok(Response::new(proto::ImportResponse {
            users: counts.users as u64,
            groups: counts.groups as u64,
            roles: counts.roles as u64,
            resource_tags: counts.resource_tags as u64,
        }))
    }
}
