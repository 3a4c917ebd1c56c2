//! The `iamd.v1.Authorizer` service.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Core;
use super::convert;
use crate::authorize::{self, InvalidField, Query};
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
        self.core.snapshot.load_full().ok_or_else(|| {
            Status::unavailable(
                "no policy bundle is loaded yet: check the bundle errors in the logs or `iamd admin status`",
            )
        })
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
        let request = request.into_inner();
        if request.policy_source_arn.is_empty() {
            return Err(convert::invalid_argument(InvalidField {
                field: "policy_source_arn",
                message: "is required".into(),
            }));
        }
        if request.action_names.is_empty() {
            return Err(convert::invalid_argument(InvalidField {
                field: "action_names",
                message: "list at least one action".into(),
            }));
        }
        let resources =
            if request.resource_arns.is_empty() { vec!["*".to_string()] } else { request.resource_arns };
        if request.action_names.len() * resources.len() > self.core.batch_size {
            return Err(convert::invalid_argument(InvalidField {
                field: "action_names",
                message: format!("actions × resources exceeds the batch limit of {}", self.core.batch_size),
            }));
        }
        let context = convert::context(request.context).map_err(convert::invalid_argument)?;
        let snapshot = self.snapshot()?;
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
        Ok(Response::new(proto::SimulatePrincipalPolicyResponse {
            results,
            revision: snapshot.revision.clone(),
        }))
    }
}
