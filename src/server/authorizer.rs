//! The `iamd.v1.Authorizer` service.

use std::sync::Arc;

use tonic::{Code, Request, Response, Status};

use super::Core;
use super::convert;
use crate::authorize::{self, InvalidField, Query};
use crate::eval::{self, PolicySet, Principal, Request as EvalRequest};
use crate::policy::{self, PolicyKind};
use crate::proto::{self, authorizer_server::Authorizer};
use crate::snapshot::Snapshot;

pub struct AuthorizerService {
    core: Arc<Core>,
}

impl AuthorizerService {
    pub fn new(core: Arc<Core>) -> Self {
        AuthorizerService { core }
    }

    fn snapshot(&self) -> Result<Arc<Snapshot>, Status> {
        self.core.snapshot.load_full().ok_or_else(no_bundle)
    }
}

fn request_id<T>(request: &Request<T>) -> String {
    request.metadata().get(super::REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

#[tonic::async_trait]
impl Authorizer for AuthorizerService {
    async fn authorize(
        &self,
        request: Request<proto::AuthorizeRequest>,
    ) -> Result<Response<proto::AuthorizeResponse>, Status> {
        let request_id = request_id(&request);
        let snapshot = self.snapshot()?;
        let response = self
            .core
            .decide(&snapshot, request.into_inner(), request_id)
            .map_err(convert::invalid_argument)?;
        Ok(Response::new(response))
    }

    async fn batch_authorize(
        &self,
        request: Request<proto::BatchAuthorizeRequest>,
    ) -> Result<Response<proto::BatchAuthorizeResponse>, Status> {
        let request_id = request_id(&request);
        let requests = request.into_inner().requests;
        if requests.len() > self.core.batch_size {
            return Err(convert::invalid_argument(InvalidField {
                field: "requests",
                message: format!(
                    "{} requests, more than the {} a batch may hold",
                    requests.len(),
                    self.core.batch_size
                ),
            }));
        }
        let snapshot = self.snapshot()?;
        let responses = requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                self.core.decide(&snapshot, r, format!("{request_id}/{i}")).map_err(|e| {
                    convert::invalid_argument(InvalidField {
                        field: "requests",
                        message: format!("request {i}: {e}"),
                    })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(proto::BatchAuthorizeResponse { responses, revision: snapshot.revision.clone() }))
    }

    async fn simulate_principal_policy(
        &self,
        request: Request<proto::SimulatePrincipalPolicyRequest>,
    ) -> Result<Response<proto::SimulatePrincipalPolicyResponse>, Status> {
        self.core.simulate_principal(request.into_inner()).map(Response::new)
    }
}

impl Core {
    /// A stored principal against actions × resources, with the statements that matched: the
    /// Authorizer's and the admin API's `SimulatePrincipalPolicy`.
    pub(super) fn simulate_principal(
        &self,
        request: proto::SimulatePrincipalPolicyRequest,
    ) -> Result<proto::SimulatePrincipalPolicyResponse, Status> {
        if request.policy_source_arn.is_empty() {
            return Err(convert::invalid_argument(InvalidField {
                field: "policy_source_arn",
                message: "is required".into(),
            }));
        }
        let resources = self.simulation_size(&request.action_names, request.resource_arns)?;
        let context = convert::context(request.context).map_err(convert::invalid_argument)?;
        let snapshot = self.snapshot.load_full().ok_or_else(no_bundle)?;
        let mut results = Vec::new();
        for action in &request.action_names {
            for resource in &resources {
                let query = Query {
                    principal: &request.policy_source_arn,
                    action,
                    resource,
                    resource_account: &request.resource_account,
                    context: context.clone(),
                    explain: true,
                    verified: None,
                };
                let answer = authorize::decide(&snapshot, query).map_err(convert::invalid_argument)?;
                results.push(proto::SimulationResult {
                    action_name: action.clone(),
                    resource_arn: resource.clone(),
                    decision: convert::decision(answer.decision) as i32,
                    explanation: answer.explanation.as_ref().map(convert::explanation),
                });
            }
        }
        Ok(proto::SimulatePrincipalPolicyResponse { results, revision: snapshot.revision.clone() })
    }

    /// Policies given in the request against actions × resources, for `caller_arn`: only those
    /// policies (and a boundary) decide, as in AWS's `SimulateCustomPolicy`.
    pub(super) fn simulate_custom(
        &self,
        request: proto::SimulateCustomPolicyRequest,
    ) -> Result<proto::SimulatePrincipalPolicyResponse, Status> {
        let parse = |field: &'static str, documents: &[String]| {
            documents
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let name = format!("{field}[{i}]");
                    policy::parse(&name, text, PolicyKind::Identity).map(|p| Arc::new(p.policy)).map_err(
                        |e| {
                            convert::coded(
                                Code::InvalidArgument,
                                "MalformedPolicyDocument",
                                "iam.amazonaws.com",
                                e.to_string(),
                            )
                        },
                    )
                })
                .collect::<Result<Vec<_>, Status>>()
        };
        if request.policy_input_list.is_empty() {
            return Err(convert::invalid_argument(InvalidField {
                field: "policy_input_list",
                message: "give at least one policy document".into(),
            }));
        }
        let identity = parse("policy_input_list", &request.policy_input_list)?;
        let boundaries =
            parse("permissions_boundary_policy_input_list", &request.permissions_boundary_policy_input_list)?;
        if boundaries.len() > 1 {
            return Err(convert::invalid_argument(InvalidField {
                field: "permissions_boundary_policy_input_list",
                message: "a principal has at most one permissions boundary".into(),
            }));
        }
        let resources = self.simulation_size(&request.action_names, request.resource_arns)?;
        let context = convert::context(request.context).map_err(convert::invalid_argument)?;
        let principal = Principal::parse(&request.caller_arn)
            .ok()
            .filter(|_| request.caller_arn.contains(":user/"))
            .ok_or_else(|| {
                convert::invalid_argument(InvalidField {
                    field: "caller_arn",
                    message: format!(
                        "`{}` is not the ARN of an IAM user, which AWS requires",
                        request.caller_arn
                    ),
                })
            })?;
        let policies = PolicySet {
            identity: &identity,
            permissions_boundary: boundaries.first().map(|b| b.as_ref()),
            ..PolicySet::default()
        };
        let mut results = Vec::new();
        for action in &request.action_names {
            for resource in &resources {
                let eval_request = EvalRequest::new(principal.clone(), action, resource)
                    .map_err(|e| {
                        convert::invalid_argument(InvalidField {
                            field: "action_names",
                            message: e.to_string(),
                        })
                    })?
                    .with_context(context.clone());
                let explanation = eval::explain(&eval_request, &policies);
                results.push(proto::SimulationResult {
                    action_name: action.clone(),
                    resource_arn: resource.clone(),
                    decision: convert::decision(explanation.decision) as i32,
                    explanation: Some(convert::explanation(&explanation)),
                });
            }
        }
        let revision = self.snapshot.load().as_ref().map(|s| s.revision.clone()).unwrap_or_default();
        Ok(proto::SimulatePrincipalPolicyResponse { results, revision })
    }

    /// The resources of a simulation (`*` when none is given), once actions × resources is
    /// known to fit a batch.
    fn simulation_size(&self, actions: &[String], resources: Vec<String>) -> Result<Vec<String>, Status> {
        if actions.is_empty() {
            return Err(convert::invalid_argument(InvalidField {
                field: "action_names",
                message: "list at least one action".into(),
            }));
        }
        let resources = if resources.is_empty() { vec!["*".to_string()] } else { resources };
        if actions.len() * resources.len() > self.batch_size {
            return Err(convert::invalid_argument(InvalidField {
                field: "action_names",
                message: format!("actions × resources exceeds the batch limit of {}", self.batch_size),
            }));
        }
        Ok(resources)
    }
}

fn no_bundle() -> Status {
    Status::unavailable(
        "no policy bundle is loaded yet: check the bundle errors in the logs or `iamd admin status`",
    )
}
