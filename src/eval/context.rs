//! The request context: condition keys and their values.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::OnceLock;

use crate::policy::condition::{parse_date, parse_ip, parse_number};

/// One value of a condition key. Its readings as a date, an address or a number are made on
/// first use and kept, so a request checked by a hundred `DateLessThan` conditions parses its
/// `aws:CurrentTime` once.
#[derive(Clone, Debug, Default)]
pub struct ContextValue {
    text: String,
    date: OnceLock<Option<i128>>,
    ip: OnceLock<Option<IpAddr>>,
    number: OnceLock<Option<f64>>,
}

impl ContextValue {
    pub fn new(text: impl Into<String>) -> ContextValue {
        ContextValue { text: text.into(), ..ContextValue::default() }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Nanoseconds since the epoch, if the value is an ISO 8601 date or epoch seconds.
    pub fn date(&self) -> Option<i128> {
        *self.date.get_or_init(|| parse_date(&self.text))
    }

    pub fn ip(&self) -> Option<IpAddr> {
        *self.ip.get_or_init(|| parse_ip(&self.text))
    }

    pub fn number(&self) -> Option<f64> {
        *self.number.get_or_init(|| parse_number(&self.text))
    }
}

impl PartialEq for ContextValue {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ContextValue {}

/// Condition keys of a request, each with one value or several (a multi-valued key such as
/// `aws:TagKeys`). Keys are case-insensitive: they are stored lower-cased and sorted, so a lookup
/// by a key compiled lower-case at load time is a binary search with no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// Keys iamd fills itself are `'static` strings: no allocation per key per request.
    entries: Vec<(Cow<'static, str>, Values)>,
}

/// The values of one key: almost always a single one, held without a separate allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Values {
    One(ContextValue),
    Many(Vec<ContextValue>),
}

impl Values {
    fn new(values: impl IntoIterator<Item = ContextValue>) -> Values {
        let mut values = values.into_iter();
        match (values.next(), values.next()) {
            (Some(only), None) => Values::One(only),
            (None, _) => Values::Many(Vec::new()),
            (Some(first), Some(second)) => Values::Many([first, second].into_iter().chain(values).collect()),
        }
    }

    fn as_slice(&self) -> &[ContextValue] {
        match self {
            Values::One(value) => std::slice::from_ref(value),
            Values::Many(values) => values,
        }
    }
}

impl Context {
    /// Sets `key` to `values`, replacing any earlier value of that key.
    pub fn insert<I, S>(&mut self, key: &str, values: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set(Cow::Owned(key.to_ascii_lowercase()), values);
    }

    /// [`Context::insert`] for a key known when iamd is built, given in lower case.
    pub fn insert_static<I, S>(&mut self, key: &'static str, values: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        debug_assert!(!key.bytes().any(|b| b.is_ascii_uppercase()), "`{key}` is not lower case");
        self.set(Cow::Borrowed(key), values);
    }

    /// [`Context::insert`] for `prefix` (lower case) followed by `name`, such as a tag's key
    /// after `aws:principaltag/`.
    pub fn insert_prefixed<I, S>(&mut self, prefix: &'static str, name: &str, values: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        debug_assert!(!prefix.bytes().any(|b| b.is_ascii_uppercase()), "`{prefix}` is not lower case");
        let mut key = String::with_capacity(prefix.len() + name.len());
        key.push_str(prefix);
        key.extend(name.chars().map(|c| c.to_ascii_lowercase()));
        self.set(Cow::Owned(key), values);
    }

    fn set<I, S>(&mut self, key: Cow<'static, str>, values: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let values = Values::new(values.into_iter().map(ContextValue::new));
        match self.entries.binary_search_by(|(k, _)| (**k).cmp(&*key)) {
            Ok(at) => self.entries[at].1 = values,
            Err(at) => self.entries.insert(at, (key, values)),
        }
    }

    /// Makes room for `additional` more keys, so that filling a context grows it once.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    /// The values of `key`, which must already be lower-case.
    pub fn get(&self, key: &str) -> Option<&[ContextValue]> {
        self.entries.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|at| self.entries[at].1.as_slice())
    }

    /// Removes every key starting with `prefix` (lower-case), such as caller-supplied
    /// `aws:principaltag/` keys that iamd replaces with the stored tags.
    pub fn remove_prefix(&mut self, prefix: &str) {
        self.entries.retain(|(key, _)| !key.starts_with(prefix));
    }

    /// Every key (lower-case) with its values, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[ContextValue])> {
        self.entries.iter().map(|(key, values)| (&**key, values.as_slice()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive() {
        let mut context = Context::default();
        context.insert("aws:SourceIp", ["10.0.0.1"]);
        context.insert("AWS:sourceip", ["10.0.0.2"]);
        assert_eq!(context.len(), 1);
        assert_eq!(context.get("aws:sourceip"), Some(&[ContextValue::new("10.0.0.2")][..]));
        assert_eq!(context.get("aws:username"), None);
    }

    #[test]
    fn static_and_prefixed_keys_are_the_same_keys() {
        let mut context = Context::default();
        context.insert("aws:PrincipalTag/Team", ["a"]);
        context.insert_prefixed("aws:principaltag/", "TEAM", ["b"]);
        context.insert("AWS:Username", ["alice"]);
        context.insert_static("aws:username", ["bob"]);
        assert_eq!(context.len(), 2);
        assert_eq!(context.get("aws:principaltag/team"), Some(&[ContextValue::new("b")][..]));
        assert_eq!(context.get("aws:username"), Some(&[ContextValue::new("bob")][..]));
    }
}
