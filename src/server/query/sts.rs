//! STS actions (`Version=2011-06-15`), run by the STS gRPC service as the IAM actions are by
//! the admin service.

use std::sync::Arc;

use tonic::Request;

use super::params::Params;
use super::xml::Xml;
use super::{Answer, QueryError};
use crate::credentials::Authenticated;
use crate::proto::{self, sts_server::Sts as _};
use crate::server::Core;
use crate::server::sts::StsService;

fn credentials(xml: &mut Xml, credentials: Option<&proto::Credentials>) {
    if let Some(c) = credentials {
        xml.element("Credentials", |x| {
            x.text("AccessKeyId", &c.access_key_id)
                .text("SecretAccessKey", &c.secret_access_key)
                .text("SessionToken", &c.session_token)
                .text("Expiration", &c.expiration);
        });
    }
}

fn assumed_role_user(xml: &mut Xml, user: Option<&proto::AssumedRoleUser>) {
    if let Some(user) = user {
        xml.element("AssumedRoleUser", |x| {
            x.text("AssumedRoleId", &user.assumed_role_id).text("Arn", &user.arn);
        });
    }
}

/// `PolicyArns.member.N.arn`, STS's encoding of session policy ARNs.
fn policy_arns(p: &Params) -> Vec<String> {
    (1..).map_while(|n| p.get(&format!("PolicyArns.member.{n}.arn")).map(str::to_string)).collect()
}

/// Runs STS action `action`; `caller` is `None` only for the actions whose credential is in
/// the request itself (AssumeRoleWithWebIdentity).
pub(super) async fn call(
    core: &Arc<Core>,
    caller: Option<&Arc<Authenticated>>,
    action: &str,
    p: &Params,
) -> Result<Option<Answer>, QueryError> {
    let sts = StsService::new(core.clone());
    fn request<M>(caller: Option<&Arc<Authenticated>>, message: M) -> Request<M> {
        let mut request = Request::new(message);
        if let Some(caller) = caller {
            request.extensions_mut().insert(caller.clone());
        }
        request
    }
    let mut xml = Xml::new();
    match action {
        "AssumeRole" => {
            let message = proto::AssumeRoleRequest {
                role_arn: p.required("RoleArn")?,
                role_session_name: p.required("RoleSessionName")?,
                duration_seconds: p.int32("DurationSeconds")?,
                policy: p.text("Policy"),
                policy_arns: policy_arns(p),
                tags: p.tags("Tags"),
                transitive_tag_keys: p.list("TransitiveTagKeys"),
                external_id: p.text("ExternalId"),
                serial_number: p.text("SerialNumber"),
                token_code: p.text("TokenCode"),
                source_identity: p.text("SourceIdentity"),
            };
            let issued = sts.assume_role(request(caller, message)).await?.into_inner();
            credentials(&mut xml, issued.credentials.as_ref());
            assumed_role_user(&mut xml, issued.assumed_role_user.as_ref());
            xml.display("PackedPolicySize", issued.packed_policy_size)
                .optional("SourceIdentity", &issued.source_identity);
        }
        "GetSessionToken" => {
            let message = proto::GetSessionTokenRequest {
                duration_seconds: p.int32("DurationSeconds")?,
                serial_number: p.text("SerialNumber"),
                token_code: p.text("TokenCode"),
            };
            let issued = sts.get_session_token(request(caller, message)).await?.into_inner();
            credentials(&mut xml, issued.credentials.as_ref());
        }
        "GetCallerIdentity" => {
            let found = sts.get_caller_identity(request(caller, proto::Empty {})).await?.into_inner();
            xml.text("UserId", &found.user_id).text("Account", &found.account).text("Arn", &found.arn);
        }
        "AssumeRoleWithWebIdentity" => {
            let message = proto::AssumeRoleWithWebIdentityRequest {
                role_arn: p.required("RoleArn")?,
                role_session_name: p.required("RoleSessionName")?,
                web_identity_token: p.required("WebIdentityToken")?,
                duration_seconds: p.int32("DurationSeconds")?,
                policy: p.text("Policy"),
                policy_arns: policy_arns(p),
            };
            let issued = sts.assume_role_with_web_identity(request(caller, message)).await?.into_inner();
            credentials(&mut xml, issued.credentials.as_ref());
            xml.text("SubjectFromWebIdentityToken", &issued.subject_from_web_identity_token);
            assumed_role_user(&mut xml, issued.assumed_role_user.as_ref());
            xml.display("PackedPolicySize", issued.packed_policy_size)
                .text("Provider", &issued.provider)
                .text("Audience", &issued.audience);
        }
        "DecodeAuthorizationMessage" => {
            let message =
                proto::DecodeAuthorizationMessageRequest { encoded_message: p.required("EncodedMessage")? };
            let decoded = sts.decode_authorization_message(request(caller, message)).await?.into_inner();
            xml.text("DecodedMessage", &decoded.decoded_message);
        }
        _ => return Ok(None),
    }
    Ok(Some(Answer::new(action, xml)))
}
