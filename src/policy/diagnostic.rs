//! Errors and warnings about a policy, each pointing at the text.

use std::fmt;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding: which policy, which statement, where in the JSON, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A short stable name for tools, such as `unknown-element` or `pass-role-wildcard`.
    pub code: &'static str,
    pub policy: String,
    /// The statement's `Sid`, or `#index` when it has none.
    pub statement: Option<String>,
    /// JSON path, such as `Statement[1].Condition.IpAddress.aws:SourceIp`.
    pub path: String,
    /// 1-based line and column (in characters).
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}:{}: {severity}: {}", self.policy, self.line, self.column, self.message)?;
        match &self.statement {
            Some(statement) => write!(f, " (statement {statement}, at `{}`)", self.path),
            None if !self.path.is_empty() => write!(f, " (at `{}`)", self.path),
            None => Ok(()),
        }
    }
}

/// A policy that cannot be used, with every error found (and the warnings, for context).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyError {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut errors = self.errors();
        match errors.next() {
            Some(first) => write!(f, "{first}")?,
            None => write!(f, "policy is invalid")?,
        }
        let more = errors.count();
        if more > 0 {
            write!(f, " (and {more} more error{})", if more == 1 { "" } else { "s" })?;
        }
        Ok(())
    }
}

/// Converts byte offsets to 1-based line and column numbers. Line starts are found once, so
/// a policy with many errors costs a bisection per error, not a scan of the text.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(at, _)| at + 1)).collect();
        LineIndex { text, line_starts }
    }

    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        (line, column)
    }
}
