//! iamd: AWS IAM for your own services.
//!
//! The policy engine: [`policy`] reads the AWS IAM policy language into compiled policies,
//! [`eval`] decides requests against them exactly as AWS documents, and [`simulate`] runs the
//! project's JSON Lines test vectors.
//!
//! The sidecar around it: [`bundle`] turns policy files into a compiled bundle, [`iam`] and
//! [`store`] keep identities durable in sled, [`snapshot`] is the immutable view every decision
//! reads, [`authorize`] is the hot path from a request to a decision, and [`server`] serves it
//! all over gRPC.
#![forbid(unsafe_code)]

pub mod audit;
pub mod authorization_message;
pub mod authorize;
pub mod bundle;
pub mod client;
pub mod config;
pub mod credentials;
pub mod eval;
pub mod iam;
pub mod memory;
pub mod policy;
pub mod server;
pub mod simulate;
pub mod snapshot;
pub mod store;
pub mod sts;
pub mod telemetry;

/// The gRPC API, generated from `proto/iamd/v1/*.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    tonic::include_proto!("iamd.v1");

    /// For gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("iamd_descriptor");
}
