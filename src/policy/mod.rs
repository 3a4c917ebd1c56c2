//! The AWS IAM policy language: parsing, validation and compilation.
//!
//! [`parse`] turns JSON text into a [`Policy`]: every pattern compiled, statements indexed by
//! service, every error reported with its position, and warnings for what AWS accepts but is
//! probably a mistake.

pub mod arn;
mod ast;
pub mod condition;
mod diagnostic;
mod intern;
mod parser;
pub mod pattern;
mod validate;

pub use ast::{
    ActionMatch, ActionPattern, Effect, Policy, PolicyKind, PrincipalMatch, ResourceMatch, Statement, Version,
};
pub(crate) use diagnostic::LineIndex;
pub use diagnostic::{Diagnostic, PolicyError, Severity};
pub use intern::Interner;
pub use parser::{MAX_DEPTH, MAX_POLICY_BYTES, Parsed, parse, parse_in, parse_value};
