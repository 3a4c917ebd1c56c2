//! iamd: AWS IAM for your own services.
//!
//! The library is the policy engine: [`policy`] reads the AWS IAM policy language into compiled
//! policies, [`eval`] decides requests against them exactly as AWS documents, and [`simulate`]
//! runs the project's JSON Lines test vectors.
#![forbid(unsafe_code)]

pub mod eval;
pub mod policy;
pub mod simulate;
