//! Deciding requests: the request model and the AWS evaluation logic over compiled policies.
//!
//! The hot path is [`authorize`]: synchronous, lock-free, and without allocation; it reads
//! only the request and the compiled policies. [`explain`] runs the same logic and records
//! every matching statement.

pub mod context;
mod engine;
mod explain;
pub mod principal;
mod request;

pub use context::Context;
pub use engine::{Decision, PolicySet, authorize, explain};
pub use explain::{Explanation, Layer, MatchedStatement};
pub use principal::{Principal, PrincipalParseError};
pub use request::{Request, RequestError};
