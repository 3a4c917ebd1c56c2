//! Wildcard patterns with policy variables: the matcher behind `Action`, `Resource`, `StringLike`
//! and `ArnLike`.
//!
//! IAM wildcards are only `*` (any run of characters, including none) and `?` (exactly one
//! character); every other character is literal, so a general glob library would be wrong
//! (`[`, `{` and `\` are ordinary characters in ARNs). Policy variables are kept as tokens and
//! resolved against the request at match time, so matching never builds a string.

use std::sync::Arc;

use super::intern::Interner;
use crate::eval::Context;

/// One piece of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// Text that must appear as is.
    Literal(Arc<str>),
    /// `*`: any run of characters, including none.
    AnyRun,
    /// `?`: exactly one character.
    AnyChar,
    /// `${key}` or `${key, 'default'}`: the request's value for `key`, matched literally.
    /// Boxed: variables are rare, and inline they would make every token 40 bytes instead of
    /// 24 (a bundle of 10,000 policies holds hundreds of thousands of tokens).
    Variable(Box<Variable>),
}

/// A policy variable: a context key (lower-cased, since keys are case-insensitive) and an
/// optional default used when the request has no value for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub key: Arc<str>,
    pub default: Option<Arc<str>>,
}

impl Variable {
    /// The text this variable stands for in `context`, or `None` when the request has no single
    /// value for it and no default: the element that holds it then does not match.
    fn resolve<'a>(&'a self, context: &'a Context) -> Option<&'a str> {
        match context.get(&self.key) {
            Some([value]) => Some(value.as_str()),
            _ => self.default.as_deref(),
        }
    }
}

/// A compiled wildcard pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    tokens: Box<[Token]>,
    shape: Shape,
}

/// The common shapes of patterns (`*`, `s3:Get*`, `aws`, `111122223333`), matched without the
/// general algorithm; most action patterns and ARN segments are one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Any,
    Exact,
    Prefix,
    General,
}

impl Shape {
    fn of(tokens: &[Token]) -> Shape {
        match tokens {
            [Token::AnyRun] => Shape::Any,
            [] | [Token::Literal(_)] => Shape::Exact,
            [Token::Literal(_), Token::AnyRun] => Shape::Prefix,
            _ => Shape::General,
        }
    }
}

/// Why a pattern text could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("policy variable starting at `{0}` is not closed with `}}`")]
    UnclosedVariable(String),
    #[error("policy variable `{0}` is malformed: expected `${{key}}` or `${{key, 'default'}}`")]
    MalformedVariable(String),
}

/// How a pattern text is read.
#[derive(Clone, Copy, Debug)]
pub struct Syntax {
    /// `*` and `?` are wildcards (false for `StringEquals` values, where they are literal).
    pub wildcards: bool,
    /// `${...}` is a policy variable (policy version `2012-10-17` only).
    pub variables: bool,
    /// Lower-case the literal parts (actions are matched case-insensitively).
    pub lowercase: bool,
}

impl Pattern {
    /// Compiles `text` under `syntax`.
    pub fn parse(text: &str, syntax: Syntax) -> Result<Pattern, PatternError> {
        Pattern::parse_in(text, syntax, &mut Interner::default())
    }

    /// Compiles `text` under `syntax`, sharing its strings through `interner`.
    pub fn parse_in(text: &str, syntax: Syntax, interner: &mut Interner) -> Result<Pattern, PatternError> {
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if syntax.variables && rest.starts_with("${") {
                let Some(end) = rest.find('}') else {
                    return Err(PatternError::UnclosedVariable(rest.to_string()));
                };
                let body = &rest[2..end];
                match parse_variable(body, interner) {
                    Some(VariableBody::Literal(special)) => literal.push(special),
                    Some(VariableBody::Key(variable)) => {
                        flush(&mut tokens, &mut literal, syntax.lowercase, interner);
                        tokens.push(Token::Variable(Box::new(variable)));
                    }
                    None => return Err(PatternError::MalformedVariable(rest[..=end].to_string())),
                }
                rest = &rest[end + 1..];
                continue;
            }
            match c {
                '*' if syntax.wildcards => {
                    flush(&mut tokens, &mut literal, syntax.lowercase, interner);
                    // `**` means the same as `*`; collapsing keeps matching linear-ish.
                    if tokens.last() != Some(&Token::AnyRun) {
                        tokens.push(Token::AnyRun);
                    }
                }
                '?' if syntax.wildcards => {
                    flush(&mut tokens, &mut literal, syntax.lowercase, interner);
                    tokens.push(Token::AnyChar);
                }
                _ => literal.push(c),
            }
            rest = &rest[c.len_utf8()..];
        }
        flush(&mut tokens, &mut literal, syntax.lowercase, interner);
        Ok(Pattern::from_tokens(tokens))
    }

    fn from_tokens(tokens: Vec<Token>) -> Pattern {
        let shape = Shape::of(&tokens);
        Pattern { tokens: tokens.into_boxed_slice(), shape }
    }

    /// A pattern that matches exactly `text`.
    pub fn literal(text: &str) -> Pattern {
        let tokens = if text.is_empty() { Vec::new() } else { vec![Token::Literal(Arc::from(text))] };
        Pattern::from_tokens(tokens)
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// True when the pattern is exactly `*`.
    pub fn is_any(&self) -> bool {
        matches!(&*self.tokens, [Token::AnyRun])
    }

    /// True when the pattern holds a wildcard.
    pub fn has_wildcard(&self) -> bool {
        self.tokens.iter().any(|t| matches!(t, Token::AnyRun | Token::AnyChar))
    }

    /// True when the pattern holds a policy variable.
    pub fn has_variable(&self) -> bool {
        self.tokens.iter().any(|t| matches!(t, Token::Variable(_)))
    }

    /// The literal text before the first wildcard or variable.
    pub fn literal_prefix(&self) -> &str {
        match self.tokens.first() {
            Some(Token::Literal(text)) => text,
            _ => "",
        }
    }

    /// Matches `text` exactly (byte for byte in the literal parts).
    pub fn matches(&self, text: &str, context: &Context) -> bool {
        self.matches_with(text, context, false)
    }

    /// Matches `text` ignoring ASCII case.
    pub fn matches_ignore_case(&self, text: &str, context: &Context) -> bool {
        self.matches_with(text, context, true)
    }

    fn matches_with(&self, text: &str, context: &Context, ignore_case: bool) -> bool {
        let literal = || match self.tokens.first() {
            Some(Token::Literal(literal)) => literal.as_ref(),
            _ => "",
        };
        match self.shape {
            Shape::Any => true,
            Shape::Exact => text.len() == literal().len() && starts_with(text, literal(), ignore_case),
            Shape::Prefix => starts_with(text, literal(), ignore_case),
            Shape::General => match_tokens(&self.tokens, text, context, ignore_case),
        }
    }
}

enum VariableBody {
    Literal(char),
    Key(Variable),
}

fn parse_variable(body: &str, interner: &mut Interner) -> Option<VariableBody> {
    match body {
        "*" => return Some(VariableBody::Literal('*')),
        "?" => return Some(VariableBody::Literal('?')),
        "$" => return Some(VariableBody::Literal('$')),
        _ => {}
    }
    let (key, default) = match body.split_once(',') {
        None => (body.trim(), None),
        Some((key, default)) => {
            let default = default.trim();
            let default = default.strip_prefix('\'')?.strip_suffix('\'')?;
            (key.trim(), Some(interner.intern(default)))
        }
    };
    let valid_key = !key.is_empty()
        && key.contains(':')
        && key.chars().all(|c| !c.is_whitespace() && !matches!(c, '$' | '{' | '}' | '\'' | ','));
    valid_key
        .then(|| VariableBody::Key(Variable { key: interner.intern(&key.to_ascii_lowercase()), default }))
}

fn flush(tokens: &mut Vec<Token>, literal: &mut String, lowercase: bool, interner: &mut Interner) {
    if literal.is_empty() {
        return;
    }
    let text = if lowercase { interner.intern(&literal.to_lowercase()) } else { interner.intern(literal) };
    literal.clear();
    tokens.push(Token::Literal(text));
}

/// Compares byte by byte: the texts are short (ARN segments, action names), where a loop beats
/// a call to `memcmp`.
fn starts_with(text: &str, prefix: &str, ignore_case: bool) -> bool {
    let (text, prefix) = (text.as_bytes(), prefix.as_bytes());
    if text.len() < prefix.len() {
        return false;
    }
    let pairs = text.iter().zip(prefix);
    if ignore_case {
        pairs.into_iter().all(|(a, b)| a.eq_ignore_ascii_case(b))
    } else {
        pairs.into_iter().all(|(a, b)| a == b)
    }
}

fn next_char_len(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(1, char::len_utf8)
}

/// The classic iterative wildcard match with backtracking to the last `*`, over tokens whose
/// literal parts are compared as whole strings. Runs in O(pattern × text) in the worst case and
/// never recurses, so hostile patterns cannot blow the stack.
fn match_tokens(tokens: &[Token], text: &str, context: &Context, ignore_case: bool) -> bool {
    let mut token_at = 0;
    let mut text_at = 0;
    // After a mismatch, resume just past the last `*`, with that `*` swallowing one more char.
    let mut backtrack: Option<(usize, usize)> = None;
    loop {
        if let Some(token) = tokens.get(token_at) {
            let advanced = match token {
                Token::AnyRun => {
                    backtrack = Some((token_at + 1, text_at));
                    token_at += 1;
                    continue;
                }
                Token::AnyChar => (text_at < text.len()).then(|| next_char_len(text, text_at)),
                Token::Literal(literal) => {
                    starts_with(&text[text_at..], literal, ignore_case).then_some(literal.len())
                }
                Token::Variable(variable) => {
                    let Some(value) = variable.resolve(context) else {
                        return false;
                    };
                    starts_with(&text[text_at..], value, ignore_case).then_some(value.len())
                }
            };
            if let Some(len) = advanced {
                token_at += 1;
                text_at += len;
                continue;
            }
        } else if text_at == text.len() {
            return true;
        }
        match backtrack {
            Some((resume_token, star_text)) if star_text < text.len() => {
                let next = star_text + next_char_len(text, star_text);
                backtrack = Some((resume_token, next));
                token_at = resume_token;
                text_at = next;
            }
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIKE: Syntax = Syntax { wildcards: true, variables: true, lowercase: false };

    fn like(pattern: &str, text: &str) -> bool {
        Pattern::parse(pattern, LIKE).unwrap().matches(text, &Context::default())
    }

    #[test]
    fn wildcards() {
        assert!(like("*", ""));
        assert!(like("a*c", "abbbc"));
        assert!(like("a?c", "abc"));
        assert!(!like("a?c", "ac"));
        assert!(like("*/key", "bucket/folder/key"));
        assert!(!like("*/key", "bucket/folder/keys"));
        assert!(like("a*b*c", "aXbYbZc"));
        assert!(like("é?", "éü"));
        assert!(like("[a]{b}\\", "[a]{b}\\"));
    }

    #[test]
    fn variables_resolve_from_context() {
        let mut context = Context::default();
        context.insert("aws:username", ["alice"]);
        let p = Pattern::parse("home/${aws:username}/*", LIKE).unwrap();
        assert!(p.matches("home/alice/notes.txt", &context));
        assert!(!p.matches("home/bob/notes.txt", &context));
        assert!(!p.matches("home/alice/x", &Context::default()), "missing variable never matches");
        let with_default = Pattern::parse("home/${aws:username, 'anonymous'}/*", LIKE).unwrap();
        assert!(with_default.matches("home/anonymous/x", &Context::default()));
        assert!(with_default.matches("home/alice/x", &context));
    }

    #[test]
    fn variable_values_are_literal() {
        let mut context = Context::default();
        context.insert("aws:username", ["*"]);
        let p = Pattern::parse("home/${aws:username}", LIKE).unwrap();
        assert!(p.matches("home/*", &context));
        assert!(!p.matches("home/alice", &context));
    }

    #[test]
    fn special_characters() {
        assert!(like("a${*}b", "a*b"));
        assert!(!like("a${*}b", "axb"));
        assert!(like("a${?}", "a?"));
        assert!(like("${$}1", "$1"));
    }

    #[test]
    fn malformed_variables_are_errors() {
        assert!(Pattern::parse("${aws:username", LIKE).is_err());
        assert!(Pattern::parse("${aws:username, anonymous}", LIKE).is_err());
        assert!(Pattern::parse("${}", LIKE).is_err());
        let literal = Syntax { variables: false, ..LIKE };
        assert!(Pattern::parse("${aws:username", literal).is_ok());
    }
}
